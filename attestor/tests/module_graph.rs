//! No module cycles: inside each library crate of the workspace, the imports
//! between top-level modules (`crate::a` used from `b`) form a graph without
//! cycles, so a type two modules share sits below both (ARCHITECTURE.md,
//! "Code map").
//!
//! The graph is read from the sources: every `crate::`, `super::` and
//! `self::` path outside comments, string literals and `#[cfg(test)]`
//! modules, resolved against the module the file (or inline `mod`) declares.
//! Tests may import across modules; the crates' roots (`lib.rs`, `main.rs`)
//! and binaries (`src/bin`) are above everything and not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace's library crates, relative to the workspace root.
const CRATES: &[&str] = &[
    "attestor",
    "attestor/core",
    "runner",
    "runner/sandbox",
    "runner/inputs",
    "runner/policy",
    "nss",
    "socket",
    "report",
    "size",
];

#[test]
fn no_module_cycles_in_any_library_crate() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut failures = Vec::new();
    for krate in CRATES {
        let src = workspace.join(krate).join("src");
        let graph = ModuleGraph::read(&src);
        assert!(src.join("lib.rs").is_file(), "{krate}: no src/lib.rs");
        if let Some(cycle) = graph.cycle() {
            failures.push(format!("{krate}/src: {}", graph.describe(&cycle)));
        }
    }
    assert!(
        failures.is_empty(),
        "module cycles:\n{}",
        failures.join("\n")
    );
}

/// The attestor's layers, top first (ARCHITECTURE.md, "Code map"): a
/// module imports only modules of lower layers, never one of its own.
const ATTESTOR_LAYERS: &[&[&str]] = &[
    &["cli"],
    // Composes the consumer router from the service's and the portal's.
    &["server"],
    // Pages over the service's handlers, extractors and metering.
    &["portal"],
    &["service"],
    // Evidence packs and engagements read the whole `Config`.
    &["evidence"],
    // Settings; `[billing]` is billing's own section type.
    &["config"],
    &["billing"],
    // What handlers, billing and evidence share.
    &["http", "metrics"],
    &["api_key", "clock", "keyring", "storage"],
];

