//! The SLSA chip of a verdict: what the portal says about a release's
//! provenance, in words (never colour alone).
//!
//! - **SLSA Build L3**: the provenance verifies (a trusted key, Cloister's
//!   build type, the isolated builder's claims: network none, no
//!   capabilities, no_new_privs, a network namespace).
//! - **SLSA Build L2**: signed by a trusted key and a valid statement, but
//!   the isolation claims or the build type fall short (signed provenance
//!   from a build platform, not from the isolated builder).
//! - **SLSA Build L1**: provenance exists but no signature is by a key this
//!   attestor trusts (e.g. a key rotated out), so it is not authenticated.
//! - **Unverified**: anything else (a signature that does not verify, an
//!   unreadable envelope, a statement that is not SLSA provenance...).
//!
//! Every level below L3 carries the verdict's first reason code.

use cloister_attestor_core::verify::{ReasonCode, Verdict};

/// A chip: the level's label, its CSS class, and the reason when below L3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chip {
    pub level: Level,
    pub label: &'static str,
    /// `chip-l3`, `chip-l2`, `chip-l1` or `chip-none`.
    pub class: &'static str,
    /// The first reason code, below L3.
    pub reason: Option<&'static str>,
    /// Its sentence.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    L3,
    L2,
    L1,
    Unverified,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::L3 => "SLSA Build L3",
            Level::L2 => "SLSA Build L2",
            Level::L1 => "SLSA Build L1",
            Level::Unverified => "Unverified",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Level::L3 => "chip-l3",
            Level::L2 => "chip-l2",
            Level::L1 => "chip-l1",
            Level::Unverified => "chip-none",
        }
    }
}

/// The chip for a verdict.
pub fn chip(v: &Verdict) -> Chip {
    let first = v.reasons.first();
    let level = if v.verified {
        Level::L3
    } else {
        match first.map(|r| r.code) {
            // The signature verified (keyid is set only then) and the
            // statement parsed; only the builder's claims fall short.
            Some(
                ReasonCode::IsolationClaimMissing
                | ReasonCode::IsolationNetworkNotNone
                | ReasonCode::IsolationClaimInsufficient
                | ReasonCode::BuildTypeMismatch,
            ) if v.keyid.is_some() => Level::L2,
            Some(ReasonCode::UntrustedKey) => Level::L1,
            _ => Level::Unverified,
        }
    };
    Chip {
        level,
        label: level.label(),
        class: level.class(),
        reason: first.map(|r| r.code.as_str()),
        detail: first.map(|r| r.message.clone()),
    }
}

/// The chip when there is nothing to verify (a stored row without
/// subjects, which the signing endpoint never writes).
pub fn unverifiable(code: &'static str, detail: &str) -> Chip {
    Chip {
        level: Level::Unverified,
        label: Level::Unverified.label(),
        class: Level::Unverified.class(),
        reason: Some(code),
        detail: Some(detail.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_attestor_core::verify::Reason;

    fn verdict(verified: bool, keyid: bool, code: Option<ReasonCode>) -> Verdict {
        let mut v: Verdict = serde_json::from_value(serde_json::json!({
            "verified": verified, "reasons": [], "builderId": null,
            "slsaLevel": null, "subject": null
        }))
        .unwrap();
        v.keyid = keyid.then(|| "k".to_owned());
        if let Some(c) = code {
            v.reasons.push(Reason {
                code: c,
                message: format!("because {c}"),
            });
        }
        v
    }

    #[test]
    fn levels_follow_the_verdict() {
        let c = chip(&verdict(true, true, None));
        assert_eq!(
            (c.label, c.class, c.reason),
            ("SLSA Build L3", "chip-l3", None)
        );
        let c = chip(&verdict(
            false,
            true,
            Some(ReasonCode::IsolationNetworkNotNone),
        ));
        assert_eq!(c.label, "SLSA Build L2");
        assert_eq!(c.reason, Some("isolation_network_not_none"));
        assert_eq!(
            chip(&verdict(false, true, Some(ReasonCode::BuildTypeMismatch))).level,
            Level::L2
        );
        assert_eq!(
            chip(&verdict(false, false, Some(ReasonCode::UntrustedKey))).level,
            Level::L1
        );
        let c = chip(&verdict(false, false, Some(ReasonCode::SignatureInvalid)));
        assert_eq!((c.label, c.class), ("Unverified", "chip-none"));
        assert_eq!(c.reason, Some("signature_invalid"));
        assert_eq!(c.detail.as_deref(), Some("because signature_invalid"));
        // An isolation reason without a verified signature is no L2.
        assert_eq!(
            chip(&verdict(
                false,
                false,
                Some(ReasonCode::IsolationClaimMissing)
            ))
            .level,
            Level::Unverified
        );
        // A mismatch of the row's own source or subject is no L2 either.
        assert_eq!(
            chip(&verdict(false, true, Some(ReasonCode::SourceUriMismatch))).level,
            Level::Unverified
        );
    }
}
