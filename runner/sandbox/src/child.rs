//! The code that runs inside the new namespaces: the sandbox init (pid 1 of
//! the run's pid namespace) builds the root filesystem, pivots into it, forks
//! the command's process and reaps until the command exits; the command's
//! process drops every privilege, installs seccomp last and execs.
//!
//! Both run in processes forked from the single-threaded runner, so they may
//! allocate. They report to the runner over the report pipe in
//! [`InitMessage`]s: a failure (which ends the process with status 125) or,
//! at the end, the usage, a full tmpfs and the command's status.

use crate::message::{CommandStatus, InitMessage, Stage};
use crate::profile::{MountFlags, Rlimit};
use crate::sys;
use crate::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, pivot_root};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};

/// One mount the init makes, with host paths already resolved.
#[derive(Debug, Clone)]
pub(crate) enum Planned {
    Bind {
        /// Absolute host path (seen below `/oldroot` inside).
        source: PathBuf,
        destination: PathBuf,
        writable: bool,
        /// Missing source: skip instead of failing.
        optional: bool,
        noexec: bool,
    },
    Tmpfs {
        destination: PathBuf,
        flags: MountFlags,
        data: String,
    },
    Proc {
        destination: PathBuf,
    },
    Devpts {
        destination: PathBuf,
        data: String,
    },
}

impl Planned {
    /// Where the mount goes inside the sandbox.
    pub(crate) fn destination(&self) -> &Path {
        match self {
            Planned::Bind { destination, .. }
            | Planned::Tmpfs { destination, .. }
            | Planned::Proc { destination }
            | Planned::Devpts { destination, .. } => destination,
        }
    }
}

/// Sorts mounts so that every mount comes after the mounts its destination
/// lies in (by depth; mounts of equal depth keep their order, so a later
/// bind on the same destination still lands on top). Nesting then works
/// whatever order binds were given in: a parent is mounted, and its flags
/// applied, before anything is mounted below it.
pub(crate) fn order_mounts(mounts: &mut [Planned]) {
    mounts.sort_by_key(|m| {
        m.destination()
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .count()
    });
}

/// Everything the child needs, prepared by the runner before the clone.
#[derive(Debug)]
pub(crate) struct Plan {
    pub mounts: Vec<Planned>,
    pub rootfs: Option<PathBuf>,
    pub etc_files: Vec<(&'static str, String)>,
    pub masked: Vec<PathBuf>,
    pub readonly: Vec<PathBuf>,
    pub hostname: String,
    pub workdir: PathBuf,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub path_dirs: Vec<PathBuf>,
    pub rlimits: Vec<Rlimit>,
    pub programs: Vec<seccompiler::BpfProgram>,
    /// fds to install as 0, 1, 2 (`None`: keep the inherited one).
    pub stdio: [Option<RawFd>; 3],
    pub report_fd: RawFd,
    /// The init's end of the runner's go channel (a `SOCK_SEQPACKET` socket):
    /// closed means the runner died; one message says where the run's
    /// cgroup is (see `receive_cgroup`).
    pub go_fd: RawFd,
    pub uid: u32,
    pub gid: u32,
    pub cap_last: u32,
    /// Send stage timestamps (`T` lines) on the report pipe.
    pub trace: bool,
    /// The size-capped tmpfs mounts (inside the sandbox) whose filling up
    /// stops the run (see `wait_for_command`).
    pub capped_tmpfs: Vec<PathBuf>,
    /// The host's network namespace is shared (`spec::Network::Host`): no
    /// loopback to bring up, and the command is kept from the host's
    /// abstract unix sockets by a Landlock scope.
    pub host_network: bool,
}

/// A setup step that failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub stage: Stage,
    pub message: String,
}

fn fail<E: std::fmt::Display>(
    stage: Stage,
    what: impl std::fmt::Display,
) -> impl FnOnce(E) -> Failure {
    move |e| Failure {
        stage,
        message: format!("{what}: {e}"),
    }
}

/// Writes `messages` to the report pipe in one write (lines of one report
/// arrive together).
fn report(fd: RawFd, messages: &[InitMessage]) {
    let text: String = messages.iter().map(InitMessage::encode).collect();
    // Errors are ignored: if the runner is gone there is nobody to tell.
    let fd = unsafe_borrow(fd);
    let _ = nix::unistd::write(fd, text.as_bytes());
}

fn unsafe_borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the report and go fds are owned by the runner's plan for the
    // whole life of this forked process and are never closed while borrowed.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Notes the end of a start-up stage (see `trace`).
fn stamp(plan: &Plan, stage: &str) {
    if plan.trace {
        report(
            plan.report_fd,
            &[InitMessage::Trace {
                stage: stage.to_string(),
                ns: crate::trace::now_ns(),
            }],
        );
    }
}

fn report_failure(fd: RawFd, f: &Failure) -> ! {
    report_failure_with(fd, f, 125)
}

/// The same, leaving with `code` (the command's process: 126, 127 for a
/// program that cannot be run or found).
fn report_failure_with(fd: RawFd, f: &Failure, code: i32) -> ! {
    report(
        fd,
        &[InitMessage::Failed {
            stage: f.stage,
            message: f.message.clone(),
        }],
    );
    sys::exit_now(code)
}

