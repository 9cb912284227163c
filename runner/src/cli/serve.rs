//! `cloister-runner serve`: load and validate the config, set up logging,
//! run the daemon until SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Config file (TOML); without it the embedded defaults apply.
    #[arg(long, env = "CLOISTER_RUNNER_CONFIG")]
    pub config: Option<PathBuf>,
    /// State directory (job database, logs, workspaces, artifacts, store).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CLOISTER_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn exec(args: Args) -> ExitCode {
    let config =
        match crate::config::Config::load(args.config.as_deref(), args.state_dir.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cloister-runner serve: {e}");
                return ExitCode::from(2);
            }
        };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLOISTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return super::common::fail(format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(crate::daemon::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "daemon failed");
            eprintln!("cloister-runner serve: {e}");
            ExitCode::from(1)
        }
    }
}
