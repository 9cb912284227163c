//! What the sandbox init (and the command's process, before its exec) tells
//! the runner over the report pipe: one line per [`InitMessage`], encoded
//! and decoded here side by side, so the two ends cannot drift apart.
//!
//! A line is a tag and tab-separated fields: `E stage message` (a setup
//! step failed), `S exit|signal n` (the command's status), `U cpu_us
//! maxrss_kb` (usage of every process of the run), `T stage ns` (a start-up
//! stage timestamp, with `CLOISTER_TRACE_STARTUP`), `L disk path` (a capped
//! tmpfs filled up and the run was stopped). Free text (messages, trace
//! stages) has its tabs and newlines replaced by spaces.

use std::path::PathBuf;

/// The setup stage a failure happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Init,
    UserNamespace,
    Namespaces,
    Mount,
    Remount,
    Dev,
    Proc,
    Etc,
    Rootfs,
    PivotRoot,
    Workdir,
    Uts,
    Network,
    Cgroup,
    Capabilities,
    Rlimits,
    Fork,
    Exec,
    Seccomp,
    Wait,
}

impl Stage {
    const ALL: [Stage; 20] = [
        Stage::Init,
        Stage::UserNamespace,
        Stage::Namespaces,
        Stage::Mount,
        Stage::Remount,
        Stage::Dev,
        Stage::Proc,
        Stage::Etc,
        Stage::Rootfs,
        Stage::PivotRoot,
        Stage::Workdir,
        Stage::Uts,
        Stage::Network,
        Stage::Cgroup,
        Stage::Capabilities,
        Stage::Rlimits,
        Stage::Fork,
        Stage::Exec,
        Stage::Seccomp,
        Stage::Wait,
    ];

    /// The name in messages (`sandbox setup failed at mount: …`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Init => "init",
            Stage::UserNamespace => "user namespace",
            Stage::Namespaces => "namespaces",
            Stage::Mount => "mount",
            Stage::Remount => "remount",
            Stage::Dev => "dev",
            Stage::Proc => "proc",
            Stage::Etc => "etc",
            Stage::Rootfs => "rootfs",
            Stage::PivotRoot => "pivot_root",
            Stage::Workdir => "workdir",
            Stage::Uts => "uts",
            Stage::Network => "network",
            Stage::Cgroup => "cgroup",
            Stage::Capabilities => "capabilities",
            Stage::Rlimits => "rlimits",
            Stage::Fork => "fork",
            Stage::Exec => "exec",
            Stage::Seccomp => "seccomp",
            Stage::Wait => "wait",
        }
    }

    fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommandStatus {
    Exited(i32),
    Signaled(i32),
}

/// One line of the report pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InitMessage {
    /// A setup step failed; the process is leaving (125, or 126/127 at exec).
    Failed { stage: Stage, message: String },
    /// The command's final status, sent once everything of the run is gone.
    Status(CommandStatus),
    /// CPU time and the largest peak RSS of every process of the run.
    Usage { cpu_us: u64, maxrss_kb: u64 },
    /// A start-up stage's timestamp (`trace`).
    Trace { stage: String, ns: u64 },
    /// A size-capped tmpfs at this path filled up; the run was stopped.
    TmpfsFull(PathBuf),
}

/// A line the runner cannot read (a bug of one end, never build output:
/// nothing the build runs writes to this pipe).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable line from the sandbox init: {0:?}")]
pub(crate) struct DecodeError(pub String);

fn clean(text: &str) -> String {
    text.replace(['\n', '\t'], " ")
}

impl InitMessage {
    /// The line, newline included.
    pub(crate) fn encode(&self) -> String {
        match self {
            InitMessage::Failed { stage, message } => format!("E\t{stage}\t{}\n", clean(message)),
            InitMessage::Status(CommandStatus::Exited(code)) => format!("S\texit\t{code}\n"),
            InitMessage::Status(CommandStatus::Signaled(sig)) => format!("S\tsignal\t{sig}\n"),
            InitMessage::Usage { cpu_us, maxrss_kb } => format!("U\t{cpu_us}\t{maxrss_kb}\n"),
            InitMessage::Trace { stage, ns } => format!("T\t{}\t{ns}\n", clean(stage)),
            InitMessage::TmpfsFull(path) => {
                format!("L\tdisk\t{}\n", clean(&path.to_string_lossy()))
            }
        }
    }

