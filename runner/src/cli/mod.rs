//! The `cloister-runner` command line: one module per subcommand, each with
//! its clap `Args` and an `exec` returning the process exit code.

use crate::binaries::FULL_BINARY;
use clap::{Parser, Subcommand};
use std::ffi::OsStr;
use std::process::ExitCode;

mod artifacts;
mod attest;
mod build;
mod cancel;
mod common;
mod doctor;
mod hook;
mod image;
mod jobs;
mod logs;
mod profile;
mod quickstart;
mod run;
mod serve;
mod snapshot;
mod store;

/// Cloister's hermetic build runner.
#[derive(Debug, Parser)]
#[command(name = "cloister-runner", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `run` is for (one text for both command trees below).
const RUN_ABOUT: &str = "Run a command in a fresh sandbox and exit with its status.";

#[derive(Debug, Subcommand)]
enum Command {
    #[command(about = RUN_ABOUT)]
    Run(run::Args),
    /// Validate sandbox profiles.
    #[command(subcommand)]
    Profile(profile::Command),
    /// Snapshot a directory deterministically into the content-addressed store.
    Snapshot(snapshot::Args),
    /// Manage the content-addressed store.
    #[command(subcommand)]
    Store(store::Command),
    /// Import OCI builder images.
    #[command(subcommand)]
    Image(image::Command),
    /// Run the job daemon (API on a Unix socket, optional TCP).
    Serve(serve::Args),
    /// Submit a build job to the daemon, stream its log, wait for it.
    Build(Box<build::Args>),
    /// List the daemon's jobs.
    Jobs(jobs::Args),
    /// Print a job's log.
    Logs(logs::Args),
    /// Cancel a queued or running job.
    Cancel(cancel::Args),
    /// Download a succeeded job's artifacts and provenance (digest-checked).
    Artifacts(artifacts::Args),
    /// Request again the attestation of a job that failed waiting for the attestor.
    Attest(attest::Args),
    /// Start both daemons on embedded defaults, build repo A, verify its provenance.
    Quickstart(quickstart::Args),
    /// GitHub Actions runner container hooks: every job step in a sandbox.
    Hook(hook::Args),
    /// Check this host as an isolated GitHub Actions runner (PASS/FAIL per requirement).
    Doctor(doctor::Args),
}

/// The command line with `run` alone: every sandbox start pays for building
/// the argument tree, and `run` does not need the other eleven subcommands'
/// (about 0.6 ms of a 9 ms start-up). Same name, version and `run` as
/// [`Cli`], so help, usage and errors read the same (a test compares them).
#[derive(Debug, Parser)]
#[command(name = "cloister-runner", version, about, long_about = None)]
struct RunCli {
    #[command(subcommand)]
    command: RunCommand,
}

#[derive(Debug, Subcommand)]
enum RunCommand {
    #[command(about = RUN_ABOUT)]
    Run(run::Args),
}

/// Both binaries' `main`: pins name lookups to glibc's built-in services
/// before anything can look a name up (`cloister_nss`; exit 125 if glibc
/// refuses), then runs `main`.
pub fn start(main: fn() -> ExitCode) -> ExitCode {
    if let Err(e) = cloister_nss::builtin_only() {
        eprintln!("cloister-runner: {e}");
        return ExitCode::from(125);
    }
    main()
}

/// `main` of `cloister-runner`, the front binary: `run` is handled here,
/// every other subcommand (and `--help`, `--version`) by executing
/// [`FULL_BINARY`] from the same directory with the same arguments.
///
/// Why two binaries: a sandbox start pays for loading the binary that
/// starts it and for copying its address space in two forks (runner → init
/// → command). The front links only the sandbox and `run` (text 3.8 MB
/// against 8.9 MB, 15k relocations against 23k), which took 0.4–1.1 ms off
/// each start (bench-sandbox, ARCHITECTURE.md "Runner binaries"). The other
/// subcommands pay one extra exec (~2 ms), once per invocation.
pub fn front_main() -> ExitCode {
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new("run")) {
        return run_main();
    }
    exec_full()
}

/// Replaces this process with [`FULL_BINARY`] (same pid, argv and
/// environment, so `systemd`'s `Type=notify` and signals still reach the
/// daemon). Returns only on failure: a one-line reason, exit 125.
fn exec_full() -> ExitCode {
    use std::os::unix::process::CommandExt as _;
    let full = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(FULL_BINARY),
        Err(e) => {
            eprintln!("cloister-runner: locate this executable (/proc/self/exe): {e}");
            return ExitCode::from(125);
        }
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "cloister-runner".into());
    let err = std::process::Command::new(&full)
        .arg0(arg0)
        .args(args)
        .exec();
    eprintln!(
        "cloister-runner: start {}: {err} (every subcommand but `run` lives there: install it beside cloister-runner)",
        full.display()
    );
    ExitCode::from(125)
}

/// Parses a `cloister-runner run …` command line and runs the sandbox.
fn run_main() -> ExitCode {
    let RunCli {
        command: RunCommand::Run(args),
    } = RunCli::parse();
    run::exec(args)
}

/// `main` of [`FULL_BINARY`]: parses the command line and runs the chosen
/// subcommand (`run` included, with the same parser as the front).
pub fn main() -> ExitCode {
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new("run")) {
        return run_main();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::exec(args),
        Command::Profile(cmd) => profile::exec(cmd),
        Command::Snapshot(args) => snapshot::exec(args),
        Command::Store(cmd) => store::exec(cmd),
        Command::Image(cmd) => image::exec(cmd),
        Command::Serve(args) => serve::exec(args),
        Command::Build(args) => build::exec(*args),
        Command::Jobs(args) => jobs::exec(args),
        Command::Logs(args) => logs::exec(args),
        Command::Cancel(args) => cancel::exec(args),
        Command::Artifacts(args) => artifacts::exec(args),
        Command::Attest(args) => attest::exec(args),
        Command::Quickstart(args) => quickstart::exec(args),
        Command::Hook(args) => hook::exec(args),
        Command::Doctor(args) => doctor::exec(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `run`'s help and its errors read the same whichever tree parsed it.
    #[test]
    fn the_run_only_tree_matches_the_full_one() {
        let mut full = Cli::command();
        let mut fast = RunCli::command();
        let help = |c: &mut clap::Command| {
            c.find_subcommand_mut("run")
                .expect("run")
                .render_long_help()
                .to_string()
        };
        assert_eq!(help(&mut full), help(&mut fast));
        assert!(help(&mut full).contains(RUN_ABOUT));
        for argv in [
            &["cloister-runner", "run"][..],
            &["cloister-runner", "run", "--bogus", "--", "true"],
            &["cloister-runner", "run", "--timeout", "0", "--", "true"],
            &["cloister-runner", "run", "--memory", "lots", "--", "true"],
            &["cloister-runner", "run", "--help"],
        ] {
            let a = Cli::command().try_get_matches_from(argv).unwrap_err();
            let b = RunCli::command().try_get_matches_from(argv).unwrap_err();
            assert_eq!(a.kind(), b.kind(), "{argv:?}");
            assert_eq!(a.render().to_string(), b.render().to_string(), "{argv:?}");
        }
        let ok = ["cloister-runner", "run", "--json", "--", "true"];
        assert!(RunCli::try_parse_from(ok).is_ok());
        assert_eq!(
            Cli::command().render_version().to_string(),
            RunCli::command().render_version().to_string()
        );
    }
}
