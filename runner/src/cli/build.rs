//! `cloister-runner build`: submit a job for a local checkout, stream its log
//! (with a progress line on a TTY), exit with the build's status and print
//! where the artifacts and their provenance are.

use super::artifacts::copy_out;
use super::common::{Connect, fail};
use crate::client::Endpoint;
use crate::job::spec::{JobLimits, JobSpec, Priority, Source, Vendor};
use crate::job::store::{JobRecord, JobState};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub connect: Connect,
    /// The local git checkout to build (must be clean).
    #[arg(long)]
    pub source: PathBuf,
    /// The expected commit (default: the checkout's HEAD).
    #[arg(long)]
    pub commit: Option<String>,
    /// Repository URI for provenance (default: the `origin` remote, else file://SOURCE).
    #[arg(long)]
    pub uri: Option<String>,
    /// Git ref for provenance (default: the checked-out branch).
    #[arg(long = "ref")]
    pub git_ref: Option<String>,
    /// Sandbox profile name or path.
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// Vendored dependencies: a directory inside the source, or HOST_DIR:DEST.
    #[arg(long = "vendor", value_name = "DIR")]
    pub vendor: Vec<String>,
    /// A toolchain configured on the runner (mounted read-only, on PATH).
    #[arg(long = "toolchain", value_name = "NAME")]
    pub toolchains: Vec<String>,
    /// Builder image (sha256:<hex> of an imported OCI image).
    #[arg(long)]
    pub image: Option<String>,
    /// Environment for the build (K=V).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Declared output glob, relative to the workspace (repeatable).
    #[arg(long = "output", value_name = "GLOB", required = true)]
    pub outputs: Vec<String>,
    /// Copy the artifacts and their provenance here.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Wall-clock limit in seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Memory limit: a size (4096, 256M, 1GiB; powers of 1024).
    #[arg(long, value_name = "SIZE", value_parser = super::common::positive_size_arg)]
    pub memory: Option<u64>,
    /// Process limit.
    #[arg(long)]
    pub pids: Option<u64>,
    /// CPU limit.
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Scheduling priority: release, normal or low (higher runs first;
    /// waiting jobs age, so none starves).
    #[arg(long, default_value = "normal", value_name = "release|normal|low")]
    pub priority: Priority,
    /// Print the job spec instead of submitting it.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not stream the log.
    #[arg(long, short)]
    pub quiet: bool,
    /// Submit and exit: print the queued job record as JSON, do not wait.
    #[arg(long)]
    pub detach: bool,
    /// Print the final job record as JSON on the last stdout line.
    #[arg(long)]
    pub json: bool,
    /// The build command.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .arg("-c")
        .arg(format!("safe.directory={}", dir.display()))
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds the spec from the flags, resolving defaults from the checkout.
pub fn spec_from_args(args: &Args) -> anyhow::Result<JobSpec> {
    let source = std::path::absolute(&args.source)?;
    let commit = match &args.commit {
        Some(c) => c.clone(),
        None => git(&source, &["rev-parse", "HEAD"]).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: not a git checkout with a HEAD commit",
                source.display()
            )
        })?,
    };
    let uri = match &args.uri {
        Some(u) => u.clone(),
        None => git(&source, &["remote", "get-url", "origin"])
            .unwrap_or_else(|| format!("file://{}", source.display())),
    };
    let git_ref = match &args.git_ref {
        Some(r) => r.clone(),
        None => git(&source, &["symbolic-ref", "-q", "HEAD"])
            .ok_or_else(|| anyhow::anyhow!("{}: HEAD is detached; pass --ref", source.display()))?,
    };
    let mut vendor = Vec::new();
    for v in &args.vendor {
        let entry = match v.split_once(':') {
            Some((host, dest)) => Vendor {
                path: std::path::absolute(host)?,
                dest: Some(dest.into()),
            },
            None => {
                let p = Path::new(v);
                let rel = if p.is_absolute() {
                    p.strip_prefix(&source)
                        .map_err(|_| {
                            anyhow::anyhow!("--vendor {v}: outside the source; use HOST_DIR:DEST")
                        })?
                        .to_path_buf()
                } else {
                    p.to_path_buf()
                };
                Vendor {
                    path: rel,
                    dest: None,
                }
            }
        };
        vendor.push(entry);
    }
    let mut env = BTreeMap::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--env {kv}: expected K=V"))?;
        env.insert(k.to_string(), v.to_string());
    }
    let spec = JobSpec {
        source: Source {
            path: source,
            commit,
            uri,
            git_ref,
        },
        profile: args.profile.clone(),
        image: args.image.clone(),
        vendor,
        toolchains: args.toolchains.clone(),
        command: args.command.clone(),
        env,
        outputs: args.outputs.clone(),
        limits: JobLimits {
            timeout_secs: args.timeout,
            memory_bytes: args.memory,
            pids: args.pids,
            cpus: args.cpus,
            ..JobLimits::default()
        },
        priority: args.priority,
    };
    spec.validate()?;
    Ok(spec)
}

