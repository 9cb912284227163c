//! What a stored attestation says, made readable: the release's source,
//! ref, commit, builder, times, subjects, dependencies, the isolation claims
//! in words and the statement pretty-printed.
//!
//! Display only: the fields are read from the stored envelope's payload
//! whether or not it verifies. Whether it does is the chip's business
//! (`slsa`, from the core's verdict), and every page shows the chip beside
//! what it displays.

use crate::storage::{AttestationRow, SubjectRow};
use cloister_attestor_core::dsse::Envelope;
use serde_json::Value;

/// One isolation claim: its name, the recorded value and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub name: &'static str,
    pub value: String,
    pub words: String,
}

/// A resolved dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub uri: String,
    pub digest: String,
}

/// A release as the portal shows it.
#[derive(Debug, Clone)]
pub struct ReleaseView {
    pub id: String,
    pub source_uri: String,
    pub repo: String,
    /// The full git ref (`refs/tags/v1.2.3`), empty when unreadable.
    pub git_ref: String,
    /// The tag or branch name, else the ref, else "(unknown ref)".
    pub label: String,
    pub commit: String,
    pub builder_id: String,
    pub build_type: String,
    pub invocation_id: String,
    pub started_on: String,
    pub finished_on: String,
    pub signed_at: String,
    pub keyid: String,
    pub command: String,
    pub runner: String,
    pub subjects: Vec<SubjectRow>,
    pub dependencies: Vec<Dependency>,
    pub claims: Vec<Claim>,
    /// The statement, pretty-printed; empty when the envelope is unreadable.
    pub statement: String,
    /// Why the payload could not be read, if it could not.
    pub unreadable: Option<String>,
}

