//! Driving `cloister-runner hook` the way the GitHub Actions runner does:
//! a runner layout on disk (`_layout/_work` with its `_temp` parts,
//! `_layout/externals`), a busybox image imported into a store of its own,
//! the shipped entry script installed with its settings lines pointed at
//! those, and each request run through
//! `bash --noprofile --norc -e -o pipefail ENTRY.sh` with the JSON on stdin
//! and an empty response file made beforehand, as the runner's
//! `ContainerHookManager` does. Shared by the hook tests and the hook
//! benchmark.

use crate::oci::{build_layout, busybox};
use crate::{bin, fixture, workspace_root};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One runner host for hook requests.
pub struct RunnerHost {
    pub dir: tempfile::TempDir,
    /// `_layout/_work` (mounted at `/__w`).
    pub work: PathBuf,
    /// `_layout/externals` (mounted at `/__e`).
    pub externals: PathBuf,
    /// The hook's records (`--state-dir`).
    pub state: PathBuf,
    pub store: PathBuf,
    /// The installed entry script.
    pub entry: PathBuf,
    /// `sha256:<hex>` of the imported busybox image.
    pub image: String,
    /// Run the entry script as this user (`setpriv`), as a runner that is
    /// not root does; `None`: as this process's user.
    pub user: Option<String>,
}

impl RunnerHost {
    /// Lays out a runner host and imports the image, with this workspace's
    /// `cloister-runner` (built by [`bin`]).
    pub fn new() -> RunnerHost {
        RunnerHost::with_runner(&bin("cloister-runner"))
    }

    /// [`RunnerHost::new`] with the given `cloister-runner` (the full
    /// binary beside it).
    pub fn with_runner(runner: &Path) -> RunnerHost {
        let dir = tempfile::Builder::new()
            .prefix("chook-")
            .tempdir()
            .expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical tempdir");
        let work = root.join("_layout/_work");
        let externals = root.join("_layout/externals");
        for d in [
            work.join("_temp/_github_home"),
            work.join("_temp/_github_workflow"),
            work.join("_temp/_runner_file_commands"),
            work.join("_temp/_runner_hook_responses"),
            work.join("_actions"),
            work.join("_tool"),
            work.join("repo/repo"),
            externals.clone(),
        ] {
            std::fs::create_dir_all(&d).expect("runner layout");
        }
        std::fs::write(externals.join("README"), "runner externals\n").unwrap();
        let state = root.join("hook-state");
        let store = root.join("store");
        let image = import_busybox(runner, &root, &store);
        let entry = root.join("cloister-container-hook.sh");
        let key = root.join("attestor-public.pem");
        std::fs::write(
            &key,
            "-----BEGIN PUBLIC KEY-----\ntest\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        install_entry_script(
            &entry,
            &[
                (
                    "CLOISTER_RUNNER",
                    runner
                        .with_file_name("cloister-runner-full")
                        .display()
                        .to_string(),
                ),
                ("CLOISTER_STORE", store.display().to_string()),
                ("CLOISTER_HOOK_STATE", state.display().to_string()),
                ("CLOISTER_DAEMON_SOCKET", String::new()),
                ("CLOISTER_TRUSTED_KEY", key.display().to_string()),
            ],
        );
        RunnerHost {
            dir,
            work,
            externals,
            state,
            store,
            entry,
            image,
            user: None,
        }
    }

    /// Reinstalls the entry script with its `CLOISTER_NETWORK_ACTIONS`
    /// setting (the network allow-list) set to `actions`, space separated
    /// as an operator writes it.
    pub fn set_network_actions(&self, actions: &[&str]) {
        let runner = std::fs::read_to_string(&self.entry)
            .expect("the installed entry script")
            .lines()
            .find_map(|l| l.strip_prefix("CLOISTER_RUNNER=").map(str::to_string))
            .expect("its CLOISTER_RUNNER line");
        let key = self.dir.path().join("attestor-public.pem");
        let key = std::fs::canonicalize(key).expect("the test's public key");
        install_entry_script(
            &self.entry,
            &[
                ("CLOISTER_RUNNER", runner),
                ("CLOISTER_STORE", self.store.display().to_string()),
                ("CLOISTER_HOOK_STATE", self.state.display().to_string()),
                ("CLOISTER_DAEMON_SOCKET", String::new()),
                ("CLOISTER_TRUSTED_KEY", key.display().to_string()),
                (
                    "CLOISTER_NETWORK_ACTIONS",
                    format!("\"{}\"", actions.join(" ")),
                ),
            ],
        );
    }

    /// A fixture of `tests/fixtures/github-hooks/` with the host's paths
    /// and `state` filled in (`{{STATE}}` is JSON).
    pub fn request(
        &self,
        name: &str,
        state: &serde_json::Value,
        script: &str,
    ) -> serde_json::Value {
        let text = std::fs::read_to_string(fixture(&format!("github-hooks/{name}.json")))
            .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        let text = text
            .replace("{{WORK}}", self.work.to_str().unwrap())
            .replace("{{EXTERNALS}}", self.externals.to_str().unwrap())
            .replace("{{IMAGE}}", &self.image)
            .replace("{{SCRIPT}}", script)
            .replace("{{STATE}}", &state.to_string());
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {name}: {e}\n{text}"))
    }

