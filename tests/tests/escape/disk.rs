//! Disk exhaustion: a build filling its `/tmp` (a size-capped tmpfs) or
//! growing its writable workspace past the limit is stopped with
//! `limitHit: "disk"`, whether it goes on writing or exits at once, a
//! directory it makes unreadable included; the host keeps its free space
//! but for the caps. A build under the limits is untouched and its growth
//! recorded.

use crate::harness::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// `run --json` of a shell script with the workspace `ws` bound writable at
/// `/ws`.
fn run_in(mode: Mode, ws: &Path, extra: &[&str], script: &str) -> (Value, Option<i32>) {
    let deleg = Delegation::new(mode);
    let bind = format!("{}:/ws", ws.display());
    let mut args = vec![
        "--cgroup-parent",
        &deleg.parent_arg,
        "--bind",
        &bind,
        "--json",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    let mut cmd = runner(mode);
    cmd.args(run_args(&args));
    let out = output_within(cmd, Duration::from_secs(120));
    (last_json(&out), out.status.code())
}

/// Allocated bytes below `dir`, as du counts them.
fn du(dir: &Path) -> u64 {
    let out = std::process::Command::new("du")
        .args(["-s", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn free_bytes(dir: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(dir).unwrap();
    st.blocks_available() as u64 * st.fragment_size() as u64
}

/// A filesystem of its own for the workspace (a 1 GiB tmpfs, mounted by the
/// test, which runs as root), so its free space moves with this test's
/// writes alone, not with whatever else the machine writes meanwhile.
struct ScratchFs {
    dir: tempfile::TempDir,
}

impl ScratchFs {
    fn new() -> ScratchFs {
        let dir = shared_dir(true);
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("size=1g,mode=0777"),
        )
        .expect("mount a scratch tmpfs (the escape suite runs as root)");
        ScratchFs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn tmp_full(mode: Mode) {
    let ws = shared_dir(true);
    // Writing on after ENOSPC (the run is stopped, not left to its timeout)
    // and exiting at once after it: both are the disk limit.
    for script in [
        "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>/dev/null; echo wrote; sleep 60",
        "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>/dev/null; exit 0",
    ] {
        let (v, code) = run_in(mode, ws.path(), &["--tmp-size", "8M"], script);
        assert_eq!(v["limitHit"], "disk", "{mode:?} {script}: {v}");
        assert_eq!(v["limits"]["tmpBytes"], 8 << 20, "{v}");
        if script.contains("sleep") {
            assert_eq!(code, Some(128 + libc::SIGKILL), "{v}");
        }
    }
    // The same writes under the default cap (1 GiB) are fine.
    let (v, code) = run_in(
        mode,
        ws.path(),
        &[],
        "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>/dev/null",
    );
    assert_eq!((v["limitHit"].clone(), code), (Value::Null, Some(0)), "{v}");
    assert_eq!(v["limits"]["tmpBytes"], 1 << 30, "{v}");
}

both_modes!(a_full_tmp_stops_the_run, super::tmp_full);

fn workspace_full(mode: Mode) {
    let ws = ScratchFs::new();
    let free_before = free_bytes(ws.path());
    // 1 GiB against a 16 MiB limit: stopped long before the end.
    let (v, code) = run_in(
        mode,
        ws.path(),
        &["--workspace-size", "16M"],
        "dd if=/dev/zero of=/ws/fill bs=1M count=1024 2>/dev/null; echo finished",
    );
    assert_eq!(v["limitHit"], "disk", "{mode:?}: {v}");
    assert_eq!(code, Some(128 + libc::SIGKILL), "{v}");
    assert_eq!(v["limits"]["workspaceBytes"], 16 << 20, "{v}");
    let growth = v["workspaceGrowthBytes"].as_u64().unwrap();
    assert!(growth > 16 << 20, "reported growth {growth}");
    let used = du(ws.path());
    assert!(
        used < 512 << 20,
        "{mode:?}: the workspace holds {used} bytes"
    );
    // The filesystem lost what the workspace holds and nothing more.
    let lost = free_before.saturating_sub(free_bytes(ws.path()));
    assert!(
        lost <= used + (1 << 20),
        "{mode:?}: {lost} bytes of free space lost, the workspace holds {used}"
    );
    std::fs::remove_file(ws.path().join("fill")).unwrap();

    // Past the limit and gone before the watcher's next look: the final
    // measurement reports it.
    let (v, _) = run_in(
        mode,
        ws.path(),
        &["--workspace-size", "1M"],
        "head -c 4194304 /dev/zero > /ws/quick",
    );
    assert_eq!(v["limitHit"], "disk", "{mode:?}: {v}");
    std::fs::remove_file(ws.path().join("quick")).unwrap();

    // Hidden behind a directory the build made unreadable (a rootless
    // runner could not look inside; its watcher does, from the sandbox's
    // user namespace).
    let (v, _) = run_in(
        mode,
        ws.path(),
        &["--workspace-size", "16M"],
        "mkdir /ws/h && dd if=/dev/zero of=/ws/h/f bs=1M count=24 2>/dev/null && chmod 000 /ws/h && sleep 60",
    );
    assert_eq!(v["limitHit"], "disk", "{mode:?}: {v}");
    let _ = std::process::Command::new("rm")
        .arg("-rf")
        .arg(ws.path().join("h"))
        .status();

    // Under the limit: untouched, the growth recorded.
    let (v, code) = run_in(
        mode,
        ws.path(),
        &["--workspace-size", "16M"],
        "head -c 1048576 /dev/zero > /ws/small",
    );
    assert_eq!((v["limitHit"].clone(), code), (Value::Null, Some(0)), "{v}");
    let growth = v["workspaceGrowthBytes"].as_u64().unwrap();
    assert!(
        (1 << 20..2 << 20).contains(&growth),
        "1 MiB written, growth {growth}"
    );
}

both_modes!(
    a_workspace_past_its_limit_stops_the_run,
    super::workspace_full
);
