//! `[portal]`: the trust portal's settings (sessions, sign-in limits, the
//! Verify page's upload size).

use serde::{Deserialize, Serialize};

/// The portal's settings (`[portal]` in the attestor's TOML config).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// How long a session lasts after sign-in (absolute, not sliding).
    pub session_ttl_minutes: u32,
    /// Sign-in attempts allowed per API key id per minute (also the burst).
    pub signin_attempts_per_minute: u32,
    /// Sign-in attempts allowed per minute over all keys together.
    pub signin_attempts_total_per_minute: u32,
    /// Largest file the Verify page hashes (uploaded, hashed as it streams,
    /// never stored). Bytes or a size (`512M`, `1GiB`).
    #[serde(deserialize_with = "cloister_size::deserialize")]
    pub max_upload_bytes: u64,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            session_ttl_minutes: 8 * 60,
            signin_attempts_per_minute: 10,
            signin_attempts_total_per_minute: 600,
            max_upload_bytes: 512 * 1024 * 1024,
        }
    }
}

impl PortalConfig {
    /// Checks the values (called from `Config::validate`).
    pub fn validate(&self) -> Result<(), String> {
        if self.session_ttl_minutes == 0 || self.session_ttl_minutes > 7 * 24 * 60 {
            return Err("portal.session_ttl_minutes must be between 1 and 10080 (7 days)".into());
        }
        if self.signin_attempts_per_minute == 0 || self.signin_attempts_total_per_minute == 0 {
            return Err(
                "portal.signin_attempts_per_minute and portal.signin_attempts_total_per_minute must be at least 1"
                    .into(),
            );
        }
        if self.max_upload_bytes == 0 {
            return Err("portal.max_upload_bytes must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bounds() {
        assert!(PortalConfig::default().validate().is_ok());
        let bad = PortalConfig {
            session_ttl_minutes: 0,
            ..PortalConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = PortalConfig {
            max_upload_bytes: 0,
            ..PortalConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn upload_limit_takes_the_one_size_syntax() {
        let parse = |text: &str| toml::from_str::<PortalConfig>(text).map(|c| c.max_upload_bytes);
        assert_eq!(parse("max_upload_bytes = 4096").unwrap(), 4096);
        assert_eq!(parse("max_upload_bytes = \"64M\"").unwrap(), 64 << 20);
        assert_eq!(parse("max_upload_bytes = \"1GiB\"").unwrap(), 1 << 30);
        let err = parse("max_upload_bytes = \"huge\"").unwrap_err();
        assert!(err.to_string().contains("not a size"), "{err}");
    }
}
