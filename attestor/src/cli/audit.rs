//! `cloister-attestor audit open|show|list|note|signoff|revoke|pack`: audit
//! engagements (see `evidence::engagement`). `open` prints the auditor's
//! key once, as the last line of stdout.

use crate::clock::dates::rfc3339;
use crate::clock::{Clock as _, SystemClock};
use crate::config::{Config, StateArgs};
use crate::evidence::engagement::{self, EngagementView, OpenRequest};
use crate::evidence::{Context, source_date_epoch};
use crate::keyring::{self, Keyring};
use crate::storage::{self, Storage};
use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Freeze a tag's attestations, create the auditor's tenant and key,
    /// build the sign-off pack; the key is the last line of stdout, shown once.
    Open {
        /// The release tag (e.g. v1.4.0).
        #[arg(long)]
        tag: String,
        /// Only attestations of this repository (github.com/o/r, https://…).
        #[arg(long, value_name = "URI")]
        repo: Option<String>,
        /// The auditor's name (recorded on the engagement and its notes).
        #[arg(long)]
        auditor: String,
        /// Days the auditor's key works [default: audit.key_validity_days, 7].
        #[arg(long, value_name = "DAYS")]
        valid_days: Option<u32>,
        /// The tenant (id or name) the audit is for: it follows the
        /// engagement in the portal's audit tracker.
        #[arg(long, value_name = "TENANT")]
        for_tenant: Option<String>,
        /// Print the engagement as JSON (the key still comes last, on its own line).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Show an engagement: frozen set, notes, decisions log, pack.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List engagements, newest first.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Attach an auditor's note (at most two per engagement).
    Note {
        id: String,
        /// The note's text.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        text: Option<String>,
        /// Read the note from a file.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Close an engagement and build its final pack (notes and decisions log included).
    Signoff {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Revoke the engagement's auditor key (effective on its next request).
    Revoke {
        id: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Write the engagement's current sign-off pack to a file.
    Pack {
        id: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// The state the evidence commands open: config, storage, keyring.
pub(super) struct Opened {
    pub config: Config,
    pub storage: Arc<dyn Storage>,
    pub keyring: Keyring,
}

impl Opened {
    pub(super) async fn open(state: &StateArgs) -> anyhow::Result<Self> {
        let config = Config::load(&state.overrides())?;
        let pass = keyring::read_passphrase(
            config.key_passphrase_file.as_deref(),
            config.key_passphrase_env.as_deref(),
        )?;
        let keyring = Keyring::open(&config.state_dir)?.with_passphrase(pass);
        let storage = storage::open(&config.storage_url()).await?;
        Ok(Self {
            config,
            storage,
            keyring,
        })
    }

    /// What building packs needs (the signing key, trusted keys, policies).
    pub(super) fn context(&self) -> anyhow::Result<Context> {
        Ok(Context::load(
            &self.config,
            self.storage.clone(),
            &self.keyring,
            SystemClock.now_ms(),
            source_date_epoch(),
        )?)
    }
}

/// `operator:<user>` for the decisions log.
fn operator() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| nix::unistd::getuid().to_string());
    format!("operator:{user}")
}

fn state_of(cmd: &Command) -> &StateArgs {
    match cmd {
        Command::Open { state, .. }
        | Command::Show { state, .. }
        | Command::List { state, .. }
        | Command::Note { state, .. }
        | Command::Signoff { state, .. }
        | Command::Revoke { state, .. }
        | Command::Pack { state, .. } => state,
    }
}

pub(super) async fn run(cmd: Command) -> anyhow::Result<()> {
    let opened = Opened::open(state_of(&cmd)).await?;
    let result = exec(&opened, cmd).await;
    opened.storage.close().await;
    result
}

fn print_view(v: &EngagementView) {
    let e = &v.engagement;
    println!("engagement {} ({})", e.id, e.status.as_str());
    println!(
        "  tag {}{}, auditor {}",
        e.tag,
        e.repo
            .as_deref()
            .map(|r| format!(" of {r}"))
            .unwrap_or_default(),
        e.auditor
    );
    println!(
        "  opened {}, key {} expires {}{}",
        rfc3339(e.opened_at_ms),
        e.key_id,
        rfc3339(e.expires_at_ms),
        e.key_revoked_at_ms
            .map(|t| format!(" (revoked {})", rfc3339(t)))
            .unwrap_or_default()
    );
    println!(
        "  {} frozen attestation(s), {} note(s), pack {}",
        e.attestations,
        e.notes,
        e.pack_sha256.as_deref().unwrap_or("(none)")
    );
    for n in &v.notes {
        println!(
            "  note {} by {} at {}: sha256 {}",
            n.seq,
            n.author,
            rfc3339(n.at_ms),
            n.sha256
        );
    }
    println!("  decisions log:");
    for l in &v.log {
        println!(
            "    {} {} {} {}{}",
            l.seq,
            rfc3339(l.at_ms),
            l.actor,
            l.action,
            l.sha256
                .as_deref()
                .map(|h| format!(" sha256:{h}"))
                .unwrap_or_default()
        );
        println!("      {}", l.detail);
    }
}

async fn exec(o: &Opened, cmd: Command) -> anyhow::Result<()> {
    let storage = o.storage.as_ref();
    match cmd {
        Command::Open {
            tag,
            repo,
            auditor,
            valid_days,
            for_tenant,
            json,
            ..
        } => {
            let days = valid_days.unwrap_or(o.config.audit.key_validity_days);
            anyhow::ensure!(
                (1..=366).contains(&days),
                "--valid-days must be between 1 and 366"
            );
            let ctx = o.context()?;
            if !json {
                eprintln!("freezing the attestations of tag {tag} and building the sign-off pack…");
            }
            let opened = engagement::open(
                &ctx,
                &OpenRequest {
                    tag,
                    repo,
                    auditor,
                    valid_for_ms: i64::from(days) * 86_400_000,
                    actor: operator(),
                    client_tenant: for_tenant,
                },
            )
            .await?;
            let e = &opened.engagement;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"engagement": e, "pack": opened.pack})
                );
            } else {
                println!(
                    "opened engagement {} for tag {}: {} attestation(s) frozen",
                    e.id, e.tag, e.attestations
                );
                println!(
                    "sign-off pack sha256 {} ({} bytes, built in {} ms)",
                    opened.pack.sha256, opened.pack.size_bytes, opened.pack.time_to_pack_ms
                );
                println!(
                    "auditor {} (tenant {}, plan Auditor): key {} expires {}",
                    e.auditor,
                    e.tenant_id,
                    e.key_id,
                    rfc3339(e.expires_at_ms)
                );
                println!("store the key now: it is not shown again");
            }
            println!("{}", opened.key);
        }
        Command::Show { id, json, .. } => {
            let v = engagement::show(storage, &id).await?;
            if json {
                println!("{}", serde_json::to_string(&v)?);
            } else {
                print_view(&v);
            }
        }
        Command::List { json, .. } => {
            let list = engagement::list(storage).await?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                for e in list {
                    println!(
                        "{}\t{}\t{}\t{}\t{} attestation(s)\t{} note(s)\tkey expires {}",
                        e.id,
                        e.status.as_str(),
                        e.tag,
                        e.auditor,
                        e.attestations,
                        e.notes,
                        rfc3339(e.expires_at_ms)
                    );
                }
            }
        }
        Command::Note {
            id,
            text,
            file,
            json,
            ..
        } => {
            let body = match (text, file) {
                (Some(t), _) => t,
                (None, Some(f)) => {
                    let bytes = super::sign::read_limited(&f, engagement::MAX_NOTE_BYTES)?;
                    String::from_utf8(bytes)
                        .with_context(|| format!("{} is not UTF-8 text", f.display()))?
                }
                (None, None) => anyhow::bail!("give --text or --file"),
            };
            let e = engagement::show(storage, &id).await?.engagement;
            let note = engagement::add_note(
                storage,
                &id,
                &e.auditor,
                &body,
                SystemClock.now_ms(),
                &format!("{} for auditor {}", operator(), e.auditor),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string(&note)?);
            } else {
                println!(
                    "note {} of {} added to {id}: sha256 {}",
                    note.seq,
                    crate::storage::evidence::MAX_NOTES,
                    note.sha256
                );
            }
        }
        Command::Signoff { id, json, .. } => {
            let ctx = o.context()?;
            let (e, pack) = engagement::sign_off(&ctx, &id, &operator()).await?;
            if json {
                println!("{}", serde_json::json!({"engagement": e, "pack": pack}));
            } else {
                println!(
                    "engagement {id} signed off; final pack sha256 {} ({} bytes)",
                    pack.sha256, pack.size_bytes
                );
            }
        }
        Command::Revoke { id, .. } => {
            engagement::revoke(storage, &id, &operator(), SystemClock.now_ms()).await?;
            println!("revoked the auditor key of engagement {id}");
        }
        Command::Pack { id, out, .. } => {
            let p = engagement::pack(storage, &id).await?;
            write_atomic(&out, p.content.as_deref().unwrap_or_default())?;
            println!("wrote {} ({} bytes)", out.display(), p.size_bytes);
            println!("{}", p.sha256);
        }
    }
    Ok(())
}

/// Writes `data` to `path` through a temporary file and a rename, so a
/// crash leaves either nothing or the whole file.
pub(super) fn write_atomic(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("write {}", path.display()))
}
