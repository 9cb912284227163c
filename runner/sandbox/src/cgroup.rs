//! Per-run cgroups on cgroup v1 and v2: memory, pids and cpu limits, the
//! measurements a run reports (peak memory, cpu time, whether a limit was
//! hit) and killing every process of the run.
//!
//! The hierarchy is detected from mountinfo: if v1 hierarchies carry the
//! controllers we use (memory, pids, cpu, cpuacct) they are used (this
//! includes the "hybrid" layout where an empty cgroup2 is mounted beside
//! them); otherwise the cgroup2 mount is. A run's cgroup is created below a
//! parent cgroup: the runner's own (from `/proc/self/cgroup`) unless the
//! caller names one (a delegated cgroup for rootless use). Nothing here
//! falls back silently: a limit that cannot be written is an error.

use crate::limit::MilliCpus;
use crate::mountinfo::{self, MountInfo};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a cgroup could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    #[error("the {0} cgroup controller is not available")]
    NoController(&'static str),
    #[error(
        "cgroup parent {path} is not writable by this user (delegate a cgroup and pass it as the cgroup parent)"
    )]
    NotWritable { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot read the cgroup layout: {0}")]
    Layout(String),
    #[error(
        "cgroup {path} holds processes (the runner's own cgroup?), so cgroup v2 lets it enable no controllers for children; pass a cgroup without processes as the cgroup parent"
    )]
    Busy { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A cgroup v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub controllers: Vec<String>,
    pub mount: PathBuf,
    /// The cgroup the mount shows at its top (mountinfo field 4).
    pub mount_root: PathBuf,
}

/// The cgroup layout of this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    V1(Vec<V1Hierarchy>),
    V2 { mount: PathBuf },
}

const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "cpuacct"];

impl Layout {
    /// Detects the layout from the current mounts.
    pub fn detect() -> Result<Layout, CgroupError> {
        let mounts = mountinfo::current().map_err(|e| CgroupError::Layout(e.to_string()))?;
        Self::from_mounts(&mounts)
    }

    /// The layout described by a mount table.
    pub fn from_mounts(mounts: &[MountInfo]) -> Result<Layout, CgroupError> {
        let mut v1 = Vec::new();
        for m in mounts.iter().filter(|m| m.fs_type == "cgroup") {
            let controllers: Vec<String> = m
                .super_options
                .iter()
                .filter(|o| V1_CONTROLLERS.contains(&o.as_str()))
                .cloned()
                .collect();
            if !controllers.is_empty() && !v1.iter().any(|h: &V1Hierarchy| h.mount == m.mount_point)
            {
                v1.push(V1Hierarchy {
                    controllers,
                    mount: m.mount_point.clone(),
                    mount_root: m.root.clone(),
                });
            }
        }
        if !v1.is_empty() {
            return Ok(Layout::V1(v1));
        }
        match mounts.iter().find(|m| m.fs_type == "cgroup2") {
            Some(m) => Ok(Layout::V2 {
                mount: m.mount_point.clone(),
            }),
            None => Err(CgroupError::NoHierarchy),
        }
    }

    /// `"v1"` or `"v2"`.
    pub fn version(&self) -> &'static str {
        match self {
            Layout::V1(_) => "v1",
            Layout::V2 { .. } => "v2",
        }
    }
}

/// cgroup v1 `tasks` files, opened for writing, for the sandbox init to
/// enter and leave the run's cgroup by (see [`Cgroup::self_attach_files`]).
#[derive(Debug, Default)]
pub struct SelfAttach {
    pub join: Vec<std::fs::File>,
    pub leave: Vec<std::fs::File>,
}

/// The limits a run's cgroup enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<MilliCpus>,
}

/// CFS period used for cpu limits (100 ms, the kernel default).
const CPU_PERIOD_US: u64 = 100_000;

/// The cgroup of one run.
#[derive(Debug)]
pub struct Cgroup {
    version: Version,
    /// `pids.events`, opened when the cgroup was made: opening a cgroup file
    /// while the run's last processes are leaving the cgroup can take a
    /// while, reading an open one does not.
    pids_events: Option<std::fs::File>,
}

#[derive(Debug)]
enum Version {
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
        /// Every directory created, deepest last, for removal.
        dirs: Vec<PathBuf>,
    },
    V2 {
        dir: PathBuf,
    },
}