fn s(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The statement in an envelope's payload, as JSON (not verified).
fn payload_of(envelope: &str) -> Result<Value, String> {
    let env = Envelope::parse(envelope.as_bytes()).map_err(|e| e.to_string())?;
    serde_json::from_slice(&env.payload).map_err(|e| format!("payload: {e}"))
}

/// `v1.2.3` of `refs/tags/v1.2.3`, `main` of `refs/heads/main`.
pub fn ref_label(git_ref: &str) -> String {
    git_ref
        .strip_prefix("refs/tags/")
        .or_else(|| git_ref.strip_prefix("refs/heads/"))
        .unwrap_or(git_ref)
        .to_owned()
}

/// The release's git ref from a statement.
fn git_ref_of(st: &Value) -> String {
    let from_params = s(
        st,
        "/predicate/buildDefinition/externalParameters/source/ref",
    );
    if !from_params.is_empty() {
        return from_params;
    }
    let uri = s(st, "/predicate/buildDefinition/resolvedDependencies/0/uri");
    uri.rsplit_once('@')
        .map(|(_, r)| r.to_owned())
        .unwrap_or_default()
}

/// The git ref of an envelope's statement, read without building the
/// whole document: the envelope's payload (borrowed), base64-decoded, then
/// only `externalParameters.source.ref` deserialized (serde skips the
/// rest). What the lists of releases need, 50 times per page.
fn git_ref_fast(envelope: &str) -> Option<String> {
    use base64::Engine as _;
    use serde::Deserialize;
    #[derive(Deserialize)]
    struct Env<'a> {
        #[serde(borrow)]
        payload: &'a str,
    }
    #[derive(Deserialize)]
    struct St {
        predicate: Pred,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Pred {
        build_definition: Bd,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Bd {
        external_parameters: Ext,
    }
    #[derive(Deserialize)]
    struct Ext {
        source: Src,
    }
    #[derive(Deserialize)]
    struct Src {
        #[serde(rename = "ref")]
        git_ref: String,
    }
    let env: Env<'_> = serde_json::from_str(envelope).ok()?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env.payload)
        .ok()?;
    let st: St = serde_json::from_slice(&payload).ok()?;
    Some(
        st.predicate
            .build_definition
            .external_parameters
            .source
            .git_ref,
    )
}

impl ReleaseView {
    /// Everything but the pretty-printed statement and the claims (what a
    /// list of releases needs).
    pub fn summary(row: &AttestationRow) -> Self {
        match git_ref_fast(&row.envelope) {
            Some(git_ref) => Self::with_ref(row, git_ref),
            // Not the usual shape: the full reading says what it can.
            None => Self::build(row, false),
        }
    }

    fn with_ref(row: &AttestationRow, git_ref: String) -> Self {
        Self {
            id: row.id.clone(),
            source_uri: row.source_uri.clone(),
            repo: super::display_repo(&row.source_uri),
            label: ref_label(&git_ref),
            git_ref,
            commit: String::new(),
            builder_id: row.builder_id.clone(),
            build_type: String::new(),
            invocation_id: String::new(),
            started_on: String::new(),
            finished_on: String::new(),
            signed_at: super::display_time(row.created_at_ms),
            keyid: row.keyid.clone(),
            command: String::new(),
            runner: String::new(),
            subjects: row.subjects.clone(),
            dependencies: Vec::new(),
            claims: Vec::new(),
            statement: String::new(),
            unreadable: None,
        }
    }

    /// Everything.
    pub fn full(row: &AttestationRow) -> Self {
        Self::build(row, true)
    }

    fn build(row: &AttestationRow, full: bool) -> Self {
        let (st, unreadable) = match payload_of(&row.envelope) {
            Ok(v) => (v, None),
            Err(e) => (Value::Null, Some(e)),
        };
        let git_ref = git_ref_of(&st);
        let label = if git_ref.is_empty() {
            "(unknown ref)".to_owned()
        } else {
            ref_label(&git_ref)
        };
        let mut view = Self {
            id: row.id.clone(),
            source_uri: row.source_uri.clone(),
            repo: super::display_repo(&row.source_uri),
            label,
            commit: s(
                &st,
                "/predicate/buildDefinition/resolvedDependencies/0/digest/gitCommit",
            ),
            git_ref,
            builder_id: row.builder_id.clone(),
            build_type: s(&st, "/predicate/buildDefinition/buildType"),
            invocation_id: s(&st, "/predicate/runDetails/metadata/invocationId"),
            started_on: s(&st, "/predicate/runDetails/metadata/startedOn"),
            finished_on: s(&st, "/predicate/runDetails/metadata/finishedOn"),
            signed_at: super::display_time(row.created_at_ms),
            keyid: row.keyid.clone(),
            command: String::new(),
            runner: String::new(),
            subjects: row.subjects.clone(),
            dependencies: Vec::new(),
            claims: Vec::new(),
            statement: String::new(),
            unreadable,
        };
        if full && view.unreadable.is_none() {
            view.command = match st.pointer("/predicate/buildDefinition/externalParameters/command")
            {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            };
            let label = s(
                &st,
                "/predicate/buildDefinition/internalParameters/runner/label",
            );
            let host = s(
                &st,
                "/predicate/buildDefinition/internalParameters/runner/hostId",
            );
            view.runner = match (label.is_empty(), host.is_empty()) {
                (false, false) => format!("{label} on {host}"),
                (false, true) => label,
                (true, false) => host,
                (true, true) => String::new(),
            };
            if let Some(Value::Array(deps)) =
                st.pointer("/predicate/buildDefinition/resolvedDependencies")
            {
                view.dependencies = deps
                    .iter()
                    .map(|d| Dependency {
                        name: s(d, "/name"),
                        uri: s(d, "/uri"),
                        digest: match d.get("digest") {
                            Some(Value::Object(m)) => m
                                .iter()
                                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or_default()))
                                .collect::<Vec<_>>()
                                .join(" "),
                            _ => String::new(),
                        },
                    })
                    .collect();
            }
            view.claims = claims(
                st.pointer("/predicate/buildDefinition/internalParameters/isolation")
                    .unwrap_or(&Value::Null),
            );
            view.statement = serde_json::to_string_pretty(&st).unwrap_or_default();
        }
        view
    }

    /// A safe file name stem for downloads: the first subject's name with
    /// anything but `[A-Za-z0-9._-]` replaced, else "provenance".
    pub fn file_stem(&self) -> String {
        let name = self
            .subjects
            .first()
            .map(|s| s.name.rsplit('/').next().unwrap_or(&s.name).to_owned())
            .unwrap_or_default();
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(100)
            .collect();
        if clean.trim_matches(['.', '_']).is_empty() {
            "provenance".to_owned()
        } else {
            clean
        }
    }
}

