//! The result of one `cloister-runner run` as JSON: what `run --json`
//! prints and `run --result FILE` writes, and what the runner daemon reads
//! back. One type for both ends (API boundary): every field is required on
//! reading, nulls included (a renamed or missing field is an error, never a
//! silent `None`), and unknown fields are refused.

use crate::facts::IsolationFacts;
use crate::limit::LimitKind;
use crate::run::Outcome;
use crate::spec::Limits;
use serde::{Deserialize, Deserializer, Serialize};

/// An `Option` field that must be present (`null` for none): serde treats a
/// missing `Option` as `None` unless it has its own deserializer.
fn required<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// A run that happened (whatever the command did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunReport {
    /// The command's exit code, when it exited.
    #[serde(deserialize_with = "required")]
    pub exit_code: Option<i32>,
    /// The signal that killed it, when it was killed.
    #[serde(deserialize_with = "required")]
    pub signal: Option<i32>,
    /// The status `cloister-runner run` exits with.
    pub status_code: i32,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    #[serde(deserialize_with = "required")]
    pub peak_memory_bytes: Option<u64>,
    /// The limit that stopped the run, if one did.
    #[serde(deserialize_with = "required")]
    pub limit_hit: Option<LimitKind>,
    /// Limits the profile marks optional that could not be applied.
    pub unapplied_limits: Vec<LimitKind>,
    /// The limits in force.
    pub limits: LimitsReport,
    /// How much the writable binds grew, when the workspace was watched.
    #[serde(deserialize_with = "required")]
    pub workspace_growth_bytes: Option<u64>,
    pub isolation: IsolationFacts,
}

/// The limits a run had (`null`: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsReport {
    #[serde(deserialize_with = "required")]
    pub timeout_secs: Option<u64>,
    #[serde(deserialize_with = "required")]
    pub memory_bytes: Option<u64>,
    #[serde(deserialize_with = "required")]
    pub pids: Option<u64>,
    #[serde(deserialize_with = "required")]
    pub milli_cpus: Option<u32>,
    #[serde(deserialize_with = "required")]
    pub tmp_bytes: Option<u64>,
    #[serde(deserialize_with = "required")]
    pub workspace_bytes: Option<u64>,
}

impl From<&Limits> for LimitsReport {
    fn from(l: &Limits) -> Self {
        LimitsReport {
            timeout_secs: l.timeout.map(|t| t.as_secs()),
            memory_bytes: l.memory,
            pids: l.pids,
            milli_cpus: l.cpus.map(|c| c.0),
            tmp_bytes: l.tmp,
            workspace_bytes: l.workspace,
        }
    }
}

impl From<&Outcome> for RunReport {
    fn from(o: &Outcome) -> Self {
        RunReport {
            exit_code: o.exit_code,
            signal: o.signal,
            status_code: o.status_code(),
            wall_ms: o.wall.as_millis() as u64,
            cpu_ms: o.cpu.as_millis() as u64,
            peak_memory_bytes: o.peak_memory_bytes,
            limit_hit: o.limit_hit,
            unapplied_limits: o.unapplied_limits.clone(),
            limits: LimitsReport::from(&o.limits),
            workspace_growth_bytes: o.workspace_growth_bytes,
            isolation: o.isolation.clone(),
        }
    }
}

/// A run that could not happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunFailure {
    /// The one-line reason.
    pub error: String,
    /// 125, or 126/127 when the command could not be executed / found.
    pub status_code: i32,
    /// The isolation it would have had, when the spec got that far.
    #[serde(deserialize_with = "required")]
    pub isolation: Option<IsolationFacts>,
}

/// What `run --json` writes: a report, or the reason there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RunResult {
    Ran(RunReport),
    Failed(RunFailure),
}

/// Why a run result could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("not a JSON object: {0}")]
    NotAnObject(String),
    #[error("{0}")]
    Shape(#[from] serde_json::Error),
}