/// Writes the v2 interface files for `limits` into a run cgroup directory.
fn write_v2_limits(dir: &Path, limits: &CgroupLimits) -> Result<(), CgroupError> {
    if let Some(bytes) = limits.memory {
        write(&dir.join("memory.max"), &bytes.to_string())?;
        // No swap: the memory limit is the limit.
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write(&swap, "0")?;
        }
        // Kill the whole cgroup on OOM rather than one process.
        let group = dir.join("memory.oom.group");
        if group.exists() {
            write(&group, "1")?;
        }
    }
    if let Some(n) = limits.pids {
        write(&dir.join("pids.max"), &n.to_string())?;
    }
    if let Some(MilliCpus(m)) = limits.cpus {
        let quota = u64::from(m) * CPU_PERIOD_US / 1000;
        write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
    }
    Ok(())
}

/// The runner's own cgroup path for a controller (`""` = the v2 line), from
/// the text of `/proc/self/cgroup`.
pub fn own_cgroup(proc_self_cgroup: &str, controller: &str) -> Option<String> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let ctrls = parts.next()?;
        let path = parts.next()?;
        let matches = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_string())
    })
}

/// The parent cgroup path: `parent` when absolute, `parent` below the
/// runner's own cgroup when relative, the runner's own cgroup when `None`.
fn parent_path(parent: Option<&str>, own: &str) -> String {
    match parent {
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("{}/{}", own.trim_end_matches('/'), p),
        None => own.to_string(),
    }
}

/// `mount` joined with a cgroup path, with the mount's own root stripped.
fn dir_for(mount: &Path, mount_root: &Path, cgroup_path: &str) -> PathBuf {
    let p = Path::new(cgroup_path);
    let rel = p.strip_prefix(mount_root).unwrap_or(p);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    mount.join(rel)
}

