//! File modes for what the attestor stores on disk: the embedded database
//! holds webhook signing secrets and billing records, so its files are 0600
//! and a directory the attestor creates for them is 0700, whatever the
//! process's umask (outside systemd, a umask of 022 used to leave
//! `attestor.db` 0644 in a 0755 directory). Modes are set explicitly after
//! creation, never left to the umask.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Errors securing a path.
#[derive(Debug, thiserror::Error)]
pub enum FileModeError {
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot restrict the permissions of {path}: {source}")]
    Chmod { path: PathBuf, source: io::Error },
}

/// Creates `dir` (and missing parents) with mode 0700; an existing
/// directory is left as it is.
pub fn create_private_dir(dir: &Path) -> Result<(), FileModeError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| FileModeError::Create {
            path: dir.to_owned(),
            source,
        })?;
    chmod(dir, 0o700)
}

/// Makes `dir` 0700: created when missing; an existing one loses its group
/// and other permission bits.
pub fn secure_state_dir(dir: &Path) -> Result<(), FileModeError> {
    create_private_dir(dir)?;
    let mode = fs::metadata(dir)
        .map_err(|source| FileModeError::Chmod {
            path: dir.to_owned(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        chmod(dir, mode & 0o700)?;
    }
    Ok(())
}

/// Creates the SQLite database file at `path` with mode 0600 when missing
/// (SQLite then gives its `-wal` and `-shm` files the database's mode), and
/// makes an existing one and its `-wal`/`-shm` companions 0600.
pub fn secure_db_file(path: &Path) -> Result<(), FileModeError> {
    if path.as_os_str().is_empty() || path == Path::new(":memory:") {
        return Ok(());
    }
    if !path.exists() {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(FileModeError::Create {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if p.exists() {
            chmod(&p, 0o600)?;
        }
    }
    Ok(())
}

fn chmod(path: &Path, mode: u32) -> Result<(), FileModeError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
        FileModeError::Chmod {
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_dirs_and_db_files_whatever_the_modes_before() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("x.db");
        secure_db_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        // Loose files from an earlier run are tightened.
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        let wal = dir.join("x.db-wal");
        fs::write(&wal, b"").unwrap();
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o666)).unwrap();
        secure_db_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        let loose = t.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
        secure_state_dir(&loose).unwrap();
        assert_eq!(mode(&loose), 0o700);
    }
}
