//! The hook's network allow-list, driven as the Actions runner drives it:
//! a node action's step (`/__e/node20/bin/node "/__w/_actions/O/R/SHA/…"`,
//! the script path in the runner's double quotes) of an allow-listed action
//! shares the host's network and keeps every other isolation; every way of
//! almost matching (another action, another SHA, a tag, `..`, a symbolic
//! link, an entry point a step could write) gets none; no step can write
//! the action cache; a bad allow-list refuses every request. And no build
//! profile, `cloister-runner run` flag or job spec can ask for the host's
//! network.
//!
//! Each step runs `cloister-probe suite` (its JSON checks: TCP to a host
//! listener on loopback, an abstract unix socket of the host, interfaces,
//! host files, pids, capabilities, seccomp, read-only mounts…).

use cloister_tests::bin;
use cloister_tests::hook::RunnerHost;
use serde_json::{Value, json};
use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Output;

const SHA: &str = "3d3c42e5aac5ba805825da76410c181273ba90b1";
const OTHER_SHA: &str = "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f";
const NODE: &str = "/__e/node20/bin/node";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A runner host whose allow-list names `acme/fetch@SHA`, with the
/// runner's node in its externals (a shell wrapper: the test image has
/// busybox, not node) and the probe in `_tool`.
struct NetHost {
    host: RunnerHost,
    state: Value,
    listener: TcpListener,
    /// Held so the abstract socket exists while the steps run.
    _abstract: UnixListener,
    abstract_name: String,
    secret: std::path::PathBuf,
}

impl NetHost {
    fn new() -> NetHost {
        use std::os::linux::net::SocketAddrExt;
        let host = RunnerHost::new();
        host.set_network_actions(&[&format!("acme/fetch@{SHA}")]);
        let node = host.externals.join("node20/bin/node");
        std::fs::create_dir_all(node.parent().unwrap()).unwrap();
        std::fs::write(&node, "#!/bin/sh\nexec /bin/sh \"$@\"\n").unwrap();
        set_mode(&node, 0o755);
        let probe = host.work.join("_tool/cloister-probe");
        std::fs::copy(bin("cloister-probe"), &probe).unwrap();
        set_mode(&probe, 0o755);
        let secret = host.dir.path().join("host-secret.txt");
        std::fs::write(&secret, "host only").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        static HOSTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let abstract_name = format!(
            "cloister-hooknet-{}-{}",
            std::process::id(),
            HOSTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        let abstract_listener = UnixListener::bind_addr(&addr).unwrap();
        abstract_listener.set_nonblocking(true).unwrap();
        let (out, response) = host.drive(&host.request("prepare-job", &json!({}), ""), &[]);
        assert!(out.status.success(), "prepare_job: {}", stderr(&out));
        let note = stderr(&out);
        assert!(
            note.contains(&format!(
                "no network but for the steps of acme/fetch@{SHA} (the hook's network allow-list)"
            )) && note.contains("the action cache is read-only"),
            "{note}"
        );
        let state = serde_json::from_str::<Value>(&response).unwrap()["state"].clone();
        NetHost {
            host,
            state,
            listener,
            _abstract: abstract_listener,
            abstract_name,
            secret,
        }
    }

    /// The probing script (what the action's `index.js` is here).
    fn script(&self) -> String {
        format!(
            "echo \"env NODE_OPTIONS=${{NODE_OPTIONS-unset}} LD_PRELOAD=${{LD_PRELOAD-unset}} INPUT_WHO=${{INPUT_WHO-unset}} HOME=$HOME PATH=$PATH SOCKET=${{CLOISTER_RUNNER_SOCKET-unset}}\"\n\
             exec /__w/_tool/cloister-probe suite --tcp {tcp} --abstract {name} --host-file {secret} --ro /__w/_actions --host-pid {pid}\n",
            tcp = self.listener.local_addr().unwrap(),
            name = self.abstract_name,
            secret = self.secret.display(),
            pid = std::process::id(),
        )
    }

    /// Writes the probing script at `rel` under the work directory.
    fn plant(&self, rel: &str) {
        let path = self.host.work.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, self.script()).unwrap();
    }

    /// Runs a node step: `entry` with the script argument as the runner
    /// quotes it, with a hostile environment.
    fn step(&self, entry: &str, script: &str) -> Output {
        let mut request = self.host.request("run-script-step", &self.state, "x.sh");
        request["args"]["entryPoint"] = json!(entry);
        request["args"]["entryPointArgs"] = json!([format!("\"{script}\"")]);
        let env = &mut request["args"]["environmentVariables"];
        env["NODE_OPTIONS"] = json!("--require /__w/_temp/evil.js");
        env["LD_PRELOAD"] = json!("/__w/_temp/evil.so");
        env["INPUT_WHO"] = json!("me");
        self.host.drive(&request, &[]).0
    }

