//! `cloister-runner run [OPTIONS] -- CMD [ARGS...]`: runs one command in a
//! fresh sandbox and exits with its status (128+N when killed by signal N;
//! 125 when the sandbox could not be set up, 126/127 when the command could
//! not be executed / found). With `--json` (or `--result FILE`) one JSON
//! object describes the run.

use super::common::positive_size_arg;
use cloister_sandbox::{
    Bind, IsolationFacts, LimitKind, MilliCpus, Outcome, Profile, RunFailure, RunReport, RunResult,
    SandboxError, SandboxSpec, Stdio,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: the command's; 128+N if it was killed by signal N; 125 if the \
sandbox could not be set up (one-line reason on stderr); 126/127 if the command could not be \
executed / was not found.\n\nFor a supervisor: `--stdout FILE --stderr FILE --result FILE` keeps \
the command's output and the JSON result apart."
)]
pub struct Args {
    #[command(flatten)]
    inner: Box<RunArgs>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Sandbox profile: a name (searched in $CLOISTER_PROFILE_DIR,
    /// /usr/share/cloister/sandbox-profiles, then the built-in ones) or a path.
    #[arg(long, default_value = "default", value_name = "NAME|PATH")]
    profile: String,
    /// Mount host SRC read-only at DST inside (repeatable).
    #[arg(long = "ro-bind", value_name = "SRC:DST")]
    ro_bind: Vec<Bind>,
    /// Mount host SRC writable at DST inside (still nosuid, nodev; repeatable).
    #[arg(long, value_name = "SRC:DST")]
    bind: Vec<Bind>,
    /// Working directory inside the sandbox (default: the profile's cwd).
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Set an environment variable (repeatable). The environment is otherwise
    /// the profile's: PATH, HOME, TMPDIR, LANG=C.UTF-8, SOURCE_DATE_EPOCH.
    #[arg(long, value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Kill the whole process tree after SECS seconds of wall-clock time.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    timeout: Option<Duration>,
    /// Memory limit: a size (4096, 512M, 1GiB; K, M, G, T and KiB, MiB,
    /// GiB, TiB are powers of 1024).
    #[arg(long, value_name = "SIZE", value_parser = positive_size_arg)]
    memory: Option<u64>,
    /// Maximum number of processes and threads.
    #[arg(long, value_name = "N")]
    pids: Option<u64>,
    /// CPU limit in CPUs (e.g. 2 or 0.5).
    #[arg(long, value_name = "N")]
    cpus: Option<MilliCpus>,
    /// Size of the sandbox's /tmp (a tmpfs; a full one stops the run with
    /// limitHit "disk"). Default: the profile's (1G in `default`).
    #[arg(long, value_name = "SIZE", value_parser = positive_size_arg)]
    tmp_size: Option<u64>,
    /// How much the writable binds may grow during the run (watched; past
    /// it the run is stopped with limitHit "disk"). Default: the profile's
    /// `org.cloister.workspace-size` (16GiB in `default`).
    #[arg(long, value_name = "SIZE", value_parser = positive_size_arg)]
    workspace_size: Option<u64>,
    /// Use this unpacked image directory as / instead of the profile's host
    /// binds.
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Mount a stored snapshot read-only at DEST (repeatable); snapshots are
    /// made with `cloister-runner snapshot`.
    #[arg(long = "snapshot", value_name = "sha256:HEX:/DEST", value_parser = super::snapshot::parse_mount)]
    snapshot: Vec<super::snapshot::Mount>,
    /// Use a builder image from `cloister-runner image import` (its manifest
    /// digest) as / instead of the profile's host binds. Default: the
    /// profile's `org.cloister.image` annotation, if any.
    #[arg(long, value_name = "sha256:HEX", conflicts_with = "rootfs")]
    image: Option<cloister_inputs::Digest>,
    #[command(flatten)]
    store: super::store::StoreArg,
    /// Create the run's cgroup below this cgroup: an absolute cgroup path
    /// (as in /proc/self/cgroup) or one relative to the runner's own cgroup
    /// (a delegated one for rootless use). Default: the runner's own cgroup.
    #[arg(long, value_name = "PATH", env = "CLOISTER_CGROUP_PARENT")]
    cgroup_parent: Option<String>,
    /// Print one JSON object describing the run on stdout after it ends.
    #[arg(long)]
    json: bool,
    /// Write the JSON object to FILE instead of stdout (implies --json).
    #[arg(long, value_name = "FILE")]
    result: Option<PathBuf>,
    /// The command's stdin (default: inherited).
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Send the command's stdout to FILE (created or truncated).
    #[arg(long, value_name = "FILE")]
    stdout: Option<PathBuf>,
    /// Send the command's stderr to FILE (created or truncated).
    #[arg(long, value_name = "FILE")]
    stderr: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of seconds"))?;
    if secs == 0 {
        return Err("the timeout must be at least 1 second".into());
    }
    Ok(Duration::from_secs(secs))
}

fn open_out(path: &PathBuf) -> std::io::Result<Stdio> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    Ok(Stdio::Fd(f.into()))
}

fn emit_json(args: &RunArgs, result: &RunResult) -> Result<(), String> {
    let text = result.to_line();
    match &args.result {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| format!("write the result to {}: {e}", path.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("write the result: {e}"))
        }
    }
}

fn fail(args: &RunArgs, code: i32, message: &str, facts: Option<&IsolationFacts>) -> ExitCode {
    eprintln!("cloister-runner: {message}");
    if args.json || args.result.is_some() {
        let err = RunResult::Failed(RunFailure {
            error: message.to_string(),
            status_code: code,
            isolation: facts.cloned(),
        });
        if let Err(e) = emit_json(args, &err) {
            eprintln!("cloister-runner: {e}");
        }
    }
    ExitCode::from(code as u8)
}

