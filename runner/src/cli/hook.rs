//! `cloister-runner hook`: the GitHub Actions runner's container hooks
//! (one JSON request on stdin; see `crate::hook`). Installed behind the
//! shipped entry script `cookbook/workflows/runner-hooks/cloister-container-hook.sh`,
//! which `ACTIONS_RUNNER_CONTAINER_HOOKS` names.

use crate::hook::{self, HookOptions};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Reads one request of the Actions runner's container-hooks contract \
(prepare_job, run_script_step, run_container_step, cleanup_job) on stdin; prepare_job writes \
its response to the request's responseFile. Steps run in the sandbox and the hook exits with \
the step's status; a refused request prints one line and exits 1."
)]
pub struct Args {
    #[command(flatten)]
    store: super::store::StoreArg,
    /// The hook's job records (must lie outside the runner's work directory).
    #[arg(long, default_value = hook::DEFAULT_STATE_DIR, value_name = "DIR")]
    state_dir: PathBuf,
    /// Sandbox profile every step runs under.
    #[arg(long, default_value = "default", value_name = "NAME|PATH")]
    profile: String,
    /// Create each step's cgroup below this one (a delegated cgroup when the
    /// Actions runner is not root).
    #[arg(long, value_name = "PATH")]
    cgroup_parent: Option<String>,
    /// Bind the runner daemon's API socket into every step at
    /// /cloister/runner.sock (for the release workflow's build step).
    #[arg(long, value_name = "SOCKET")]
    daemon_socket: Option<PathBuf>,
    /// Bind the attestor's public key (PEM) read-only into every step at
    /// /cloister/attestor-public.pem.
    #[arg(long, value_name = "PEM")]
    trusted_key: Option<PathBuf>,
    /// Give the script steps of this action the host's network (repeatable;
    /// OWNER/REPO@<40-hex commit SHA>, nothing else is accepted). Every other
    /// step has none.
    #[arg(long = "network-action", value_name = "OWNER/REPO@SHA")]
    network_actions: Vec<String>,
}

pub fn exec(args: Args) -> ExitCode {
    let mut input = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(hook::request::MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut input);
    if let Err(e) = read {
        eprintln!("cloister-runner hook: reading the request on stdin: {e}");
        return ExitCode::from(1);
    }
    // A bad allow-list entry refuses every request, prepare_job first:
    // the operator sees it on the first job, never a silently shorter list.
    let network_actions = match hook::network::parse_allow_list(&args.network_actions) {
        Ok(list) => list,
        Err(e) => {
            eprintln!("cloister-runner hook: configuration: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = HookOptions {
        store: args.store.store,
        state_dir: args.state_dir,
        profile: args.profile,
        cgroup_parent: args.cgroup_parent,
        daemon_socket: args.daemon_socket,
        trusted_key: args.trusted_key,
        network_actions,
    };
    match hook::handle(&input, &opts) {
        Ok(done) => {
            if let Some(note) = done.note {
                eprintln!("{note}");
            }
            ExitCode::from((done.status & 0xff) as u8)
        }
        Err(e) => {
            eprintln!(
                "cloister-runner hook: {}",
                cloister_report::chain(&e).replace('\n', " ")
            );
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
