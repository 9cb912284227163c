//! `cloister-runner artifacts JOB --out-dir DIR`: download a succeeded job's
//! artifacts and their provenance (after `build --detach`, or again later),
//! and the download itself, which `build --out-dir` and `quickstart` use.
//!
//! Files are streamed to `DIR/.NAME.part` and renamed into place only when
//! whole; an artifact whose bytes do not hash to its recorded subject digest
//! is refused and leaves nothing behind.

use super::common::{Connect, fail, runtime};
use crate::client::Endpoint;
use crate::job::store::{JobRecord, JobState};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::io::AsyncWriteExt as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub connect: Connect,
    /// The job id (it must have succeeded).
    pub job: String,
    /// Where to write the artifacts, `.intoto.jsonl` and `.sigstore.json`
    /// files (created if missing).
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Print the job record, its paths pointing at the downloads, as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn exec(args: Args) -> ExitCode {
    let ep = args.connect.endpoint();
    let rt = runtime();
    let result = rt.block_on(async {
        let mut record: JobRecord = ep
            .json(hyper::Method::GET, &format!("/v1/jobs/{}", args.job), None)
            .await?;
        if record.state != JobState::Succeeded {
            anyhow::bail!(
                "job {} is {}: only a succeeded job has artifacts",
                record.id,
                record.state
            );
        }
        copy_out(&ep, &mut record, &args.out_dir).await?;
        Ok(record)
    });
    match result {
        Ok(record) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&record).expect("record serializes")
                );
            } else if let Some(result) = &record.result {
                for a in &result.artifacts {
                    println!("{} {}", a.digest, a.path);
                    println!("{}", a.provenance);
                    println!("{}", a.bundle);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(cloister_report::Chain(e.as_ref())),
    }
}

/// Downloads the artifacts and provenance files into `dir` through the API
/// (the daemon's state directory need not be readable by the client), and
/// points the record's paths at the copies. Each artifact is checked against
/// its subject digest as it streams in.
pub async fn copy_out(ep: &Endpoint, record: &mut JobRecord, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let id = record.id.clone();
    if let Some(result) = &mut record.result {
        for a in &mut result.artifacts {
            let digest = a.digest.clone();
            let files = [
                (&mut a.path, Some(digest.as_str())),
                (&mut a.provenance, None),
                (&mut a.bundle, None),
            ];
            for (p, expected) in files {
                let name = Path::new(p.as_str())
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| anyhow::anyhow!("artifact path {p} has no name"))?
                    .to_string();
                let dest = dir.join(&name);
                download(
                    ep,
                    &format!("/v1/jobs/{id}/artifacts/{name}"),
                    &dest,
                    expected,
                )
                .await?;
                *p = dest.display().to_string();
            }
        }
    }
    Ok(())
}

/// Streams one file to `dest` (through `.NAME.part`, removed on any error),
/// refusing it when `expected` (`sha256:<hex>`) is given and does not match.
async fn download(
    ep: &Endpoint,
    path: &str,
    dest: &Path,
    expected: Option<&str>,
) -> anyhow::Result<()> {
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let part = dest.with_file_name(format!(".{name}.part"));
    let result = stream_to(ep, path, &part, expected).await;
    match result {
        Ok(executable) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = if executable { 0o755 } else { 0o644 };
            let done = std::fs::set_permissions(&part, std::fs::Permissions::from_mode(mode))
                .and_then(|()| std::fs::rename(&part, dest));
            if let Err(e) = done {
                let _ = std::fs::remove_file(&part);
                anyhow::bail!("writing {}: {e}", dest.display());
            }
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

/// The body of `GET path` into `part`, hashed on the way; returns whether
/// the daemon marked the file executable.
async fn stream_to(
    ep: &Endpoint,
    path: &str,
    part: &Path,
    expected: Option<&str>,
) -> anyhow::Result<bool> {
    use http_body_util::BodyExt as _;
    let resp = ep.send_ok(hyper::Method::GET, path, None).await?;
    let executable = resp
        .headers()
        .get("x-cloister-executable")
        .is_some_and(|v| v == "true");
    let mut body = resp.into_body();
    let mut file = tokio::fs::File::create(part)
        .await
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", part.display()))?;
    let mut hasher = sha2::Sha256::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        if let Some(data) = frame.data_ref() {
            hasher.update(data);
            file.write_all(data)
                .await
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", part.display()))?;
        }
    }
    file.flush()
        .await
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", part.display()))?;
    if let Some(expected) = expected {
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got != expected {
            anyhow::bail!(
                "{path}: the download hashes to {got}, not to the job's recorded subject digest {expected}; nothing was written"
            );
        }
    }
    Ok(executable)
}