/// Entry point of the sandbox init (pid 1 of the new pid namespace).
pub(crate) fn sandbox_init(plan: &Plan) -> ! {
    stamp(plan, "init: started");
    let leave = match init_setup(plan) {
        Ok(leave) => leave,
        Err(f) => report_failure(plan.report_fd, &f),
    };
    let leave: Vec<RawFd> = leave.iter().map(AsRawFd::as_raw_fd).collect();
    // Not dumpable from here on: the command's processes cannot open the
    // init's /proc files (fds, memory) even before its capabilities go.
    if let Err(f) =
        nix::sys::prctl::set_dumpable(false).map_err(fail(Stage::Init, "clear the dumpable flag"))
    {
        report_failure(plan.report_fd, &f);
    }
    // The bounding set is emptied (and securebits locked) here, once, for
    // the init and the command's process it forks, which inherits both.
    if let Err(f) = drop_bounding_set(plan.cap_last) {
        report_failure(plan.report_fd, &f);
    }
    // The command's process shares the init's memory until its exec (the
    // init waits meanwhile): nothing of the init is copied or faulted in
    // again. It does its own last steps and the exec; see `exec_command`.
    // SIGCHLD is blocked in the init from here on, so that waiting for it
    // can time out (to look at the capped tmpfs mounts) without losing one;
    // the command's process unblocks it before its exec.
    if let Err(e) = sys::block_sigchld() {
        report_failure(
            plan.report_fd,
            &Failure {
                stage: Stage::Init,
                message: format!("block SIGCHLD: {e}"),
            },
        );
    }
    let child = match sys::vfork_exec(&mut || -> std::convert::Infallible { exec_command(plan) }) {
        Ok(pid) => pid,
        Err(e) => report_failure(
            plan.report_fd,
            &Failure {
                stage: Stage::Fork,
                message: format!("fork the command: {e}"),
            },
        ),
    };
    stamp(plan, "init: command forked");
    // The init holds nothing but the report pipe from here on: not even the
    // standard streams, so a reader of the command's output sees EOF when
    // the command's processes are gone, not when the init has exited.
    // (best effort: the init runs nothing, and a failure here must not
    // leave the command running unwatched)
    let _ = close_all_but(0, &[&[plan.report_fd][..], &leave].concat());
    // The init keeps no capability while the command runs; if it cannot
    // drop them it gives up, and its exit kills the whole pid namespace.
    if let Err(f) = clear_capability_sets() {
        report_failure(plan.report_fd, &f);
    }
    let (status, full) = wait_for_command(plan, child);
    stamp(plan, "init: command reaped");
    // Whatever the command left behind (daemons, double-forked setsid'ed
    // grandchildren) dies now and is reaped: after this loop the init is the
    // only process of the run. (kill(-1) from a pid namespace's init reaches
    // every other process of the namespace and nothing outside it; they all
    // run as the init's uid, so no capability is needed.)
    let _ = sys::kill(-1, libc::SIGKILL);
    // (until ECHILD: none left)
    while let Ok(_) | Err(nix::errno::Errno::EINTR) = waitpid(Pid::from_raw(-1), None) {}
    // Out of the run's cgroup (v1), so it is empty when the runner reads
    // the status below. (best effort: if this fails the runner's removal
    // of the cgroup kills the init, which has nothing left to do)
    let _ = move_self(&leave);
    // CPU time of every process of the run (the command's tree, all reaped
    // here, and the init's own) and the peak resident size of the largest,
    // from the kernel.
    let (children, own) = (sys::rusage(true), sys::rusage(false));
    let cpu_us = |u: &libc::rusage| {
        let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    let mut last = vec![InitMessage::Usage {
        cpu_us: cpu_us(&children) + cpu_us(&own),
        maxrss_kb: children.ru_maxrss.max(0) as u64,
    }];
    last.extend(full.map(InitMessage::TmpfsFull));
    last.push(status);
    report(plan.report_fd, &last);
    // The runner may return as soon as it has read this (see `run`); the
    // namespaces are torn down as the init exits.
    sys::exit_now(0)
}

/// How often the init looks at the capped tmpfs mounts while the command
/// runs.
const TMPFS_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Waits for the command to exit, reaping every other process of the run as
/// it ends (orphans are the init's), and returns its status line. Every
/// [`TMPFS_TICK`], and once more when the command is gone, it looks at the
/// size-capped tmpfs mounts: one that is full (no free block or inode left)
/// stops the run at once (every process killed) and is returned, so the
/// run reports the disk limit (a build writing on after ENOSPC would
/// otherwise spin until its timeout).
fn wait_for_command(plan: &Plan, child: libc::pid_t) -> (InitMessage, Option<PathBuf>) {
    let mut full: Option<PathBuf> = None;
    loop {
        loop {
            let status = match waitpid(
                Pid::from_raw(-1),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            ) {
                Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == child => {
                    CommandStatus::Exited(code)
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == child => {
                    CommandStatus::Signaled(sig as i32)
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    let failed = InitMessage::Failed {
                        stage: Stage::Wait,
                        message: format!("wait for the command: {e}"),
                    };
                    return (failed, full);
                }
            };
            let full = full.or_else(|| full_tmpfs(plan));
            return (InitMessage::Status(status), full);
        }
        if full.is_none()
            && let Some(path) = full_tmpfs(plan)
        {
            full = Some(path);
            let _ = sys::kill(-1, libc::SIGKILL);
        }
        sys::wait_sigchld(TMPFS_TICK);
    }
}

/// The first capped tmpfs mount with no free block or inode left.
fn full_tmpfs(plan: &Plan) -> Option<PathBuf> {
    plan.capped_tmpfs
        .iter()
        .find(|p| {
            statvfs(p.as_path()).is_ok_and(|st| st.blocks_free() == 0 || st.files_free() == 0)
        })
        .cloned()
}

/// Closes every fd from `first` on but those in `keep` (at most 8; the
/// cgroup tasks fds not kept, the go pipe and any leaked fd go too). A
/// `keep` fd may lie below `first` (a runner started with its standard fds
/// closed gets a low report pipe): then it is not kept. Allocates nothing
/// (the command's process runs it sharing the init's memory).
fn close_all_but(first: u32, keep: &[RawFd]) -> std::io::Result<()> {
    let mut sorted = [u32::MAX; 8];
    if keep.len() > sorted.len() {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    for (slot, fd) in sorted.iter_mut().zip(keep) {
        *slot = u32::try_from(*fd).unwrap_or(u32::MAX);
    }
    let sorted = &mut sorted[..keep.len()];
    sorted.sort_unstable();
    let mut from = first;
    for &k in sorted.iter() {
        if k == u32::MAX {
            break;
        }
        if k < from {
            continue;
        }
        if k > from {
            sys::close_range(from, k - 1)?;
        }
        from = k + 1;
    }
    sys::close_range(from, u32::MAX)
}

/// Everything before the command's fork. Returns, on cgroup v1, the `tasks`
/// files of the parent cgroups, for the init to leave the run's cgroup by
/// once the command's processes are gone (before it reports).
fn init_setup(plan: &Plan) -> Result<Vec<OwnedFd>, Failure> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(fail(Stage::Init, "set the parent-death signal"))?;
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        sys::default_signal(sig).map_err(fail(Stage::Init, "reset signal handlers"))?;
    }
    // If the runner died before the line above, its end of the go pipe is
    // closed: leave. (From here on its death kills us.)
    if runner_gone(plan.go_fd) {
        sys::exit_now(125);
    }
    // Our own id maps: one line mapping our own uid and gid, which the
    // kernel lets the namespace's first process write without privilege on
    // the host (so root and rootless take the same path, and the runner has
    // nothing to do between the clone and the command).
    write_id_maps(plan.uid, plan.gid)?;
    stamp(plan, "init: id maps written");
    build_root(plan)?;
    nix::unistd::sethostname(&plan.hostname).map_err(fail(Stage::Uts, "set the hostname"))?;
    if !plan.host_network {
        sys::loopback_up().map_err(fail(Stage::Network, "bring loopback up"))?;
    }
    stamp(plan, "init: hostname, loopback");
    enter_root()?;
    nix::unistd::chdir(&plan.workdir).map_err(fail(Stage::Workdir, plan.workdir.display()))?;
    verify_cwd(&plan.workdir)?;
    stamp(plan, "init: pivoted, old root detached, cwd verified");
    // The runner has made the run's cgroup meanwhile (usually long before
    // now). On v2 it has moved us in before saying so; on v1 we move
    // ourselves (one thread, through the `tasks` fds it sends). Then that
    // cgroup becomes the namespace's root: the init and every process of the
    // run see themselves at `/`. Nothing is forked before this.
    let (join, leave) = receive_cgroup(plan.go_fd)?;
    let join: Vec<RawFd> = join.iter().map(AsRawFd::as_raw_fd).collect();
    move_self(&join).map_err(fail(Stage::Cgroup, "move the init into the run's cgroup"))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        .map_err(fail(Stage::Namespaces, "create the cgroup namespace"))?;
    stamp(plan, "init: cgroup joined, cgroup namespace");
    Ok(leave)
}

/// Waits for the runner's word about the run's cgroup: `j` + the number of
/// join fds (v1: the run's `tasks` files, then the parents'), `g` (v2: the
/// runner moved us in) or `n` (no cgroup). Returns the join and leave fds.
/// Leaves quietly when the channel closes (the runner died or gave up).
fn receive_cgroup(fd: RawFd) -> Result<(Vec<OwnedFd>, Vec<OwnedFd>), Failure> {
    let mut buf = [0u8; 2];
    let (n, mut fds) = match sys::recv_with_fds(fd, &mut buf) {
        Ok((0, _)) => sys::exit_now(125),
        Ok(got) => got,
        Err(e) => {
            return Err(Failure {
                stage: Stage::Cgroup,
                message: format!("receive the runner's word about the cgroup: {e}"),
            });
        }
    };
    match (&buf[..n], fds.len()) {
        ([b'j', joins], total) if usize::from(*joins) <= total => {
            let leave = fds.split_off(usize::from(*joins));
            Ok((fds, leave))
        }
        ([b'g' | b'n'], 0) => Ok((Vec::new(), Vec::new())),
        (other, total) => Err(Failure {
            stage: Stage::Cgroup,
            message: format!("unexpected word from the runner: {other:?} with {total} fds"),
        }),
    }
}

/// Moves the calling thread (the whole init: it has one) into the cgroup
/// of each v1 `tasks` file in `tasks_fds`.
fn move_self(tasks_fds: &[RawFd]) -> nix::Result<()> {
    for fd in tasks_fds {
        nix::unistd::write(unsafe_borrow(*fd), b"0")?;
    }
    Ok(())
}

fn write_id_maps(uid: u32, gid: u32) -> Result<(), Failure> {
    for (file, content) in [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/gid_map", format!("{gid} {gid} 1\n")),
        ("/proc/self/uid_map", format!("{uid} {uid} 1\n")),
    ] {
        std::fs::write(file, content)
            .map_err(fail(Stage::UserNamespace, format!("write {file}")))?;
    }
    Ok(())
}

/// Whether the runner's end of the go pipe is closed (it died).
fn runner_gone(fd: RawFd) -> bool {
    let mut pfd = [nix::poll::PollFd::new(
        unsafe_borrow(fd),
        nix::poll::PollFlags::POLLIN,
    )];
    match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO) {
        Ok(0) => false,
        Ok(_) => pfd[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLHUP)),
        Err(_) => true,
    }
}

