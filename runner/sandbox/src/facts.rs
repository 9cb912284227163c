//! What isolation a run gets, in the shape provenance records it
//! (`internalParameters` of the SLSA statement): computed from the spec alone,
//! so it is known before the run and cannot be influenced by the build.

use crate::spec::SandboxSpec;
use serde::{Deserialize, Serialize};

/// The isolation facts of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IsolationFacts {
    /// `"none"`: the sandbox has only its own loopback interface (every
    /// build); `"host"` for a run sharing the host's (`spec::Network::Host`,
    /// set only by the GitHub container hook, never for a build).
    pub network: String,
    /// Namespaces created fresh for the run, sorted.
    pub namespaces: Vec<String>,
    /// `PR_SET_NO_NEW_PRIVS` is set before exec.
    pub no_new_privs: bool,
    /// Capabilities the command holds in any set: always empty.
    pub capabilities: Vec<String>,
    /// `sha256:` digest of the seccomp policy installed.
    pub seccomp_policy: String,
    /// `sha256:` digest of the canonical profile.
    pub profile: String,
    /// Whether the runner ran without root on the host.
    pub rootless: bool,
}

impl IsolationFacts {
    /// The facts for `spec` when run by the current user.
    pub fn for_spec(spec: &SandboxSpec) -> IsolationFacts {
        IsolationFacts {
            network: spec.network.as_str().into(),
            namespaces: spec
                .profile
                .namespaces()
                .iter()
                .filter(|ns| spec.network == crate::spec::Network::None || *ns != "net")
                .cloned()
                .collect(),
            no_new_privs: true,
            capabilities: Vec::new(),
            seccomp_policy: spec.profile.seccomp().digest().to_string(),
            profile: spec.profile.digest().to_string(),
            rootless: !nix::unistd::geteuid().is_root(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Network;

    #[test]
    fn facts_say_which_network_a_run_has() {
        let profile = crate::Profile::load("default").unwrap();
        let mut spec = SandboxSpec::new(vec!["true".into()], profile);
        let facts = IsolationFacts::for_spec(&spec);
        assert_eq!(facts.network, "none");
        assert!(facts.namespaces.contains(&"net".to_string()));
        spec.network = Network::Host;
        let facts = IsolationFacts::for_spec(&spec);
        assert_eq!(facts.network, "host");
        assert!(!facts.namespaces.contains(&"net".to_string()));
        assert!(facts.namespaces.contains(&"user".to_string()));
    }
}
