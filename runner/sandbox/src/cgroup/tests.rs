//! Cgroup layout detection and the files written for each limit, exercised
//! against directory layouts in a temp dir (cgroup v2 cannot be exercised
//! for real on a v1 machine; v1 is exercised for real by the escape suite).

use super::*;
use crate::mountinfo;

const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const UNIFIED: &str = "\
25 20 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
";

#[test]
fn hybrid_layout_uses_the_v1_controllers() {
    let layout = Layout::from_mounts(&mountinfo::parse(HYBRID).unwrap()).unwrap();
    let Layout::V1(h) = &layout else {
        panic!("expected v1: {layout:?}")
    };
    assert_eq!(h.len(), 4);
    assert_eq!(layout.version(), "v1");
}

#[test]
fn unified_layout_is_v2() {
    let layout = Layout::from_mounts(&mountinfo::parse(UNIFIED).unwrap()).unwrap();
    assert_eq!(
        layout,
        Layout::V2 {
            mount: "/sys/fs/cgroup".into()
        }
    );
    assert!(matches!(
        Layout::from_mounts(&[]),
        Err(CgroupError::NoHierarchy)
    ));
}

#[test]
fn own_cgroup_reads_v1_and_v2_lines() {
    let text = "4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/user.slice/x.service\n";
    assert_eq!(own_cgroup(text, "memory").as_deref(), Some("/a/b"));
    assert_eq!(own_cgroup(text, "cpuacct").as_deref(), Some("/c"));
    assert_eq!(
        own_cgroup(text, "").as_deref(),
        Some("/user.slice/x.service")
    );
    assert_eq!(own_cgroup(text, "pids"), None);
    assert_eq!(parent_path(Some("deleg"), "/a/b/"), "/a/b/deleg");
    assert_eq!(parent_path(Some("/abs"), "/a/b"), "/abs");
    assert_eq!(parent_path(None, "/a/b"), "/a/b");
}

fn v2_tree(controllers: &str, enabled: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let parent = root.path().join("runner.service");
    std::fs::create_dir(&parent).unwrap();
    std::fs::write(parent.join("cgroup.controllers"), controllers).unwrap();
    std::fs::write(parent.join("cgroup.subtree_control"), enabled).unwrap();
    root
}

#[test]
fn v2_writes_every_limit_and_enables_controllers() {
    let root = v2_tree("cpuset cpu io memory pids", "");
    let layout = Layout::V2 {
        mount: root.path().to_path_buf(),
    };
    let limits = CgroupLimits {
        memory: Some(64 << 20),
        pids: Some(100),
        cpus: Some(MilliCpus(1500)),
    };
    let cg = Cgroup::create_with(&layout, None, "0::/runner.service\n", "run-1", &limits).unwrap();
    let dir = root.path().join("runner.service/run-1");
    assert_eq!(cg.dirs(), vec![dir.clone()]);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(read("memory.max"), (64u64 << 20).to_string());
    assert_eq!(read("pids.max"), "100");
    assert_eq!(read("cpu.max"), "150000 100000");
    let enabled =
        std::fs::read_to_string(root.path().join("runner.service/cgroup.subtree_control")).unwrap();
    assert_eq!(enabled, "+memory +pids +cpu");
    // measurements come from the v2 files
    std::fs::write(dir.join("memory.peak"), "12345\n").unwrap();
    std::fs::write(dir.join("cpu.stat"), "usage_usec 2500\nuser_usec 2000\n").unwrap();
    std::fs::write(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
    )
    .unwrap();
    std::fs::write(dir.join("pids.events"), "max 0\n").unwrap();
    assert_eq!(cg.peak_memory(), Some(12345));
    assert_eq!(cg.cpu_time(), Some(Duration::from_micros(2500)));
    assert!(cg.oom_killed());
    assert!(!cg.pids_limit_hit());
}

