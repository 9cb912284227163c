//! Running `cloister-runner` and the probe as root or as the unprivileged
//! test user, with a per-test delegated cgroup for the rootless half.

use cloister_tests::bin;
use serde_json::Value;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Defines `NAME::root` and `NAME::rootless` tests calling `FUNC(mode)`.
macro_rules! both_modes {
    ($name:ident, $func:path) => {
        mod $name {
            #[test]
            fn root() {
                $func($crate::harness::Mode::Root)
            }
            #[test]
            fn rootless() {
                $func($crate::harness::Mode::Rootless)
            }
        }
    };
}

/// Who runs the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Root,
    Rootless,
}

/// The unprivileged user the rootless suite runs as (created by
/// `.ci/setup.d/10-sandbox.sh`).
pub fn rootless_user() -> (String, u32, u32) {
    let name =
        std::env::var("CLOISTER_ROOTLESS_USER").unwrap_or_else(|_| "cloister-rootless".into());
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, &name])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "the rootless test user {name:?} does not exist: run .ci/setup.d/10-sandbox.sh (as root)"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    let (uid, gid) = (id("-u"), id("-g"));
    (name, uid, gid)
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the escape suite runs as root (CI does) and drops to the test user for the rootless half"
    );
}

/// The built binaries, copied to a world-readable directory so the
/// unprivileged user can execute them wherever the checkout lives.
pub struct Staged {
    _dir: tempfile::TempDir,
    pub runner: PathBuf,
    pub probe: PathBuf,
}

/// The staged binaries, shared by the tests running at the same time and
/// removed when the last of them lets go (a test keeps its `Arc`, or a
/// [`Delegation`] holding one, for as long as it runs commands).
pub fn staged() -> Arc<Staged> {
    static STAGED: Mutex<Weak<Staged>> = Mutex::new(Weak::new());
    let mut slot = STAGED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = slot.upgrade() {
        return s;
    }
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("cloister-escape-")
        .tempdir_in("/tmp")
        .expect("staging dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = |name: &str| {
        let dst = dir.path().join(name);
        std::fs::copy(bin(name), &dst).expect("stage binary");
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
        dst
    };
    let runner = copy("cloister-runner");
    // The front hands every subcommand but `run` to the full binary beside it.
    copy("cloister-runner-full");
    let probe = copy("cloister-probe");
    let s = Arc::new(Staged {
        _dir: dir,
        runner,
        probe,
    });
    *slot = Arc::downgrade(&s);
    s
}

/// Path of the probe inside the sandbox.
pub const PROBE: &str = "/probe/cloister-probe";

/// A `cloister-runner` command for `mode` (as the test user when rootless),
/// with the probe bound at [`PROBE`] and a clean environment.
pub fn runner(mode: Mode) -> Command {
    let s = staged();
    let mut cmd = match mode {
        Mode::Root => Command::new(&s.runner),
        Mode::Rootless => {
            let (name, _, _) = rootless_user();
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={name}"),
                &format!("--regid={name}"),
                "--clear-groups",
                "--",
            ])
            .arg(&s.runner);
            c
        }
    };
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/tmp");
    cmd
}

/// `run` with the probe bound in, plus extra runner arguments.
pub fn run_args(extra: &[&str]) -> Vec<String> {
    let s = staged();
    let mut v: Vec<String> = vec![
        "run".into(),
        "--ro-bind".into(),
        format!("{}:{PROBE}", s.probe.display()),
    ];
    v.extend(extra.iter().map(|a| a.to_string()));
    v
}

/// A cgroup delegated to the test user (rootless mode) or a plain parent
/// (root mode), removed on drop. `parent_arg` is what `--cgroup-parent`
/// gets; `dirs` are its directories per hierarchy.
pub struct Delegation {
    pub parent_arg: String,
    pub dirs: Vec<PathBuf>,
    /// Keeps the staged binaries alive for the test.
    pub staged: Arc<Staged>,
}

