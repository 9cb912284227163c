//! The code that runs inside the new namespaces: the sandbox init (pid 1 of
//! the run's pid namespace) builds the root filesystem, pivots into it, forks
//! the command's process and reaps until the command exits; the command's
//! process drops every privilege, installs seccomp last and execs.
//!
//! Both run in processes forked from the single-threaded runner, so they may
//! allocate. Failures are reported to the runner over the report pipe as one
//! line (`E<TAB>stage<TAB>message`) and end the process with status 125; the
//! command's final status is reported as `S<TAB>exit|signal<TAB>n`.

use crate::mountinfo;
use crate::profile::{MountFlags, Rlimit};
use crate::sys::{self, Forked};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, pivot_root};
use std::ffi::CString;
use std::os::fd::RawFd;
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
    pub go_fd: RawFd,
    pub cap_last: u32,
}

/// A setup step that failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub stage: &'static str,
    pub message: String,
}

fn fail<E: std::fmt::Display>(
    stage: &'static str,
    what: impl std::fmt::Display,
) -> impl FnOnce(E) -> Failure {
    move |e| Failure {
        stage,
        message: format!("{what}: {e}"),
    }
}

fn report(fd: RawFd, line: &str) {
    // Errors are ignored: if the runner is gone there is nobody to tell.
    let fd = unsafe_borrow(fd);
    let _ = nix::unistd::write(fd, line.as_bytes());
}

fn unsafe_borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the report and go fds are owned by the runner's plan for the
    // whole life of this forked process and are never closed while borrowed.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

fn report_failure(fd: RawFd, f: &Failure) -> ! {
    let msg = f.message.replace(['\n', '\t'], " ");
    report(fd, &format!("E\t{}\t{}\n", f.stage, msg));
    sys::exit_now(125)
}

/// Entry point of the sandbox init (pid 1 of the new pid namespace).
pub(crate) fn sandbox_init(plan: &Plan) -> ! {
    if let Err(f) = init_setup(plan) {
        report_failure(plan.report_fd, &f);
    }
    let child = match sys::fork() {
        Ok(Forked::Child) => exec_command(plan),
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => report_failure(
            plan.report_fd,
            &Failure {
                stage: "fork",
                message: format!("fork the command: {e}"),
            },
        ),
    };
    // The init holds nothing but the report pipe from here on.
    close_all_but(plan.report_fd);
    let _ = nix::sys::prctl::set_dumpable(false);
    let _ = drop_capabilities(plan.cap_last);
    let status = loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == child => {
                break format!("S\texit\t{code}\n");
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == child => {
                break format!("S\tsignal\t{}\n", sig as i32);
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => break format!("E\twait\twait for the command: {e}\n"),
        }
    };
    report(plan.report_fd, &status);
    // Exiting as pid 1 makes the kernel kill whatever the command left behind.
    sys::exit_now(0)
}

fn close_all_but(keep: RawFd) {
    let keep = keep.max(3) as u32;
    let _ = sys::close_range(3, keep - 1);
    let _ = sys::close_range(keep + 1, u32::MAX);
}

fn init_setup(plan: &Plan) -> Result<(), Failure> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(fail("init", "set the parent-death signal"))?;
    // Wait until the runner has written the id maps and placed us in the
    // cgroup. EOF means the runner died: leave.
    let mut byte = [0u8; 1];
    match nix::unistd::read(unsafe_borrow(plan.go_fd), &mut byte) {
        Ok(1) => {}
        _ => sys::exit_now(125),
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        .map_err(fail("namespaces", "create the cgroup namespace"))?;
    build_root(plan)?;
    nix::unistd::sethostname(&plan.hostname).map_err(fail("uts", "set the hostname"))?;
    sys::loopback_up().map_err(fail("network", "bring loopback up"))?;
    enter_root()?;
    nix::unistd::chdir(&plan.workdir).map_err(fail("workdir", plan.workdir.display()))?;
    verify_cwd(&plan.workdir)?;
    Ok(())
}

const BASE: &str = "/tmp";
const NEWROOT: &str = "/newroot";
const OLDROOT: &str = "/oldroot";

fn mkdir_p(path: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(path).map_err(fail("mount", format!("create {}", path.display())))
}

