//! `cloister-runner image`: import OCI image layouts from disk into cached,
//! read-only root filesystems keyed by manifest digest, and list them.

use super::store::{StoreArg, TtyProgress, print_json, report};
use anyhow::{Context, Result};
use cloister_inputs::ImportOptions;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import OCI_LAYOUT_DIR[:REF] (an image layout on disk: oci-layout,
    /// index.json, blobs/sha256): verify every blob, unpack the layers in order
    /// with whiteouts, cache the rootfs by manifest digest and print it.
    Import(ImportArgs),
    /// List cached images.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The layout directory, optionally with `:REF` naming a manifest by its
    /// org.opencontainers.image.ref.name annotation.
    #[arg(value_name = "OCI_LAYOUT_DIR[:REF]")]
    layout: String,
    /// Clear setuid/setgid bits instead of refusing the image (they have no
    /// effect under the sandbox's no_new_privs anyway).
    #[arg(long)]
    strip_setid: bool,
    #[command(flatten)]
    store: StoreArg,
    /// Print JSON.
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
        Command::Import(a) => import(a),
        Command::List(a) => list(a),
    })
}

fn import(a: ImportArgs) -> Result<()> {
    let store = a.store.open()?;
    let (dir, reference) = cloister_inputs::image::parse_layout_arg(&a.layout);
    let progress = TtyProgress::new();
    let opts = ImportOptions {
        strip_setid: a.strip_setid,
    };
    let img = cloister_inputs::import_layout(&store, &dir, reference.as_deref(), &opts, &progress)
        .with_context(|| format!("importing {}", a.layout))?;
    if a.json {
        print_json(&img);
    } else {
        println!("{}", img.manifest_digest);
    }
    Ok(())
}

fn list(a: ListArgs) -> Result<()> {
    let store = a.store.open()?;
    let images = cloister_inputs::image::list(&store)?;
    if a.json {
        print_json(&images);
    } else {
        for i in images {
            println!(
                "{}\t{}\t{} layers\t{} bytes",
                i.manifest_digest,
                i.refs.join(","),
                i.layers,
                i.bytes
            );
        }
    }
    Ok(())
}
