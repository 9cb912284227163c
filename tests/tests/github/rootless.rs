//! The hook as an Actions runner that is not root runs it: the entry script
//! executed as the unprivileged test user (`.ci/setup.d/10-sandbox.sh`
//! creates it) with a cgroup delegated to that user, the image store owned
//! by root and only readable. A job's steps run rootless, write the work
//! directory as that user, and nothing of the job is left. Needs root (to
//! drop to the user and delegate the cgroup); fails loudly without it.

use cloister_tests::bin;
use cloister_tests::hook::{RunnerHost, install_entry_script};
use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn user_ids(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, name]).output().unwrap();
        assert!(
            out.status.success(),
            "the rootless test user {name:?} does not exist: run .ci/setup.d/10-sandbox.sh"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// Cgroups below this process's own, one per hierarchy the default profile's
/// pid limit needs (v1: the pids controller; v2: the unified tree), owned by
/// `uid`; removed on drop.
struct Delegated {
    name: String,
    dirs: Vec<PathBuf>,
}

impl Delegated {
    fn new(uid: u32, gid: u32) -> Delegated {
        let name = format!("cloister-hook-test-{}", std::process::id());
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount_of = |fstype: &str, opt: Option<&str>| -> Option<String> {
            mounts.lines().find_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                let mut post = post.split(' ');
                if post.next()? != fstype {
                    return None;
                }
                let opts = post.nth(1)?;
                if let Some(o) = opt {
                    opts.split(',').any(|x| x == o).then_some(())?;
                }
                Some(pre.split(' ').nth(4)?.to_string())
            })
        };
        let dir = match mount_of("cgroup", Some("pids")) {
            Some(mount) => {
                let path = own
                    .lines()
                    .find_map(|l| {
                        let mut p = l.splitn(3, ':');
                        p.next()?;
                        p.next()?
                            .split(',')
                            .any(|c| c == "pids")
                            .then(|| p.next())?
                    })
                    .expect("own pids cgroup");
                Path::new(&mount)
                    .join(path.trim_start_matches('/'))
                    .join(&name)
            }
            None => {
                let mount = mount_of("cgroup2", None).expect("a cgroup hierarchy");
                let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
                Path::new(&mount)
                    .join(path.trim_start_matches('/'))
                    .join(&name)
            }
        };
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let _ = nix::unistd::chown(&entry.path(), Some(uid.into()), Some(gid.into()));
        }
        nix::unistd::chown(&dir, Some(uid.into()), Some(gid.into())).unwrap();
        Delegated {
            name,
            dirs: vec![dir],
        }
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        for d in &self.dirs {
            if let Ok(entries) = std::fs::read_dir(d) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success(), "chown {}", path.display());
}

#[test]
fn a_job_runs_rootless_as_the_runner_user() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs as root (CI does) and drops to the test user"
    );
    let user =
        std::env::var("CLOISTER_ROOTLESS_USER").unwrap_or_else(|_| "cloister-rootless".into());
    let (uid, gid) = user_ids(&user);
    let mut host = RunnerHost::new();
    // The user reaches the host's directories; the work directory and the
    // hook's state are its own, the store stays root's.
    std::fs::set_permissions(host.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        host.dir.path().join("_layout"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    chown_tree(&host.work, uid, gid);
    std::fs::create_dir_all(&host.state).unwrap();
    std::fs::set_permissions(&host.state, std::fs::Permissions::from_mode(0o700)).unwrap();
    chown_tree(&host.state, uid, gid);
    // Binaries the user can execute wherever the checkout lives.
    let staged = host.dir.path().join("bin");
    std::fs::create_dir(&staged).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["cloister-runner", "cloister-runner-full"] {
        std::fs::copy(bin(name), staged.join(name)).unwrap();
    }
    let cgroup = Delegated::new(uid, gid);
    let entry = host.dir.path().join("rootless-hook.sh");
    install_entry_script(
        &entry,
        &[
            (
                "CLOISTER_RUNNER",
                staged.join("cloister-runner-full").display().to_string(),
            ),
            ("CLOISTER_STORE", host.store.display().to_string()),
            ("CLOISTER_HOOK_STATE", host.state.display().to_string()),
            ("CLOISTER_CGROUP_PARENT", cgroup.name.clone()),
            ("CLOISTER_DAEMON_SOCKET", String::new()),
            ("CLOISTER_TRUSTED_KEY", String::new()),
        ],
    );
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
    host.entry = entry;
    host.user = Some(user.clone());

    let (out, response) = host.drive(&host.request("prepare-job", &json!({}), ""), &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "prepare_job as {user}: {err}");
    let state = serde_json::from_str::<serde_json::Value>(&response).unwrap()["state"].clone();
    host.script(
        "rootless.sh",
        "echo inside uid=$(id -u)\necho built > /__w/repo/repo/rootless.txt\nexit 4\n",
    );
    let _ = std::fs::set_permissions(
        host.work.join("_temp/rootless.sh"),
        std::fs::Permissions::from_mode(0o644),
    );
    let (out, _) = host.drive(&host.request("run-script-step", &state, "rootless.sh"), &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The step runs as the runner's user (mapped to itself in the
    // sandbox's user namespace), with no capabilities.
    assert!(text.contains(&format!("inside uid={uid}")), "{text}");
    let written = host.work.join("repo/repo/rootless.txt");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "built\n");
    assert_eq!(
        std::fs::metadata(&written).unwrap().uid(),
        uid,
        "owned by the runner's user"
    );
    // The step's cgroup went below the delegated one and is gone.
    for d in &cgroup.dirs {
        let left: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .collect();
        assert!(
            left.is_empty(),
            "run cgroups left in {}: {left:?}",
            d.display()
        );
    }
    let (out, _) = host.drive(&host.request("cleanup-job", &state, ""), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(host.records().is_empty());
    // The store stayed root's: nothing of it was changed to the user.
    assert_eq!(
        std::fs::metadata(host.store.join("images")).unwrap().uid(),
        0
    );
}
