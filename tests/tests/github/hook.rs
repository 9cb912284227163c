//! The container hooks driven exactly as the Actions runner drives them:
//! the shipped entry script run with bash, one request fixture (written from
//! the contract's published examples) on stdin, an empty response file made
//! beforehand. A whole job (prepare, script step, container step, cleanup)
//! and every refused request, each with its one-line message.

use cloister_tests::github_tool;
use cloister_tests::hook::RunnerHost;
use serde_json::{Value, json};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::Output;

/// What a job could put into the entry script's environment: none of it
/// may redirect the hook (binary, store, state, PATH lookups).
const HOSTILE_ENV: &[(&str, &str)] = &[
    ("CLOISTER_RUNNER", "/bin/false"),
    ("CLOISTER_STORE", "/nonexistent-store"),
    ("CLOISTER_HOOK_STATE", "/tmp"),
    ("CLOISTER_PROFILE", "dev"),
    ("CLOISTER_PROFILE_DIR", "/nonexistent-profiles"),
    ("PATH", "/nonexistent-bin:/usr/bin:/bin"),
];

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Prepares a job; returns the response document.
fn prepare(host: &RunnerHost) -> Value {
    let (out, response) = host.drive(&host.request("prepare-job", &json!({}), ""), HOSTILE_ENV);
    assert!(out.status.success(), "prepare_job: {}", stderr(&out));
    serde_json::from_str(&response).unwrap_or_else(|e| panic!("response {response:?}: {e}"))
}

/// The response against the contract's response schema, by check-jsonschema.
fn check_response_schema(host: &RunnerHost, response: &Value) {
    let file = host.dir.path().join("response.json");
    std::fs::write(&file, response.to_string()).unwrap();
    let out = std::process::Command::new(github_tool("check-jsonschema"))
        .arg("--schemafile")
        .arg(cloister_tests::fixture(
            "github-hooks/prepare-job-response.schema.json",
        ))
        .arg(&file)
        .output()
        .expect("run check-jsonschema");
    assert!(
        out.status.success(),
        "the response does not match the contract: {response}\n{}{}",
        stdout(&out),
        stderr(&out)
    );
}

