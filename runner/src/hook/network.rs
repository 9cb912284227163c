//! Which steps get the host's network: the operator's allow-list of
//! actions pinned by commit (`--network-action OWNER/REPO@SHA`, the entry
//! script's `CLOISTER_NETWORK_ACTIONS`), and the decision for one
//! `run_script_step`.
//!
//! A step gets the host network only when all of these hold, each checked
//! on the request and on the host's disk before the sandbox starts:
//! - its entry point is the runner's node: a clean absolute path under
//!   `/__e/` (the runner's externals, mounted read-only), a regular file on
//!   the host reached through no symbolic link;
//! - its script (the entry point's first argument, as the runner quotes
//!   it) is a clean path `/__w/_actions/OWNER/REPO/SHA/…` (no `.`, `..` or
//!   empty component), `SHA` a full commit SHA, and `OWNER/REPO@SHA` on the
//!   allow-list (owner and repository compared as GitHub does, without
//!   case; the SHA exactly);
//! - that script is a regular file in the runner's action cache reached
//!   through no symbolic link (the cache is bound read-only into every step,
//!   so no step can plant one there or change an action's code).
//!
//! Everything else keeps `network: none`. A networked step also gets a
//! narrowed environment ([`network_env`]): nothing that chooses which code
//! runs (`LD_*`, `NODE_OPTIONS`, `GIT_*`, `prependPath`, …) passes from the
//! job into it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where the runner's action cache is inside a step.
pub const ACTIONS_TARGET: &str = "/__w/_actions";
/// Where the runner's externals (its node) are inside a step.
pub const EXTERNALS_TARGET: &str = "/__e";

/// One allow-listed action: `OWNER/REPO@<40-hex commit SHA>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAction {
    pub owner: String,
    pub repo: String,
    /// 40 lowercase hex digits.
    pub sha: String,
}

impl std::fmt::Display for NetworkAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.owner, self.repo, self.sha)
    }
}

