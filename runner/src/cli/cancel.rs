//! `cloister-runner cancel JOB`: cancel a queued or running job.

use super::common::{Connect, fail, runtime};
use crate::job::store::JobRecord;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub connect: Connect,
    /// The job id.
    pub job: String,
}

pub fn exec(args: Args) -> ExitCode {
    let ep = args.connect.endpoint();
    let path = format!("/v1/jobs/{}/cancel", args.job);
    match runtime().block_on(ep.json::<JobRecord>(hyper::Method::POST, &path, None)) {
        Ok(j) => {
            println!("{} {}", j.id, j.state);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
