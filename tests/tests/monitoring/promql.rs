//! Metric names out of PromQL, and the Prometheus text exposition read back
//! (names, labels, values) so a test can check what a daemon exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The repository's `systemd/monitoring`.
pub fn monitoring_dir() -> PathBuf {
    cloister_tests::workspace_root().join("systemd/monitoring")
}

/// promtool from `CLOISTER_PROMTOOL` (`.ci/setup.d/75-monitoring.sh`); the
/// tests fail without it, they never skip.
pub fn promtool() -> PathBuf {
    let p = std::env::var_os("CLOISTER_PROMTOOL").unwrap_or_else(|| {
        panic!(
            "CLOISTER_PROMTOOL is not set: source .ci/setup.d/75-monitoring.sh (installs Debian's prometheus for promtool)"
        )
    });
    PathBuf::from(p)
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    // aggregation operators (`sum by (x) (…)`: not always followed by `(`)
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric (and recorded-series) names an expression reads: every
/// identifier outside label matchers, strings, ranges and grouping clauses
/// that is not a function, a keyword or a number.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    // Strings and label matchers go first (their contents are label names
    // and values), then ranges/durations.
    let mut s = String::new();
    let mut chars = expr.chars().peekable();
    let (mut in_str, mut brace, mut bracket) = (None, 0, 0);
    while let Some(c) = chars.next() {
        if let Some(q) = in_str {
            if c == '\\' {
                chars.next();
            } else if c == q {
                in_str = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => in_str = Some(c),
            '{' => brace += 1,
            '}' => brace -= 1,
            '[' => bracket += 1,
            ']' => bracket -= 1,
            _ if brace > 0 || bracket > 0 => {}
            _ => s.push(c),
        }
        if matches!(c, '{' | '}' | '[' | ']') {
            s.push(' ');
        }
    }
    let tokens: Vec<(usize, &str)> = tokenize(&s);
    let mut names = BTreeSet::new();
    let mut skip_group = false;
    for (i, (end, tok)) in tokens.iter().enumerate() {
        let next_char = s[*end..].trim_start().chars().next();
        if skip_group {
            // inside `by (…)`, `on (…)` etc.: label names until `)`
            if *tok == ")" {
                skip_group = false;
            }
            continue;
        }
        if matches!(
            *tok,
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
        ) {
            if next_char == Some('(') {
                skip_group = true;
            }
            continue;
        }
        let first = tok.chars().next().unwrap_or(' ');
        if !(first.is_ascii_alphabetic() || first == '_' || first == ':') {
            continue;
        }
        if KEYWORDS.contains(&tok.to_ascii_lowercase().as_str()) || next_char == Some('(') {
            continue;
        }
        let _ = i;
        names.insert(tok.to_string());
    }
    names
}

/// Identifiers, numbers and single punctuation, with the byte offset just
/// past each.
fn tokenize(s: &str) -> Vec<(usize, &str)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b':' || c == b'.' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_:.".contains(&b[i])) {
                i += 1;
            }
            out.push((i, &s[start..i]));
        } else {
            i += 1;
            out.push((i, &s[i - 1..i]));
        }
    }
    out
}

/// One rule of a rules file.
#[derive(Debug, Clone)]
pub struct Rule {
    pub file: String,
    pub alert: Option<String>,
    pub record: Option<String>,
    pub expr: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The `*.rules.yml` files of `systemd/monitoring/rules/`.
pub fn rule_files() -> Vec<PathBuf> {
    let dir = monitoring_dir().join("rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".rules.yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rules in {}", dir.display());
    files
}

/// Every rule of every rules file.
pub fn rules() -> Vec<Rule> {
    let text_map = |v: &serde_json::Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for f in rule_files() {
        let doc = cloister_tests::yaml_as_json(&f);
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        for g in doc["groups"].as_array().expect("groups") {
            for r in g["rules"].as_array().expect("rules") {
                out.push(Rule {
                    file: file.clone(),
                    alert: r["alert"].as_str().map(String::from),
                    record: r["record"].as_str().map(String::from),
                    expr: r["expr"].as_str().expect("expr").to_string(),
                    labels: text_map(&r["labels"]),
                    annotations: text_map(&r["annotations"]),
                });
            }
        }
    }
    out
}

/// Every `expr` of the dashboards' panels: (dashboard file, expr).
pub fn dashboard_exprs() -> Vec<(String, String)> {
    let dir = monitoring_dir().join("dashboards");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            collect_exprs(&v, &name, &mut out);
        }
    }
    assert!(out.len() > 10, "dashboards with queries expected: {out:?}");
    out
}

