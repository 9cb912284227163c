//! The container-hooks contract of the GitHub Actions runner, as typed
//! requests: one JSON document on stdin with `command`, `responseFile`,
//! `args` and `state` (actions/runner `ContainerHooks/HookInput.cs`, the
//! `hooklib` interfaces of actions/runner-container-hooks). Parsing is
//! strict: size-limited, duplicate keys refused, unknown fields refused at
//! every level we act on (a field we do not understand could change what a
//! step may do), and the required fields of each command checked, each
//! with a one-line message.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The largest request accepted (the runner sends the step's environment,
/// which can be large, but not megabytes).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Json(#[from] cloister_attestor_core::json::JsonError),
    #[error("malformed request: {0}")]
    Shape(String),
    #[error(
        "unknown command {0:?} (the contract has prepare_job, run_script_step, run_container_step and cleanup_job)"
    )]
    UnknownCommand(String),
    #[error("malformed {command} request: {message}")]
    Args {
        command: &'static str,
        message: String,
    },
    #[error("{command}: {field} is required")]
    Missing {
        command: &'static str,
        field: &'static str,
    },
    #[error("{command}: {message}")]
    Invalid {
        command: &'static str,
        message: String,
    },
}

/// The four commands of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    PrepareJob,
    RunScriptStep,
    RunContainerStep,
    CleanupJob,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::PrepareJob => "prepare_job",
            Command::RunScriptStep => "run_script_step",
            Command::RunContainerStep => "run_container_step",
            Command::CleanupJob => "cleanup_job",
        }
    }
}

/// The envelope every request shares.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRequest {
    command: serde_json::Value,
    #[serde(default)]
    response_file: Option<PathBuf>,
    #[serde(default)]
    args: Option<serde_json::Value>,
    #[serde(default)]
    state: Option<serde_json::Value>,
}

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    pub command: Command,
    pub response_file: Option<PathBuf>,
    /// The state the previous response returned (`null` or `{}` before
    /// `prepare_job`).
    pub state: Option<serde_json::Value>,
    pub args: Args,
}

/// The arguments of each command.
#[derive(Debug)]
pub enum Args {
    PrepareJob(PrepareJobArgs),
    RunScriptStep(ScriptStepArgs),
    RunContainerStep(ContainerArgs),
    CleanupJob,
}

/// `prepare_job` args: the job container and service containers.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrepareJobArgs {
    #[serde(default)]
    pub container: Option<ContainerArgs>,
    /// Service containers: refused when present, so their shape is not
    /// examined further.
    #[serde(default)]
    pub services: Option<Vec<serde_json::Value>>,
}

/// A container as the runner describes it (`HookContainer`): the job
/// container in `prepare_job`, the step's image in `run_container_step`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerArgs {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub dockerfile: Option<String>,
    #[serde(default)]
    pub entry_point: Option<String>,
    #[serde(default)]
    pub entry_point_args: Option<Vec<String>>,
    #[serde(default)]
    pub working_directory: Option<String>,
    #[serde(default)]
    pub create_options: Option<String>,
    /// Registry credentials: never used (nothing is pulled).
    #[serde(default)]
    pub registry: Option<serde_json::Value>,
    #[serde(default)]
    pub environment_variables: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub port_mappings: Option<Vec<String>>,
    #[serde(default)]
    pub system_mount_volumes: Option<Vec<Mount>>,
    #[serde(default)]
    pub user_mount_volumes: Option<Vec<Mount>>,
    /// Container steps only.
    #[serde(default)]
    pub prepend_path: Option<PrependPath>,
}

/// A mount the runner asks for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    pub source_volume_path: String,
    pub target_volume_path: String,
    #[serde(default)]
    pub read_only: bool,
}

/// `run_script_step` args.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptStepArgs {
    #[serde(default)]
    pub entry_point: Option<String>,
    #[serde(default)]
    pub entry_point_args: Option<Vec<String>>,
    #[serde(default)]
    pub environment_variables: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub prepend_path: Option<PrependPath>,
    #[serde(default)]
    pub working_directory: Option<String>,
}

/// `prependPath`: the runner sends one `:`-joined string, the hooklib
/// interface (and older runners) a list; both are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PrependPath {
    Joined(String),
    List(Vec<String>),
}

impl PrependPath {
    /// The directories, first first, empty entries dropped.
    pub fn dirs(&self) -> Vec<String> {
        match self {
            PrependPath::Joined(s) => s.split(':').map(str::to_string).collect(),
            PrependPath::List(v) => v.clone(),
        }
        .into_iter()
        .filter(|d| !d.is_empty())
        .collect()
    }
}

fn args<T: DeserializeOwned + Default>(
    command: Command,
    value: Option<serde_json::Value>,
) -> Result<T, RequestError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v).map_err(|e| RequestError::Args {
            command: command.as_str(),
            message: e.to_string(),
        }),
    }
}

