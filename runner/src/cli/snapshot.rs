//! `cloister-runner snapshot`: deterministic snapshots of a directory into the
//! store (`snapshot DIR`), and moving them between machines (`snapshot import`,
//! `snapshot export`).

use super::store::{StoreArg, TtyProgress, print_json, report};
use anyhow::{Context, Result};
use cloister_inputs::{Digest, SnapshotOptions, SnapshotRequest};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Prints `sha256:<hex>`: the SHA-256 of the canonical, uncompressed tar of DIR
/// (names sorted bytewise, mtime SOURCE_DATE_EPOCH or 0, owners 0, modes
/// 0644/0755), after storing it as a read-only tree. See
/// cookbook/snapshot-format.md for the GNU tar command line that gives the same digest.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Directory to snapshot.
    #[arg(value_name = "DIR", required = true)]
    dir: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArg,
    /// Also write the compressed (.tar.gz) form here.
    #[arg(long, value_name = "FILE.tar.gz")]
    out: Option<PathBuf>,
    /// Compute the digest (and --out) without storing anything.
    #[arg(long)]
    no_store: bool,
    /// gzip level for --out (1–12).
    #[arg(long, default_value_t = cloister_inputs::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=12))]
    level: i32,
    /// Print a JSON object instead of the bare digest.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Store a snapshot from its .tar.gz (or .tar) after checking that it is
    /// exactly the canonical snapshot of its content (and has --digest, if given).
    Import(ImportArgs),
    /// Write a stored snapshot's .tar.gz.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// The archive (`-` reads standard input).
    #[arg(value_name = "FILE.tar.gz")]
    file: PathBuf,
    /// Refuse the archive unless its digest is this.
    #[arg(long, value_name = "sha256:HEX")]
    digest: Option<Digest>,
    #[command(flatten)]
    store: StoreArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// The snapshot.
    #[arg(value_name = "sha256:HEX")]
    digest: Digest,
    /// Output file.
    #[arg(long, value_name = "FILE.tar.gz")]
    out: PathBuf,
    /// gzip level when the compressed form must be regenerated (1–12).
    #[arg(long, default_value_t = cloister_inputs::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=12))]
    level: i32,
    #[command(flatten)]
    store: StoreArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    digest: Digest,
    files: u64,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tree: Option<PathBuf>,
    cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    out_bytes: Option<u64>,
}

pub fn exec(args: Args) -> ExitCode {
    report(match args.command {
        Some(Sub::Import(a)) => import(a),
        Some(Sub::Export(a)) => export(a),
        None => snapshot(args),
    })
}

fn snapshot(a: Args) -> Result<()> {
    let dir = a.dir.expect("clap requires DIR");
    let opts = SnapshotOptions::from_env()?;
    let progress = TtyProgress::new();
    let out = if a.no_store {
        match &a.out {
            Some(out) => {
                let p = cloister_inputs::snapshot_to_file(&dir, &opts, out, a.level, &progress)
                    .with_context(|| format!("snapshotting {}", dir.display()))?;
                Output {
                    digest: p.digest,
                    files: p.files,
                    bytes: p.bytes,
                    tree: None,
                    cached: false,
                    out: Some(out.clone()),
                    out_bytes: p.gz_bytes,
                }
            }
            None => {
                let entries = cloister_inputs::walk::walk(&dir)?;
                let p = cloister_inputs::snapshot::produce(
                    &dir, &entries, &opts, None, None, &progress,
                )
                .with_context(|| format!("snapshotting {}", dir.display()))?;
                Output {
                    digest: p.digest,
                    files: p.files,
                    bytes: p.bytes,
                    tree: None,
                    cached: false,
                    out: None,
                    out_bytes: None,
                }
            }
        }
    } else {
        let store = a.store.open()?;
        let req = SnapshotRequest {
            opts,
            out: a.out.clone(),
            level: a.level,
            ..Default::default()
        };
        let s = store
            .snapshot_with(&dir, &req, &progress)
            .with_context(|| format!("snapshotting {}", dir.display()))?;
        Output {
            digest: s.digest,
            files: s.files,
            bytes: s.bytes,
            tree: Some(s.tree),
            cached: s.cached,
            out: a.out,
            out_bytes: s.gz_bytes,
        }
    };
    if a.json {
        print_json(&out);
    } else {
        println!("{}", out.digest);
    }
    Ok(())
}