impl RunResult {
    /// Reads a result: an object with an `error` member is a
    /// [`RunFailure`], any other a [`RunReport`], each checked field by
    /// field (the error names the field that is missing or unknown).
    pub fn parse(bytes: &[u8]) -> Result<RunResult, ReportError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ReportError::NotAnObject(e.to_string()))?;
        let Some(object) = value.as_object() else {
            return Err(ReportError::NotAnObject(format!("{value}")));
        };
        Ok(if object.contains_key("error") {
            RunResult::Failed(serde_json::from_value(value)?)
        } else {
            RunResult::Ran(serde_json::from_value(value)?)
        })
    }

    /// The one line `run --json` prints (newline included).
    pub fn to_line(&self) -> String {
        let mut text = serde_json::to_string(self).expect("a run result serializes");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isolation() -> IsolationFacts {
        IsolationFacts {
            network: "none".into(),
            namespaces: ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"]
                .map(String::from)
                .to_vec(),
            no_new_privs: true,
            capabilities: vec![],
            seccomp_policy: format!("sha256:{}", "a".repeat(64)),
            profile: format!("sha256:{}", "b".repeat(64)),
            rootless: true,
        }
    }

    fn report() -> RunReport {
        RunReport {
            exit_code: None,
            signal: Some(9),
            status_code: 137,
            wall_ms: 1000,
            cpu_ms: 250,
            peak_memory_bytes: Some(33554432),
            limit_hit: Some(LimitKind::Disk),
            unapplied_limits: vec![LimitKind::Pids],
            limits: LimitsReport {
                timeout_secs: Some(3600),
                memory_bytes: None,
                pids: Some(4096),
                milli_cpus: Some(1500),
                tmp_bytes: Some(1 << 30),
                workspace_bytes: Some(16 << 30),
            },
            workspace_growth_bytes: Some(1 << 20),
            isolation: isolation(),
        }
    }

    #[test]
    fn both_shapes_round_trip() {
        for r in [
            RunResult::Ran(report()),
            RunResult::Failed(RunFailure {
                error: "sandbox setup failed at mount: x".into(),
                status_code: 125,
                isolation: Some(isolation()),
            }),
            RunResult::Failed(RunFailure {
                error: "profile x: no profile named \"x\"".into(),
                status_code: 125,
                isolation: None,
            }),
        ] {
            let line = r.to_line();
            assert_eq!(RunResult::parse(line.as_bytes()).unwrap(), r, "{line}");
        }
    }

    /// A field renamed, removed or added by one end is an error naming it,
    /// not a silent `None` (nulls are fine where the type allows them).
    #[test]
    fn missing_and_unknown_fields_are_errors_that_name_them() {
        let good = serde_json::to_value(report()).unwrap();
        for (field, path) in [
            ("exitCode", None),
            ("limitHit", None),
            ("isolation", None),
            ("tmpBytes", Some("limits")),
            ("seccompPolicy", Some("isolation")),
        ] {
            let mut v = good.clone();
            let obj = match path {
                Some(p) => v[p].as_object_mut().unwrap(),
                None => v.as_object_mut().unwrap(),
            };
            obj.remove(field);
            let err = RunResult::parse(v.to_string().as_bytes()).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("missing field `{field}`")),
                "{field}: {err}"
            );
        }
        let mut v = good.clone();
        v["exitcode"] = serde_json::json!(0);
        let err = RunResult::parse(v.to_string().as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `exitcode`"),
            "{err}"
        );
        let mut v = good;
        v["limitHit"] = serde_json::json!("fuel");
        assert!(RunResult::parse(v.to_string().as_bytes()).is_err());
        assert!(matches!(
            RunResult::parse(b"[1]"),
            Err(ReportError::NotAnObject(_))
        ));
        assert!(RunResult::parse(b"{\"error\": \"x\", \"statusCode\": 125}").is_err());
    }
}