impl Request {
    /// Parses one request document.
    pub fn parse(bytes: &[u8]) -> Result<Request, RequestError> {
        cloister_attestor_core::json::check(bytes, MAX_REQUEST_BYTES)?;
        let raw: RawRequest =
            serde_json::from_slice(bytes).map_err(|e| RequestError::Shape(e.to_string()))?;
        let command = match raw.command.as_str() {
            Some("prepare_job") => Command::PrepareJob,
            Some("run_script_step") => Command::RunScriptStep,
            Some("run_container_step") => Command::RunContainerStep,
            Some("cleanup_job") => Command::CleanupJob,
            Some(other) => return Err(RequestError::UnknownCommand(other.into())),
            None => {
                return Err(RequestError::Shape(format!(
                    "command must be a string, got {}",
                    raw.command
                )));
            }
        };
        let args = match command {
            Command::PrepareJob => Args::PrepareJob(args(command, raw.args)?),
            Command::RunScriptStep => Args::RunScriptStep(args(command, raw.args)?),
            Command::RunContainerStep => Args::RunContainerStep(args(command, raw.args)?),
            // The runner sends `{}` or nothing; anything else is not ours to ignore.
            Command::CleanupJob => match raw.args {
                None | Some(serde_json::Value::Null) => Args::CleanupJob,
                Some(serde_json::Value::Object(m)) if m.is_empty() => Args::CleanupJob,
                Some(other) => {
                    return Err(RequestError::Args {
                        command: "cleanup_job",
                        message: format!("takes no args, got {other}"),
                    });
                }
            },
        };
        Ok(Request {
            command,
            response_file: raw.response_file,
            state: raw.state,
            args,
        })
    }
}

/// A clean absolute path (no `.`, `..` or empty components).
pub fn is_clean_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// A required, non-empty string field.
pub fn required<'a>(
    command: Command,
    field: &'static str,
    value: &'a Option<String>,
) -> Result<&'a str, RequestError> {
    match value.as_deref() {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(RequestError::Missing {
            command: command.as_str(),
            field,
        }),
    }
}

/// A required working directory: a clean absolute path inside the sandbox.
pub fn working_directory(
    command: Command,
    value: &Option<String>,
) -> Result<PathBuf, RequestError> {
    let w = PathBuf::from(required(command, "workingDirectory", value)?);
    if !is_clean_absolute(&w) {
        return Err(RequestError::Invalid {
            command: command.as_str(),
            message: format!(
                "workingDirectory {} must be a clean absolute path",
                w.display()
            ),
        });
    }
    Ok(w)
}

/// Environment variable names: non-empty, no `=` or NUL (values: no NUL).
pub fn check_env(
    command: Command,
    env: Option<&BTreeMap<String, String>>,
) -> Result<(), RequestError> {
    for (k, v) in env.into_iter().flatten() {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(RequestError::Invalid {
                command: command.as_str(),
                message: format!("environment variable {k:?} is not a valid name=value"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_examples_parse() {
        let prepare = br#"{"command":"prepare_job","responseFile":"/r.json","state":{},
            "args":{"container":{"image":"node:22","workingDirectory":"/__w/r/r",
              "createOptions":null,"environmentVariables":{"A":"b"},"entryPointArgs":[],
              "registry":{"username":null,"password":null,"serverUrl":"ghcr.io"},
              "portMappings":[],"userMountVolumes":[],
              "systemMountVolumes":[{"sourceVolumePath":"/w","targetVolumePath":"/__w","readOnly":false}]},
             "services":[]}}"#;
        let r = Request::parse(prepare).unwrap();
        assert_eq!(r.command, Command::PrepareJob);
        let Args::PrepareJob(a) = r.args else {
            panic!()
        };
        assert_eq!(a.container.unwrap().image.as_deref(), Some("node:22"));
        let script = br#"{"command":"run_script_step","responseFile":null,"state":{"x":1},
            "args":{"entryPointArgs":["-e","s.sh"],"entryPoint":"bash",
              "environmentVariables":{"NODE_ENV":"development"},
              "prependPath":["/foo/bar","bar/foo"],"workingDirectory":"/__w/repo/repo"}}"#;
        let r = Request::parse(script).unwrap();
        let Args::RunScriptStep(a) = r.args else {
            panic!()
        };
        assert_eq!(a.prepend_path.unwrap().dirs(), ["/foo/bar", "bar/foo"]);
        let joined: PrependPath = serde_json::from_str(r#""/a:/b::""#).unwrap();
        assert_eq!(joined.dirs(), ["/a", "/b"]);
        let cleanup = br#"{"command":"cleanup_job","responseFile":"/r.json","args":{},"state":{}}"#;
        assert_eq!(
            Request::parse(cleanup).unwrap().command,
            Command::CleanupJob
        );
    }

    #[test]
    fn malformed_requests_are_refused_with_their_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "malformed request"),
            (b"{\"command\":", "malformed request"),
            (b"[]", "malformed request"),
            (
                br#"{"command":"prepare_job","command":"cleanup_job"}"#,
                "duplicate",
            ),
            (br#"{"command":"run_it"}"#, "unknown command \"run_it\""),
            (br#"{"command":7}"#, "command must be a string"),
            (
                br#"{"command":"cleanup_job","extra":1}"#,
                "unknown field `extra`",
            ),
            (br#"{"responseFile":"/r"}"#, "missing field `command`"),
            (
                br#"{"command":"run_script_step","args":{"entryPoint":"sh","privileged":true}}"#,
                "unknown field `privileged`",
            ),
            (
                br#"{"command":"run_script_step","args":{"entryPointArgs":"-e"}}"#,
                "malformed run_script_step request",
            ),
            (
                br#"{"command":"cleanup_job","args":{"x":1}}"#,
                "takes no args",
            ),
        ];
        for (input, expected) in cases {
            let err = Request::parse(input).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{}: {err}",
                String::from_utf8_lossy(input)
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(
            Request::parse(&big)
                .unwrap_err()
                .to_string()
                .contains("over the limit")
        );
    }
}