    /// A fresh empty response file under `_temp/_runner_hook_responses`.
    pub fn response_file(&self) -> PathBuf {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = self
            .work
            .join(format!("_temp/_runner_hook_responses/{n}.json"));
        std::fs::write(&path, b"").expect("create the response file");
        if let Some(user) = &self.user {
            // The runner creates it as its own user.
            let st = Command::new("chown").arg(user).arg(&path).status();
            assert!(st.is_ok_and(|s| s.success()), "chown the response file");
        }
        path
    }

    /// Runs `request` through the entry script as the runner does (its
    /// `responseFile` replaced by a fresh empty file); returns the output
    /// and the response file's contents. `env` is added to the entry
    /// script's environment (the runner's and the job's variables).
    pub fn drive(&self, request: &serde_json::Value, env: &[(&str, &str)]) -> (Output, String) {
        let mut request = request.clone();
        let response = self.response_file();
        if request.get("responseFile").is_some_and(|r| !r.is_null()) {
            request["responseFile"] = serde_json::json!(response);
        }
        let out = self.drive_raw(request.to_string().as_bytes(), env);
        let text = std::fs::read_to_string(&response).unwrap_or_default();
        let _ = std::fs::remove_file(&response);
        (out, text)
    }

    /// Feeds `input` (any bytes) to the entry script.
    pub fn drive_raw(&self, input: &[u8], env: &[(&str, &str)]) -> Output {
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={user}"),
                    &format!("--regid={user}"),
                    "--clear-groups",
                    "--",
                    "bash",
                ]);
                c
            }
            None => Command::new("bash"),
        };
        let mut child = cmd
            .args(["--noprofile", "--norc", "-e", "-o", "pipefail"])
            .arg(&self.entry)
            .current_dir(&self.work)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the entry script with bash");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input)
            .expect("write the request");
        child.wait_with_output().expect("wait for the hook")
    }

    /// Writes a step script where the runner puts them (`_temp/NAME`).
    pub fn script(&self, name: &str, text: &str) {
        std::fs::write(self.work.join("_temp").join(name), text).unwrap();
    }

    /// The job records the hook holds.
    pub fn records(&self) -> Vec<String> {
        match std::fs::read_dir(self.state.join("jobs")) {
            Ok(d) => d
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Default for RunnerHost {
    fn default() -> Self {
        RunnerHost::new()
    }
}

/// A busybox image (`/bin/busybox` and its applets as links, `/etc`)
/// imported into `store`; returns its manifest digest.
fn import_busybox(runner: &Path, root: &Path, store: &Path) -> String {
    let image_root = root.join("image-root");
    for d in ["bin", "etc", "tmp", "usr/bin"] {
        std::fs::create_dir_all(image_root.join(d)).unwrap();
    }
    std::fs::write(image_root.join("bin/busybox"), busybox()).unwrap();
    std::fs::set_permissions(
        image_root.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    for applet in [
        "sh", "cat", "echo", "ls", "test", "wget", "nc", "id", "env", "true", "false", "mkdir",
        "touch", "grep", "wc", "sleep", "pwd",
    ] {
        std::os::unix::fs::symlink("busybox", image_root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        image_root.join("etc/os-release"),
        "NAME=\"Busybox builder\"\nID=busybox\n",
    )
    .unwrap();
    let layout = root.join("layout");
    let manifest = build_layout(&layout, &[(crate::gnu_tar(&image_root, 0), true)], &["v1"]);
    let out = Command::new(runner)
        .args(["image", "import", "--store"])
        .arg(store)
        .arg(format!("{}:v1", layout.display()))
        .output()
        .expect("cloister-runner image import");
    assert!(
        out.status.success(),
        "image import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), manifest);
    manifest
}

/// Installs the shipped entry script at `to` with its settings lines
/// (`NAME=value` at the top, what an operator edits) set to `settings`.
pub fn install_entry_script(to: &Path, settings: &[(&str, String)]) {
    let shipped =
        workspace_root().join("cookbook/workflows/runner-hooks/cloister-container-hook.sh");
    let text = std::fs::read_to_string(&shipped).expect("the shipped entry script");
    let mut edited = String::new();
    let mut set = 0;
    for line in text.lines() {
        let value = line
            .split_once('=')
            .and_then(|(k, _)| settings.iter().find(|(name, _)| *name == k));
        match value {
            Some((name, v)) => {
                set += 1;
                edited.push_str(&format!("{name}={v}"));
            }
            None => edited.push_str(line),
        }
        edited.push('\n');
    }
    assert_eq!(
        set,
        settings.len(),
        "the entry script's settings lines moved"
    );
    std::fs::write(to, edited).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}
