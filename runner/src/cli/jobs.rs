//! `cloister-runner jobs`: list recent jobs.

use super::common::{Connect, fail, runtime};
use crate::job::store::JobRecord;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub connect: Connect,
    /// How many jobs (newest first).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print the records as a JSON array.
    #[arg(long)]
    pub json: bool,
}

pub fn exec(args: Args) -> ExitCode {
    let ep = args.connect.endpoint();
    let jobs: Vec<JobRecord> = match runtime().block_on(ep.json(
        hyper::Method::GET,
        &format!("/v1/jobs?limit={}", args.limit),
        None,
    )) {
        Ok(j) => j,
        Err(e) => return fail(e),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&jobs).expect("records serialize")
        );
        return ExitCode::SUCCESS;
    }
    println!("{:<36}  {:<10}  {:<24}  REASON", "JOB", "STATE", "CREATED");
    for j in jobs {
        println!(
            "{:<36}  {:<10}  {:<24}  {}",
            j.id,
            j.state,
            j.created_at,
            j.reason.unwrap_or_default()
        );
    }
    ExitCode::SUCCESS
}