const BASE: &str = "/tmp";
const NEWROOT: &str = "/newroot";
const OLDROOT: &str = "/oldroot";

fn mkdir_p(path: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(path).map_err(fail(Stage::Mount, format!("create {}", path.display())))
}

/// `/newroot` + an absolute path inside the sandbox.
fn inside(path: &Path) -> PathBuf {
    Path::new(NEWROOT).join(path.strip_prefix("/").unwrap_or(path))
}

/// `/oldroot` + an absolute host path.
fn host(path: &Path) -> PathBuf {
    Path::new(OLDROOT).join(path.strip_prefix("/").unwrap_or(path))
}

/// Creates mount points inside `/newroot` without ever following a symlink
/// and only on filesystems the sandbox itself mounted (its tmpfs mounts):
/// during setup the host's root is reachable below `/oldroot`, so a symlink
/// from an image (or a missing directory inside a host bind) must never lead
/// a `mkdir` or a file write onto the host.
struct Root {
    /// `st_dev` of every tmpfs the sandbox mounted.
    ours: Vec<u64>,
}

impl Root {
    fn note_tmpfs(&mut self, path: &Path) -> Result<(), Failure> {
        let st = nix::sys::stat::lstat(path).map_err(fail(Stage::Mount, path.display()))?;
        self.ours.push(st.st_dev);
        Ok(())
    }