/// Whether `s` is a full commit SHA as the allow-list takes it.
pub fn is_commit_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_owner(s: &str) -> bool {
    !s.is_empty() && s.len() <= 39 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_repo(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl FromStr for NetworkAction {
    type Err = String;

    fn from_str(s: &str) -> Result<NetworkAction, String> {
        let Some((name, git_ref)) = s.split_once('@') else {
            return Err(format!(
                "network action {s:?} must be OWNER/REPO@<40-hex commit SHA>"
            ));
        };
        if !is_commit_sha(git_ref) {
            return Err(format!(
                "network action {s:?}: {git_ref:?} is not a full commit SHA (40 lowercase hex digits); a tag or branch can be moved to other code, a commit cannot"
            ));
        }
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            [owner, repo] if is_owner(owner) && is_repo(repo) => Ok(NetworkAction {
                owner: owner.to_string(),
                repo: repo.to_string(),
                sha: git_ref.to_string(),
            }),
            [_, _, _, ..] => Err(format!(
                "network action {s:?}: name the repository (OWNER/REPO@SHA); the allow-list covers all of its actions at that commit"
            )),
            _ => Err(format!(
                "network action {s:?}: {name:?} is not a GitHub OWNER/REPO"
            )),
        }
    }
}

/// Parses the configured allow-list (each entry as given on the command
/// line); the first bad entry is the error.
pub fn parse_allow_list(entries: &[String]) -> Result<Vec<NetworkAction>, String> {
    let mut out: Vec<NetworkAction> = Vec::new();
    for e in entries {
        let a: NetworkAction = e.parse()?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// What a script step gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The host network: the allow-list entry and the script that matched.
    Host {
        action: NetworkAction,
        script: String,
    },
    /// No network; `why` is said in the log when the step looked like a
    /// step of an action (its script under the action cache), so that an
    /// operator sees why a listed action got none.
    None { why: Option<String> },
}

/// One argument as the runner meant it: it wraps a node action's script
/// path in double quotes (`"/__w/_actions/…/index.js"`, inner quotes as
/// `\"`) for a shell; no shell runs here, so the quotes are taken off.
pub fn unquote_arg(arg: &str) -> String {
    match arg
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .filter(|_| arg.len() >= 2)
    {
        Some(inner) => inner.replace("\\\"", "\""),
        None => arg.to_string(),
    }
}

/// Whether a path given in a request is clean: absolute, no `.`, `..` or
/// empty components, no trailing slash.
fn is_clean(path: &str) -> bool {
    // (by the string: `Path::components` drops `.` and repeated slashes)
    path.strip_prefix('/').is_some_and(|rest| {
        rest.split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
    })
}

/// `base/rel` on the host, each component after `base` checked to be no
/// symbolic link, the last a regular file.
fn file_without_links(base: &Path, rel: &[&str]) -> Result<PathBuf, String> {
    let mut at = base.to_path_buf();
    for (i, name) in rel.iter().enumerate() {
        at.push(name);
        let meta = std::fs::symlink_metadata(&at).map_err(|e| format!("{}: {e}", at.display()))?;
        if meta.file_type().is_symlink() {
            return Err(format!("{} is a symbolic link", at.display()));
        }
        let last = i + 1 == rel.len();
        if last && !meta.is_file() {
            return Err(format!("{} is not a regular file", at.display()));
        }
        if !last && !meta.is_dir() {
            return Err(format!("{} is not a directory", at.display()));
        }
    }
    Ok(at)
}

/// The decision for a script step running `entry` with `args` (as the
/// runner sent them), against `allow`, with the action cache at `actions`
/// and the externals at `externals` on the host.
pub fn decide(
    allow: &[NetworkAction],
    entry: &str,
    args: &[String],
    actions: &Path,
    externals: Option<&Path>,
) -> Decision {
    let none = |why: String| Decision::None { why: Some(why) };
    if allow.is_empty() {
        return Decision::None { why: None };
    }
    let Some(script) = args.iter().find(|a| !a.is_empty()).map(|a| unquote_arg(a)) else {
        return Decision::None { why: None };
    };
    if !script.contains("_actions") {
        // An ordinary `run:` step: nothing to say.
        return Decision::None { why: None };
    }
    if !is_clean(&script) {
        return none(format!(
            "its script {script:?} is not a clean path (no `.`, `..` or empty components)"
        ));
    }
    let Some(rest) = script
        .strip_prefix(ACTIONS_TARGET)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return none(format!(
            "its script {script:?} is not in the action cache {ACTIONS_TARGET}"
        ));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let [owner, repo, git_ref, file @ ..] = parts.as_slice() else {
        return none(format!(
            "its script {script:?} is not a file of an action ({ACTIONS_TARGET}/OWNER/REPO/SHA/…)"
        ));
    };
    if file.is_empty() {
        return none(format!(
            "its script {script:?} is not a file of an action ({ACTIONS_TARGET}/OWNER/REPO/SHA/…)"
        ));
    }
    if !is_commit_sha(git_ref) {
        return none(format!(
            "{owner}/{repo}@{git_ref} is not pinned by a full commit SHA"
        ));
    }
    let Some(action) = allow.iter().find(|a| {
        a.owner.eq_ignore_ascii_case(owner)
            && a.repo.eq_ignore_ascii_case(repo)
            && a.sha == *git_ref
    }) else {
        return none(format!(
            "{owner}/{repo}@{git_ref} is not on the hook's network allow-list"
        ));
    };
    // The program that runs the script must be the runner's own (read-only)
    // node, not one a step could have written.
    let entry = unquote_arg(entry);
    let entry_rel = entry
        .strip_prefix(EXTERNALS_TARGET)
        .and_then(|r| r.strip_prefix('/'))
        .filter(|_| is_clean(&entry));
    let (Some(entry_rel), Some(externals)) = (entry_rel, externals) else {
        return none(format!(
            "{action}: its entry point {entry:?} is not a program of the runner's externals ({EXTERNALS_TARGET}, read-only)"
        ));
    };
    let entry_parts: Vec<&str> = entry_rel.split('/').collect();
    if let Err(e) = file_without_links(externals, &entry_parts) {
        return none(format!("{action}: its entry point {entry}: {e}"));
    }
    let mut rel = vec![*owner, *repo, *git_ref];
    rel.extend(file.iter().copied());
    if let Err(e) = file_without_links(actions, &rel) {
        return none(format!("{action}: its script {script}: {e}"));
    }
    Decision::Host {
        action: action.clone(),
        script,
    }
}

/// Variables a networked step keeps from the job, by prefix: the action's
/// inputs and state, the runner's and GitHub's context, the Actions
/// service's endpoints and tokens.
pub const NETWORK_ENV_PREFIXES: &[&str] = &["INPUT_", "STATE_", "GITHUB_", "RUNNER_", "ACTIONS_"];

/// Variables a networked step keeps from the job, by name: locale, time
/// zone, the CI markers and the host's proxy settings.
pub const NETWORK_ENV_NAMES: &[&str] = &[
    "CI",
    "LANG",
    "LANGUAGE",
    "TZ",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// Where a networked step's HOME is: the sandbox's own fresh `/tmp`, so
/// no file an earlier step left in the job's home (a `.gitconfig` naming a
/// program, say) is read by the action's tools.
pub const NETWORK_HOME: &str = "/tmp";

/// Splits a step's environment into what a networked step keeps and the
/// names it loses (sorted). PATH is Docker's default (no `prependPath`)
/// and HOME [`NETWORK_HOME`].
pub fn network_env(env: Vec<(String, String)>) -> (Vec<(String, String)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (k, v) in env {
        let keep = NETWORK_ENV_NAMES.contains(&k.as_str())
            || NETWORK_ENV_PREFIXES.iter().any(|p| k.starts_with(p));
        if keep {
            kept.push((k, v));
        } else if k != "PATH" && k != "HOME" {
            dropped.push(k);
        }
    }
    kept.push(("PATH".into(), super::DEFAULT_PATH.into()));
    kept.push(("HOME".into(), NETWORK_HOME.into()));
    dropped.sort();
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "11bd71901bbe5b1630ceea73d27597364c9af683";

    #[test]
    fn the_allow_list_takes_only_repositories_pinned_by_full_commit() {
        let a: NetworkAction = format!("actions/checkout@{SHA}").parse().unwrap();
        assert_eq!((a.owner.as_str(), a.repo.as_str()), ("actions", "checkout"));
        assert_eq!(a.to_string(), format!("actions/checkout@{SHA}"));
        for (bad, why) in [
            ("actions/checkout@v4".to_string(), "not a full commit SHA"),
            ("actions/checkout@main".into(), "not a full commit SHA"),
            (
                format!("actions/checkout@{}", &SHA[..39]),
                "not a full commit SHA",
            ),
            (
                format!("actions/checkout@{}", SHA.to_uppercase()),
                "not a full commit SHA",
            ),
            (format!("actions/checkout@{SHA}0"), "not a full commit SHA"),
            ("actions/checkout".into(), "must be OWNER/REPO@"),
            (format!("checkout@{SHA}"), "is not a GitHub OWNER/REPO"),
            (format!("actions/../x@{SHA}"), "name the repository"),
            (
                format!("github/codeql-action/init@{SHA}"),
                "name the repository",
            ),
            (format!("actions/..@{SHA}"), "is not a GitHub OWNER/REPO"),
            (
                format!("act ions/checkout@{SHA}"),
                "is not a GitHub OWNER/REPO",
            ),
            (format!("/checkout@{SHA}"), "is not a GitHub OWNER/REPO"),
        ] {
            let err = bad.parse::<NetworkAction>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let list = parse_allow_list(&[
            format!("actions/checkout@{SHA}"),
            format!("actions/checkout@{SHA}"),
        ])
        .unwrap();
        assert_eq!(list.len(), 1);
        assert!(parse_allow_list(&["actions/checkout@v4".into()]).is_err());
    }

    #[test]
    fn quoted_script_paths_are_taken_as_the_runner_meant_them() {
        assert_eq!(unquote_arg("\"/__w/a.js\""), "/__w/a.js");
        assert_eq!(unquote_arg("\"/__w/a\\\"b.js\""), "/__w/a\"b.js");
        assert_eq!(unquote_arg("-e"), "-e");
        assert_eq!(unquote_arg("\""), "\"");
        assert_eq!(unquote_arg("\"x"), "\"x");
    }

    #[test]
    fn clean_paths_have_no_dots_or_empty_components() {
        assert!(is_clean("/__w/_actions/a/b/c/d.js"));
        for bad in [
            "__w/a",
            "/__w/_actions/a/../b",
            "/__w/./_actions",
            "/__w//_actions",
            "/__w/_actions/",
        ] {
            assert!(!is_clean(bad), "{bad}");
        }
    }

    #[test]
    fn a_networked_step_keeps_only_what_does_not_choose_its_code() {
        let env = vec![
            ("INPUT_REPOSITORY".to_string(), "o/r".to_string()),
            ("GITHUB_WORKSPACE".into(), "/__w/r/r".into()),
            ("ACTIONS_RUNTIME_TOKEN".into(), "t".into()),
            ("LD_PRELOAD".into(), "/__w/_temp/x.so".into()),
            ("NODE_OPTIONS".into(), "--require /__w/x.js".into()),
            ("GIT_CONFIG_GLOBAL".into(), "/__w/x".into()),
            ("PATH".into(), "/__w/_tool/bin:/usr/bin".into()),
            ("HOME".into(), "/github/home".into()),
            ("https_proxy".into(), "http://proxy:3128".into()),
        ];
        let (kept, dropped) = network_env(env);
        let kept: std::collections::BTreeMap<_, _> = kept.into_iter().collect();
        assert_eq!(kept["PATH"], crate::hook::DEFAULT_PATH);
        assert_eq!(kept["HOME"], NETWORK_HOME);
        assert_eq!(kept["INPUT_REPOSITORY"], "o/r");
        assert_eq!(kept["https_proxy"], "http://proxy:3128");
        assert!(kept.contains_key("ACTIONS_RUNTIME_TOKEN"));
        assert_eq!(dropped, ["GIT_CONFIG_GLOBAL", "LD_PRELOAD", "NODE_OPTIONS"]);
    }
}
