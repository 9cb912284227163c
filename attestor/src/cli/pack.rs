//! `cloister-attestor pack procurement|verify`: build a procurement pack
//! (its sha256 is printed last and recorded in the store), and check any
//! pack offline. `verify` exits 0 (passed: an edited appendix is reported
//! and accepted), 1 (a finding), 2 (usage).

use super::audit::{Opened, write_atomic};
use super::policy::trusted_keys;
use crate::config::StateArgs;
use crate::evidence::check::{self, Report};
use crate::evidence::procurement::{self, ProcurementRequest};
use crate::evidence::{archive, caiq};
use crate::storage::evidence::{PackKind, PackRecord};
use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build a procurement pack (v1.1) for a prospective customer.
    Procurement(ProcurementArgs),
    /// Check a pack (sign-off or procurement) offline.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct ProcurementArgs {
    /// Where to write the pack (.tar.gz).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The recipient (recorded in the pack).
    #[arg(long = "for", value_name = "NAME")]
    pub recipient: Option<String>,
    /// CAIQ-lite answers (TOML) [default: the built-in
    /// cookbook/procurement/caiq-lite.toml].
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The pack (.tar.gz).
    pub file: PathBuf,
    /// A trusted public key (PEM); repeatable. Without any, the keyring's
    /// trusted keys (--state-dir).
    #[arg(long = "public-key", value_name = "PEM")]
    pub public_keys: Vec<PathBuf>,
    /// Attestor state directory whose keyring supplies trusted keys.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pack procurement`.
pub(super) async fn run(args: ProcurementArgs) -> anyhow::Result<()> {
    let ProcurementArgs {
        out,
        recipient,
        answers,
        json,
        state,
    } = args;
    let answers = match answers {
        Some(p) => String::from_utf8(super::sign::read_limited(&p, 4 << 20)?)
            .with_context(|| format!("{} is not UTF-8", p.display()))?,
        None => caiq::BUILT_IN.to_owned(),
    };
    let opened = Opened::open(&state).await?;
    let result = async {
        let ctx = opened.context()?;
        if !json {
            eprintln!("verifying the newest provenance of each repository and building the pack…");
        }
        let built = procurement::build(
            &ctx,
            &ProcurementRequest {
                recipient: recipient.clone(),
                answers,
            },
        )
        .await?;
        write_atomic(&out, &built.bytes)?;
        opened
            .storage
            .record_pack(
                &PackRecord {
                    sha256: built.sha256.clone(),
                    kind: PackKind::Procurement,
                    engagement_id: None,
                    recipient,
                    size_bytes: built.bytes.len() as i64,
                    time_to_pack_ms: built.time_to_pack_ms,
                    created_at_ms: ctx.now_ms,
                    envelope: built.digest_envelope.clone(),
                    content: None,
                },
                None,
            )
            .await?;
        anyhow::Ok(built)
    }
    .await;
    opened.storage.close().await;
    let built = result?;
    if json {
        println!(
            "{}",
            serde_json::json!({"pack": out, "sha256": built.sha256, "sizeBytes": built.bytes.len(),
                "timeToPackMs": built.time_to_pack_ms, "files": built.manifest.files.len()})
        );
    } else {
        println!(
            "wrote {} ({} files, {} bytes) in {} ms",
            out.display(),
            built.manifest.files.len() + 2,
            built.bytes.len(),
            built.time_to_pack_ms
        );
        println!("bundle hash (sha256 of the archive, recorded and signed):");
    }
    println!("{}", built.sha256);
    Ok(())
}

fn print_report(r: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(r).expect("report serializes")
        );
        return;
    }
    for f in &r.findings {
        let tag = if f.code.is_fatal() { "FAILED" } else { "NOTE" };
        println!(
            "{tag}: {}{} ({})",
            f.path
                .as_deref()
                .map(|p| format!("{p}: "))
                .unwrap_or_default(),
            f.message,
            f.code.as_str()
        );
    }
    if r.verified {
        println!(
            "PASSED: {} pack{} verified: {} files, {} provenance envelope(s), key {}; sha256 {}",
            r.kind.as_deref().unwrap_or("?"),
            r.subject
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
            r.files,
            r.provenance_checked,
            r.keyid.as_deref().unwrap_or("?"),
            r.sha256
        );
    }
}

/// `pack verify`, with its own exit codes.
pub fn exec_verify(args: VerifyArgs) -> ExitCode {
    let usage = |m: String| {
        eprintln!("cloister-attestor pack verify: {m}");
        ExitCode::from(2)
    };
    let trusted = match trusted_keys(&args.public_keys, args.state_dir.as_deref()) {
        Ok(k) => k,
        Err(e) => return usage(cloister_report::Chain(e.as_ref()).to_string()),
    };
    let bytes = match super::sign::read_limited(&args.file, archive::MAX_UNPACKED as usize) {
        Ok(b) => b,
        Err(e) => return usage(cloister_report::Chain(e.as_ref()).to_string()),
    };
    let report = check::verify(&bytes, &trusted);
    print_report(&report, args.json);
    if report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
