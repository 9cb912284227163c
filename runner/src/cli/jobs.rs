//! `cloister-runner jobs`: list recent jobs, with each queued job's
//! priority and place in the start order.

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
    println!(
        "{:<36}  {:<10}  {:<8}  {:>5}  {:<24}  REASON",
        "JOB", "STATE", "PRIORITY", "QUEUE", "CREATED"
    );
    for j in jobs {
        // QUEUE: the place in the start order of a queued job (1 = next).
        let position = j.queue_position.map(|p| p.to_string()).unwrap_or_default();
        println!(
            "{:<36}  {:<10}  {:<8}  {:>5}  {:<24}  {}",
            j.id,
            j.state,
            j.spec.priority,
            position,
            j.created_at,
            j.reason.unwrap_or_default()
        );
    }
    ExitCode::SUCCESS
}
