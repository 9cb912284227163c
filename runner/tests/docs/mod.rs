//! What a new user reads first holds up: the cookbook's index lists every
//! page, the README's `run` table lists every `run` flag, and the README's
//! build-then-verify example names the same repository on both sides.

use crate::harness::RUNNER;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap()
}

#[test]
fn cookbook_index_lists_every_page() {
    let index = read("cookbook/README.md");
    let mut pages = Vec::new();
    for e in std::fs::read_dir(repo_root().join("cookbook")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "README.md" {
            pages.push(name);
        }
    }
    assert!(pages.len() > 10, "{pages:?}");
    let missing: Vec<&String> = pages
        .iter()
        .filter(|p| !index.contains(&format!("]({p})")))
        .collect();
    assert!(
        missing.is_empty(),
        "cookbook/README.md does not link {missing:?}"
    );
}

/// The README section between `start` and `end`.
fn section<'a>(readme: &'a str, start: &str, end: &str) -> &'a str {
    let from = readme
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in README"));
    let rest = &readme[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[test]
fn readme_run_table_lists_every_run_flag() {
    let out = std::process::Command::new(RUNNER)
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let flags: Vec<String> = help
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            // `-j, --json`: the long form.
            let l = if l.starts_with('-') && !l.starts_with("--") {
                l.split_once(", ")?.1
            } else {
                l
            };
            let rest = l.strip_prefix("--")?;
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .unwrap_or(rest.len());
            let flag = &rest[..end];
            (!flag.is_empty() && flag != "help").then(|| format!("--{flag}"))
        })
        .collect();
    assert!(flags.contains(&"--snapshot".to_string()), "{help}");
    let readme = read("README.md");
    let table = section(
        &readme,
        "## Running a command in the sandbox",
        "**Exit status**",
    );
    let missing: Vec<&String> = flags
        .iter()
        .filter(|f| !table.contains(&format!("`{f} ")) && !table.contains(&format!("`{f}`")))
        .collect();
    assert!(missing.is_empty(), "README's run table lacks {missing:?}");
}

/// The value of `flag` in a shell command (continuation lines joined).
fn flag_value<'a>(command: &'a str, flag: &str) -> &'a str {
    let mut words = command.split_whitespace();
    while let Some(w) = words.next() {
        if w == flag {
            return words.next().unwrap();
        }
    }
    panic!("{flag} not in {command}")
}

/// The README's daemon example verifies with `--source-uri` the repository
/// its build line records (`--uri`): a checkout without an `origin` remote
/// would otherwise record `file://…` and the verification would fail.
#[test]
fn readme_verify_example_expects_the_uri_its_build_records() {
    let readme = read("README.md");
    let example = section(&readme, "## Runner daemon and builds", "\n```\n").replace("\\\n", " ");
    let build = example
        .lines()
        .find(|l| l.starts_with("cloister-runner build "))
        .unwrap();
    let verify = example
        .lines()
        .find(|l| l.starts_with("cloister-attestor verify "))
        .unwrap();
    let recorded = flag_value(build, "--uri");
    let expected = flag_value(verify, "--source-uri");
    use cloister_attestor_core::verify::normalize_source_uri;
    assert_eq!(
        normalize_source_uri(recorded),
        normalize_source_uri(expected),
        "{build}\n{verify}"
    );
}