    fn pending_connections(&self) -> usize {
        let mut n = 0;
        loop {
            match self.listener.accept() {
                Ok((mut s, _)) => {
                    let mut b = Vec::new();
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(std::time::Duration::from_millis(200)));
                    let _ = s.read_to_end(&mut b);
                    n += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The probe's checks, by name: whether each was blocked.
fn checks(out: &Output) -> Vec<(String, bool, String)> {
    let text = stdout(out);
    let json = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no probe output:\n{text}\n{}", stderr(out)));
    let v: Value = serde_json::from_str(json).unwrap();
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["blocked"].as_bool().unwrap(),
                c["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Asserts the step ran with no network and every isolation.
fn assert_no_network(net: &NetHost, what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        stdout(out),
        stderr(out)
    );
    for (name, blocked, detail) in checks(out) {
        assert!(blocked, "{what}: {name} not blocked ({detail})");
    }
    assert!(
        !stderr(out).contains("gets the host network"),
        "{what}: {}",
        stderr(out)
    );
    assert_eq!(
        net.pending_connections(),
        0,
        "{what}: the host's listener was reached"
    );
}

#[test]
fn only_a_listed_action_at_its_commit_gets_the_host_network() {
    let net = NetHost::new();
    let listed = format!("/__w/_actions/acme/fetch/{SHA}/dist/index.js");
    net.plant(&format!("_actions/acme/fetch/{SHA}/dist/index.js"));

    // The listed action: the host's network, every other isolation.
    let out = net.step(NODE, &listed);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains(&format!(
            "cloister: this step gets the host network: its script {listed} is action acme/fetch@{SHA}, on the hook's network allow-list"
        )) && log.contains("variables not passed: LD_PRELOAD, NODE_ENV, NODE_OPTIONS"),
        "{log}"
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "env NODE_OPTIONS=unset LD_PRELOAD=unset INPUT_WHO=me HOME=/tmp PATH={} SOCKET=unset",
            cloister_runner::hook::DEFAULT_PATH
        )),
        "{text}"
    );
    let mut reached_host = false;
    let mut saw_interfaces = false;
    for (name, blocked, detail) in checks(&out) {
        if name.starts_with("net.tcp ") {
            assert!(!blocked, "the host's loopback listener: {detail}");
            reached_host = true;
        } else if name == "net.only-loopback" {
            assert!(!blocked, "the host's interfaces: {detail}");
            assert!(detail.split(',').any(|i| i != "lo"), "{detail}");
            saw_interfaces = true;
        } else {
            // The abstract unix socket (a Landlock scope), host files and
            // pids, capabilities, seccomp, the read-only action cache…
            assert!(
                blocked,
                "{name} not blocked with the host network: {detail}"
            );
        }
    }
    assert!(reached_host && saw_interfaces);
    assert_eq!(
        net.pending_connections(),
        1,
        "the host's listener got the step's connection"
    );

    // Almost the listed action: each gets no network.
    net.plant(&format!("_actions/acme/other/{SHA}/dist/index.js"));
    net.plant(&format!("_actions/acme/fetch/{OTHER_SHA}/dist/index.js"));
    net.plant("_actions/acme/fetch/v4/dist/index.js");
    net.plant("_temp/evil.js");
    std::os::unix::fs::symlink(
        "/__w/_temp/evil.js",
        net.host
            .work
            .join(format!("_actions/acme/fetch/{SHA}/dist/link.js")),
    )
    .unwrap();
    // (as a step would make it: a link it may write, to the cache's path
    // inside the sandbox)
    std::os::unix::fs::symlink(
        format!("/__w/_actions/acme/fetch/{SHA}"),
        net.host.work.join("_tool/fetch"),
    )
    .unwrap();
    std::fs::copy(
        net.host.externals.join("node20/bin/node"),
        net.host.work.join("_tool/node"),
    )
    .unwrap();
    let cases: &[(&str, String, String, &str)] = &[
        (
            "an action not on the list",
            NODE.into(),
            format!("/__w/_actions/acme/other/{SHA}/dist/index.js"),
            "acme/other@3d3c42e5aac5ba805825da76410c181273ba90b1 is not on the hook's network allow-list",
        ),
        (
            "the listed action at another commit",
            NODE.into(),
            format!("/__w/_actions/acme/fetch/{OTHER_SHA}/dist/index.js"),
            "is not on the hook's network allow-list",
        ),
        (
            "the listed action by tag",
            NODE.into(),
            "/__w/_actions/acme/fetch/v4/dist/index.js".into(),
            "acme/fetch@v4 is not pinned by a full commit SHA",
        ),
        (
            "a path leaving the listed action by ..",
            NODE.into(),
            format!("/__w/_actions/acme/fetch/{SHA}/../../../../_temp/evil.js"),
            "is not a clean path",
        ),
        (
            "a symbolic link in the listed action",
            NODE.into(),
            format!("/__w/_actions/acme/fetch/{SHA}/dist/link.js"),
            "is a symbolic link",
        ),
        (
            "a link to the listed action from a writable directory",
            NODE.into(),
            "/__w/_tool/fetch/dist/index.js".into(),
            "",
        ),
        (
            "a script outside the action cache",
            NODE.into(),
            "/__w/_temp/evil.js".into(),
            "",
        ),
        (
            "the listed script under the image's shell",
            "sh".into(),
            listed.clone(),
            "is not a program of the runner's externals",
        ),
        (
            "the listed script under a node a step could write",
            "/__w/_tool/node".into(),
            listed.clone(),
            "is not a program of the runner's externals",
        ),
        (
            "the listed script under a node path with ..",
            "/__e/node20/../node20/bin/node".into(),
            listed.clone(),
            "is not a program of the runner's externals",
        ),
    ];
    for (what, entry, script, why) in cases {
        let out = net.step(entry, script);
        assert_no_network(&net, what, &out);
        let log = stderr(&out);
        if why.is_empty() {
            assert!(!log.contains("gets no network"), "{what}: {log}");
        } else {
            assert!(
                log.contains("cloister: this step gets no network: ") && log.contains(why),
                "{what}: expected {why:?} in {log:?}"
            );
        }
    }
}

#[test]
fn no_step_can_change_the_action_cache() {
    let net = NetHost::new();
    let index = net
        .host
        .work
        .join(format!("_actions/acme/fetch/{SHA}/dist/index.js"));
    net.plant(&format!("_actions/acme/fetch/{SHA}/dist/index.js"));
    let before = std::fs::read(&index).unwrap();
    let attempts = format!(
        "cd /__w\n\
         for try in 'echo x > _actions/acme/fetch/{SHA}/dist/index.js' \\\n\
                    'touch _actions/planted' \\\n\
                    'mkdir _actions/acme/new' \\\n\
                    'busybox rm -f _actions/acme/fetch/{SHA}/dist/index.js' \\\n\
                    'busybox ln -s /__w/_temp _actions/acme/link' \\\n\
                    'busybox mv _actions _actions.old' \\\n\
                    'busybox rm -rf _actions' \\\n\
                    'busybox mount -o remount,rw,bind /__w/_actions'; do\n\
           if sh -c \"$try\" 2>/dev/null; then echo \"ALLOWED: $try\"; else echo \"refused: $try\"; fi\n\
         done\n"
    );
    net.host.script("attack.sh", &attempts);
    // An ordinary step, and the listed action's own step.
    let (out, _) = net.host.drive(
        &net.host.request("run-script-step", &net.state, "attack.sh"),
        &[],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert_eq!(text.matches("refused: ").count(), 8, "{text}");
    assert!(!text.contains("ALLOWED"), "{text}");
    let listed = format!("_actions/acme/fetch/{SHA}/dist/attack.js");
    std::fs::write(net.host.work.join(&listed), &attempts).unwrap();
    let out = net.step(NODE, &format!("/__w/{listed}"));
    let text = stdout(&out);
    assert!(
        stderr(&out).contains("gets the host network"),
        "{}",
        stderr(&out)
    );
    assert_eq!(text.matches("refused: ").count(), 8, "{text}");
    assert!(!text.contains("ALLOWED"), "{text}");
    assert_eq!(std::fs::read(&index).unwrap(), before);
    let names: Vec<_> = std::fs::read_dir(net.host.work.join("_actions"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["acme"], "the cache changed");
    assert!(!net.host.work.join("_actions/acme/new").exists());
    assert!(!net.host.work.join("_actions/acme/link").exists());
}

#[test]
fn a_bad_allow_list_refuses_every_request() {
    let host = RunnerHost::new();
    host.script("s.sh", "echo ran\n");
    for (entry, why) in [
        ("acme/fetch@v4", "is not a full commit SHA"),
        ("acme/fetch@3d3c42e", "is not a full commit SHA"),
        ("acme/fetch", "must be OWNER/REPO@<40-hex commit SHA>"),
        (
            "acme/fetch/sub@3d3c42e5aac5ba805825da76410c181273ba90b1",
            "name the repository",
        ),
    ] {
        host.set_network_actions(&[
            "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1",
            entry,
        ]);
        for (fixture, state) in [
            ("prepare-job", json!({})),
            (
                "run-script-step",
                json!({"cloisterJob": "01890000-0000-7000-8000-000000000000"}),
            ),
        ] {
            let (out, response) = host.drive(&host.request(fixture, &state, "s.sh"), &[]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{entry}: {err}");
            assert!(
                err.starts_with(&format!(
                    "cloister-runner hook: configuration: network action {entry:?}"
                )) && err.contains(why),
                "{entry}: {err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
            assert!(stdout(&out).is_empty() && response.is_empty());
            assert!(host.records().is_empty());
        }
    }
}

#[test]
fn no_profile_run_flag_or_job_spec_can_ask_for_the_host_network() {
    let runner = bin("cloister-runner");
    // `cloister-runner run` (what the daemon starts every build with) has
    // no flag for it.
    for flag in [
        ["--network", "host"],
        ["--net", "host"],
        ["--host-network", "true"],
    ] {
        let out = std::process::Command::new(&runner)
            .arg("run")
            .args(flag)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("unexpected argument"),
            "{}",
            stderr(&out)
        );
    }
    // A profile that leaves out the network namespace or joins the host's.
    let default: Value = serde_json::from_str(
        &std::fs::read_to_string(
            cloister_tests::workspace_root().join("sandbox-profiles/default.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    type Patch = fn(&mut Value);
    let patches: [(&str, Patch, &str); 2] = [
        (
            "without",
            |p| {
                p["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != "network")
            },
            "shares the host net namespace",
        ),
        (
            "joined",
            |p| {
                for n in p["linux"]["namespaces"].as_array_mut().unwrap() {
                    if n["type"] == "network" {
                        n["path"] = json!("/proc/1/ns/net");
                    }
                }
            },
            "joins an existing net namespace",
        ),
    ];
    for (name, patch, why) in patches {
        let mut p = default.clone();
        patch(&mut p);
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, p.to_string()).unwrap();
        let out = std::process::Command::new(&runner)
            .arg("run")
            .arg("--profile")
            .arg(&file)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{name}: {}", stderr(&out));
    }
    // A job spec has no field for it.
    let spec = json!({
        "source": {"path": "/src/a", "commit": "0123456789abcdef0123456789abcdef01234567",
                   "uri": "git+https://github.com/o/a", "ref": "refs/heads/main"},
        "command": ["make"],
        "outputs": ["out/*"],
    });
    assert!(cloister_runner::job::spec::JobSpec::from_json(spec.to_string().as_bytes()).is_ok());
    for (key, value) in [
        ("network", json!("host")),
        ("hostNetwork", json!(true)),
        ("netns", json!("/proc/1/ns/net")),
    ] {
        let mut s = spec.clone();
        s[key] = value;
        let err = cloister_runner::job::spec::JobSpec::from_json(s.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("unknown field `{key}`")),
            "{key}: {err}"
        );
    }
}

#[test]
fn the_shipped_allow_list_is_what_the_release_workflow_pins() {
    let root = cloister_tests::workspace_root();
    let workflow =
        std::fs::read_to_string(root.join("cookbook/workflows/org.release.hermetic.yml")).unwrap();
    let mut pinned: Vec<String> = workflow
        .lines()
        .filter_map(|l| l.trim().strip_prefix("uses: "))
        .map(|u| u.split_whitespace().next().unwrap().to_string())
        .collect();
    pinned.sort();
    assert_eq!(pinned.len(), 2, "{pinned:?}");
    for p in &pinned {
        assert!(
            p.parse::<cloister_runner::hook::network::NetworkAction>()
                .is_ok(),
            "{p}"
        );
    }
    let line = |text: &str| -> Vec<String> {
        let value = text
            .lines()
            .find_map(|l| {
                l.trim_start_matches("# ")
                    .strip_prefix("CLOISTER_NETWORK_ACTIONS=\"")
            })
            .expect("a CLOISTER_NETWORK_ACTIONS line")
            .trim_end_matches('"');
        let mut v: Vec<String> = value.split(' ').map(str::to_string).collect();
        v.sort();
        v
    };
    let runbook = std::fs::read_to_string(root.join("cookbook/runbook-github-runner.md")).unwrap();
    assert_eq!(line(&runbook), pinned, "the runbook's allow-list");
    let entry = std::fs::read_to_string(
        root.join("cookbook/workflows/runner-hooks/cloister-container-hook.sh"),
    )
    .unwrap();
    assert_eq!(line(&entry), pinned, "the entry script's example");
    assert!(
        entry.lines().any(|l| l == "CLOISTER_NETWORK_ACTIONS="),
        "the shipped setting is empty: no step gets a network until the operator lists one"
    );
}
