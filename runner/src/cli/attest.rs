//! `cloister-runner attest JOB`: asks the daemon to request a job's
//! attestation again, for a job that failed because the attestor stayed
//! unreachable past `attestor_retry_secs` (its outputs were kept). The
//! daemon checks the kept outputs against their digests, sends the same
//! build record (the attestor answers one it signed before with the same
//! signature), writes the provenance and marks the job succeeded.

use super::common::{Connect, fail, runtime};
use crate::job::store::JobRecord;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub connect: Connect,
    /// Print the job record as JSON.
    #[arg(long)]
    pub json: bool,
    /// The job id.
    pub job: String,
}

pub fn exec(args: Args) -> ExitCode {
    let ep = args.connect.endpoint();
    let path = format!("/v1/jobs/{}/attest", args.job);
    match runtime().block_on(ep.json::<JobRecord>(hyper::Method::POST, &path, None)) {
        Ok(j) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&j).expect("a job record serializes")
                );
            } else {
                let attestation = j
                    .result
                    .as_ref()
                    .and_then(|r| r.attestation_id.as_deref())
                    .unwrap_or("-");
                println!("{} {} attestation {attestation}", j.id, j.state);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
