//! Output collection after the sandbox has exited: declared globs are matched
//! against the workspace (relative paths, `*` does not cross `/`), walked
//! without following any symlink, and each match must be a regular file. A
//! symlink among the matches fails the job (it could point out of the
//! workspace); files are opened with `O_NOFOLLOW`, copied out and hashed in
//! one pass. The copies' sha256 digests become the provenance subjects.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What the daemon appends to an artifact's name for its provenance files.
pub const PROVENANCE_SUFFIXES: [&str; 2] = [".intoto.jsonl", ".sigstore.json"];

/// Errors collecting outputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output glob {glob:?}: {message}")]
    Glob { glob: String, message: String },
    #[error("output glob {0:?} matched no file")]
    NoMatch(String),
    #[error("output {0} is a symlink: outputs must be regular files inside the workspace")]
    Symlink(String),
    #[error("output {0} is not a regular file")]
    NotAFile(String),
    #[error("two outputs are named {name}: {first} and {second}")]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
    #[error("output {0} has a name reserved for provenance (*.intoto.jsonl, *.sigstore.json)")]
    Reserved(String),
    #[error("walking the workspace: {0}")]
    Walk(#[from] walkdir::Error),
    #[error("copying output {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// One collected output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// The subject name (the file name).
    pub name: String,
    /// Path relative to the workspace.
    pub relative: String,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    /// The copy in the output directory.
    pub path: PathBuf,
}

/// Matches `globs` in `workspace`, copies every match into `out_dir` (flat,
/// by file name) and returns them sorted by name.
pub fn collect(
    workspace: &Path,
    globs: &[String],
    out_dir: &Path,
) -> Result<Vec<Collected>, OutputError> {
    let mut matchers = Vec::new();
    for glob in globs {
        let g = globset::GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|e| OutputError::Glob {
                glob: glob.clone(),
                message: e.to_string(),
            })?;
        matchers.push((glob, g.compile_matcher()));
    }
    let mut matched = vec![false; matchers.len()];
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(workspace)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name()
    {
        let entry = entry?;
        let rel = entry
            .path()
            .strip_prefix(workspace)
            .expect("walkdir stays under its root");
        let rel_str = rel.to_string_lossy().into_owned();
        let mut hit = false;
        for (i, (_, m)) in matchers.iter().enumerate() {
            if m.is_match(rel) {
                matched[i] = true;
                hit = true;
            }
        }
        if !hit {
            continue;
        }
        let ft = entry.file_type();
        if ft.is_symlink() {
            return Err(OutputError::Symlink(rel_str));
        }
        if ft.is_dir() {
            continue;
        }
        if !ft.is_file() {
            return Err(OutputError::NotAFile(rel_str));
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        // The provenance written beside each artifact must not overwrite
        // (or be taken for) another output.
        if PROVENANCE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            return Err(OutputError::Reserved(rel_str));
        }
        if let Some(first) = found.insert(name.clone(), rel_str.clone()) {
            return Err(OutputError::Duplicate {
                name,
                first,
                second: rel_str,
            });
        }
    }
    if let Some(i) = matched.iter().position(|m| !m) {
        return Err(OutputError::NoMatch(matchers[i].0.clone()));
    }
    let io = |path: &str| {
        let path = path.to_string();
        move |source| OutputError::Io { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(io(&out_dir.display().to_string()))?;
    let mut out = Vec::new();
    for (name, rel) in found {
        let mut src = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(workspace.join(&rel))
            .map_err(io(&rel))?;
        let meta = src.metadata().map_err(io(&rel))?;
        if !meta.is_file() {
            return Err(OutputError::NotAFile(rel));
        }
        // Executables stay executable; nothing else of the mode is kept.
        let mode = if meta.permissions().mode() & 0o100 != 0 {
            0o755
        } else {
            0o644
        };
        let dest = out_dir.join(&name);
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&dest)
            .map_err(io(&dest.display().to_string()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = src.read(&mut buf).map_err(io(&rel))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            dst.write_all(&buf[..n])
                .map_err(io(&dest.display().to_string()))?;
        }
        dst.sync_all().map_err(io(&dest.display().to_string()))?;
        out.push(Collected {
            name,
            relative: rel,
            digest: format!("sha256:{}", hex::encode(hasher.finalize())),
            path: dest,
        });
    }
    Ok(out)
}

/// `sha256:<hex>` of a kept output, opened without following a symlink
/// (`cloister-runner attest` checks the copies before signing them).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let out = dir.path().join("out");
        std::fs::create_dir_all(ws.join("target/release/deps")).unwrap();
        std::fs::write(ws.join("target/release/app"), b"binary").unwrap();
        std::fs::write(ws.join("target/release/deps/app-123"), b"other").unwrap();
        (dir, ws, out)
    }

    #[test]
    fn collects_and_hashes_matches() {
        let (_d, ws, out) = setup();
        let got = collect(&ws, &["target/release/app".into()], &out).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "app");
        // sha256("binary")
        assert_eq!(
            got[0].digest,
            "sha256:9a3a45d01531a20e89ac6ae10b0b0beb0492acd7216a368aa062d1a5fecaf9cd"
        );
        assert_eq!(std::fs::read(out.join("app")).unwrap(), b"binary");
    }

    #[test]
    fn star_does_not_cross_directories() {
        let (_d, ws, out) = setup();
        let got = collect(&ws, &["target/release/*".into()], &out).unwrap();
        assert_eq!(
            got.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["app"]
        );
    }

    #[test]
    fn outputs_named_like_provenance_are_refused() {
        let (_d, ws, out) = setup();
        std::fs::write(ws.join("target/release/app.intoto.jsonl"), b"{}").unwrap();
        let err = collect(&ws, &["target/release/*".into()], &out).unwrap_err();
        assert!(
            matches!(err, OutputError::Reserved(ref p) if p == "target/release/app.intoto.jsonl"),
            "{err}"
        );
    }

    #[test]
    fn symlink_output_to_host_file_is_refused() {
        let (_d, ws, out) = setup();
        symlink("/etc/passwd", ws.join("target/release/leak")).unwrap();
        let err = collect(&ws, &["target/release/*".into()], &out).unwrap_err();
        assert!(
            matches!(err, OutputError::Symlink(ref p) if p == "target/release/leak"),
            "{err}"
        );
        assert!(!out.join("leak").exists());
    }

    #[test]
    fn symlinked_directory_is_not_followed() {
        let (_d, ws, out) = setup();
        symlink("/etc", ws.join("etc")).unwrap();
        let err = collect(&ws, &["etc/passwd".into()], &out).unwrap_err();
        assert!(matches!(err, OutputError::NoMatch(_)), "{err}");
        let err = collect(&ws, &["etc".into()], &out).unwrap_err();
        assert!(matches!(err, OutputError::Symlink(_)), "{err}");
    }

    #[test]
    fn glob_matching_nothing_fails() {
        let (_d, ws, out) = setup();
        let err = collect(&ws, &["dist/*.tgz".into()], &out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output glob \"dist/*.tgz\" matched no file"
        );
    }

    #[test]
    fn duplicate_names_fail() {
        let (_d, ws, out) = setup();
        std::fs::write(ws.join("target/app"), b"x").unwrap();
        let err = collect(&ws, &["target/**/app".into()], &out).unwrap_err();
        assert!(matches!(err, OutputError::Duplicate { .. }), "{err}");
    }
}