fn processes_with(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .contains(marker)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

#[test]
fn a_job_runs_every_step_sandboxed_and_cleanup_leaves_nothing() {
    let host = RunnerHost::new();

    // prepare_job: the response is the contract's shape; the job is recorded.
    let (out, text) = host.drive(&host.request("prepare-job", &json!({}), ""), HOSTILE_ENV);
    assert!(out.status.success(), "prepare_job: {}", stderr(&out));
    let note = stderr(&out);
    assert!(note.contains("prepared"), "{note}");
    assert!(
        note.contains("not mounted: /var/run/docker.sock"),
        "the Docker socket is dropped, and said so: {note}"
    );
    let response: Value = serde_json::from_str(&text).unwrap();
    check_response_schema(&host, &response);
    assert_eq!(response["isAlpine"], false, "{response}");
    assert_eq!(response["context"]["container"]["network"], "none");
    let state = response["state"].clone();
    let id = state["cloisterJob"]
        .as_str()
        .expect("our job id in state")
        .to_string();
    assert_eq!(
        response["context"]["container"]["id"],
        format!("cloister-{id}")
    );
    assert_eq!(host.records(), [format!("{id}.json")]);

    // A host the step must not reach: a TCP listener on the host's loopback.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let secret = host.dir.path().join("host-secret.txt");
    std::fs::write(&secret, "host only").unwrap();
    let marker = format!("{}", 4000 + std::process::id() % 1000);
    host.script(
        "step-1.sh",
        &format!(
            "echo hello from the step\n\
             echo node_env=$NODE_ENV\n\
             echo path=$PATH\n\
             echo home=$HOME\n\
             echo pwd=$(pwd)\n\
             echo ci=$CI actions=$GITHUB_ACTIONS\n\
             echo key=$CLOISTER_PUBLIC_KEY $(cat $CLOISTER_PUBLIC_KEY | busybox head -1)\n\
             echo host_work=$CLOISTER_HOST_WORK\n\
             echo built > /__w/repo/repo/out.txt\n\
             echo result=ok >> \"$GITHUB_OUTPUT\"\n\
             cat /__e/README\n\
             if touch /__e/planted 2>/dev/null; then echo externals-writable; else echo externals-read-only; fi\n\
             for p in /var/run/docker.sock {secret} {state} {store} /etc/passwd /root /usr/bin/cargo; do\n\
               if [ -e \"$p\" ]; then echo \"visible $p\"; fi\n\
             done\n\
             if wget -q -T 3 -O- http://127.0.0.1:{port}/ 2>/dev/null; then echo network-reached; else echo no-network; fi\n\
             echo interfaces=$(grep : /proc/net/dev | busybox cut -d: -f1 | busybox tr -d ' ')\n\
             (exec sleep {marker}) &\n\
             exit 3\n",
            secret = secret.display(),
            state = host.state.display(),
            store = host.store.display(),
        ),
    );
    let (out, response) = host.drive(
        &host.request("run-script-step", &state, "step-1.sh"),
        HOSTILE_ENV,
    );
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the step's status: {text}{}",
        stderr(&out)
    );
    assert!(
        response.is_empty(),
        "run_script_step writes no response: {response}"
    );
    let host_work_line = format!("host_work={}", host.work.display());
    for line in [
        "hello from the step",
        "node_env=development",
        "path=/foo/bar:/__w/_tool/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "home=/github/home",
        "pwd=/__w/repo/repo",
        "ci=true actions=true",
        "key=/cloister/attestor-public.pem -----BEGIN PUBLIC KEY-----",
        host_work_line.as_str(),
        "runner externals",
        "externals-read-only",
        "no-network",
        "interfaces=lo",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in the step's output:\n{text}"
        );
    }
    assert!(
        !text.contains("visible"),
        "host files or the Docker socket reached:\n{text}"
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the host's listener got a connection"
    );
    // What the step wrote into the runner's work directory is there.
    assert_eq!(
        std::fs::read_to_string(host.work.join("repo/repo/out.txt")).unwrap(),
        "built\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.work.join("_temp/_runner_file_commands/set_output_1"))
            .unwrap(),
        "result=ok\n"
    );
    assert!(!host.externals.join("planted").exists());
    assert!(
        processes_with(&format!("sleep {marker}")).is_empty(),
        "a process of the step outlived it"
    );

    // A container step on an image from the store.
    let (out, _) = host.drive(&host.request("run-container-step", &state, ""), HOSTILE_ENV);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "run_container_step: {text}{}",
        stderr(&out)
    );
    for line in [
        "container step in /github/workspace",
        "workspace mounted",
        "production",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?}:\n{text}");
    }

    // State round-trips: only the state prepare_job returned is accepted.
    host.script("step-2.sh", "echo second step\n");
    let other = json!({"cloisterJob": "01890000-0000-7000-8000-000000000000"});
    let (out, _) = host.drive(
        &host.request("run-script-step", &other, "step-2.sh"),
        HOSTILE_ENV,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not prepared"), "{}", stderr(&out));
    let (out, _) = host.drive(
        &host.request("run-script-step", &state, "step-2.sh"),
        HOSTILE_ENV,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "second step\n");

    // A step that swaps a directory it may write for a link out of the
    // work directory does not get the link's target bound into the next.
    host.script(
        "step-3.sh",
        // (/__w/_tool is a mount point in the step; the home's source is
        // reachable through /__w/_temp and is not)
        "rm -rf /__w/_temp/_github_home && ln -s /etc /__w/_temp/_github_home && echo swapped\n",
    );
    let (out, _) = host.drive(
        &host.request("run-script-step", &state, "step-3.sh"),
        HOSTILE_ENV,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, _) = host.drive(
        &host.request("run-script-step", &state, "step-2.sh"),
        HOSTILE_ENV,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).is_empty(), "the step ran: {}", stdout(&out));
    assert!(
        stderr(&out).contains("changed since prepare_job"),
        "{}",
        stderr(&out)
    );
    let home = host.work.join("_temp/_github_home");
    assert_eq!(
        std::fs::read_link(&home).unwrap(),
        std::path::Path::new("/etc")
    );
    std::fs::remove_file(&home).unwrap();
    std::fs::create_dir(&home).unwrap();

    // cleanup_job: nothing of the job is left, and its state is dead.
    let (out, _) = host.drive(&host.request("cleanup-job", &state, ""), HOSTILE_ENV);
    assert!(out.status.success(), "cleanup_job: {}", stderr(&out));
    assert!(stderr(&out).contains("cleaned up"), "{}", stderr(&out));
    assert!(
        host.records().is_empty(),
        "records left: {:?}",
        host.records()
    );
    let leftovers: Vec<_> = std::fs::read_dir(host.state.join("jobs"))
        .unwrap()
        .collect();
    assert!(
        leftovers.is_empty(),
        "files left in the hook's state: {leftovers:?}"
    );
    assert!(processes_with(&format!("sleep {marker}")).is_empty());
    let (out, _) = host.drive(
        &host.request("run-script-step", &state, "step-2.sh"),
        HOSTILE_ENV,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cleaned up"), "{}", stderr(&out));
}