fn touch(path: &Path) -> Result<(), Failure> {
    if let Some(parent) = path.parent() {
        mkdir_p(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
        .map(drop)
        .map_err(fail("mount", format!("create {}", path.display())))
}

/// `/newroot` + an absolute path inside the sandbox.
fn inside(path: &Path) -> PathBuf {
    Path::new(NEWROOT).join(path.strip_prefix("/").unwrap_or(path))
}

/// `/oldroot` + an absolute host path.
fn host(path: &Path) -> PathBuf {
    Path::new(OLDROOT).join(path.strip_prefix("/").unwrap_or(path))
}

fn build_root(plan: &Plan) -> Result<(), Failure> {
    let none: Option<&str> = None;
    // Nothing we do may propagate back to the host.
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(fail("mount", "make / private"))?;
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
    .map_err(fail("mount", "mount the scratch tmpfs"))?;
    nix::unistd::chdir(BASE).map_err(fail("mount", "enter the scratch tmpfs"))?;
    mkdir_p(Path::new("newroot"))?;
    mkdir_p(Path::new("oldroot"))?;
    pivot_root(".", "oldroot").map_err(fail("pivot_root", "pivot into the scratch tmpfs"))?;
    nix::unistd::chdir("/").map_err(fail("mount", "chdir /"))?;

    // The sandbox's root: a fresh tmpfs, read-only once populated.
    mount(
        Some("tmpfs"),
        NEWROOT,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(fail("mount", "mount the root tmpfs"))?;

    let mut remounts: Vec<(PathBuf, bool)> = Vec::new();
    if let Some(rootfs) = &plan.rootfs {
        populate_from_rootfs(rootfs, &mut remounts)?;
    }
    build_dev()?;
    for m in &plan.mounts {
        match m {
            Planned::Bind {
                source,
                destination,
                writable,
                optional,
            } => {
                if bind(source, destination, *optional)? {
                    remounts.push((destination.clone(), *writable));
                }
            }
            Planned::Tmpfs {
                destination,
                flags,
                data,
            } => {
                let target = inside(destination);
                mkdir_p(&target)?;
                mount(
                    Some("tmpfs"),
                    &target,
                    Some("tmpfs"),
                    ms_flags(flags),
                    Some(data.as_str()),
                )
                .map_err(fail("mount", format!("tmpfs on {}", destination.display())))?;
            }
            Planned::Proc { destination } => {
                let target = inside(destination);
                mkdir_p(&target)?;
                mount(
                    Some("proc"),
                    &target,
                    Some("proc"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    none,
                )
                .map_err(fail("proc", "mount a fresh /proc"))?;
            }
            Planned::Devpts { destination, data } => {
                let target = inside(destination);
                mkdir_p(&target)?;
                mount(
                    Some("devpts"),
                    &target,
                    Some("devpts"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    Some(data.as_str()),
                )
                .map_err(fail("dev", "mount a new devpts instance"))?;
                let ptmx = inside(Path::new("/dev/ptmx"));
                if std::fs::symlink_metadata(&ptmx).is_err() {
                    symlink("pts/ptmx", &ptmx).map_err(fail("dev", "link /dev/ptmx"))?;
                }
            }
        }
    }
    if !plan.etc_files.is_empty() {
        let etc = inside(Path::new("/etc"));
        mkdir_p(&etc)?;
        for (name, content) in &plan.etc_files {
            let path = etc.join(name);
            if std::fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            std::fs::write(&path, content).map_err(fail("etc", format!("write /etc/{name}")))?;
        }
    }
    // Second pass: an initial bind ignores MS_RDONLY, so every bind (and
    // every mount below it) is remounted read-only (or just nosuid, nodev for
    // writable binds) and the result checked.
    for (destination, writable) in &remounts {
        remount_tree(&inside(destination), !writable)?;
    }
    mask_proc(plan)?;
    remount_one(&inside(Path::new("/dev")), true, MsFlags::MS_NOEXEC)?;
    remount_one(Path::new(NEWROOT), true, MsFlags::empty())?;
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
/// same symlink instead (so `/bin -> usr/bin` stays a link). Returns whether
/// a mount was made (and so needs the read-only pass).
fn bind(source: &Path, destination: &Path, optional: bool) -> Result<bool, Failure> {
    let src = host(source);
    let target = inside(destination);
    let meta = match std::fs::symlink_metadata(&src) {
        Ok(m) => m,
        Err(_) if optional => return Ok(false),
        Err(e) => {
            return Err(Failure {
                stage: "mount",
                message: format!("bind source {}: {e}", source.display()),
            });
        }
    };
    if meta.file_type().is_symlink() && source == destination {
        let link = std::fs::read_link(&src).map_err(fail("mount", source.display()))?;
        if let Some(parent) = target.parent() {
            mkdir_p(parent)?;
        }
        symlink(&link, &target)
            .map_err(fail("mount", format!("link {}", destination.display())))?;
        return Ok(false);
    }
    if std::fs::metadata(&src).map(|m| m.is_dir()).unwrap_or(false) {
        mkdir_p(&target)?;
    } else {
        touch(&target)?;
    }
    let none: Option<&str> = None;
    mount(
        Some(&src),
        &target,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(fail(
        "mount",
        format!("bind {} on {}", source.display(), destination.display()),
    ))?;
    Ok(true)
}

/// Image mode: the root tmpfs gets each top-level entry of the unpacked image
/// (directories and files bound read-only, symlinks copied), so mount points
/// the sandbox needs (/dev, /proc, /tmp, bind targets) can be created on the
/// tmpfs without writing into the image.
fn populate_from_rootfs(rootfs: &Path, remounts: &mut Vec<(PathBuf, bool)>) -> Result<(), Failure> {
    let dir = host(rootfs);
    let entries = std::fs::read_dir(&dir).map_err(fail("rootfs", rootfs.display()))?;
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
        let meta = std::fs::symlink_metadata(&src).map_err(fail("rootfs", src.display()))?;
        let target = inside(&inner);
        if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&src).map_err(fail("rootfs", src.display()))?;
            symlink(&link, &target).map_err(fail("rootfs", target.display()))?;
            continue;
        }
        if meta.is_dir() {
            mkdir_p(&target)?;
        } else if meta.is_file() {
            touch(&target)?;
        } else {
            continue;
        }
        let none: Option<&str> = None;
        mount(
            Some(&src),
            &target,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .map_err(fail("rootfs", format!("bind {}", inner.display())))?;
        remounts.push((inner, false));
    }
    Ok(())
}

const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn build_dev() -> Result<(), Failure> {
    let dev = inside(Path::new("/dev"));
    mkdir_p(&dev)?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755"),
    )
    .map_err(fail("dev", "mount /dev"))?;
    let none: Option<&str> = None;
    for node in DEV_NODES {
        let target = dev.join(node);
        touch(&target)?;
        mount(
            Some(&host(&Path::new("/dev").join(node))),
            &target,
            none,
            MsFlags::MS_BIND,
            none,
        )
        .map_err(fail("dev", format!("bind /dev/{node}")))?;
        remount_one(&target, false, MsFlags::MS_NOEXEC)?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(name)).map_err(fail("dev", format!("link /dev/{name}")))?;
    }
    Ok(())
}

/// The mount flags a remount must keep (the kernel refuses to clear locked
/// flags of mounts inherited from a more privileged namespace).
fn kept_flags(path: &Path) -> Result<MsFlags, Failure> {
    let st = statvfs(path).map_err(fail("remount", path.display()))?;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    Ok(out)
}

/// Remounts one mount read-only (or not) plus nosuid and `extra`, keeping its
/// locked flags, and checks the result.
fn remount_one(path: &Path, readonly: bool, extra: MsFlags) -> Result<(), Failure> {
    let mut flags = kept_flags(path)? | MsFlags::MS_NOSUID | extra;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    let none: Option<&str> = None;
    mount(
        none,
        path,
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
        none,
    )
    .map_err(fail("remount", path.display()))?;
    let got = statvfs(path)
        .map_err(fail("remount", path.display()))?
        .flags();
    if (readonly && !got.contains(FsFlags::ST_RDONLY)) || !got.contains(FsFlags::ST_NOSUID) {
        return Err(Failure {
            stage: "remount",
            message: format!("{}: read-only/nosuid remount did not take", path.display()),
        });
    }
    Ok(())
}

/// Remounts a bind and every mount below it.
fn remount_tree(path: &Path, readonly: bool) -> Result<(), Failure> {
    // Our own mount table, through the host's /proc (still reachable during
    // setup); mount points are relative to the scratch root.
    let text = std::fs::read_to_string(Path::new(OLDROOT).join("proc/self/mountinfo"))
        .map_err(fail("remount", "read mountinfo"))?;
    let mounts = mountinfo::parse(&text).map_err(fail("remount", "parse mountinfo"))?;
    let mut points: Vec<PathBuf> = mounts
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(path))
        .collect();
    points.dedup();
    if points.is_empty() {
        points.push(path.to_path_buf());
    }
    for p in points {
        remount_one(&p, readonly, MsFlags::MS_NODEV)?;
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
        mount(
            Some(&target),
            &target,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .map_err(fail("proc", format!("bind {}", p.display())))?;
        remount_tree(&target, true)?;
    }
    for p in &plan.masked {
        let target = inside(p);
        let Ok(meta) = std::fs::symlink_metadata(&target) else {
            continue;
        };
        if meta.is_dir() {
            mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=0555"),
            )
            .map_err(fail("proc", format!("mask {}", p.display())))?;
        } else {
            mount(
                Some(&host(Path::new("/dev/null"))),
                &target,
                none,
                MsFlags::MS_BIND,
                none,
            )
            .map_err(fail("proc", format!("mask {}", p.display())))?;
            remount_one(&target, true, MsFlags::MS_NOEXEC)?;
        }
    }
    Ok(())
}

/// `pivot_root` into the new root and detach the scratch root (which holds
/// the host's root below it).
fn enter_root() -> Result<(), Failure> {
    nix::unistd::chdir(NEWROOT).map_err(fail("pivot_root", "enter the new root"))?;
    pivot_root(".", ".").map_err(fail("pivot_root", "pivot into the new root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail("pivot_root", "detach the old root"))?;
    nix::unistd::chdir("/").map_err(fail("pivot_root", "chdir /"))?;
    Ok(())
}

fn verify_cwd(workdir: &Path) -> Result<(), Failure> {
    let cwd = nix::unistd::getcwd().map_err(fail("workdir", "cwd is outside the new root"))?;
    let here = nix::sys::stat::stat(".").map_err(fail("workdir", "stat ."))?;
    let there = nix::sys::stat::stat(&cwd).map_err(fail("workdir", cwd.display()))?;
    if !cwd.is_absolute() || (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino) {
        return Err(Failure {
            stage: "workdir",
            message: format!("cwd {} is not inside the new root", workdir.display()),
        });
    }
    Ok(())
}

/// Drops every capability: bounding set, ambient, then effective, permitted
/// and inheritable, with securebits locked so uid 0 cannot regain any.
fn drop_capabilities(cap_last: u32) -> Result<(), Failure> {
    sys::lock_securebits().map_err(fail("capabilities", "lock securebits"))?;
    for cap in 0..=cap_last {
        sys::capbset_drop(cap).map_err(fail(
            "capabilities",
            format!("drop {cap} from the bounding set"),
        ))?;
    }
    sys::ambient_clear().map_err(fail("capabilities", "clear the ambient set"))?;
    sys::capset_empty().map_err(fail(
        "capabilities",
        "clear effective/permitted/inheritable",
    ))?;
    Ok(())
}

fn verify_no_capabilities() -> Result<(), Failure> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(fail("capabilities", "read /proc/self/status"))?;
    for key in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or("missing");
        if value.chars().any(|c| c != '0') || value.is_empty() {
            return Err(Failure {
                stage: "capabilities",
                message: format!("{key} is {value} after dropping every capability"),
            });
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
                    stage: "exec",
                    message: "program path has a NUL byte".into(),
                }
            });
        }
    }
    Err(Failure {
        stage: "exec",
        message: format!("{name}: command not found in PATH"),
    })
}