    /// Walks `dest`'s parent directories, creating missing ones; returns the
    /// path of `dest` below `/newroot`.
    fn parent(&self, dest: &Path) -> Result<PathBuf, Failure> {
        let refuse = |why: String| Failure {
            stage: Stage::Mount,
            message: format!("mount point {}: {why}", dest.display()),
        };
        let mut cur = PathBuf::from(NEWROOT);
        let comps: Vec<_> = dest
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .collect();
        if comps.is_empty() {
            return Err(refuse("is the root".into()));
        }
        for c in &comps[..comps.len() - 1] {
            let next = cur.join(c);
            match std::fs::symlink_metadata(&next) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refuse(format!("{} is a symlink", display_inside(&next))));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(refuse(format!(
                        "{} is not a directory",
                        display_inside(&next)
                    )));
                }
                Err(_) => {
                    self.check_ours(&cur, &refuse)?;
                    std::fs::create_dir(&next).map_err(fail(
                        Stage::Mount,
                        format!("create {}", display_inside(&next)),
                    ))?;
                }
            }
            cur = next;
        }
        Ok(cur.join(comps[comps.len() - 1]))
    }

    fn check_ours(&self, dir: &Path, refuse: &dyn Fn(String) -> Failure) -> Result<(), Failure> {
        let st = nix::sys::stat::lstat(dir).map_err(fail(Stage::Mount, dir.display()))?;
        if !self.ours.contains(&st.st_dev) {
            return Err(refuse(format!(
                "{} is inside a bind mount or image; it must exist there already",
                display_inside(dir)
            )));
        }
        Ok(())
    }

    /// A directory mount point.
    fn dir(&self, dest: &Path) -> Result<PathBuf, Failure> {
        self.leaf(dest, true)
    }

    /// A file mount point.
    fn file(&self, dest: &Path) -> Result<PathBuf, Failure> {
        self.leaf(dest, false)
    }

    fn leaf(&self, dest: &Path, dir: bool) -> Result<PathBuf, Failure> {
        let target = self.parent(dest)?;
        let refuse = |why: String| Failure {
            stage: Stage::Mount,
            message: format!("mount point {}: {why}", dest.display()),
        };
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => Err(refuse("is a symlink".into())),
            Ok(m) if m.is_dir() == dir => Ok(target),
            Ok(_) => Err(refuse(format!(
                "exists and is not a {}",
                if dir { "directory" } else { "file" }
            ))),
            Err(_) => {
                let parent = target.parent().unwrap_or(Path::new(NEWROOT));
                self.check_ours(parent, &refuse)?;
                if dir {
                    std::fs::create_dir(&target)
                        .map_err(fail(Stage::Mount, format!("create {}", dest.display())))?;
                } else {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .mode(0o644)
                        .open(&target)
                        .map_err(fail(Stage::Mount, format!("create {}", dest.display())))?;
                }
                Ok(target)
            }
        }
    }
}

fn display_inside(p: &Path) -> String {
    match p.strip_prefix(NEWROOT) {
        Ok(rest) => format!("/{}", rest.display()),
        Err(_) => p.display().to_string(),
    }
}

