//! The built-in profiles and seccomp policies as the build script derived
//! them (`build.rs`, with the code of `derive`): a profile's digest, a
//! policy's digest and compiled programs. A loaded text whose bytes equal a
//! built-in one (the embedded copy, or a file installed from it) takes these
//! instead of being parsed, checked and compiled again; any other text takes
//! the full path. They are constants of the binary, so nothing a build (or
//! anyone but whoever builds the runner) can write feeds them. The policy's
//! evaluation against every promised denial is not precomputed: it runs at
//! every load (`SeccompPolicy::check`).

use seccompiler::sock_filter;

/// A built-in profile: its text and digest (unknown fields already refused).
pub(crate) struct Profile {
    #[cfg_attr(not(test), allow(dead_code))]
    pub name: &'static str,
    pub text: &'static str,
    pub digest: &'static str,
}

/// A built-in seccomp policy: its text, digest and the programs to install
/// (`derive::compile_policy`: the x32 guard added, the stack merged).
pub(crate) struct Policy {
    #[cfg_attr(not(test), allow(dead_code))]
    pub name: &'static str,
    pub text: &'static str,
    pub digest: &'static str,
    pub programs: &'static [&'static [sock_filter]],
}

/// One BPF instruction (short, for the generated tables).
const fn i(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

include!(concat!(env!("OUT_DIR"), "/precomputed.rs"));

/// The precomputed profile whose text is exactly `text`.
pub(crate) fn profile(text: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.text == text)
}

/// The precomputed policy whose text is exactly `text`.
pub(crate) fn policy(text: &str) -> Option<&'static Policy> {
    POLICIES.iter().find(|p| p.text == text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive;

    /// The build's results equal the runtime's full path on the same text,
    /// for every built-in profile and policy (and each has one).
    #[test]
    fn precomputed_results_match_the_full_path() {
        for (name, text) in crate::profile::EMBEDDED {
            let pre = profile(text).unwrap_or_else(|| panic!("profile {name} not precomputed"));
            assert_eq!(pre.name, *name);
            let (_, digest) = derive::parse_spec(text).unwrap();
            assert_eq!(pre.digest, digest, "{name}");
        }
        let arch = seccompiler::TargetArch::try_from(std::env::consts::ARCH).unwrap();
        for (name, text) in crate::seccomp::EMBEDDED {
            let pre = policy(text).unwrap_or_else(|| panic!("policy {name} not precomputed"));
            assert_eq!(pre.name, *name);
            let (digest, programs) = derive::compile_policy(text, arch).unwrap();
            assert_eq!(pre.digest, digest, "{name}");
            let pre_programs: Vec<Vec<sock_filter>> =
                pre.programs.iter().map(|p| p.to_vec()).collect();
            assert_eq!(pre_programs, programs, "{name}");
        }
    }

    /// Only the exact bytes match: the same JSON formatted differently takes
    /// the full path (and gets the same digest from it).
    #[test]
    fn other_text_is_not_precomputed() {
        let (_, text) = crate::seccomp::EMBEDDED[0];
        let reformatted = format!("{text}\n");
        assert!(policy(text).is_some());
        assert!(policy(&reformatted).is_none());
        let a = crate::SeccompPolicy::parse("a", text).unwrap();
        let b = crate::SeccompPolicy::parse("b", &reformatted).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.programs(), b.programs());
        let (_, text) = crate::profile::EMBEDDED[0];
        assert!(profile(&format!(" {text}")).is_none());
        let a = crate::Profile::parse("a", text).unwrap();
        let b = crate::Profile::parse("b", &format!(" {text}")).unwrap();
        assert_eq!(a.digest(), b.digest());
    }
}