fn collect_exprs(v: &serde_json::Value, file: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(e)) = m.get("expr") {
                out.push((file.to_string(), e.clone()));
            }
            for v in m.values() {
                collect_exprs(v, file, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, file, out)),
        _ => {}
    }
}

/// One sample of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Reads a text exposition (format 0.0.4 / OpenMetrics text as
/// prometheus-client writes it); panics naming the line that does not parse.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            if line.starts_with('#') {
                let ok = line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || line == "# EOF";
                assert!(ok, "line {}: unknown comment {line:?}", n + 1);
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("line {}: no value: {line:?}", n + 1));
        let name = &line[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "line {}: bad metric name {name:?}",
            n + 1
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let close = body
                .find("} ")
                .unwrap_or_else(|| panic!("line {}: unclosed labels: {line:?}", n + 1));
            for pair in split_labels(&body[..close]) {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("line {}: bad label {pair:?}", n + 1));
                assert!(
                    v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                    "line {}: unquoted label value {pair:?}",
                    n + 1
                );
                labels.insert(k.to_string(), v[1..v.len() - 1].to_string());
            }
            rest = &body[close + 1..];
        }
        let value_text = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("line {}: no value: {line:?}", n + 1));
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("line {}: bad value {v:?}", n + 1)),
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

fn split_labels(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_str, mut esc) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' if in_str => esc = true,
            '"' => in_str = !in_str,
            ',' if !in_str => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// The value of the one sample named `name` whose labels include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{name}{labels:?}: expected one sample, found {found:?}"
    );
    found[0].value
}

#[test]
fn names_are_found_outside_matchers_functions_and_groupings() {
    let names = metric_names(
        r#"sum by (le, route) (rate(cloister_a_bucket{route=~"/v1/x.*",status="5.."}[5m]))
             / on () group_left sum(rate(cloister_b_total[1h] offset 5m)) > bool 0.5
           and cloister:rec:ratio_rate1h > (14.4 * 0.0005) unless up{job="x"} == 0"#,
    );
    let want: BTreeSet<String> = [
        "cloister_a_bucket",
        "cloister_b_total",
        "cloister:rec:ratio_rate1h",
        "up",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, want);
    assert!(metric_names("histogram_quantile(0.99, x_bucket)").contains("x_bucket"));
    assert!(!metric_names("histogram_quantile(0.99, x_bucket)").contains("histogram_quantile"));
}

#[test]
fn the_exposition_reader_reads_labels_values_and_refuses_garbage() {
    let s = parse_exposition(
        "# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"v,1\",l=\"x\\\"y\"} 3\nb 1.5e3\nc_bucket{le=\"+Inf\"} 2\n# EOF\n",
    );
    assert_eq!(value(&s, "a_total", &[("k", "v,1")]), 3.0);
    assert_eq!(value(&s, "b", &[]), 1500.0);
    assert_eq!(value(&s, "c_bucket", &[("le", "+Inf")]), 2.0);
    for bad in ["a{k=v} 1\n", "a{k=\"v\" 1\n", "a\n", "a 1x\n", "# weird\n"] {
        assert!(
            std::panic::catch_unwind(|| parse_exposition(bad)).is_err(),
            "{bad:?} parsed"
        );
    }
}