pub fn exec(args: Args) -> ExitCode {
    cloister_sandbox::trace::mark("cli: arguments parsed");
    let code = exec_inner(*args.inner);
    if cloister_sandbox::trace::enabled() {
        cloister_sandbox::trace::mark("cli: done");
        for (stage, since, step) in cloister_sandbox::trace::report() {
            eprintln!("cloister-runner: trace {since:8.3} ms (+{step:6.3}) {stage}");
        }
    }
    code
}

fn exec_inner(args: RunArgs) -> ExitCode {
    let profile = match Profile::load(&args.profile) {
        Ok(p) => p,
        Err(e) => return fail(&args, 125, &format!("profile {}: {e}", args.profile), None),
    };
    cloister_sandbox::trace::mark("cli: profile loaded");
    let profile_image = profile.image().map(str::to_owned);
    let mut spec = SandboxSpec::new(args.command.clone(), profile);
    spec.ro_binds = args.ro_bind.clone();
    spec.binds = args.bind.clone();
    spec.workdir = args.workdir.clone();
    spec.env = args.env.clone();
    spec.rootfs = args.rootfs.clone();
    // Store inputs: read-only snapshot binds and an image rootfs, pinned
    // against `store gc` until the run is over.
    let _pins = match super::snapshot::resolve_inputs(
        &args.store,
        &args.snapshot,
        args.image.as_ref(),
        profile_image.as_deref(),
        &mut spec.ro_binds,
        &mut spec.rootfs,
    ) {
        Ok(pins) => pins,
        Err(e) => return fail(&args, 125, &cloister_report::chain(e.as_ref()), None),
    };
    spec.limits.timeout = args.timeout;
    spec.limits.memory = args.memory;
    spec.limits.pids = args.pids;
    spec.limits.cpus = args.cpus;
    spec.limits.tmp = args.tmp_size;
    spec.limits.workspace = args.workspace_size;
    spec.cgroup_parent = args.cgroup_parent.clone();
    let streams = (|| -> std::io::Result<()> {
        if let Some(p) = &args.stdin {
            spec.stdin = Stdio::Fd(std::fs::File::open(p)?.into());
        }
        if let Some(p) = &args.stdout {
            spec.stdout = open_out(p)?;
        }
        if let Some(p) = &args.stderr {
            spec.stderr = open_out(p)?;
        }
        Ok(())
    })();
    if let Err(e) = streams {
        return fail(
            &args,
            125,
            &format!("open a standard stream file: {e}"),
            None,
        );
    }
    let facts = IsolationFacts::for_spec(&spec);
    let outcome: Result<Outcome, SandboxError> = cloister_sandbox::run(&spec);
    drop(spec);
    match outcome {
        Ok(outcome) => {
            for limit in &outcome.unapplied_limits {
                let why = if *limit == LimitKind::Disk {
                    "the workspace could not be watched"
                } else {
                    "no writable cgroup"
                };
                eprintln!(
                    "cloister-runner: warning: the {limit} limit was not applied ({why}; the profile marks it optional)"
                );
            }
            let code = outcome.status_code();
            if args.json || args.result.is_some() {
                let result = RunResult::Ran(RunReport::from(&outcome));
                if let Err(e) = emit_json(&args, &result) {
                    eprintln!("cloister-runner: {e}");
                    return ExitCode::from(125);
                }
            }
            ExitCode::from((code & 0xff) as u8)
        }
        Err(e) => fail(&args, e.exit_code(), &e.to_string(), Some(&facts)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden files: the result object is the runner daemon's wire format
    /// (`cloister_sandbox::RunResult`, read back by the daemon). Each reads
    /// back (every field known and present) and writes out byte for byte.
    #[test]
    fn run_result_matches_the_golden_file() {
        for golden in [
            include_str!("testdata/run-result.json"),
            include_str!("testdata/run-error.json"),
        ] {
            let parsed = RunResult::parse(golden.as_bytes()).unwrap();
            assert_eq!(parsed.to_line(), golden);
        }
        let RunResult::Ran(r) =
            RunResult::parse(include_str!("testdata/run-result.json").as_bytes()).unwrap()
        else {
            panic!("run-result.json is a report");
        };
        assert_eq!((r.signal, r.status_code), (Some(9), 137));
        assert_eq!(r.limit_hit, Some(LimitKind::Memory));
        assert_eq!(r.limits.workspace_bytes, Some(16 << 30));
        assert_eq!(r.isolation.network, "none");
    }

    /// Every size flag takes the one size syntax: `--memory 1GiB` too.
    #[test]
    fn size_flags_take_binary_and_decimal_unit_names() {
        assert_eq!(positive_size_arg("4096"), Ok(4096));
        assert_eq!(positive_size_arg("64M"), Ok(64 << 20));
        assert_eq!(positive_size_arg("1g"), Ok(1 << 30));
        assert_eq!(positive_size_arg("1GiB"), Ok(1 << 30));
        assert_eq!(positive_size_arg("256MiB"), Ok(256 << 20));
        assert!(positive_size_arg("0").is_err());
        assert!(positive_size_arg("12X").is_err());
        assert!(positive_size_arg("-1").is_err());
        use clap::Parser as _;
        let cli = super::super::RunCli::try_parse_from([
            "cloister-runner",
            "run",
            "--memory",
            "1GiB",
            "--tmp-size",
            "64M",
            "--",
            "true",
        ]);
        assert!(cli.is_ok(), "{cli:?}");
    }

    #[test]
    fn env_and_timeout_arguments_are_checked() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
        assert_eq!(parse_secs("3"), Ok(Duration::from_secs(3)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("1.5").is_err());
    }
}
