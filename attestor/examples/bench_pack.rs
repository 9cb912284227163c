//! Benchmark: an audit sign-off pack for a tag with 1,000 attestations, end
//! to end (`engagement::open`: evidence index, freezing the tag, auditor
//! tenant and key, re-verifying every attestation with the policy
//! manifest, the archive, its signature, recording it), against the anchor
//! `tar czf` of the same files (the pack extracted to a directory), in
//! alternating rounds of the same run. Prints medians, the ratio, sizes
//! and the load average (the machine is shared: read ratios, not absolute
//! figures).
//!
//! The pack must carry a verification result for every attestation, re-run
//! at pack time, so no pack can cost less than `tar czf` of its files plus
//! one signature check per envelope (on both cores, as ours does): that sum
//! is printed as the floor, measured in the same rounds, with ours as a
//! ratio to it.
//!
//! `cargo run --release -p cloister-attestor --example bench-pack [-- --attestations N --rounds R]`

use cloister_attestor::config::{Config, PolicyConfig};
use cloister_attestor::evidence::engagement::{self, OpenRequest};
use cloister_attestor::evidence::{Context, archive, index, policies};
use cloister_attestor::keyring::Keyring;
use cloister_attestor::storage::{self, AttestationRow, SubjectRow};
use cloister_attestor_core::dsse::{self, Envelope};
use cloister_attestor_core::keys::{Algorithm, PublicKey};
use cloister_attestor_core::record::{BuildRecord, to_statement};
use cloister_attestor_core::verify::verify_envelope;
use cloister_attestor_core::{policy, sign_statement};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Checks every envelope line of the pack's `.intoto.jsonl` files on two
/// threads, as the pack's own re-verification does; returns the count.
fn verify_all(
    files: &std::collections::BTreeMap<String, Vec<u8>>,
    trusted: &[PublicKey],
) -> anyhow::Result<usize> {
    let lines: Vec<&[u8]> = files
        .iter()
        .filter(|(name, _)| name.ends_with(".intoto.jsonl"))
        .flat_map(|(_, data)| data.split(|&b| b == b'\n'))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let half = lines.len().div_ceil(2).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = lines
            .chunks(half)
            .map(|chunk| {
                s.spawn(move || -> anyhow::Result<()> {
                    for line in chunk {
                        let env = Envelope::parse(line)?;
                        verify_envelope(&env, dsse::PAYLOAD_TYPE, trusted)
                            .map_err(|r| anyhow::anyhow!("{}", r.code))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a verifier thread")?;
        }
        anyhow::Ok(())
    })?;
    Ok(lines.len())
}

fn main() -> anyhow::Result<()> {
    let n = arg("--attestations", 1000);
    let rounds = arg("--rounds", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state)?;
    let keyring = Keyring::open(&state)?;
    let signer = keyring.ensure_active(Algorithm::EcdsaP256)?;
    // The shipped profiles, signed; every build below ran under them.
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-profiles");
    let files = policies::scan_dir(&profiles)?;
    let manifest_path = state.join("policy-manifest.dsse.json");
    std::fs::write(
        &manifest_path,
        policy::sign(&policies::manifest_of(&files)?, signer.as_ref())?.to_jsonl_line(),
    )?;
    let digest_of = |kind: policy::PolicyKind| {
        files
            .iter()
            .find(|f| f.kind == kind && f.name == "default")
            .map(|f| f.digest.clone())
            .expect("default policy")
    };
    let config = Config {
        state_dir: state.clone(),
        policy: PolicyConfig {
            manifest: Some(manifest_path),
            profiles_dir: Some(profiles.clone()),
            coverage_window_days: 30,
        },
        ..Config::default()
    };
    rt.block_on(async {
        let store = storage::open(&config.storage_url()).await?;
        // n attestations of the tag, n of other tags (freezing must select).
        let template: serde_json::Value = serde_json::from_str(include_str!(
            "../tests/golden/build-record.json"
        ))?;
        eprintln!("signing and storing {} attestations…", 2 * n);
        for i in 0..2 * n {
            let mut r = template.clone();
            let tag = if i % 2 == 0 { "v1.4.0".to_owned() } else { format!("v0.{i}.0") };
            r["source"]["ref"] = format!("refs/tags/{tag}").into();
            r["invocationId"] = format!("job-{i}").into();
            r["isolation"]["profile"] = digest_of(policy::PolicyKind::Profile).into();
            r["isolation"]["seccompPolicy"] = digest_of(policy::PolicyKind::Seccomp).into();
            r["subjects"][0]["digest"] =
                format!("sha256:{:064x}", i as u128 * 0x9e37_79b9_7f4a_7c15).into();
            let record: BuildRecord = serde_json::from_value(r)?;
            let signed = sign_statement(&to_statement(&record)?, signer.as_ref())?;
            store
                .insert_attestation(&AttestationRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    created_at_ms: 1_000 + i as i64,
                    keyid: signed.keyid.clone(),
                    builder_id: record.builder_id.clone(),
                    source_uri: "https://github.com/example/repo-a".into(),
                    subjects: record
                        .subjects
                        .iter()
                        .map(|s| SubjectRow {
                            name: s.name.clone(),
                            digest: s.digest.to_string(),
                        })
                        .collect(),
                    envelope: signed.envelope.to_json(),
                    bundle: serde_json::to_string(&signed.bundle)?,
                })
                .await?;
        }
        // The index is caught up once, as the service's background task
        // keeps it; the first round below measures a cold index.
        let mut ours = Vec::new();
        let mut anchor = Vec::new();
        let mut floor = Vec::new();
        let trusted = vec![signer.public_key().clone()];
        let mut sizes = (0, 0);
        let mut cold = None;
        for round in 0..rounds {
            let now = 10_000 + round as i64;
            let ctx = Context::load(&config, store.clone(), &keyring, now, None)?;
            let t = Instant::now();
            let opened = engagement::open(
                &ctx,
                &OpenRequest {
                    tag: "v1.4.0".into(),
                    repo: None,
                    auditor: format!("auditor {round}"),
                    valid_for_ms: 86_400_000,
                    actor: "operator:bench".into(),
                    client_tenant: None,
                },
            )
            .await?;
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(opened.engagement.attestations, n as i64);
            if round == 0 {
                cold = Some(secs);
                let _ = index::catch_up(store.as_ref()).await?;
            } else {
                ours.push(secs);
            }
            // The anchor: tar czf of the same files.
            let pack = engagement::pack(store.as_ref(), &opened.engagement.id).await?;
            let bytes = pack.content.unwrap_or_default();
            // GNU tar reads the pack (several gzip members) as written.
            let packed = dir.path().join(format!("pack-{round}.tar.gz"));
            std::fs::write(&packed, &bytes)?;
            let listed = Command::new("tar").arg("-tzf").arg(&packed).output()?;
            anyhow::ensure!(listed.status.success(), "GNU tar cannot read the pack");
            let files = archive::read(&bytes)?;
            let t = Instant::now();
            let checked = verify_all(&files, &trusted)?;
            let verify_secs = t.elapsed().as_secs_f64();
            anyhow::ensure!(checked == n, "the pack holds {checked} envelopes, not {n}");
            let listed_files = String::from_utf8_lossy(&listed.stdout)
                .lines()
                .filter(|l| !l.ends_with('/'))
                .count();
            anyhow::ensure!(listed_files == files.len(), "GNU tar lists other files");
            let tree = dir.path().join(format!("tree-{round}"));
            for (name, data) in files {
                let p = tree.join(&name);
                std::fs::create_dir_all(p.parent().expect("a parent"))?;
                std::fs::write(p, data)?;
            }
            let out = dir.path().join(format!("anchor-{round}.tar.gz"));
            let t = Instant::now();
            let st = Command::new("tar")
                .arg("czf")
                .arg(&out)
                .arg("-C")
                .arg(&tree)
                .arg(".")
                .status()?;
            anyhow::ensure!(st.success(), "tar czf failed");
            if round > 0 {
                let tar_secs = t.elapsed().as_secs_f64();
                anchor.push(tar_secs);
                floor.push(tar_secs + verify_secs);
            }
            sizes = (bytes.len(), std::fs::metadata(&out)?.len() as usize);
        }
        let (o, a, f) = (median(ours), median(anchor), median(floor));
        println!("sign-off pack, {n} attestations of the tag ({} in the store), {rounds} rounds", 2 * n);
        println!(
            "  ours (engagement::open end to end): median {:.3} s; first round with a cold evidence index {:.3} s",
            o,
            cold.unwrap_or_default()
        );
        println!("  anchor (tar czf of the same files): median {a:.3} s");
        println!("  ratio ours / tar czf: {:.2}", o / a);
        println!(
            "  floor (tar czf + checking the {n} signatures on 2 threads): median {f:.3} s; ratio ours / floor: {:.2}",
            o / f
        );
        println!(
            "  sizes: pack {} bytes, tar czf {} bytes",
            sizes.0, sizes.1
        );
        println!("  load average: {}", loadavg());
        store.close().await;
        anyhow::Ok(())
    })
}
