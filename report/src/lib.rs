//! One line for an error and its causes, the way both binaries print a
//! failure: `context: cause: root cause`.
//!
//! Our error types follow two conventions at once: a `thiserror` variant
//! usually puts its cause in its own message (`"{path}: {source}"`, so a
//! plain `{e}` says what went wrong) *and* exposes it through
//! `Error::source` (so callers can inspect it). Printing the whole chain the
//! usual way (anyhow's `{:#}`) therefore says the cause twice:
//! `snapshotting /x: /x: No such file or directory (os error 2): No such file
//! or directory (os error 2)`. [`chain`] walks the same chain but leaves out
//! a cause whose text its parent's message already contains.
#![forbid(unsafe_code)]

use std::error::Error;
use std::fmt;

/// Displays `err` and each cause in its `source` chain, joined by `": "`,
/// skipping a cause whose text is already part of its parent's message.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parent = self.0.to_string();
        f.write_str(&parent)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !parent.contains(&text) {
                write!(f, ": {text}")?;
            }
            parent = text;
            next = cause.source();
        }
        Ok(())
    }
}

/// [`Chain`] as a `String`.
pub fn chain(err: &(dyn Error + 'static)) -> String {
    Chain(err).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Embeds {
        path: String,
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("opening the store")]
    struct Wraps {
        source: io::Error,
    }

    fn not_found() -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, "No such file or directory")
    }

    #[test]
    fn a_cause_in_its_parents_message_is_said_once() {
        let e = anyhow::Error::new(Embeds {
            path: "/x".into(),
            source: not_found(),
        })
        .context("snapshotting /x");
        assert_eq!(
            chain(e.as_ref()),
            "snapshotting /x: /x: No such file or directory"
        );
        // What anyhow's alternate form says, for contrast.
        assert_eq!(
            format!("{e:#}"),
            "snapshotting /x: /x: No such file or directory: No such file or directory"
        );
    }

    #[test]
    fn a_cause_not_in_the_message_is_kept() {
        let e = anyhow::Error::new(Wraps {
            source: not_found(),
        })
        .context("serve");
        assert_eq!(
            chain(e.as_ref()),
            "serve: opening the store: No such file or directory"
        );
    }

    #[test]
    fn a_single_error_is_its_message() {
        assert_eq!(chain(&not_found()), "No such file or directory");
    }

    #[test]
    fn only_the_immediate_parent_decides() {
        // The root cause repeats the outer context's words but not its
        // parent's: it is still said.
        let e = anyhow::Error::new(Wraps {
            source: io::Error::other("serve"),
        })
        .context("serve");
        assert_eq!(chain(e.as_ref()), "serve: opening the store: serve");
    }
}
