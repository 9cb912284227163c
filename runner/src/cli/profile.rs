//! `cloister-runner profile check FILE|NAME [--json]`: validates a sandbox
//! profile (and the seccomp policy it names) and prints its canonical sha256
//! digest, the value provenance records as the profile's identity.

use cloister_sandbox::Profile;
use serde::Serialize;
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
        match serde_json::to_string(&out) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cloister-runner: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        println!("{}  {}", profile.digest(), profile.name());
        println!(
            "seccomp: {}  {}",
            profile.seccomp().digest(),
            profile.seccomp().name()
        );
    }
    ExitCode::SUCCESS
}
