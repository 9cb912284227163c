//! Server-side sessions and CSRF tokens.
//!
//! Sign-in creates a random 256-bit token; the browser keeps it in the
//! cookie [`COOKIE`] (`HttpOnly`, `SameSite=Strict`, `Path=/portal`,
//! `Secure` when the listener speaks TLS), the store keeps only its SHA-256
//! with the principal and an absolute expiry. Every request looks the
//! session up (expired, deleted or with a revoked key: no session), so
//! sign-out and key revocation take effect at once.
//!
//! CSRF: each session's token for forms is derived from its secret token
//! (SHA-256 of a label and the token): unguessable without the cookie, and
//! knowing it reveals nothing about the cookie. Every POST must carry it;
//! POSTs are also refused when the browser says they come from another site
//! (`Origin` not this host, or `Sec-Fetch-Site: cross-site`). Before
//! sign-in the same scheme runs on a short-lived pre-session cookie
//! ([`SIGNIN_COOKIE`]), so a sign-in form cannot be posted from elsewhere
//! either (login CSRF).

use super::PortalError;
use crate::service::AppState;
use crate::service::auth::AuditorAuthed;
use crate::service::auth::Authed;
use crate::storage::portal::{SESSION_KIND_AUDITOR, SESSION_KIND_TENANT, SessionRow};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The session cookie.
pub const COOKIE: &str = "cloister_portal";
/// The pre-session cookie of the sign-in form.
pub const SIGNIN_COOKIE: &str = "cloister_portal_signin";
/// How long a sign-in form stays valid.
pub const SIGNIN_FORM_TTL_SECS: i64 = 30 * 60;

/// A new random token (256 bits, base64url).
pub fn new_token() -> Result<String, PortalError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| PortalError::Internal(format!("randomness: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// The stored form of a session token: hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The CSRF token of a session (or sign-in form) token.
pub fn csrf_for(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"cloister-portal-csrf\0");
    h.update(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Compares two strings in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Who is signed in: a tenant (with one of its API keys) or an auditor
/// (with its engagement's expiring `clsa_` key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A tenant, signed in with one of its API keys.
    Tenant {
        tenant_id: String,
        tenant_name: String,
        key_id: String,
    },
    /// An auditor, signed in with the key of one engagement: it sees the
    /// repositories, verifies (within its engagement's frozen set, never
    /// metered) and follows that engagement; no usage or billing.
    Auditor {
        /// The auditor tenant (plan `Auditor`, never billed).
        tenant_id: String,
        /// The auditor's name on the engagement.
        auditor: String,
        key_id: String,
        engagement_id: String,
        /// When the key (and so the session) stops working.
        expires_at_ms: i64,
    },
}

impl Principal {
    /// The tenant whose data this principal may see (an auditor's is its
    /// auditor tenant, which has no usage or invoices).
    pub fn tenant_id(&self) -> &str {
        match self {
            Principal::Tenant { tenant_id, .. } | Principal::Auditor { tenant_id, .. } => tenant_id,
        }
    }

    pub fn display_name(&self) -> &str {
        match self {
            Principal::Tenant { tenant_name, .. } => tenant_name,
            Principal::Auditor { auditor, .. } => auditor,
        }
    }

    /// Shown beside the name.
    pub fn role(&self) -> &'static str {
        match self {
            Principal::Tenant { .. } => "tenant",
            Principal::Auditor { .. } => "auditor",
        }
    }

    pub fn is_auditor(&self) -> bool {
        matches!(self, Principal::Auditor { .. })
    }

    /// The key the principal signed in with (its rate-limit bucket).
    pub fn key_id(&self) -> &str {
        match self {
            Principal::Tenant { key_id, .. } | Principal::Auditor { key_id, .. } => key_id,
        }
    }

    /// The API's tenant identity: metering (usage events, idempotency
    /// records) is keyed by it exactly as for API calls. An auditor has
    /// none: what is metered (downloads of stored provenance, invoices) is
    /// refused to it.
    pub fn authed(&self) -> Result<Authed, PortalError> {
        match self {
            Principal::Tenant {
                tenant_id, key_id, ..
            } => Ok(Authed {
                tenant_id: tenant_id.clone(),
                key_id: key_id.clone(),
            }),
            Principal::Auditor { .. } => Err(PortalError::Forbidden(
                "auditors download provenance in their engagement's sign-off pack (the Audit page)"
                    .into(),
            )),
        }
    }

    /// The API's auditor identity (`POST /v1/verify` looks only in the
    /// engagement's frozen set for it and meters nothing).
    pub fn auditor(&self) -> Option<AuditorAuthed> {
        match self {
            Principal::Auditor {
                tenant_id,
                key_id,
                engagement_id,
                ..
            } => Some(AuditorAuthed {
                key_id: key_id.clone(),
                tenant_id: tenant_id.clone(),
                engagement_id: engagement_id.clone(),
            }),
            Principal::Tenant { .. } => None,
        }
    }

    /// The principal a stored session stands for at `now_ms`, if it still
    /// holds: a tenant's key unrevoked; an auditor's key unrevoked and
    /// unexpired.
    fn from_row(row: SessionRow, now_ms: i64) -> Option<Self> {
        match row.kind.as_str() {
            SESSION_KIND_TENANT if row.api_key_live => Some(Principal::Tenant {
                tenant_id: row.tenant_id,
                tenant_name: row.tenant_name,
                key_id: row.key_id,
            }),
            SESSION_KIND_AUDITOR => {
                let k = row.auditor?;
                (k.revoked_at_ms.is_none() && now_ms < k.expires_at_ms).then_some(
                    Principal::Auditor {
                        tenant_id: row.tenant_id,
                        auditor: k.auditor,
                        key_id: row.key_id,
                        engagement_id: k.engagement_id,
                        expires_at_ms: k.expires_at_ms,
                    },
                )
            }
            // A revoked key, or a kind this build does not know: no session.
            _ => None,
        }
    }
}

/// A live session (the extractor every signed-in page takes). For POST
/// requests the origin checks have passed; the CSRF token is checked by
/// the handler with [`Session::check_csrf`] once it has read the form.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// SHA-256 of the token (the stored key).
    pub token_hash: String,
    /// The token forms must carry.
    pub csrf: String,
}