#[test]
fn v2_sets_no_swap_and_group_oom_when_the_kernel_offers_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("memory.swap.max"), "max").unwrap();
    std::fs::write(dir.path().join("memory.oom.group"), "0").unwrap();
    let limits = CgroupLimits {
        memory: Some(1 << 20),
        ..Default::default()
    };
    write_v2_limits(dir.path(), &limits).unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    assert_eq!(read("memory.max"), "1048576");
    assert_eq!(read("memory.swap.max"), "0");
    assert_eq!(read("memory.oom.group"), "1");
    assert!(!dir.path().join("pids.max").exists());
}

#[test]
fn v2_leaves_enabled_controllers_alone_and_honours_an_absolute_parent() {
    let root = v2_tree("memory pids", "memory pids");
    let layout = Layout::V2 {
        mount: root.path().to_path_buf(),
    };
    let limits = CgroupLimits {
        pids: Some(5),
        ..Default::default()
    };
    let cg = Cgroup::create_with(&layout, Some("/runner.service"), "", "run", &limits).unwrap();
    assert_eq!(cg.dirs(), vec![root.path().join("runner.service/run")]);
    let parent = root.path().join("runner.service");
    assert_eq!(
        std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap(),
        "memory pids"
    );
}

#[test]
fn v2_refuses_a_missing_controller_for_a_requested_limit() {
    let root = v2_tree("memory pids", "");
    let layout = Layout::V2 {
        mount: root.path().to_path_buf(),
    };
    let limits = CgroupLimits {
        cpus: Some(MilliCpus(500)),
        ..Default::default()
    };
    let err =
        Cgroup::create_with(&layout, None, "0::/runner.service\n", "run", &limits).unwrap_err();
    assert!(matches!(err, CgroupError::NoController("cpu")), "{err}");
    assert!(!root.path().join("runner.service/run").exists());
}