    /// One line, without its newline.
    pub(crate) fn decode(line: &str) -> Result<InitMessage, DecodeError> {
        let bad = || DecodeError(line.to_string());
        let mut parts = line.splitn(3, '\t');
        let (tag, a, b) = (parts.next(), parts.next(), parts.next());
        fn number<T: std::str::FromStr>(s: Option<&str>, line: &str) -> Result<T, DecodeError> {
            s.and_then(|s| s.parse().ok())
                .ok_or_else(|| DecodeError(line.to_string()))
        }
        Ok(match (tag, a) {
            (Some("E"), Some(stage)) => InitMessage::Failed {
                stage: Stage::parse(stage).ok_or_else(bad)?,
                message: b.ok_or_else(bad)?.to_string(),
            },
            (Some("S"), Some("exit")) => {
                InitMessage::Status(CommandStatus::Exited(number(b, line)?))
            }
            (Some("S"), Some("signal")) => {
                InitMessage::Status(CommandStatus::Signaled(number(b, line)?))
            }
            (Some("U"), Some(cpu)) => InitMessage::Usage {
                cpu_us: number(Some(cpu), line)?,
                maxrss_kb: number(b, line)?,
            },
            (Some("T"), Some(stage)) => InitMessage::Trace {
                stage: stage.to_string(),
                ns: number(b, line)?,
            },
            (Some("L"), Some("disk")) => InitMessage::TmpfsFull(PathBuf::from(b.ok_or_else(bad)?)),
            _ => return Err(bad()),
        })
    }

    /// Every whole line of `text` (a trailing partial line is left out).
    pub(crate) fn decode_all(text: &str) -> Result<Vec<InitMessage>, DecodeError> {
        let whole = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => return Ok(Vec::new()),
        };
        whole.lines().map(InitMessage::decode).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let mut messages = vec![
            InitMessage::Status(CommandStatus::Exited(0)),
            InitMessage::Status(CommandStatus::Exited(127)),
            InitMessage::Status(CommandStatus::Signaled(9)),
            InitMessage::Usage {
                cpu_us: 1234,
                maxrss_kb: 5678,
            },
            InitMessage::Trace {
                stage: "root: /proc masked".into(),
                ns: 42,
            },
            InitMessage::TmpfsFull(PathBuf::from("/tmp")),
        ];
        for stage in Stage::ALL {
            messages.push(InitMessage::Failed {
                stage,
                message: "bind /a on /b: No such file or directory".into(),
            });
        }
        let mut text = String::new();
        for m in &messages {
            let line = m.encode();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(
                InitMessage::decode(line.trim_end_matches('\n')),
                Ok(m.clone())
            );
            text.push_str(&line);
        }
        assert_eq!(InitMessage::decode_all(&text), Ok(messages));
    }

    #[test]
    fn free_text_cannot_break_a_line() {
        let m = InitMessage::Failed {
            stage: Stage::Exec,
            message: "a\tb\nS\texit\t0".into(),
        };
        let line = m.encode();
        assert_eq!(line, "E\texec\ta b S exit 0\n");
        assert_eq!(InitMessage::decode_all(&line).unwrap().len(), 1);
    }

    #[test]
    fn unreadable_lines_are_errors_and_partial_lines_wait() {
        for bad in [
            "",
            "X\t1\t2",
            "E\tnowhere\tmessage",
            "E\tmount",
            "S\texit\tx",
            "S\tstopped\t1",
            "U\t1",
            "T\tstage\t-1",
            "L\tmemory\t/tmp",
        ] {
            assert!(InitMessage::decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(InitMessage::decode_all("S\texit\t0"), Ok(vec![]));
        assert_eq!(
            InitMessage::decode_all("U\t1\t2\nS\tex"),
            Ok(vec![InitMessage::Usage {
                cpu_us: 1,
                maxrss_kb: 2
            }])
        );
    }
}
