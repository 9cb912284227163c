//! `cloister-runner store`: list and garbage-collect the content-addressed
//! store; also the helpers the snapshot and image commands share (store
//! location, TTY progress, JSON output, sizes and ages).

use anyhow::{Context, Result, bail};
use cloister_inputs::{GcPolicy, Progress, Store};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where the store lives (shared by snapshot, store and image commands).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArg {
    /// Store directory.
    #[arg(long, env = "CLOISTER_STORE", default_value = cloister_inputs::store::DEFAULT_ROOT, value_name = "DIR")]
    pub store: PathBuf,
}

impl StoreArg {
    pub fn open(&self) -> Result<Store> {
        Store::open(&self.store).with_context(|| format!("opening store {}", self.store.display()))
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Remove snapshots and images by age, then least recently used ones until
    /// the store fits a size; also removes staging left by dead processes.
    Gc(GcArgs),
    /// List stored snapshots and images, least recently used first.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    #[command(flatten)]
    store: StoreArg,
    /// Keep at most this many bytes (a size: 10G, 512MiB; powers of 1024).
    #[arg(long, value_name = "SIZE", value_parser = super::common::size_arg)]
    max_bytes: Option<u64>,
    /// Remove entries not used for longer than this (e.g. 30d, 12h, 90m, 3600s).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    max_age: Option<Duration>,
    /// Report what would be removed without removing anything.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    store: StoreArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn exec(cmd: Command) -> ExitCode {
    report(match cmd {
        Command::Gc(a) => gc(a),
        Command::List(a) => list(a),
    })
}

fn gc(a: GcArgs) -> Result<()> {
    if a.max_bytes.is_none() && a.max_age.is_none() {
        bail!("give a policy: --max-bytes SIZE and/or --max-age AGE");
    }
    let store = a.store.open()?;
    let policy = GcPolicy {
        max_age: a.max_age,
        max_bytes: a.max_bytes,
        dry_run: a.dry_run,
    };
    let r = store.gc(&policy)?;
    if a.json {
        print_json(&r);
    } else {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        for e in &r.removed {
            println!("{verb} {:?} {} ({} bytes)", e.kind, e.digest, e.bytes);
        }
        for e in &r.busy {
            println!("in use, kept {:?} {}", e.kind, e.digest);
        }
        println!(
            "{verb} {} entries, {} bytes; kept {} entries, {} bytes; {} stale staging dirs",
            r.removed.len(),
            r.freed_bytes,
            r.kept.len() + r.busy.len(),
            r.kept_bytes,
            r.stale_staging
        );
    }
    Ok(())
}

fn list(a: ListArgs) -> Result<()> {
    let store = a.store.open()?;
    let entries = store.list()?;
    if a.json {
        print_json(&entries);
    } else {
        for e in entries {
            let kind = match e.kind {
                cloister_inputs::EntryKind::Snapshot => "snapshot",
                cloister_inputs::EntryKind::Image => "image",
            };
            println!("{kind}\t{}\t{}\t{}", e.digest, e.bytes, e.path.display());
        }
    }
    Ok(())
}

/// Maps a handler's result to an exit code, printing the error chain on one line.
pub fn report(r: Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "cloister-runner: error: {}",
                cloister_report::Chain(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string(v).expect("output serializes"));
}

/// Parses `45s`, `90m`, `12h`, `30d`, `2w` (a bare number is seconds).
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("not an age: {s:?} (use e.g. 30d or 12h)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err(format!("unknown age unit in {s:?} (use s, m, h, d or w)")),
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

/// Progress drawn on stderr when it is a terminal; nothing otherwise.
pub struct TtyProgress {
    tty: bool,
    bar: Mutex<Option<ProgressBar>>,
    what: Mutex<String>,
    files: AtomicU64,
    total_files: AtomicU64,
}

impl TtyProgress {
    pub fn new() -> Self {
        TtyProgress {
            tty: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
            what: Mutex::new(String::new()),
            files: AtomicU64::new(0),
            total_files: AtomicU64::new(0),
        }
    }

    fn message(&self) -> String {
        let what = self.what.lock().expect("progress lock").clone();
        let files = self.files.load(Ordering::Relaxed);
        match self.total_files.load(Ordering::Relaxed) {
            0 => format!("{what}: {files} files"),
            total => format!("{what}: {files}/{total} files"),
        }
    }
}

impl Progress for TtyProgress {
    fn begin(&self, what: &str, files: u64, bytes: u64) {
        if !self.tty {
            return;
        }
        *self.what.lock().expect("progress lock") = what.to_owned();
        self.files.store(0, Ordering::Relaxed);
        self.total_files.store(files, Ordering::Relaxed);
        let (len, template) = if bytes > 0 {
            (
                Some(bytes),
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
        } else {
            (None, "{spinner} {msg} {bytes} {bytes_per_sec}")
        };
        let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr())
            .with_style(ProgressStyle::with_template(template).expect("valid template"))
            .with_message(self.message());
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn advance(&self, files: u64, bytes: u64) {
        let guard = self.bar.lock().expect("progress lock");
        let Some(bar) = guard.as_ref() else { return };
        self.files.fetch_add(files, Ordering::Relaxed);
        bar.inc(bytes);
        bar.set_message(self.message());
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("progress lock").take() {
            bar.set_message(self.message());
            bar.finish();
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages() {
        let parse_size = super::super::common::size_arg;
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("3MiB").unwrap(), 3 << 20);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_age("12").unwrap(), Duration::from_secs(12));
        assert!(parse_age("1y").is_err());
    }
}
