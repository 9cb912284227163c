//! `cloister-runner profile check FILE|NAME [--json]`: validates a sandbox
//! profile (and the seccomp policy it names) and prints its canonical sha256
//! digest, the value provenance records as the profile's identity.

use cloister_sandbox::Profile;
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a profile and print its canonical digest.
    Check {
        /// A profile name (searched like `run --profile`) or a path to a
        /// profile JSON file.
        #[arg(value_name = "FILE|NAME")]
        profile: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckResult<'a> {
    name: &'a str,
    digest: &'a str,
    seccomp_policy: Policy<'a>,
    namespaces: &'a [String],
    optional_limits: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Policy<'a> {
    name: &'a str,
    digest: &'a str,
}

pub fn exec(cmd: Command) -> ExitCode {
    match cmd {
        Command::Check { profile, json } => check(&profile, json),
    }
}

fn check(name: &str, json: bool) -> ExitCode {
    let profile = match Profile::load(name) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cloister-runner: profile {name} refused: {e}");
            return ExitCode::from(1);
        }
    };
    let text = match render(&profile, json) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cloister-runner: {e}");
            return ExitCode::from(1);
        }
    };
    // A closed stdout (`| head -1`) is not an error worth a panic.
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// The text `profile check` prints.
fn render(profile: &Profile, json: bool) -> Result<String, serde_json::Error> {
    if json {
        let out = CheckResult {
            name: profile.name(),
            digest: profile.digest(),
            seccomp_policy: Policy {
                name: profile.seccomp().name(),
                digest: profile.seccomp().digest(),
            },
            namespaces: profile.namespaces(),
            optional_limits: profile
                .optional_limits()
                .iter()
                .map(|l| l.to_string())
                .collect(),
        };
        Ok(format!("{}\n", serde_json::to_string(&out)?))
    } else {
        Ok(format!(
            "{}  {}\nseccomp: {}  {}\n",
            profile.digest(),
            profile.name(),
            profile.seccomp().digest(),
            profile.seccomp().name()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden file: the profile digest goes into provenance, so any change
    /// to the shipped profile or policy shows up here for review.
    #[test]
    fn profile_check_output_matches_the_golden_file() {
        let profile = Profile::load("default").unwrap();
        let got = render(&profile, true).unwrap();
        let want = include_str!("testdata/profile-check-default.json");
        assert_eq!(
            got, want,
            "update testdata/profile-check-default.json after review"
        );
        let text = render(&profile, false).unwrap();
        assert!(text.starts_with(profile.digest()));
    }
}