impl Session {
    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, given: &str) -> Result<(), PortalError> {
        if same_secret(given, &self.csrf) {
            Ok(())
        } else {
            Err(PortalError::Csrf)
        }
    }
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A `Set-Cookie` value for one of the portal's cookies: `HttpOnly`,
/// `SameSite=Strict`, `Path=/portal`, `Secure` when `secure`; `max_age`
/// 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let c = cookie::Cookie::build((name, value))
        .path("/portal")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build();
    HeaderValue::from_str(&c.to_string()).expect("cookie of token characters is a header value")
}

/// Refuses a state-changing request the browser marks as coming from
/// another origin: `Sec-Fetch-Site` (sent by current browsers) must be
/// `same-origin`; an `Origin` must name this host (as `Host` gives it),
/// except the opaque `null` a same-origin request may carry when
/// `Sec-Fetch-Site` vouches for it. Clients that send neither (not
/// browsers) pass here and still need the CSRF token.
pub fn check_origin(headers: &HeaderMap) -> Result<(), PortalError> {
    let site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
    if site.is_some_and(|s| s != b"same-origin") {
        return Err(PortalError::Csrf);
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    if origin.as_bytes() == b"null" && site.is_some() {
        return Ok(());
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(PortalError::Csrf),
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PortalError> {
        let token = cookie(&parts.headers, COOKIE).ok_or(PortalError::SignInRequired)?;
        let token_hash = hash_token(token);
        let row = state
            .storage
            .find_session(&token_hash, state.clock.now_ms())
            .await?
            .ok_or(PortalError::SignInRequired)?;
        let principal =
            Principal::from_row(row, state.clock.now_ms()).ok_or(PortalError::SignInRequired)?;
        if parts.method != Method::GET && parts.method != Method::HEAD {
            check_origin(&parts.headers)?;
        }
        Ok(Session {
            principal,
            token_hash,
            csrf: csrf_for(token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn tokens_are_random_and_csrf_tokens_do_not_reveal_them() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_ne!(csrf_for(&a), csrf_for(&b));
        assert!(!csrf_for(&a).contains(&a));
        assert_ne!(hash_token(&a), csrf_for(&a));
        assert!(same_secret(&csrf_for(&a), &csrf_for(&a)));
        assert!(!same_secret(&csrf_for(&a), &csrf_for(&b)));
        assert!(!same_secret("", &csrf_for(&a)));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[("cookie", "a=1; cloister_portal=tok; b=2")]);
        assert_eq!(cookie(&h, COOKIE), Some("tok"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "cloister_portal=x")]);
        assert_eq!(cookie(&h, COOKIE), Some("x"));
        assert_eq!(
            cookie(&headers(&[("cookie", "cloister_portal=")]), COOKIE),
            None
        );
        assert_eq!(cookie(&headers(&[]), COOKIE), None);
    }

    #[test]
    fn set_cookie_has_every_attribute() {
        let v = set_cookie(COOKIE, "tok", 60, true);
        let s = v.to_str().unwrap();
        for part in [
            "cloister_portal=tok",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/portal",
            "Secure",
            "Max-Age=60",
        ] {
            assert!(s.contains(part), "{s} lacks {part}");
        }
        assert!(
            !set_cookie(COOKIE, "tok", 60, false)
                .to_str()
                .unwrap()
                .contains("Secure")
        );
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        assert!(check_origin(&headers(&[("host", "127.0.0.1:8450")])).is_ok());
        assert!(
            check_origin(&headers(&[
                ("host", "127.0.0.1:8450"),
                ("origin", "http://127.0.0.1:8450")
            ]))
            .is_ok()
        );
        // Sec-Fetch-Site vouches for an opaque `null` origin.
        assert!(
            check_origin(&headers(&[
                ("host", "127.0.0.1:8450"),
                ("origin", "null"),
                ("sec-fetch-site", "same-origin")
            ]))
            .is_ok()
        );
        for bad in [
            vec![
                ("host", "127.0.0.1:8450"),
                ("origin", "http://localhost:8450"),
            ],
            vec![
                ("host", "127.0.0.1:8450"),
                ("origin", "http://localhost:8450"),
                ("sec-fetch-site", "same-origin"),
            ],
            vec![("host", "127.0.0.1:8450"), ("sec-fetch-site", "none")],
            vec![
                ("host", "127.0.0.1:8450"),
                ("origin", "http://127.0.0.1:9999"),
            ],
            vec![("host", "127.0.0.1:8450"), ("origin", "null")],
            vec![("host", "127.0.0.1:8450"), ("sec-fetch-site", "cross-site")],
            vec![("host", "127.0.0.1:8450"), ("sec-fetch-site", "same-site")],
        ] {
            assert!(check_origin(&headers(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn revoked_keys_and_unknown_kinds_give_no_principal() {
        let row = SessionRow {
            kind: "tenant".into(),
            tenant_id: "tn_1".into(),
            tenant_name: "acme".into(),
            key_id: "k".into(),
            created_at_ms: 0,
            expires_at_ms: 1,
            api_key_live: true,
            auditor: None,
        };
        assert!(Principal::from_row(row.clone(), 0).is_some());
        assert!(
            Principal::from_row(
                SessionRow {
                    api_key_live: false,
                    ..row.clone()
                },
                0
            )
            .is_none()
        );
        // An auditor session without its key, or a kind unknown here.
        for kind in ["auditor", "operator"] {
            assert!(
                Principal::from_row(
                    SessionRow {
                        kind: kind.into(),
                        ..row.clone()
                    },
                    0
                )
                .is_none()
            );
        }
    }

    #[test]
    fn auditor_sessions_end_with_their_keys_expiry_or_revocation() {
        let key = crate::storage::portal::AuditorSessionKey {
            engagement_id: "eng_1".into(),
            auditor: "Ada".into(),
            expires_at_ms: 100,
            revoked_at_ms: None,
        };
        let row = SessionRow {
            kind: "auditor".into(),
            tenant_id: "tn_a".into(),
            tenant_name: "audit-eng_1".into(),
            key_id: "k".into(),
            created_at_ms: 0,
            expires_at_ms: 100,
            // No tenant API key has this id: irrelevant for auditors.
            api_key_live: false,
            auditor: Some(key.clone()),
        };
        let p = Principal::from_row(row.clone(), 99).unwrap();
        assert!(p.is_auditor());
        assert_eq!(p.display_name(), "Ada");
        assert_eq!(p.role(), "auditor");
        assert_eq!(p.auditor().unwrap().engagement_id, "eng_1");
        assert!(matches!(p.authed(), Err(PortalError::Forbidden(_))));
        assert!(Principal::from_row(row.clone(), 100).is_none(), "expired");
        let revoked = SessionRow {
            auditor: Some(crate::storage::portal::AuditorSessionKey {
                revoked_at_ms: Some(50),
                ..key
            }),
            ..row
        };
        assert!(Principal::from_row(revoked, 60).is_none(), "revoked");
    }
}