#[test]
fn a_job_without_a_prepared_container_runs_nothing() {
    let host = RunnerHost::new();
    host.script("s.sh", "echo ran\n");
    for state in [json!({}), Value::Null] {
        let (out, _) = host.drive(&host.request("run-script-step", &state, "s.sh"), &[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stdout(&out).is_empty(), "nothing ran: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("no prepared job") && err.contains("ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER"),
            "{err}"
        );
    }
    // cleanup_job after a failed prepare_job has nothing to do, and says so.
    let (out, _) = host.drive(&host.request("cleanup-job", &json!({}), ""), &[]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("nothing to clean up"));
}

type Patch = fn(&mut Value, &RunnerHost);

#[test]
fn every_bad_request_is_refused_with_its_message() {
    let host = RunnerHost::new();
    let state = prepare(&host)["state"].clone();
    host.script("s.sh", "echo ran\n");
    let before = host.records();
    let cases: &[(&str, &str, Patch, &str)] = &[
        (
            "unknown command",
            "cleanup-job",
            |r, _| r["command"] = json!("job_cleanup"),
            "unknown command \"job_cleanup\"",
        ),
        (
            "unknown field",
            "prepare-job",
            |r, _| r["args"]["container"]["privileged"] = json!(true),
            "unknown field `privileged`",
        ),
        (
            "unpinned image",
            "prepare-job",
            |r, _| r["args"]["container"]["image"] = json!("node:22"),
            "image \"node:22\" is not pinned by digest",
        ),
        (
            "image not in the store",
            "prepare-job",
            |r, _| {
                r["args"]["container"]["image"] =
                    json!(format!("busybox@sha256:{}", "0".repeat(64)))
            },
            "is not in the runner's image store",
        ),
        (
            "services",
            "prepare-job",
            |r, _| {
                r["args"]["services"] = json!([{"contextName": "redis", "image": "redis", "portMappings": ["6379:6379"]}])
            },
            "service containers are refused",
        ),
        (
            "port mappings",
            "prepare-job",
            |r, _| r["args"]["container"]["portMappings"] = json!(["80:8080"]),
            "port mappings are refused",
        ),
        (
            "volumes",
            "prepare-job",
            |r, _| r["args"]["container"]["userMountVolumes"] = json!([{"sourceVolumePath": "/etc", "targetVolumePath": "/host-etc", "readOnly": true}]),
            "container `volumes` are refused",
        ),
        (
            "options",
            "prepare-job",
            |r, _| r["args"]["container"]["createOptions"] = json!("--privileged"),
            "container `options` are refused",
        ),
        (
            "no container",
            "prepare-job",
            |r, _| r["args"]["container"] = Value::Null,
            "the job has no container",
        ),
        (
            "no image",
            "prepare-job",
            |r, _| r["args"]["container"]["image"] = json!(""),
            "container.image is required",
        ),
        (
            "no working directory",
            "prepare-job",
            |r, _| r["args"]["container"]["workingDirectory"] = Value::Null,
            "workingDirectory is required",
        ),
        (
            "relative working directory",
            "prepare-job",
            |r, _| r["args"]["container"]["workingDirectory"] = json!("/__w/../etc"),
            "must be a clean absolute path",
        ),
        (
            "no work mount",
            "prepare-job",
            |r, _| {
                let mounts = r["args"]["container"]["systemMountVolumes"]
                    .as_array_mut()
                    .unwrap();
                mounts.retain(|m| m["targetVolumePath"] != "/__w");
            },
            "systemMountVolumes entry for /__w",
        ),
        (
            "mount target outside the contract",
            "prepare-job",
            |r, h| {
                r["args"]["container"]["systemMountVolumes"].as_array_mut().unwrap().push(json!({"sourceVolumePath": h.work.join("_tool"), "targetVolumePath": "/etc", "readOnly": false}));
            },
            "mount target /etc is not one of the runner's",
        ),
        (
            "mount source outside the work directory",
            "prepare-job",
            |r, _| {
                for m in r["args"]["container"]["systemMountVolumes"]
                    .as_array_mut()
                    .unwrap()
                {
                    if m["targetVolumePath"] == "/__w/_tool" {
                        m["sourceVolumePath"] = json!("/etc");
                    }
                }
            },
            "lies outside the runner's work directory",
        ),
        (
            "no response file",
            "prepare-job",
            |r, _| r["responseFile"] = Value::Null,
            "prepare_job: responseFile is required",
        ),
        (
            "Dockerfile step",
            "run-container-step",
            |r, h| {
                r["args"]["image"] = Value::Null;
                r["args"]["dockerfile"] = json!(h.work.join("_actions/o/a/Dockerfile"));
            },
            "Dockerfile steps are refused",
        ),
        (
            "unpinned step image",
            "run-container-step",
            |r, _| r["args"]["image"] = json!("docker://alpine:3"),
            "is not pinned by digest",
        ),
        (
            "container step without entrypoint",
            "run-container-step",
            |r, _| r["args"]["entryPoint"] = Value::Null,
            "give the action an `entrypoint`",
        ),
        (
            "container step mount outside",
            "run-container-step",
            |r, _| {
                r["args"]["systemMountVolumes"].as_array_mut().unwrap().push(json!({"sourceVolumePath": "/root", "targetVolumePath": "/github/workspace2", "readOnly": false}));
            },
            "mount target /github/workspace2 is not one of the runner's",
        ),
        (
            "script step without entry point",
            "run-script-step",
            |r, _| r["args"]["entryPoint"] = Value::Null,
            "run_script_step: entryPoint is required",
        ),
        (
            "script step without working directory",
            "run-script-step",
            |r, _| r["args"]["workingDirectory"] = Value::Null,
            "run_script_step: workingDirectory is required",
        ),
        (
            "bad env name",
            "run-script-step",
            |r, _| r["args"]["environmentVariables"]["A=B"] = json!("x"),
            "is not a valid name=value",
        ),
        (
            "forged state",
            "run-script-step",
            |r, _| r["state"] = json!({"cloisterJob": "../../etc/passwd"}),
            "is not a job id this hook issued",
        ),
        (
            "cleanup with args",
            "cleanup-job",
            |r, _| r["args"] = json!({"force": true}),
            "takes no args",
        ),
    ];
    for (name, fixture, patch, expected) in cases {
        let mut request = host.request(fixture, &state, "s.sh");
        patch(&mut request, &host);
        let (out, response) = host.drive(&request, HOSTILE_ENV);
        let err = stderr(&out);
        assert!(!out.status.success(), "{name}: accepted\n{err}");
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in {err:?}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{name}: one line: {err:?}"
        );
        assert!(err.starts_with("cloister-runner hook: "), "{name}: {err}");
        assert!(
            response.is_empty(),
            "{name}: a response was written: {response}"
        );
        assert!(
            stdout(&out).is_empty(),
            "{name}: something ran: {}",
            stdout(&out)
        );
        assert_eq!(host.records(), before, "{name}: the records changed");
    }
    // Not JSON at all.
    for input in [&b""[..], b"{\"command\": \"prepare_job\"", b"prepare_job\n"] {
        let out = host.drive_raw(input, &[]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains("malformed request"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    }
}

#[test]
fn a_missing_daemon_socket_or_key_fails_prepare_job_up_front() {
    let mut host = RunnerHost::new();
    let entry = host.dir.path().join("misconfigured-hook.sh");
    cloister_tests::hook::install_entry_script(
        &entry,
        &[
            (
                "CLOISTER_RUNNER",
                cloister_tests::bin("cloister-runner-full")
                    .display()
                    .to_string(),
            ),
            ("CLOISTER_STORE", host.store.display().to_string()),
            ("CLOISTER_HOOK_STATE", host.state.display().to_string()),
            ("CLOISTER_DAEMON_SOCKET", "/nonexistent/api.sock".into()),
        ],
    );
    host.entry = entry;
    let (out, response) = host.drive(&host.request("prepare-job", &json!({}), ""), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("prepare_job: daemon socket /nonexistent/api.sock"),
        "{err}"
    );
    assert!(response.is_empty());
    assert!(host.records().is_empty());
}