#[test]
fn attestor_modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = ModuleGraph::read(&src);
    let rank = |module: &str| ATTESTOR_LAYERS.iter().position(|l| l.contains(&module));
    let unplaced: Vec<&String> = graph.modules.iter().filter(|m| rank(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "top-level modules in no layer of ATTESTOR_LAYERS: {unplaced:?}"
    );
    let mut upward = Vec::new();
    for (from, targets) in &graph.edges {
        for (to, files) in targets {
            if rank(to) <= rank(from) {
                upward.push(format!("{from} -> {to} ({files:?})"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point down:\n{}",
        upward.join("\n")
    );
}

#[test]
fn a_cycle_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    write(src, "lib.rs", "pub mod a; pub mod b; pub mod c;");
    write(src, "a.rs", "use crate::b::Thing;\n");
    write(src, "b/mod.rs", "pub mod inner;\n");
    write(
        src,
        "b/inner.rs",
        "pub fn f() { super::super::c::g() }\npub struct Thing;\n",
    );
    write(src, "c.rs", "use crate::{self as root, a::{self, X}};\n");
    let graph = ModuleGraph::read(src);
    let cycle = graph.cycle().expect("a -> b -> c -> a is a cycle");
    assert_eq!(
        graph.describe(&cycle),
        "a -> b (a.rs) -> c (b/inner.rs) -> a (c.rs)"
    );
}

#[test]
fn comments_strings_tests_and_inline_modules_are_not_imports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    write(src, "lib.rs", "pub mod a; pub mod b;");
    write(src, "b.rs", "use crate::a::X;\n");
    write(
        src,
        "a.rs",
        r##"//! Used by `crate::b`.
/// See crate::b::Y.
/* crate::b::Z /* nested crate::b */ */
pub const S: &str = "crate::b::S // not a comment";
pub const R: &str = r#"super::b::R "quoted" "#;
pub const C: char = '"';
pub fn life<'a>(x: &'a str) -> &'a str { x }
pub mod inner {
    // `super` is `a` here, not the crate root.
    pub use super::X as Y;
    pub mod deeper { pub use super::super::X as Z; }
}
pub struct X;
#[cfg(test)]
mod tests {
    use crate::b::Y;
}
#[cfg(test)]
mod file_tests;
"##,
    );
    write(src, "a/file_tests.rs", "use crate::b::W;\n");
    let graph = ModuleGraph::read(src);
    assert_eq!(graph.edges_from("a"), Vec::<String>::new());
    assert_eq!(graph.edges_from("b"), vec!["a".to_string()]);
    assert!(graph.cycle().is_none());
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Top-level modules and, per import edge, the files that make it.
struct ModuleGraph {
    modules: BTreeSet<String>,
    edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl ModuleGraph {
    fn read(src: &Path) -> Self {
        let mut modules = BTreeSet::new();
        for entry in fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if entry.file_type().unwrap().is_dir() {
                if name != "bin" {
                    modules.insert(name);
                }
            } else if let Some(stem) = name.strip_suffix(".rs") {
                if stem != "lib" && stem != "main" {
                    modules.insert(stem.to_string());
                }
            }
        }
        let mut graph = ModuleGraph {
            modules,
            edges: BTreeMap::new(),
        };
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let mut test_only = BTreeSet::new();
        let mut sources = Vec::new();
        for file in files {
            let rel = file.strip_prefix(src).unwrap().to_path_buf();
            let module = module_path(&rel);
            let text = blank_literals(&fs::read_to_string(&file).unwrap());
            let (text, test_files) = without_test_modules(&text);
            for name in test_files {
                let dir: PathBuf = module.iter().collect();
                test_only.insert(dir.join(format!("{name}.rs")));
                test_only.insert(dir.join(name).join("mod.rs"));
            }
            sources.push((rel, module, text));
        }
        for (rel, module, text) in sources {
            let Some(top) = module.first() else { continue };
            if !graph.modules.contains(top) || test_only.contains(&rel) {
                continue;
            }
            for target in imported_top_modules(&text, &module) {
                if &target != top && graph.modules.contains(&target) {
                    graph
                        .edges
                        .entry(top.clone())
                        .or_default()
                        .entry(target)
                        .or_default()
                        .insert(rel.display().to_string());
                }
            }
        }
        graph
    }

    fn edges_from(&self, module: &str) -> Vec<String> {
        self.edges
            .get(module)
            .map(|to| to.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// One cycle, as the list of modules along it, if there is any.
    fn cycle(&self) -> Option<Vec<String>> {
        for start in &self.modules {
            for next in self.edges_from(start) {
                if let Some(mut path) = self.path(&next, start) {
                    path.insert(0, start.clone());
                    return Some(path);
                }
            }
        }
        None
    }

    /// A path of imports from `from` to `to` (both included).
    fn path(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![vec![from.to_string()]];
        while let Some(path) = stack.pop() {
            let last = path.last().unwrap();
            if last == to {
                return Some(path);
            }
            if !seen.insert(last.clone()) {
                continue;
            }
            for next in self.edges_from(last) {
                let mut longer = path.clone();
                longer.push(next);
                stack.push(longer);
            }
        }
        None
    }

    /// `a -> b (files) -> c (files)`.
    fn describe(&self, path: &[String]) -> String {
        let mut text = path[0].clone();
        for pair in path.windows(2) {
            let files = &self.edges[&pair[0]][&pair[1]];
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            text.push_str(&format!(" -> {} ({})", pair[1], files.join(", ")));
        }
        text
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a/b/mod.rs` and `a/b.rs` are module `a::b`; `lib.rs` is the root.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source with comments, string and char literals replaced by spaces
/// (lengths kept), so that only code is left to read paths from.
fn blank_literals(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, from: usize, to: usize| {
        out.extend(std::iter::repeat_n(' ', to - from));
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            let end = (i..chars.len())
                .find(|&j| chars[j] == '\n')
                .unwrap_or(chars.len());
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            let mut j = i;
            while j < chars.len() {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if !prev_ident && (c == 'r' || (c == 'b' && next == Some('r'))) && {
            let k = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[k..].iter().take_while(|&&h| h == '#').count();
            chars.get(k + hashes) == Some(&'"')
        } {
            let k = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[k..].iter().take_while(|&&h| h == '#').count();
            let mut j = k + hashes + 1;
            while j < chars.len() {
                if chars[j] == '"'
                    && chars[j + 1..].iter().take(hashes).all(|&h| h == '#')
                    && j + hashes < chars.len()
                {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), else a lifetime or label.
            let end = if next == Some('\\') {
                (i + 3..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end + 1);
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Removes `#[cfg(test)]` inline modules; returns the names of
/// `#[cfg(test)] mod x;` file modules, which are left out as well.
fn without_test_modules(src: &str) -> (String, Vec<String>) {
    let mut out = src.to_string();
    let mut files = Vec::new();
    let mut from = 0;
    while let Some(at) = out[from..].find("#[cfg(test)]").map(|p| p + from) {
        let rest = &out[at + "#[cfg(test)]".len()..];
        let words: Vec<&str> = rest
            .split(|c: char| c.is_whitespace() || c == '{' || c == ';')
            .filter(|w| !w.is_empty())
            .take(3)
            .collect();
        let (name, after) = match words.as_slice() {
            ["mod", name, ..] => (*name, "mod"),
            ["pub", "mod", name] | ["pub(crate)", "mod", name] => (*name, "mod"),
            _ => ("", ""),
        };
        if after.is_empty() {
            from = at + 1;
            continue;
        }
        let decl = rest.find(name).unwrap() + name.len();
        let tail = rest[decl..].trim_start();
        let start = at;
        let end = if tail.starts_with(';') {
            files.push(name.to_string());
            at + "#[cfg(test)]".len() + decl + rest[decl..].find(';').unwrap() + 1
        } else {
            let open = at + "#[cfg(test)]".len() + decl + rest[decl..].find('{').unwrap();
            matching_brace(&out, open) + 1
        };
        out.replace_range(start..end, &" ".repeat(end - start));
        from = end;
    }
    (out, files)
}

fn matching_brace(src: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in src[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    src.len()
}

/// Inline `mod name { .. }` blocks: (start, end, name).
fn inline_modules(src: &str) -> Vec<(usize, usize, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = find_word(src, "mod", from) {
        let rest = &src[at + 3..];
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = rest.trim_start()[name.len()..].trim_start();
        if !name.is_empty() && after.starts_with('{') {
            let open = src.len() - after.len();
            found.push((at, matching_brace(src, open), name));
        }
        from = at + 3;
    }
    found
}

/// The next occurrence of `word` at or after `from`, as a whole word.
fn find_word(src: &str, word: &str, from: usize) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut from = from;
    while let Some(at) = src[from..].find(word).map(|p| p + from) {
        let before = src[..at].chars().next_back();
        let after = src[at + word.len()..].chars().next();
        if !before.is_some_and(ident) && !after.is_some_and(ident) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The top-level modules the paths in `src` (a file of module `module`)
/// name: `crate::x::..`, `super::..` and `self::..`, with `use` groups.
fn imported_top_modules(src: &str, module: &[String]) -> BTreeSet<String> {
    let inline = inline_modules(src);
    let mut found = BTreeSet::new();
    for start in ["crate", "super", "self"] {
        let mut from = 0;
        while let Some(at) = find_word(src, start, from) {
            from = at + start.len();
            if !src[at..].starts_with(&format!("{start}::")) {
                continue;
            }
            let mut here: Vec<String> = module.to_vec();
            here.extend(
                inline
                    .iter()
                    .filter(|(s, e, _)| *s < at && at < *e)
                    .map(|(_, _, n)| n.clone()),
            );
            let (segments, group) = path_at(src, at);
            let mut resolved = match segments[0].as_str() {
                "crate" => Vec::new(),
                _ => here,
            };
            let mut rest = &segments[1..];
            if segments[0] == "super" {
                resolved.pop();
            }
            while rest.first().is_some_and(|s| s == "super") {
                resolved.pop();
                rest = &rest[1..];
            }
            resolved.extend(rest.iter().cloned());
            match resolved.first() {
                Some(top) => {
                    found.insert(top.clone());
                }
                None => found.extend(group),
            }
        }
    }
    found
}

/// The `::`-separated segments of the path starting at `at`, and, when
/// it ends in a `{ .. }` group, the first segment of each item in it.
fn path_at(src: &str, at: usize) -> (Vec<String>, Vec<String>) {
    let mut segments = Vec::new();
    let mut rest = &src[at..];
    loop {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        segments.push(name.clone());
        rest = &rest[name.len()..];
        match rest.trim_start().strip_prefix("::") {
            Some(after) => rest = after.trim_start(),
            None => return (segments, Vec::new()),
        }
    }
    let mut group = Vec::new();
    if rest.starts_with('{') {
        let open = src.len() - rest.len();
        let inner = &src[open + 1..matching_brace(src, open)];
        let mut depth = 0;
        let mut item_start = true;
        let mut i = 0;
        while i < inner.len() {
            let c = inner[i..].chars().next().unwrap();
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && (c.is_alphanumeric() || c == '_') => {
                    let name: String = inner[i..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if name != "self" {
                        group.push(name.clone());
                    }
                    item_start = false;
                    i += name.len();
                    continue;
                }
                _ => {}
            }
            i += c.len_utf8();
        }
    }
    (segments, group)
}
