//! A parser for `/proc/<pid>/mountinfo`, used to find the submounts of a
//! bind (each needs its own read-only remount) and the cgroup hierarchies.

use std::path::PathBuf;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u32,
    pub parent: u32,
    /// The path inside the filesystem that is mounted (field 4).
    pub root: PathBuf,
    /// Where it is mounted (field 5).
    pub mount_point: PathBuf,
    /// Per-mount options (`ro`, `nosuid`, ...).
    pub options: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Superblock options (for cgroup v1: the controllers).
    pub super_options: Vec<String>,
}

/// Why a mountinfo line was not understood.
#[derive(Debug, thiserror::Error)]
pub enum MountInfoError {
    #[error("malformed mountinfo line: {0:?}")]
    Malformed(String),
    #[error("cannot read mountinfo: {0}")]
    Read(#[from] std::io::Error),
}

/// Undoes the octal escapes (`\040` for space, ...) of mountinfo paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of a mountinfo file.
pub fn parse(text: &str) -> Result<Vec<MountInfo>, MountInfoError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || MountInfoError::Malformed(line.to_string());
        let (pre, post) = line.split_once(" - ").ok_or_else(bad)?;
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 6 || post.len() < 3 {
            return Err(bad());
        }
        out.push(MountInfo {
            id: pre[0].parse().map_err(|_| bad())?,
            parent: pre[1].parse().map_err(|_| bad())?,
            root: PathBuf::from(unescape(pre[3])),
            mount_point: PathBuf::from(unescape(pre[4])),
            options: pre[5].split(',').map(str::to_string).collect(),
            fs_type: post[0].to_string(),
            source: unescape(post[1]),
            super_options: post[2].split(',').map(str::to_string).collect(),
        });
    }
    Ok(out)
}

/// The current process's mounts.
pub fn current() -> Result<Vec<MountInfo>, MountInfoError> {
    parse(&std::fs::read_to_string("/proc/self/mountinfo")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
        let m = parse(text).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[0].root, PathBuf::from("/mnt1"));
        assert_eq!(m[0].fs_type, "ext3");
        assert_eq!(m[0].options, vec!["rw", "noatime"]);
        assert_eq!(m[1].super_options, vec!["rw", "memory"]);
    }

    #[test]
    fn refuses_malformed_lines() {
        assert!(parse("garbage\n").is_err());
        assert!(parse("1 2 3 4 - x\n").is_err());
    }
}