/// The isolation claims in words. Claims that are absent say so.
pub fn claims(iso: &Value) -> Vec<Claim> {
    let text = |k: &str| {
        iso.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    let mut out = Vec::new();
    let missing = |name: &'static str| Claim {
        name,
        value: "(not recorded)".into(),
        words: "The provenance does not record this claim.".into(),
    };
    out.push(match text("network").as_deref() {
        Some("none") => Claim {
            name: "Network",
            value: "none".into(),
            words:
                "No network: the build ran in a network namespace of its own with loopback only."
                    .into(),
        },
        Some(v) => Claim {
            name: "Network",
            value: v.to_owned(),
            words: "The build could reach a network: this is not an isolated build.".into(),
        },
        None => missing("Network"),
    });
    out.push(match iso.get("namespaces").and_then(Value::as_array) {
        Some(ns) => {
            let names: Vec<&str> = ns.iter().filter_map(Value::as_str).collect();
            Claim {
                name: "Namespaces",
                value: names.join(", "),
                words: format!(
                    "A fresh {} namespace{} kept the build apart from the host.",
                    names.join(", "),
                    if names.len() == 1 { "" } else { "s" }
                ),
            }
        }
        None => missing("Namespaces"),
    });
    out.push(match iso.get("noNewPrivs").and_then(Value::as_bool) {
        Some(true) => Claim {
            name: "no_new_privs",
            value: "set".into(),
            words: "Nothing in the build could gain privileges (setuid programs do not elevate)."
                .into(),
        },
        Some(false) => Claim {
            name: "no_new_privs",
            value: "not set".into(),
            words: "The build could have gained privileges through setuid programs.".into(),
        },
        None => missing("no_new_privs"),
    });
    out.push(match iso.get("capabilities").and_then(Value::as_array) {
        Some(c) if c.is_empty() => Claim {
            name: "Capabilities",
            value: "none".into(),
            words: "Every capability was dropped from every set before the build ran.".into(),
        },
        Some(c) => Claim {
            name: "Capabilities",
            value: c
                .iter()
                .map(|x| x.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", "),
            words: "The build kept these capabilities.".into(),
        },
        None => missing("Capabilities"),
    });
    out.push(match text("seccompPolicy") {
        Some(d) => Claim {
            name: "Seccomp policy",
            value: d,
            words: "System calls were filtered by the seccomp policy with this digest.".into(),
        },
        None => missing("Seccomp policy"),
    });
    out.push(match text("profile") {
        Some(d) => Claim {
            name: "Sandbox profile",
            value: d,
            words: "The sandbox was set up from the profile with this digest.".into(),
        },
        None => missing("Sandbox profile"),
    });
    out.push(match iso.get("rootless").and_then(Value::as_bool) {
        Some(true) => Claim {
            name: "Rootless",
            value: "yes".into(),
            words: "The sandbox was started by an unprivileged user.".into(),
        },
        Some(false) => Claim {
            name: "Rootless",
            value: "no".into(),
            words: "The sandbox was started by root, then dropped every privilege.".into(),
        },
        None => missing("Rootless"),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_become_labels() {
        assert_eq!(ref_label("refs/tags/v1.2.3"), "v1.2.3");
        assert_eq!(ref_label("refs/heads/main"), "main");
        assert_eq!(ref_label("refs/pull/1/head"), "refs/pull/1/head");
    }

    #[test]
    fn claims_are_worded_and_missing_ones_said() {
        let c = claims(&serde_json::json!({
            "network": "none", "namespaces": ["net", "pid"], "noNewPrivs": true,
            "capabilities": [], "seccompPolicy": "sha256:aa", "profile": "sha256:bb",
            "rootless": true
        }));
        assert_eq!(c.len(), 7);
        assert!(c[0].words.starts_with("No network"));
        assert_eq!(c[1].value, "net, pid");
        assert_eq!(c[3].value, "none");
        assert_eq!(c[4].value, "sha256:aa");
        let c = claims(&Value::Null);
        assert!(c.iter().all(|c| c.value == "(not recorded)"));
        let c = claims(&serde_json::json!({"network": "host"}));
        assert!(c[0].words.contains("not an isolated build"));
    }

    #[test]
    fn the_fast_ref_reading_agrees_with_the_full_one() {
        let env = cloister_attestor_core::dsse::Envelope {
            payload_type: "application/vnd.in-toto+json".into(),
            payload: serde_json::to_vec(&serde_json::json!({
                "predicate": {"buildDefinition": {
                    "externalParameters": {"source": {"uri": "git+https://h/o/r", "ref": "refs/tags/v2.0.0"}},
                    "resolvedDependencies": [{"uri": "git+https://h/o/r@refs/tags/v2.0.0"}]
                }}
            }))
            .unwrap(),
            signatures: vec![],
        };
        let envelope = env.to_json();
        assert_eq!(git_ref_fast(&envelope).as_deref(), Some("refs/tags/v2.0.0"));
        let row = AttestationRow {
            id: "x".into(),
            created_at_ms: 0,
            keyid: String::new(),
            builder_id: String::new(),
            source_uri: String::new(),
            subjects: vec![],
            envelope,
            bundle: String::new(),
        };
        assert_eq!(ReleaseView::summary(&row).label, "v2.0.0");
        assert_eq!(ReleaseView::full(&row).label, "v2.0.0");
        assert_eq!(git_ref_fast("{}"), None);
    }

    #[test]
    fn file_stems_are_safe() {
        let row = |name: &str| AttestationRow {
            id: "x".into(),
            created_at_ms: 0,
            keyid: String::new(),
            builder_id: String::new(),
            source_uri: String::new(),
            subjects: vec![SubjectRow {
                name: name.into(),
                digest: String::new(),
            }],
            envelope: "{}".into(),
            bundle: "{}".into(),
        };
        assert_eq!(ReleaseView::summary(&row("repo-a")).file_stem(), "repo-a");
        assert_eq!(
            ReleaseView::summary(&row("target/release/app")).file_stem(),
            "app"
        );
        assert_eq!(
            ReleaseView::summary(&row("a\"; x=<y>")).file_stem(),
            "a___x__y_"
        );
        assert_eq!(ReleaseView::summary(&row("..")).file_stem(), "provenance");
        assert!(ReleaseView::summary(&row("x")).unreadable.is_some());
    }
}
