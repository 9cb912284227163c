//! The `cloister-attestor` command line: one module per subcommand, each with
//! its clap `Args` and an `exec` returning the process exit code.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod keygen;
mod keys;
mod sign;
mod verify;

/// Cloister's attestor: signs SLSA provenance and verifies it.
#[derive(Debug, Parser)]
#[command(name = "cloister-attestor", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a signing key.
    Keygen(keygen::Args),
    /// Inspect and manage the keyring.
    #[command(subcommand)]
    Keys(keys::Command),
    /// Sign an in-toto statement into .intoto.jsonl and .sigstore.json.
    Sign(sign::Args),
    /// Verify provenance for an artifact.
    Verify(verify::Args),
}

/// Parses the command line and runs the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen(args) => keygen::exec(args),
        Command::Keys(cmd) => keys::exec(cmd),
        Command::Sign(args) => sign::exec(args),
        Command::Verify(args) => verify::exec(args),
    }
}
