//! `[policy]` (signed sandbox policies: the manifest the policy gate and
//! evidence packs use) and `[audit]` (audit engagements).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[policy]` in the attestor's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// A signed policy manifest (`policy sign`): every verification then
    /// requires the provenance's profile and seccomp digests to be in it.
    /// Verified against the trusted keys at start (a bad one stops the start).
    pub manifest: Option<PathBuf>,
    /// The policy files the manifest was signed from, copied into packs.
    pub profiles_dir: Option<PathBuf>,
    /// Policies seen in provenance signed within this many days count as in use.
    pub coverage_window_days: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            manifest: None,
            profiles_dir: None,
            coverage_window_days: 30,
        }
    }
}

/// `[audit]` in the attestor's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How long an auditor's key works after `audit open`.
    pub key_validity_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            key_validity_days: 7,
        }
    }
}