fn build_root(plan: &Plan) -> Result<(), Failure> {
    let none: Option<&str> = None;
    // Nothing we do may propagate back to the host.
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(fail(Stage::Mount, "make / private"))?;
    // A scratch tmpfs becomes the root for the duration of the setup, with the
    // host's root reachable below /oldroot (so host paths under /tmp stay
    // reachable as bind sources).
    mount(
        Some("tmpfs"),
        BASE,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700"),
    )
    .map_err(fail(Stage::Mount, "mount the scratch tmpfs"))?;
    nix::unistd::chdir(BASE).map_err(fail(Stage::Mount, "enter the scratch tmpfs"))?;
    mkdir_p(Path::new("newroot"))?;
    mkdir_p(Path::new("oldroot"))?;
    pivot_root(".", "oldroot").map_err(fail(Stage::PivotRoot, "pivot into the scratch tmpfs"))?;
    nix::unistd::chdir("/").map_err(fail(Stage::Mount, "chdir /"))?;
    stamp(plan, "root: scratch root");

    // The sandbox's root: a fresh tmpfs, read-only once populated.
    mount(
        Some("tmpfs"),
        NEWROOT,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(fail(Stage::Mount, "mount the root tmpfs"))?;
    let mut root = Root { ours: Vec::new() };
    root.note_tmpfs(Path::new(NEWROOT))?;

    if let Some(rootfs) = &plan.rootfs {
        populate_from_rootfs(&root, rootfs)?;
    }
    build_dev(&mut root)?;
    stamp(plan, "root: /dev");
    for m in &plan.mounts {
        match m {
            Planned::Bind {
                source,
                destination,
                writable,
                optional,
                noexec,
            } => {
                // Flags are applied right away, to this bind and the host
                // mounts it brought along (MS_REC) only: mounts are ordered
                // parents first, so a bind nested below this one is mounted
                // later and gets its own flags (a read-only bind inside a
                // writable one stays read-only, and the reverse).
                if let Some(target) = bind(&root, source, destination, *optional)? {
                    let mut attrs = if *writable { BIND_RW } else { BIND_RO };
                    if *noexec {
                        attrs |= MOUNT_ATTR_NOEXEC;
                    }
                    lock_mount(&target, attrs, true)?;
                }
            }
            Planned::Tmpfs {
                destination,
                flags,
                data,
            } => {
                let target = root.dir(destination)?;
                mount(
                    Some("tmpfs"),
                    &target,
                    Some("tmpfs"),
                    ms_flags(flags),
                    Some(data.as_str()),
                )
                .map_err(fail(
                    Stage::Mount,
                    format!("tmpfs on {}", destination.display()),
                ))?;
                root.note_tmpfs(&target)?;
            }
            Planned::Proc { destination } => {
                let target = root.dir(destination)?;
                mount(
                    Some("proc"),
                    &target,
                    Some("proc"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    none,
                )
                .map_err(fail(Stage::Proc, "mount a fresh /proc"))?;
            }
            Planned::Devpts { destination, data } => {
                let target = root.dir(destination)?;
                mount(
                    Some("devpts"),
                    &target,
                    Some("devpts"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    Some(data.as_str()),
                )
                .map_err(fail(Stage::Dev, "mount a new devpts instance"))?;
                let ptmx = inside(Path::new("/dev/ptmx"));
                if std::fs::symlink_metadata(&ptmx).is_err() {
                    symlink("pts/ptmx", &ptmx).map_err(fail(Stage::Dev, "link /dev/ptmx"))?;
                }
            }
        }
    }
    stamp(plan, "root: mounts");
    if !plan.etc_files.is_empty() {
        let etc = root.dir(Path::new("/etc"))?;
        for (name, content) in &plan.etc_files {
            let path = etc.join(name);
            if std::fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            root.check_ours(&etc, &|why| Failure {
                stage: Stage::Etc,
                message: format!("/etc: {why}"),
            })?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o644)
                .open(&path)
                .map_err(fail(Stage::Etc, format!("write /etc/{name}")))?;
            std::io::Write::write_all(&mut f, content.as_bytes())
                .map_err(fail(Stage::Etc, format!("write /etc/{name}")))?;
        }
    }
    // (each bind was locked as it was made, above; what remains is /dev
    // and the root itself, after the /proc masks)
    stamp(plan, "root: /etc");
    mask_proc(plan)?;
    stamp(plan, "root: /proc masked");
    lock_mount(
        &inside(Path::new("/dev")),
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        false,
    )?;
    lock_mount(Path::new(NEWROOT), BIND_RO, false)?;
    stamp(plan, "root: read-only");
    Ok(())
}

fn ms_flags(flags: &MountFlags) -> MsFlags {
    let mut f = MsFlags::empty();
    if flags.nosuid {
        f |= MsFlags::MS_NOSUID;
    }
    if flags.nodev {
        f |= MsFlags::MS_NODEV;
    }
    if flags.noexec {
        f |= MsFlags::MS_NOEXEC;
    }
    if flags.readonly {
        f |= MsFlags::MS_RDONLY;
    }
    f
}

/// Binds host `source` at `destination`; a host symlink is recreated as the
/// same symlink instead (so `/bin -> usr/bin` stays a link). Returns the
/// mount point below `/newroot` when a mount was made (and so needs its
/// flags).
fn bind(
    root: &Root,
    source: &Path,
    destination: &Path,
    optional: bool,
) -> Result<Option<PathBuf>, Failure> {
    let src = host(source);
    let meta = match std::fs::symlink_metadata(&src) {
        Ok(m) => m,
        Err(_) if optional => return Ok(None),
        Err(e) => {
            return Err(Failure {
                stage: Stage::Mount,
                message: format!("bind source {}: {e}", source.display()),
            });
        }
    };
    if meta.file_type().is_symlink() && source == destination {
        let link = std::fs::read_link(&src).map_err(fail(Stage::Mount, source.display()))?;
        let target = root.parent(destination)?;
        if let Some(parent) = target.parent() {
            root.check_ours(parent, &|why| Failure {
                stage: Stage::Mount,
                message: format!("link {}: {why}", destination.display()),
            })?;
        }
        symlink(&link, &target).map_err(fail(
            Stage::Mount,
            format!("link {}", destination.display()),
        ))?;
        return Ok(None);
    }
    let target = if std::fs::metadata(&src).map(|m| m.is_dir()).unwrap_or(false) {
        root.dir(destination)?
    } else {
        root.file(destination)?
    };
    let none: Option<&str> = None;
    mount(
        Some(&src),
        &target,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(fail(
        Stage::Mount,
        format!("bind {} on {}", source.display(), destination.display()),
    ))?;
    Ok(Some(target))
}

/// Image mode: the root tmpfs gets each top-level entry of the unpacked image
/// (directories and files bound read-only, symlinks copied), so mount points
/// the sandbox needs (/dev, /proc, /tmp, bind targets) can be created on the
/// tmpfs without writing into the image.
fn populate_from_rootfs(root: &Root, rootfs: &Path) -> Result<(), Failure> {
    let dir = host(rootfs);
    let entries = std::fs::read_dir(&dir).map_err(fail(Stage::Rootfs, rootfs.display()))?;
    let mut names: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let skip = ["dev", "proc", "sys", "tmp"];
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let inner = Path::new("/").join(&name);
        let src = dir.join(&name);
        let meta = std::fs::symlink_metadata(&src).map_err(fail(Stage::Rootfs, src.display()))?;
        if meta.file_type().is_symlink() {
            // Copied as a link: it resolves inside the sandbox after the
            // pivot; mount point creation never follows it (see `Root`).
            let link = std::fs::read_link(&src).map_err(fail(Stage::Rootfs, src.display()))?;
            let target = inside(&inner);
            symlink(&link, &target).map_err(fail(Stage::Rootfs, target.display()))?;
            continue;
        }
        let target = if meta.is_dir() {
            root.dir(&inner)?
        } else if meta.is_file() {
            root.file(&inner)?
        } else {
            continue;
        };
        let none: Option<&str> = None;
        mount(
            Some(&src),
            &target,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .map_err(fail(Stage::Rootfs, format!("bind {}", inner.display())))?;
        lock_mount(&target, BIND_RO, true)?;
    }
    Ok(())
}

const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn build_dev(root: &mut Root) -> Result<(), Failure> {
    let dev = root.dir(Path::new("/dev"))?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755"),
    )
    .map_err(fail(Stage::Dev, "mount /dev"))?;
    root.note_tmpfs(&dev)?;
    let none: Option<&str> = None;
    let mut nodes = Vec::with_capacity(DEV_NODES.len());
    for node in DEV_NODES {
        let target = root.file(&Path::new("/dev").join(node))?;
        mount(
            Some(&host(&Path::new("/dev").join(node))),
            &target,
            none,
            MsFlags::MS_BIND,
            none,
        )
        .map_err(fail(Stage::Dev, format!("bind /dev/{node}")))?;
        nodes.push(target);
    }
    // One call for the /dev tmpfs and every node bound on it (nodev, of
    // course, cannot be among the flags); each node is then checked.
    lock_mount(&dev, DEV_ATTRS, true)?;
    for target in &nodes {
        verify_flags(target, DEV_ATTRS)?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(name)).map_err(fail(Stage::Dev, format!("link /dev/{name}")))?;
    }
    Ok(())
}

/// Flags of a read-only bind (the second pass an initial bind needs:
/// `MS_BIND` ignores `MS_RDONLY`).
const BIND_RO: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
/// Flags of a writable bind.
const BIND_RW: u64 = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
/// Flags of `/dev` and the device nodes bound on it.
const DEV_ATTRS: u64 = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC;
/// Flags of the read-only `/proc` paths and of the masks.
const PROC_RO: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
/// Flags of the `/dev/null` binds masking `/proc` files (not nodev: the
/// mask is a device).
const MASK_FILE: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC;

/// Adds `attrs` (`MOUNT_ATTR_*`) to the mount at `path`, and to every mount
/// below it when `recursive` (all or none), then checks the mount at `path`
/// has them.
fn lock_mount(path: &Path, attrs: u64, recursive: bool) -> Result<(), Failure> {
    sys::mount_setattr(path, attrs, recursive)
        .map_err(fail(Stage::Remount, display_inside(path)))?;
    verify_flags(path, attrs)
}

/// Checks with statvfs that the mount at `path` has every flag in `attrs`.
fn verify_flags(path: &Path, attrs: u64) -> Result<(), Failure> {
    let got = statvfs(path)
        .map_err(fail(Stage::Remount, display_inside(path)))?
        .flags();
    for (bit, flag, what) in [
        (MOUNT_ATTR_RDONLY, FsFlags::ST_RDONLY, "read-only"),
        (MOUNT_ATTR_NOSUID, FsFlags::ST_NOSUID, "nosuid"),
        (MOUNT_ATTR_NODEV, FsFlags::ST_NODEV, "nodev"),
        (MOUNT_ATTR_NOEXEC, FsFlags::ST_NOEXEC, "noexec"),
    ] {
        if attrs & bit != 0 && !got.contains(flag) {
            return Err(Failure {
                stage: Stage::Remount,
                message: format!("{}: {what} did not take", display_inside(path)),
            });
        }
    }
    Ok(())
}

fn mask_proc(plan: &Plan) -> Result<(), Failure> {
    let none: Option<&str> = None;
    for p in &plan.readonly {
        let target = inside(p);
        if std::fs::symlink_metadata(&target).is_err() {
            continue;
        }
        // A fresh proc has no mounts below these paths, so a plain bind and
        // its flags cover the whole subtree.
        mount(Some(&target), &target, none, MsFlags::MS_BIND, none)
            .map_err(fail(Stage::Proc, format!("bind {}", p.display())))?;
        lock_mount(&target, PROC_RO, false)?;
    }
    // One read-only empty tmpfs masks the first directory and one read-only
    // /dev/null bind the first file; every further mask is a bind of those,
    // which inherits their flags (checked).
    let mut dir_mask: Option<PathBuf> = None;
    let mut file_mask: Option<PathBuf> = None;
    for p in &plan.masked {
        let target = inside(p);
        let Ok(meta) = std::fs::symlink_metadata(&target) else {
            continue;
        };
        let what = || format!("mask {}", p.display());
        let (first, attrs) = if meta.is_dir() {
            (&mut dir_mask, PROC_RO)
        } else {
            (&mut file_mask, MASK_FILE)
        };
        match first {
            Some(source) => {
                mount(
                    Some(source.as_path()),
                    &target,
                    none,
                    MsFlags::MS_BIND,
                    none,
                )
                .map_err(fail(Stage::Proc, what()))?;
                verify_flags(&target, attrs)?;
            }
            None if meta.is_dir() => {
                mount(
                    Some("tmpfs"),
                    &target,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    Some("size=0,mode=0555"),
                )
                .map_err(fail(Stage::Proc, what()))?;
                verify_flags(&target, attrs)?;
                *first = Some(target);
            }
            None => {
                mount(
                    Some(&inside(Path::new("/dev/null"))),
                    &target,
                    none,
                    MsFlags::MS_BIND,
                    none,
                )
                .map_err(fail(Stage::Proc, what()))?;
                lock_mount(&target, attrs, false)?;
                *first = Some(target);
            }
        }
    }
    Ok(())
}

/// `pivot_root` into the new root and detach the scratch root (which holds
/// the host's root below it).
fn enter_root() -> Result<(), Failure> {
    nix::unistd::chdir(NEWROOT).map_err(fail(Stage::PivotRoot, "enter the new root"))?;
    pivot_root(".", ".").map_err(fail(Stage::PivotRoot, "pivot into the new root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail(Stage::PivotRoot, "detach the old root"))?;
    nix::unistd::chdir("/").map_err(fail(Stage::PivotRoot, "chdir /"))?;
    Ok(())
}

fn verify_cwd(workdir: &Path) -> Result<(), Failure> {
    let cwd = nix::unistd::getcwd().map_err(fail(Stage::Workdir, "cwd is outside the new root"))?;
    let here = nix::sys::stat::stat(".").map_err(fail(Stage::Workdir, "stat ."))?;
    let there = nix::sys::stat::stat(&cwd).map_err(fail(Stage::Workdir, cwd.display()))?;
    if !cwd.is_absolute() || (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino) {
        return Err(Failure {
            stage: Stage::Workdir,
            message: format!("cwd {} is not inside the new root", workdir.display()),
        });
    }
    Ok(())
}

/// Empties the bounding set, by number up to the kernel's last capability
/// (the caps crate only knows the capabilities of its release), with
/// securebits locked so uid 0 cannot regain any. Inherited by children.
fn drop_bounding_set(cap_last: u32) -> Result<(), Failure> {
    sys::lock_securebits().map_err(fail(Stage::Capabilities, "lock securebits"))?;
    for cap in 0..=cap_last {
        sys::capbset_drop(cap).map_err(fail(
            Stage::Capabilities,
            format!("drop {cap} from the bounding set"),
        ))?;
    }
    Ok(())
}

/// Clears the ambient, inheritable, effective and permitted sets (effective
/// before permitted: it must stay a subset).
fn clear_capability_sets() -> Result<(), Failure> {
    for set in [
        caps::CapSet::Ambient,
        caps::CapSet::Inheritable,
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
    ] {
        caps::clear(None, set)
            .map_err(fail(Stage::Capabilities, format!("clear the {set:?} set")))?;
    }
    Ok(())
}

/// Checks with the kernel that every set is empty: effective, permitted and
/// inheritable (`capget`), bounding and ambient (one `prctl` per
/// capability, up to the kernel's last).
fn verify_no_capabilities(cap_last: u32) -> Result<(), Failure> {
    let left = |what: &str, detail: String| Failure {
        stage: Stage::Capabilities,
        message: format!("the {what} set is not empty after dropping every capability ({detail})"),
    };
    let sets = sys::capget().map_err(fail(Stage::Capabilities, "read the capability sets"))?;
    for (what, bits) in ["effective", "permitted", "inheritable"].iter().zip(sets) {
        if bits != 0 {
            return Err(left(what, format!("{bits:#x}")));
        }
    }
    for cap in 0..=cap_last {
        if sys::capbset_read(cap).map_err(fail(Stage::Capabilities, "read the bounding set"))? {
            return Err(left("bounding", format!("capability {cap}")));
        }
        if sys::ambient_is_set(cap).map_err(fail(Stage::Capabilities, "read the ambient set"))? {
            return Err(left("ambient", format!("capability {cap}")));
        }
    }
    Ok(())
}

fn resolve_program(plan: &Plan) -> Result<CString, Failure> {
    let name = plan.argv[0].to_string_lossy().into_owned();
    if name.contains('/') {
        return Ok(plan.argv[0].clone());
    }
    for dir in &plan.path_dirs {
        let candidate = dir.join(&name);
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok()
            && std::fs::metadata(&candidate)
                .map(|m| m.is_file())
                .unwrap_or(false)
        {
            return CString::new(candidate.into_os_string().into_encoded_bytes()).map_err(|_| {
                Failure {
                    stage: Stage::Exec,
                    message: "program path has a NUL byte".into(),
                }
            });
        }
    }
    Err(Failure {
        stage: Stage::Exec,
        message: format!("{name}: command not found in PATH"),
    })
}

/// The command's process: last privilege drops, seccomp, exec.
fn exec_command(plan: &Plan) -> ! {
    let report_fd = plan.report_fd;
    let exec_fail = |f: Failure, code: i32| -> ! { report_failure_with(report_fd, &f, code) };
    if let Err(f) = prepare_exec(plan) {
        exec_fail(f, 125);
    }
    let program = match resolve_program(plan) {
        Ok(p) => p,
        Err(f) => exec_fail(f, 127),
    };
    stamp(plan, "command: ready to exec");
    // Seccomp last: after this only execve (and the failure report) run.
    for prog in &plan.programs {
        if let Err(e) = sys::seccomp_install(prog) {
            exec_fail(
                Failure {
                    stage: Stage::Seccomp,
                    message: format!("install the filter: {e}"),
                },
                125,
            );
        }
    }
    let err = sys::execve(&program, &plan.argv, &plan.env);
    let code = if err.raw_os_error() == Some(libc::ENOENT) {
        127
    } else {
        126
    };
    exec_fail(
        Failure {
            stage: Stage::Exec,
            message: format!("{}: {err}", program.to_string_lossy()),
        },
        code,
    )
}

fn prepare_exec(plan: &Plan) -> Result<(), Failure> {
    stamp(plan, "command: forked");
    // (the init blocks SIGCHLD for itself; the command starts with none blocked)
    sys::unblock_all_signals().map_err(fail(Stage::Exec, "unblock signals"))?;
    nix::unistd::setsid().map_err(fail(Stage::Exec, "start a new session"))?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(fail(Stage::Exec, "set the parent-death signal"))?;
    // Copy the stream sources out of the way first, so installing one as
    // 0, 1 or 2 cannot clobber another that happens to have that number.
    let mut sources = [None; 3];
    for (i, fd) in plan.stdio.iter().enumerate() {
        if let Some(fd) = fd {
            sources[i] =
                Some(sys::dup_above(*fd, 10).map_err(fail(Stage::Exec, format!("copy fd {fd}")))?);
        }
    }
    for (i, fd) in sources.iter().enumerate() {
        if let Some(fd) = fd {
            sys::dup2(*fd, i as RawFd).map_err(fail(Stage::Exec, format!("install fd {i}")))?;
        }
    }
    // Every fd above 2 is closed, leaked ones included; the report pipe is
    // close-on-exec and disappears at exec.
    close_all_but(3, &[plan.report_fd]).map_err(fail(Stage::Exec, "close inherited fds"))?;
    sys::set_cloexec(plan.report_fd)
        .map_err(fail(Stage::Exec, "mark the report pipe close-on-exec"))?;
    stamp(plan, "command: streams, fds closed");
    for rl in &plan.rlimits {
        apply_rlimit(rl)?;
    }
    sys::umask(0o022);
    nix::sys::prctl::set_no_new_privs().map_err(fail(Stage::Exec, "set no_new_privs"))?;
    // (the bounding set was emptied by the init before the fork)
    clear_capability_sets()?;
    if plan.host_network {
        // A fresh network namespace hides the host's abstract unix sockets
        // (they are per namespace, with no permission check); sharing the
        // host's must not open them. No scope, no run.
        sys::landlock_scope_abstract_unix().map_err(fail(
            Stage::Network,
            "keep the command from the host's abstract unix sockets (a Landlock scope, Linux 6.12 or later, needed to share the host network)",
        ))?;
    }
    stamp(plan, "command: rlimits, no_new_privs, capabilities dropped");
    verify_no_capabilities(plan.cap_last)?;
    stamp(plan, "command: capabilities verified");
    Ok(())
}

fn apply_rlimit(rl: &Rlimit) -> Result<(), Failure> {
    let (_, cur_hard) = sys::getrlimit(rl.resource)
        .map_err(fail(Stage::Rlimits, format!("read rlimit {}", rl.resource)))?;
    // Raising a hard limit needs privilege on the host; a profile can only
    // lower what the runner has.
    let hard = rl.hard.min(cur_hard);
    let soft = rl.soft.min(hard);
    sys::setrlimit(rl.resource, soft, hard)
        .map_err(fail(Stage::Rlimits, format!("set rlimit {}", rl.resource)))
}

#[cfg(test)]
mod tests {
    use super::{Stage, close_all_but, receive_cgroup};
    use crate::sys::{send_with_fds, seqpacket_pair};
    use std::os::fd::AsRawFd;

    /// The init reads the runner's word about the cgroup: v1 join and leave
    /// fds split where the runner says, v2 and "none" carry no fds, and
    /// anything else is a setup failure, not a guess. (A read of 0 bytes is
    /// the runner gone: the init exits, so that case is not run here; the
    /// runner never sends an empty message.)
    #[test]
    fn the_cgroup_word_is_read_exactly() {
        let (runner, init) = seqpacket_pair().unwrap();
        let files: Vec<std::fs::File> = (0..3).map(|_| tempfile::tempfile().unwrap()).collect();
        let fds: Vec<i32> = files.iter().map(AsRawFd::as_raw_fd).collect();
        send_with_fds(runner.as_raw_fd(), &[b'j', 1], &fds).unwrap();
        let (join, leave) = receive_cgroup(init.as_raw_fd()).unwrap();
        assert_eq!((join.len(), leave.len()), (1, 2));
        for word in [&b"g"[..], b"n"] {
            send_with_fds(runner.as_raw_fd(), word, &[]).unwrap();
            let (join, leave) = receive_cgroup(init.as_raw_fd()).unwrap();
            assert!(join.is_empty() && leave.is_empty());
        }
        for (word, fds) in [
            (&b"j\x02"[..], &fds[..1]), // more joins than fds
            (b"g", &fds[..1]),          // v2 with fds
            (b"x", &[][..]),            // unknown
        ] {
            send_with_fds(runner.as_raw_fd(), word, fds).unwrap();
            let err = receive_cgroup(init.as_raw_fd()).unwrap_err();
            assert_eq!(err.stage, Stage::Cgroup, "{word:?}");
        }
    }

    fn is_open(fd: i32) -> bool {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
    }

    /// What the init keeps through its fd sweep (the report pipe and the
    /// cgroup `tasks` fds it leaves by) stays open, everything else from
    /// `first` on is closed, fds below `first` are untouched.
    #[test]
    fn close_all_but_keeps_exactly_the_listed_fds() {
        // In a forked child: the sweep would close the test harness's fds.
        // SAFETY: the child only makes async-signal-safe system calls
        // (open, dup2, close_range, fcntl, _exit) and sorts a stack array.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = (|| {
                // SAFETY: a NUL-terminated path; the fd is ours.
                let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
                for n in 100..=110 {
                    // SAFETY: dup2 onto free numbers in this child.
                    if unsafe { libc::dup2(null, n) } != n {
                        return 2;
                    }
                }
                if close_all_but(100, &[107, 103, 103, 50, -1]).is_err() {
                    return 3;
                }
                for n in 100..=110 {
                    if is_open(n) != (n == 103 || n == 107) {
                        return 10 + (n - 100);
                    }
                }
                if !is_open(null) && null < 100 {
                    return 4;
                }
                if close_all_but(100, &[1; 9]).is_ok() {
                    return 5;
                }
                0
            })();
            // SAFETY: leaves the forked child without running the harness's
            // atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child died: {status}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "see the codes in the test");
    }
}
