//! `cloister-runner logs JOB [--follow]`: print a job's log (timestamped
//! lines), following it until the job ends.

use super::common::{Connect, fail, runtime};
use crate::client::Endpoint;
use http_body_util::BodyExt;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub connect: Connect,
    /// The job id.
    pub job: String,
    /// Keep printing new lines until the job ends.
    #[arg(long, short)]
    pub follow: bool,
}

/// Streams a job's log to `out`, calling `each` after every chunk.
pub async fn stream(
    ep: &Endpoint,
    job: &str,
    follow: bool,
    out: &mut dyn FnMut(&[u8]),
) -> Result<(), crate::client::ClientError> {
    let path = format!("/v1/jobs/{job}/logs?follow={follow}");
    let resp = ep.send_ok(hyper::Method::GET, &path, None).await?;
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|source| crate::client::ClientError::Http {
            endpoint: ep.to_string(),
            source,
        })?;
        if let Some(data) = frame.data_ref() {
            out(data);
        }
    }
    Ok(())
}

pub fn exec(args: Args) -> ExitCode {
    let ep = args.connect.endpoint();
    let mut stdout = std::io::stdout();
    let r = runtime().block_on(stream(&ep, &args.job, args.follow, &mut |b| {
        let _ = stdout.write_all(b);
        let _ = stdout.flush();
    }));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
