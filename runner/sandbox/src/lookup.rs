//! Finding a named JSON document: a sandbox profile or (under `seccomp/`)
//! a seccomp policy, by path or by name in the search directories, then
//! among the built-in copies. Shared by `profile` and `seccomp`, and
//! depending on neither.

use std::path::{Path, PathBuf};

/// Environment variable naming a directory searched first for profiles.
pub const PROFILE_DIR_ENV: &str = "CLOISTER_PROFILE_DIR";
/// System-wide profile directory, searched after [`PROFILE_DIR_ENV`].
pub const SYSTEM_PROFILE_DIR: &str = "/usr/share/cloister/sandbox-profiles";

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.')
}

/// A JSON document found by [`find_named`].
pub(crate) struct Found {
    /// The name it was asked for, or a path's file stem.
    pub name: String,
    pub text: std::borrow::Cow<'static, str>,
    /// The directory of the file (a named document: the search directory,
    /// not `subdir`); `None` for a built-in copy.
    pub dir: Option<PathBuf>,
}

/// Why [`find_named`] found nothing.
pub(crate) enum LookupError {
    NotFound,
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Finds a profile (or, with `subdir` `seccomp`, a seccomp policy) by path
/// (anything containing `/` or ending in `.json`) or by name: `NAME.json`
/// in each of [`search_dirs`] (under `subdir`), then the built-in copy in
/// `embedded`. A name must be plain ([`is_plain_name`]); a file that exists
/// but cannot be read is an error, not a reason to look further.
pub(crate) fn find_named(
    name_or_path: &str,
    subdir: Option<&str>,
    embedded: &'static [(&'static str, &'static str)],
) -> Result<Found, LookupError> {
    if name_or_path.contains('/') || name_or_path.ends_with(".json") {
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path).map_err(|source| LookupError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| name_or_path.to_string());
        let dir = path.parent().map(Path::to_path_buf);
        return Ok(Found {
            name,
            text: text.into(),
            dir,
        });
    }
    if !is_plain_name(name_or_path) {
        return Err(LookupError::NotFound);
    }
    for dir in search_dirs() {
        let path = match subdir {
            Some(sub) => dir.join(sub),
            None => dir.clone(),
        }
        .join(format!("{name_or_path}.json"));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return Ok(Found {
                    name: name_or_path.to_string(),
                    text: text.into(),
                    dir: Some(dir),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(LookupError::Read { path, source }),
        }
    }
    match embedded.iter().find(|(n, _)| *n == name_or_path) {
        Some((name, text)) => Ok(Found {
            name: (*name).to_string(),
            text: (*text).into(),
            dir: None,
        }),
        None => Err(LookupError::NotFound),
    }
}

/// Directories searched for named profiles (and `seccomp/` policies), in order.
pub(crate) fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(PROFILE_DIR_ENV).filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(PathBuf::from(SYSTEM_PROFILE_DIR));
    dirs
}