/// Submits, follows and waits; returns the final record.
pub async fn submit_and_follow(
    ep: &Endpoint,
    spec: &JobSpec,
    quiet: bool,
    progress: bool,
) -> anyhow::Result<JobRecord> {
    let body = serde_json::to_vec(spec)?;
    let job: JobRecord = ep.json(hyper::Method::POST, "/v1/jobs", Some(body)).await?;
    eprintln!("job {} queued", job.id);
    let started = std::time::Instant::now();
    let status = Arc::new(Mutex::new(String::from("queued")));
    let ticker = if progress {
        let (ep, id, status) = (ep.clone(), job.id.clone(), status.clone());
        Some(tokio::spawn(async move {
            loop {
                if let Ok(j) = ep
                    .json::<JobRecord>(hyper::Method::GET, &format!("/v1/jobs/{id}"), None)
                    .await
                {
                    *status.lock().expect("status lock") = j.state.to_string();
                }
                let s = status.lock().expect("status lock").clone();
                eprint!("\r\x1b[K[{s} · {:.1}s]", started.elapsed().as_secs_f64());
                let _ = std::io::stderr().flush();
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }))
    } else {
        None
    };
    if !quiet {
        let mut stdout = std::io::stdout();
        super::logs::stream(ep, &job.id, true, &mut |b| {
            if progress {
                eprint!("\r\x1b[K");
            }
            let _ = stdout.write_all(b);
            let _ = stdout.flush();
        })
        .await?;
    }
    // The log ends when the job does; poll for the final record.
    let record = loop {
        let j: JobRecord = ep
            .json(hyper::Method::GET, &format!("/v1/jobs/{}", job.id), None)
            .await?;
        if j.state.is_terminal() {
            break j;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    if let Some(t) = ticker {
        t.abort();
        eprintln!(
            "\r\x1b[K[{} · {:.1}s]",
            record.state,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(record)
}

pub fn exec(args: Args) -> ExitCode {
    let spec = match spec_from_args(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cloister-runner build: {e}");
            return ExitCode::from(2);
        }
    };
    if args.dry_run {
        println!(
            "{}",
            serde_json::to_string_pretty(&spec).expect("spec serializes")
        );
        return ExitCode::SUCCESS;
    }
    let ep = args.connect.endpoint();
    let progress = std::io::stderr().is_terminal() && !args.quiet;
    let rt = super::common::runtime();
    if args.detach {
        let body = serde_json::to_vec(&spec).expect("spec serializes");
        return match rt.block_on(ep.json::<JobRecord>(hyper::Method::POST, "/v1/jobs", Some(body)))
        {
            Ok(job) => {
                println!(
                    "{}",
                    serde_json::to_string(&job).expect("record serializes")
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    let mut record = match rt.block_on(submit_and_follow(&ep, &spec, args.quiet, progress)) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if record.state == JobState::Succeeded {
        if let Some(dir) = &args.out_dir {
            if let Err(e) = rt.block_on(copy_out(&ep, &mut record, dir)) {
                return fail(e);
            }
        }
    }
    if let Some(result) = &record.result {
        for a in &result.artifacts {
            eprintln!("artifact:   {} ({})", a.path, a.digest);
            eprintln!("provenance: {}", a.provenance);
            eprintln!("bundle:     {}", a.bundle);
        }
    }
    if let Some(reason) = &record.reason {
        eprintln!("job {} {}: {reason}", record.id, record.state);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&record).expect("record serializes")
        );
    }
    match record.state {
        JobState::Succeeded => ExitCode::SUCCESS,
        _ => match record.exit_code {
            Some(c) if (1..=255).contains(&c) => ExitCode::from(c as u8),
            _ => ExitCode::from(1),
        },
    }
}