fn check_parent_writable(dir: &Path) -> Result<(), CgroupError> {
    if !dir.is_dir() {
        return Err(CgroupError::Io {
            path: dir.to_path_buf(),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
    }
    if nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_err() {
        return Err(CgroupError::NotWritable {
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Whether the runner that named a run cgroup still runs: it exists and is
/// not a zombie (a run killed with its daemon may wait a long time for a
/// reaper, and its cgroup is of no use to it any more).
fn owner_alive(pid: i32) -> bool {
    match crate::sys::kill(pid, 0) {
        Ok(()) => {}
        Err(e) => return e.raw_os_error() != Some(libc::ESRCH),
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        // Gone meanwhile.
        return false;
    };
    // `pid (comm) STATE …`: the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// What [`remove_stale`] did: the run cgroups of dead runners it removed,
/// and those it had to leave because processes are still in them (the
/// killed run's processes may take a moment to exit).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub removed: Vec<PathBuf>,
    pub busy: Vec<PathBuf>,
}

/// Removes run cgroups (`cloister-<pid>-<n>`) left below `parent` by a
/// runner that was killed before it could clean up: the pid is gone and the
/// directory empty (rmdir refuses a cgroup that still has processes).
pub fn remove_stale(parent: &Path) -> Sweep {
    let mut sweep = Sweep::default();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return sweep;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("cloister-")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, n)| n.parse::<u32>().ok().and(pid.parse::<i32>().ok()))
        else {
            continue;
        };
        if owner_alive(pid) {
            continue;
        }
        match std::fs::remove_dir(e.path()) {
            Ok(()) => sweep.removed.push(e.path()),
            Err(e2) if e2.kind() == io::ErrorKind::NotFound => {}
            Err(_) => sweep.busy.push(e.path()),
        }
    }
    sweep
}

/// The directories run cgroups are made in below `parent` (resolved as
/// [`Cgroup::create`] resolves it): one per v1 hierarchy of a controller a
/// limit uses (memory, pids, cpu), or the v2 one.
pub fn run_parents(layout: &Layout, parent: Option<&str>, proc_self_cgroup: &str) -> Vec<PathBuf> {
    let resolve = |own: Option<String>| match (parent, own) {
        (Some(p), _) if p.starts_with('/') => Some(p.to_string()),
        (_, Some(own)) => Some(parent_path(parent, &own)),
        (_, None) => None,
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    match layout {
        Layout::V2 { mount } => {
            if let Some(p) = resolve(own_cgroup(proc_self_cgroup, "")) {
                dirs.push(dir_for(mount, Path::new("/"), &p));
            }
        }
        Layout::V1(hierarchies) => {
            for ctrl in ["memory", "pids", "cpu"] {
                let Some(h) = hierarchies
                    .iter()
                    .find(|h| h.controllers.iter().any(|c| c == ctrl))
                else {
                    continue;
                };
                if let Some(p) = resolve(own_cgroup(proc_self_cgroup, ctrl)) {
                    let dir = dir_for(&h.mount, &h.mount_root, &p);
                    if !dirs.contains(&dir) {
                        dirs.push(dir);
                    }
                }
            }
        }
    }
    dirs
}

/// [`remove_stale`] in every directory of [`run_parents`] for this
/// process (its `/proc/self/cgroup` and the mounted layout). The runner
/// daemon calls it at start: the runs of a daemon killed with SIGKILL die
/// with it (parent-death signal) before they can remove their cgroups.
/// Nothing when there is no cgroup hierarchy.
pub fn remove_stale_runs(parent: Option<&str>) -> Sweep {
    let mut sweep = Sweep::default();
    let Ok(layout) = Layout::detect() else {
        return sweep;
    };
    let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
        return sweep;
    };
    for dir in run_parents(&layout, parent, &own) {
        let s = remove_stale(&dir);
        sweep.removed.extend(s.removed);
        sweep.busy.extend(s.busy);
    }
    sweep
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_err(path))
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`memory.events`, `cpu.stat`).
fn read_key(path: &Path, key: &str) -> Option<u64> {
    key_value(&std::fs::read_to_string(path).ok()?, key)
}

/// The value of `key` in the text of a flat-keyed file.
fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl Cgroup {
    /// Creates the run's cgroup `name` below `parent` (an absolute cgroup
    /// path, or one relative to the runner's own cgroup; `None` = the
    /// runner's own cgroup) and writes `limits`. Controllers needed for
    /// a requested limit must exist and be writable.
    pub fn create(
        layout: &Layout,
        parent: Option<&str>,
        name: &str,
        limits: &CgroupLimits,
    ) -> Result<Cgroup, CgroupError> {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(io_err(Path::new("/proc/self/cgroup")))?;
        Self::create_with(layout, parent, &own, name, limits)
    }

    /// [`Cgroup::create`] with the text of `/proc/self/cgroup` given, so the
    /// file writing can be exercised against a directory layout in tests.
    pub fn create_with(
        layout: &Layout,
        parent: Option<&str>,
        proc_self_cgroup: &str,
        name: &str,
        limits: &CgroupLimits,
    ) -> Result<Cgroup, CgroupError> {
        match layout {
            Layout::V2 { mount } => {
                let own = || own_cgroup(proc_self_cgroup, "").ok_or(CgroupError::NoHierarchy);
                let parent_path = match parent {
                    Some(p) if p.starts_with('/') => p.to_string(),
                    _ => parent_path(parent, &own()?),
                };
                let parent_dir = dir_for(mount, Path::new("/"), &parent_path);
                check_parent_writable(&parent_dir)?;
                let mut wanted: Vec<&'static str> = Vec::new();
                if limits.memory.is_some() {
                    wanted.push("memory");
                }
                if limits.pids.is_some() {
                    wanted.push("pids");
                }
                if limits.cpus.is_some() {
                    wanted.push("cpu");
                }
                let available = std::fs::read_to_string(parent_dir.join("cgroup.controllers"))
                    .map_err(io_err(&parent_dir.join("cgroup.controllers")))?;
                let enabled = std::fs::read_to_string(parent_dir.join("cgroup.subtree_control"))
                    .map_err(io_err(&parent_dir.join("cgroup.subtree_control")))?;
                // memory is enabled whenever available so peak memory can be
                // reported even without a memory limit.
                let mut to_enable = Vec::new();
                for c in wanted.iter().copied().chain(["memory"]) {
                    let is_enabled = enabled.split_whitespace().any(|e| e == c);
                    let is_available = available.split_whitespace().any(|e| e == c);
                    if is_enabled || to_enable.contains(&c) {
                        continue;
                    }
                    if !is_available {
                        if wanted.contains(&c) {
                            return Err(CgroupError::NoController(c));
                        }
                        continue;
                    }
                    to_enable.push(c);
                }
                if !to_enable.is_empty() {
                    let line: Vec<String> = to_enable.iter().map(|c| format!("+{c}")).collect();
                    let file = parent_dir.join("cgroup.subtree_control");
                    std::fs::write(&file, line.join(" ")).map_err(|source| {
                        if source.raw_os_error() == Some(libc::EBUSY) {
                            CgroupError::Busy {
                                path: parent_dir.clone(),
                            }
                        } else {
                            CgroupError::Io { path: file, source }
                        }
                    })?;
                }
                remove_stale(&parent_dir);
                let dir = parent_dir.join(name);
                std::fs::create_dir(&dir).map_err(io_err(&dir))?;
                let mut cg = Cgroup {
                    version: Version::V2 { dir: dir.clone() },
                    pids_events: None,
                };
                let res = write_v2_limits(&dir, limits).and_then(|()| cg.open_events(limits));
                if let Err(e) = res {
                    cg.remove();
                    return Err(e);
                }
                Ok(cg)
            }
            Layout::V1(hierarchies) => {
                let find = |ctrl: &str| {
                    hierarchies
                        .iter()
                        .find(|h| h.controllers.iter().any(|c| c == ctrl))
                };
                let mut created: Vec<PathBuf> = Vec::new();
                let mut paths: [Option<PathBuf>; 3] = Default::default();
                let result = (|| {
                    // Only the hierarchies a limit needs: every extra cgroup
                    // costs each run (cpu time comes from rusage on v1, see
                    // `run`).
                    let wanted = [
                        ("memory", limits.memory.is_some()),
                        ("pids", limits.pids.is_some()),
                        ("cpu", limits.cpus.is_some()),
                    ];
                    for (i, (ctrl, needed)) in wanted.into_iter().enumerate() {
                        if !needed {
                            continue;
                        }
                        let Some(h) = find(ctrl) else {
                            return Err(CgroupError::NoController(ctrl));
                        };
                        let parent_path = match parent {
                            Some(p) if p.starts_with('/') => p.to_string(),
                            _ => parent_path(
                                parent,
                                &own_cgroup(proc_self_cgroup, ctrl)
                                    .ok_or(CgroupError::NoController(ctrl))?,
                            ),
                        };
                        let parent_dir = dir_for(&h.mount, &h.mount_root, &parent_path);
                        let dir = parent_dir.join(name);
                        if created.contains(&dir) {
                            paths[i] = Some(dir);
                            continue;
                        }
                        check_parent_writable(&parent_dir)?;
                        remove_stale(&parent_dir);
                        std::fs::create_dir(&dir).map_err(io_err(&dir))?;
                        created.push(dir.clone());
                        paths[i] = Some(dir);
                    }
                    Ok(())
                })();
                let [memory, pids, cpu] = paths;
                let mut cg = Cgroup {
                    version: Version::V1 {
                        memory,
                        pids,
                        cpu,
                        dirs: created,
                    },
                    pids_events: None,
                };
                if let Err(e) = result
                    .and_then(|()| cg.write_v1_limits(limits))
                    .and_then(|()| cg.open_events(limits))
                {
                    cg.remove();
                    return Err(e);
                }
                Ok(cg)
            }
        }
    }

    /// Opens `pids.events` ahead (when it cannot be, it is read by path
    /// at the end, as a cgroup file always can be).
    fn open_events(&mut self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        if limits.pids.is_some() {
            self.pids_events = self
                .pids_events_path()
                .and_then(|p| std::fs::File::open(p).ok());
        }
        Ok(())
    }

    fn pids_events_path(&self) -> Option<PathBuf> {
        match &self.version {
            Version::V2 { dir } => Some(dir.join("pids.events")),
            Version::V1 { pids, .. } => pids.as_ref().map(|d| d.join("pids.events")),
        }
    }

    fn write_v1_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let Version::V1 {
            memory, pids, cpu, ..
        } = &self.version
        else {
            return Ok(());
        };
        if let (Some(bytes), Some(dir)) = (limits.memory, memory) {
            write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &bytes.to_string())?;
            }
            let swappiness = dir.join("memory.swappiness");
            if swappiness.exists() {
                // best effort: the root cgroup refuses it, children accept it
                let _ = std::fs::write(&swappiness, "0");
            }
        }
        if let (Some(n), Some(dir)) = (limits.pids, pids) {
            write(&dir.join("pids.max"), &n.to_string())?;
        }
        if let (Some(MilliCpus(m)), Some(dir)) = (limits.cpus, cpu) {
            let quota = u64::from(m) * CPU_PERIOD_US / 1000;
            write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        Ok(())
    }

    /// The directories of this cgroup (one for v2, one per hierarchy for v1).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match &self.version {
            Version::V2 { dir } => vec![dir.clone()],
            Version::V1 { dirs, .. } => dirs.clone(),
        }
    }

    /// Moves process `pid` (and its future children) into the cgroup.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// On cgroup v1: the `tasks` files the sandbox init moves *itself* by
    /// (one thread, written as "0"): `join`, the run's cgroup in each
    /// hierarchy, before it creates the cgroup namespace (so everything of
    /// the run, the init included, sees itself at that namespace's root);
    /// `leave`, the parents, once the command's processes are gone (so the
    /// cgroup is empty when the init reports, and can be removed without
    /// waiting for the init's exit). A self-move through `tasks` skips the
    /// global threadgroup lock that a `cgroup.procs` write takes, which
    /// costs an RCU grace period (~10 ms) per run. `None` on v2, where the
    /// runner writes `cgroup.procs`.
    pub fn self_attach_files(&self) -> Result<Option<SelfAttach>, CgroupError> {
        let open = |dir: &Path| {
            let path = dir.join("tasks");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))
        };
        match &self.version {
            Version::V2 { .. } => Ok(None),
            Version::V1 { dirs, .. } => {
                let mut files = SelfAttach::default();
                for dir in dirs {
                    files.join.push(open(dir)?);
                    let parent = dir.parent().ok_or_else(|| {
                        CgroupError::Layout(format!("{} has no parent", dir.display()))
                    })?;
                    files.leave.push(open(parent)?);
                }
                Ok(Some(files))
            }
        }
    }

    fn procs_file(&self) -> Option<PathBuf> {
        self.dirs().first().map(|d| d.join("cgroup.procs"))
    }

    /// Kills every process in the cgroup (`cgroup.kill` on v2 where the
    /// kernel has it; otherwise SIGKILL to each listed pid until none is
    /// left).
    pub fn kill_all(&self) {
        if let Version::V2 { dir } = &self.version {
            let kill = dir.join("cgroup.kill");
            if kill.exists() && std::fs::write(&kill, "1").is_ok() {
                return;
            }
        }
        let Some(procs) = self.procs_file() else {
            return;
        };
        for _ in 0..1000 {
            let Ok(text) = std::fs::read_to_string(&procs) else {
                return;
            };
            let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = crate::sys::kill(pid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Highest memory use of the run in bytes.
    pub fn peak_memory(&self) -> Option<u64> {
        match &self.version {
            Version::V2 { dir } => read_u64(&dir.join("memory.peak")),
            Version::V1 { memory, .. } => {
                read_u64(&memory.as_ref()?.join("memory.max_usage_in_bytes"))
            }
        }
    }

    /// CPU time used by the run.
    pub fn cpu_time(&self) -> Option<Duration> {
        match &self.version {
            Version::V2 { dir } => {
                read_key(&dir.join("cpu.stat"), "usage_usec").map(Duration::from_micros)
            }
            // (no cpuacct cgroup is made on v1: the runner takes cpu time
            // from rusage there)
            Version::V1 { .. } => None,
        }
    }

    /// Whether the kernel OOM-killed a process of the run.
    pub fn oom_killed(&self) -> bool {
        let n = match &self.version {
            Version::V2 { dir } => read_key(&dir.join("memory.events"), "oom_kill"),
            Version::V1 { memory, .. } => memory
                .as_ref()
                .and_then(|d| read_key(&d.join("memory.oom_control"), "oom_kill")),
        };
        n.unwrap_or(0) > 0
    }

    /// Whether a fork failed because the pid limit was reached.
    pub fn pids_limit_hit(&self) -> bool {
        let text = match &self.pids_events {
            Some(f) => {
                use std::os::unix::fs::FileExt;
                let mut buf = [0u8; 256];
                let n = f.read_at(&mut buf, 0).unwrap_or(0);
                String::from_utf8_lossy(&buf[..n]).into_owned()
            }
            None => match self.pids_events_path() {
                Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
                None => return false,
            },
        };
        key_value(&text, "max").unwrap_or(0) > 0
    }

    /// Removes the cgroup's directories, killing anything left first.
    pub fn remove(&self) {
        let mut dirs = self.dirs();
        dirs.reverse();
        for dir in dirs {
            for attempt in 0..200 {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) if attempt < 199 => {
                        self.kill_all();
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