static DELEGATION_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Delegation {
    pub fn new(mode: Mode) -> Delegation {
        require_root();
        let name = format!(
            "cloister-test-{}-{}",
            std::process::id(),
            DELEGATION_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut dirs = Vec::new();
        let v1: Vec<(String, String)> = mounts
            .lines()
            .filter_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                let mut post = post.split(' ');
                if post.next()? != "cgroup" {
                    return None;
                }
                let opts = post.nth(1)?;
                let ctrl = ["memory", "pids", "cpu", "cpuacct"]
                    .into_iter()
                    .find(|c| opts.split(',').any(|o| o == *c))?;
                Some((ctrl.to_string(), pre.split(' ').nth(4)?.to_string()))
            })
            .collect();
        if !v1.is_empty() {
            for (ctrl, mount) in v1 {
                let path = own
                    .lines()
                    .find_map(|l| {
                        let mut p = l.splitn(3, ':');
                        p.next()?;
                        let c = p.next()?;
                        c.split(',')
                            .any(|x| x == ctrl)
                            .then(|| p.next().map(str::to_string))?
                    })
                    .expect("own v1 cgroup");
                let dir = Path::new(&mount)
                    .join(path.trim_start_matches('/'))
                    .join(&name);
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        } else {
            let mount = mounts
                .lines()
                .find(|l| l.contains(" - cgroup2 "))
                .and_then(|l| l.split(' ').nth(4))
                .expect("a cgroup hierarchy is mounted")
                .to_string();
            let path = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("v2 cgroup");
            dirs.push(
                Path::new(&mount)
                    .join(path.trim_start_matches('/'))
                    .join(&name),
            );
        }
        for d in &dirs {
            std::fs::create_dir(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
            if mode == Mode::Rootless {
                let (user, _, _) = rootless_user();
                let st = Command::new("chown")
                    .args(["-R", &user])
                    .arg(d)
                    .status()
                    .unwrap();
                assert!(st.success(), "chown {}", d.display());
            }
        }
        Delegation {
            parent_arg: name,
            dirs,
            staged: staged(),
        }
    }

    /// The run directory the runner creates below this delegation for a
    /// runner with pid `pid` (its first run), per hierarchy.
    pub fn run_dirs(&self, runner_pid: u32) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|d| d.join(format!("cloister-{runner_pid}-0")))
            .collect()
    }
}

impl Drop for Delegation {
    fn drop(&mut self) {
        for d in &self.dirs {
            // run cgroups a failed test left behind first
            if let Ok(entries) = std::fs::read_dir(d) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Runs a command to completion with a watchdog: a run that does not end
/// within `limit` is killed and the test fails (a hang is a failure, not a
/// wait).
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    wait_output(child, limit)
}

pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // stdout reaches EOF only when every process holding it is gone.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let out = out_t.join().unwrap();
        let err = err_t.join().unwrap();
        let _ = tx.send((out, err));
    });
    let (stdout, stderr) = rx
        .recv_timeout(limit)
        .expect("a process of the run outlived it and kept its stdout open");
    Output {
        status,
        stdout,
        stderr,
    }
}

/// The JSON object a `--json` run printed as its last stdout line.
pub fn last_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no JSON result; stdout: {text}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).expect("result is JSON")
}

/// Whether any process on the host has `marker` in its command line.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

/// A marker unique to this test process and call.
pub fn marker(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "cloister-marker-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The host's first global IPv4 address (the probe's "host interface" target).
pub fn host_interface_address() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("`ip` (iproute2) is installed by .ci/setup.d/10-sandbox.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_string)
        .expect("the host has a global IPv4 address to probe")
}

/// A directory the test user can read (and, for `writable`, write).
pub fn shared_dir(writable: bool) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("cloister-escape-data-")
        .tempdir_in("/tmp")
        .unwrap();
    let mode = if writable { 0o777 } else { 0o755 };
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

/// The probe's JSON for `subcommand`, run unsandboxed (as root, the
/// control of what the kernel offers) and inside the sandbox for `mode`
/// below `deleg`: `(control, inside)`. Either failing fails the test.
pub fn probe_control_and_inside(
    mode: Mode,
    deleg: &Delegation,
    subcommand: &str,
) -> (Value, Value) {
    let mut control = Command::new(&deleg.staged.probe);
    control.arg(subcommand);
    let control = output_within(control, Duration::from_secs(60));
    assert!(control.status.success(), "the control probe failed");
    let control: Value = serde_json::from_slice(&control.stdout).expect("control probe JSON");
    let mut cmd = runner(mode);
    cmd.args(run_args(&[
        "--cgroup-parent",
        &deleg.parent_arg,
        "--",
        PROBE,
        subcommand,
    ]));
    let inside = output_within(cmd, Duration::from_secs(60));
    assert!(
        inside.status.success(),
        "{mode:?}: {}",
        String::from_utf8_lossy(&inside.stderr)
    );
    let inside: Value = serde_json::from_slice(&inside.stdout).expect("probe JSON");
    (control, inside)
}