/// The command's process: last privilege drops, seccomp, exec.
fn exec_command(plan: &Plan) -> ! {
    let report_fd = plan.report_fd;
    let exec_fail = |f: Failure, code: i32| -> ! {
        let msg = f.message.replace(['\n', '\t'], " ");
        report(report_fd, &format!("E\t{}\t{}\n", f.stage, msg));
        sys::exit_now(code)
    };
    if let Err(f) = prepare_exec(plan) {
        exec_fail(f, 125);
    }
    let program = match resolve_program(plan) {
        Ok(p) => p,
        Err(f) => exec_fail(f, 127),
    };
    // Seccomp last: after this only execve (and the failure report) run.
    for prog in &plan.programs {
        if let Err(e) = sys::seccomp_install(prog) {
            exec_fail(
                Failure {
                    stage: "seccomp",
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
            stage: "exec",
            message: format!("{}: {err}", program.to_string_lossy()),
        },
        code,
    )
}

fn prepare_exec(plan: &Plan) -> Result<(), Failure> {
    nix::unistd::setsid().map_err(fail("exec", "start a new session"))?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(fail("exec", "set the parent-death signal"))?;
    for (i, fd) in plan.stdio.iter().enumerate() {
        if let Some(fd) = fd {
            sys::dup2(*fd, i as RawFd).map_err(fail("exec", format!("install fd {i}")))?;
        }
    }
    // Every fd above 2 is closed, leaked ones included; the report pipe is
    // close-on-exec and disappears at exec.
    close_all_but(plan.report_fd);
    sys::set_cloexec(plan.report_fd).map_err(fail("exec", "mark the report pipe close-on-exec"))?;
    for rl in &plan.rlimits {
        apply_rlimit(rl)?;
    }
    sys::umask(0o022);
    nix::sys::prctl::set_no_new_privs().map_err(fail("exec", "set no_new_privs"))?;
    drop_capabilities(plan.cap_last)?;
    verify_no_capabilities()?;
    Ok(())
}

fn apply_rlimit(rl: &Rlimit) -> Result<(), Failure> {
    let (_, cur_hard) = sys::getrlimit(rl.resource)
        .map_err(fail("rlimits", format!("read rlimit {}", rl.resource)))?;
    // Raising a hard limit needs privilege on the host; a profile can only
    // lower what the runner has.
    let hard = rl.hard.min(cur_hard);
    let soft = rl.soft.min(hard);
    sys::setrlimit(rl.resource, soft, hard)
        .map_err(fail("rlimits", format!("set rlimit {}", rl.resource)))
}