#[test]
fn v1_writes_limits_per_hierarchy() {
    let root = tempfile::tempdir().unwrap();
    let mut hierarchies = Vec::new();
    for ctrl in ["memory", "pids", "cpu", "cpuacct"] {
        let mount = root.path().join(ctrl);
        std::fs::create_dir_all(mount.join("parent")).unwrap();
        hierarchies.push(V1Hierarchy {
            controllers: vec![ctrl.to_string()],
            mount,
            mount_root: "/".into(),
        });
    }
    let layout = Layout::V1(hierarchies);
    let limits = CgroupLimits {
        memory: Some(1 << 30),
        pids: Some(64),
        cpus: Some(MilliCpus(250)),
    };
    let cg = Cgroup::create_with(&layout, Some("/parent"), "", "run", &limits).unwrap();
    // cpuacct carries no limit, so no cgroup is made there
    assert_eq!(cg.dirs().len(), 3);
    assert!(!root.path().join("cpuacct/parent/run").exists());
    let read = |c: &str, f: &str| {
        std::fs::read_to_string(root.path().join(c).join("parent/run").join(f)).unwrap()
    };
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (1u64 << 30).to_string()
    );
    assert_eq!(read("pids", "pids.max"), "64");
    assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "25000");
    std::fs::write(root.path().join("pids/parent/run/pids.events"), "max 2\n").unwrap();
    std::fs::write(
        root.path().join("memory/parent/run/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    )
    .unwrap();
    assert_eq!(cg.cpu_time(), None);
    assert!(cg.pids_limit_hit());
    assert!(!cg.oom_killed());
}

#[test]
fn v1_requires_the_controller_of_each_requested_limit() {
    let root = tempfile::tempdir().unwrap();
    let mount = root.path().join("pids");
    std::fs::create_dir_all(&mount).unwrap();
    let layout = Layout::V1(vec![V1Hierarchy {
        controllers: vec!["pids".into()],
        mount,
        mount_root: "/".into(),
    }]);
    let limits = CgroupLimits {
        memory: Some(1 << 20),
        ..Default::default()
    };
    let err = Cgroup::create_with(&layout, Some("/"), "", "run", &limits).unwrap_err();
    assert!(matches!(err, CgroupError::NoController("memory")), "{err}");
}

#[test]
fn stale_run_cgroups_of_dead_runners_are_removed() {
    let root = tempfile::tempdir().unwrap();
    // pid 0x7ffffffe cannot exist (above pid_max); ours does.
    let stale = root.path().join("cloister-2147483646-0");
    let live = root
        .path()
        .join(format!("cloister-{}-0", std::process::id()));
    let other = root.path().join("unrelated");
    for d in [&stale, &live, &other] {
        std::fs::create_dir(d).unwrap();
    }
    remove_stale(root.path());
    assert!(!stale.exists());
    assert!(live.exists());
    assert!(other.exists());
}

/// The daemon's start-up sweep looks where runs make their cgroups: below
/// the process's own cgroup in each v1 hierarchy of memory, pids and cpu
/// (each with its own path, a mount root stripped), or in the v2 one; it
/// removes only run cgroups of dead owners that are empty.
#[test]
fn stale_runs_are_swept_in_every_hierarchy_a_run_uses() {
    let root = tempfile::tempdir().unwrap();
    let h = |name: &str, ctrls: &[&str], mount_root: &str| {
        let mount = root.path().join(name);
        std::fs::create_dir_all(&mount).unwrap();
        V1Hierarchy {
            controllers: ctrls.iter().map(|c| c.to_string()).collect(),
            mount,
            mount_root: mount_root.into(),
        }
    };
    let layout = Layout::V1(vec![
        h("memory", &["memory"], "/"),
        h("pids", &["pids"], "/"),
        h("cpu", &["cpu", "cpuacct"], "/system.slice"),
        h("blkio", &["blkio"], "/"),
    ]);
    let own = "9:blkio:/\n8:memory:/job/7\n5:pids:/\n3:cpu,cpuacct:/system.slice/runner\n0::/\n";
    let parents = run_parents(&layout, None, own);
    assert_eq!(
        parents,
        vec![
            root.path().join("memory/job/7"),
            root.path().join("pids"),
            root.path().join("cpu/runner"),
        ]
    );
    // Relative and absolute parents resolve as `Cgroup::create` does.
    assert_eq!(
        run_parents(&layout, Some("builds"), own)[0],
        root.path().join("memory/job/7/builds")
    );
    assert_eq!(
        run_parents(&layout, Some("/x"), own)[1],
        root.path().join("pids/x")
    );
    let v2 = Layout::V2 {
        mount: root.path().join("unified"),
    };
    assert_eq!(
        run_parents(&v2, None, "0::/user.slice/runner.service\n"),
        vec![root.path().join("unified/user.slice/runner.service")]
    );

    let dead = "cloister-2147483646-3";
    let live = format!("cloister-{}-0", std::process::id());
    for p in &parents {
        std::fs::create_dir_all(p.join(dead)).unwrap();
        std::fs::create_dir_all(p.join(&live)).unwrap();
    }
    // A dead owner's cgroup that is not empty (here: a child directory,
    // which rmdir refuses as it refuses a cgroup with processes) stays.
    let busy = parents[0].join("cloister-2147483646-4");
    std::fs::create_dir_all(busy.join("child")).unwrap();
    let mut removed = Vec::new();
    let mut busy_left = Vec::new();
    for p in &parents {
        let sweep = remove_stale(p);
        removed.extend(sweep.removed);
        busy_left.extend(sweep.busy);
    }
    removed.sort();
    assert_eq!(busy_left, vec![busy.clone()], "reported as left");
    let mut want: Vec<PathBuf> = parents.iter().map(|p| p.join(dead)).collect();
    want.sort();
    assert_eq!(removed, want);
    for p in &parents {
        assert!(!p.join(dead).exists());
        assert!(p.join(&live).exists(), "a live owner's cgroup stays");
    }
    assert!(busy.exists(), "a non-empty cgroup stays");
}

/// A zombie runner (killed, not yet reaped) owns nothing any more.
#[test]
fn a_zombie_owner_counts_as_dead() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    // Exited but not waited for: a zombie until `wait`.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
    {
        assert!(std::time::Instant::now() < deadline, "never a zombie");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!owner_alive(pid));
    assert!(owner_alive(std::process::id() as i32));
    let root = tempfile::tempdir().unwrap();
    let stale = root.path().join(format!("cloister-{pid}-0"));
    std::fs::create_dir(&stale).unwrap();
    assert_eq!(remove_stale(root.path()).removed, vec![stale]);
    child.wait().unwrap();
}