fn import(a: ImportArgs) -> Result<()> {
    let store = a.store.open()?;
    let progress = TtyProgress::new();
    let s = store
        .import(&a.file, a.digest.as_ref(), &progress)
        .with_context(|| format!("importing {}", a.file.display()))?;
    if a.json {
        print_json(&s);
    } else {
        println!("{}", s.digest);
    }
    Ok(())
}

fn export(a: ExportArgs) -> Result<()> {
    let store = a.store.open()?;
    let progress = TtyProgress::new();
    let n = store
        .export(&a.digest, &a.out, a.level, &progress)
        .with_context(|| format!("exporting {}", a.digest))?;
    if a.json {
        print_json(&serde_json::json!({ "digest": a.digest, "out": a.out, "outBytes": n }));
    } else {
        println!("{}", a.digest);
    }
    Ok(())
}

/// A `--snapshot sha256:HEX:/DEST` argument of `cloister-runner run`.
#[derive(Debug, Clone)]
pub struct Mount {
    pub digest: Digest,
    pub dest: PathBuf,
}

/// Parses `sha256:HEX:/DEST`.
pub fn parse_mount(s: &str) -> Result<Mount, String> {
    let bad = || format!("{s:?} is not sha256:HEX:/DEST");
    let (digest, dest) = s.get(..71).zip(s.get(71..)).ok_or_else(bad)?;
    let digest: Digest = digest.parse().map_err(|e| format!("{e}"))?;
    let dest = dest.strip_prefix(':').ok_or_else(bad)?;
    if !dest.starts_with('/') {
        return Err(format!(
            "snapshot destination {dest:?} must be an absolute path"
        ));
    }
    Ok(Mount {
        digest,
        dest: PathBuf::from(dest),
    })
}

/// Resolves `run`'s store inputs: each snapshot becomes a read-only bind of its
/// materialized tree, the image (flag, else the profile's `org.cloister.image`
/// unless `--rootfs` is given) becomes the rootfs. The returned pins keep
/// `store gc` away from them while the run lasts.
pub fn resolve_inputs(
    store: &StoreArg,
    snapshots: &[Mount],
    image: Option<&Digest>,
    profile_image: Option<&str>,
    ro_binds: &mut Vec<cloister_sandbox::Bind>,
    rootfs: &mut Option<PathBuf>,
) -> Result<Vec<cloister_inputs::Pin>> {
    let image = match (image, profile_image, rootfs.is_some()) {
        (Some(d), _, _) => Some(*d),
        (None, Some(p), false) => Some(p.parse::<Digest>().with_context(|| {
            format!("the profile's image {p:?} must be a manifest digest from `cloister-runner image import`")
        })?),
        _ => None,
    };
    if snapshots.is_empty() && image.is_none() {
        return Ok(Vec::new());
    }
    let store = store.open()?;
    let mut pins = Vec::new();
    for m in snapshots {
        let pin = store
            .pin(cloister_inputs::EntryKind::Snapshot, &m.digest)
            .with_context(|| {
                format!(
                    "snapshot {} (make it with `cloister-runner snapshot DIR`)",
                    m.digest
                )
            })?;
        ro_binds.push(cloister_sandbox::Bind {
            source: pin.path().to_path_buf(),
            destination: m.dest.clone(),
        });
        pins.push(pin);
    }
    if let Some(d) = image {
        let pin = store
            .pin(cloister_inputs::EntryKind::Image, &d)
            .with_context(|| {
                format!("image {d} (import it with `cloister-runner image import`)")
            })?;
        *rootfs = Some(pin.path().to_path_buf());
        pins.push(pin);
    }
    Ok(pins)
}
