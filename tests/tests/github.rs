//! The GitHub Actions integration: the runner's container hooks driven as
//! the Actions runner drives them (needs root or user namespaces, and
//! busybox-static), and the shipped workflows checked against GitHub's
//! workflow schema and audited by zizmor (`.ci/setup.d/65-github.sh`
//! installs both; the tests fail loudly without them). The release
//! pipelines themselves run end to end in `e2e::pipelines`.
//!
//! Module tree (under `tests/tests/github/`):
//! - `doctor`: `cloister-runner doctor` and the job hooks, passing and failing
//! - `hook`: a whole job through the entry script; every refused request
//! - `network`: the network allow-list: which steps share the host's
//!   network and which never do; the read-only action cache
//! - `rootless`: a job as an unprivileged runner user with a delegated cgroup
//! - `workflows`: schema validation and zizmor audit of `cookbook/workflows/`

mod github {
    mod doctor;
    mod hook;
    mod network;
    mod rootless;
    pub mod workflows;
}
