//! Sign-in with an API key (a tenant's `clst_…`, or an auditor's expiring
//! `clsa_…`), and sign-out.
//!
//! A wrong key of any kind (malformed, unknown, revoked, another tenant's
//! id with a wrong secret) gets the same page, status and message, after
//! the same work (one hash, one lookup): nothing tells whether a tenant or
//! key id exists. Attempts are rate limited per key id (the public part of
//! `clst_<id>_<secret>`; malformed input shares one bucket) and over all
//! keys together, so guessing is slow and floods are bounded; a limited
//! attempt is refused before the key is looked at.
//!
//! An auditor key that matches but is revoked or expired gets its own
//! message (only the holder of the whole secret can learn that), and its
//! session never outlives the key: it ends at the key's expiry at the
//! latest, and with its revocation at once.

use super::session::{self, SIGNIN_COOKIE, SIGNIN_FORM_TTL_SECS, Session};
use super::{Chrome, PortalError, PortalState};
use crate::api_key::{KEY_PREFIX, hash_key};
use crate::evidence::engagement::AUDITOR_KEY_PREFIX;
use crate::service::AppState;
use crate::storage::portal::{NewSession, SESSION_KIND_AUDITOR, SESSION_KIND_TENANT};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Deserialize;
use std::num::NonZeroU32;
use std::sync::Arc;

/// The message for every refused key.
pub const WRONG_KEY: &str = "That API key was not accepted. Paste the whole key (a tenant key \
starts with clst_, an auditor key with clsa_); revoked keys cannot sign in.";

/// Sign-in attempt limits: per key id and over all attempts.
#[derive(Debug)]
pub struct SignInLimiter {
    per_key: RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>,
    total: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
    clock: DefaultClock,
}

impl SignInLimiter {
    pub fn new(per_key_per_minute: u32, total_per_minute: u32) -> Self {
        let quota = |n: u32| {
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            Quota::per_minute(n).allow_burst(n)
        };
        Self {
            per_key: RateLimiter::keyed(quota(per_key_per_minute)),
            total: RateLimiter::direct(quota(total_per_minute)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one attempt for `key_id` (and one of the total), or says how
    /// long to wait.
    pub fn check(&self, key_id: &str) -> Result<(), PortalError> {
        let wait = |not_until: governor::NotUntil<_>| {
            let w = not_until.wait_time_from(self.clock.now());
            PortalError::RateLimited {
                retry_after_secs: (w.as_secs() + u64::from(w.subsec_nanos() > 0)).max(1),
            }
        };
        self.total.check().map_err(wait)?;
        self.per_key.check_key(&key_id.to_owned()).map_err(wait)?;
        Ok(())
    }

    /// Forgets buckets that are full again (bounded memory).
    pub fn shrink(&self) {
        self.per_key.retain_recent();
        self.per_key.shrink_to_fit();
    }
}

/// The key id of a submitted key (tenant or auditor), or `None` when it
/// has not the shape.
pub fn key_id_of(key: &str) -> Option<&str> {
    let rest = key
        .strip_prefix(KEY_PREFIX)
        .or_else(|| key.strip_prefix(AUDITOR_KEY_PREFIX))?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some(id)
}

#[derive(Template)]
#[template(path = "portal/signin.html")]
struct SignInPage {
    chrome: Chrome,
    csrf: String,
    error: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    out: Option<String>,
}

/// Renders the form with a fresh pre-session cookie and its CSRF token.
fn form(
    state: &AppState,
    status: StatusCode,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Result<Response, PortalError> {
    let nonce = session::new_token()?;
    let page = SignInPage {
        chrome: Chrome::anonymous("Sign in"),
        csrf: session::csrf_for(&nonce),
        error,
        notice,
    };
    let mut resp = super::html_status(status, &page)?;
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(SIGNIN_COOKIE, &nonce, SIGNIN_FORM_TTL_SECS, secure(state)),
    );
    Ok(resp)
}

fn secure(state: &AppState) -> bool {
    state.config.tls.is_some()
}

/// `GET /portal/signin`: the form (or the home page when signed in).
pub async fn page(
    State(state): State<AppState>,
    session: Result<Session, PortalError>,
    Query(q): Query<SignInQuery>,
) -> Result<Response, PortalError> {
    if session.is_ok() {
        return Ok(Redirect::to("/portal/").into_response());
    }
    let notice = q
        .out
        .is_some()
        .then_some("You are signed out. Sign in again with an API key.");
    form(&state, StatusCode::OK, None, notice)
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    csrf: String,
    api_key: String,
}

/// `POST /portal/signin`.
pub async fn submit(
    State(state): State<AppState>,
    Extension(portal): Extension<Arc<PortalState>>,
    headers: HeaderMap,
    form_data: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PortalError> {
    session::check_origin(&headers)?;
    let Form(f) = form_data.map_err(|_| PortalError::Csrf)?;
    let nonce = session::cookie(&headers, SIGNIN_COOKIE).ok_or(PortalError::Csrf)?;
    if !session::same_secret(&f.csrf, &session::csrf_for(nonce)) {
        return Err(PortalError::Csrf);
    }
    let key = f.api_key.trim();
    portal.signin.check(key_id_of(key).unwrap_or("malformed"))?;
    let now = state.clock.now_ms();
    let ttl_ms = i64::from(state.config.portal.session_ttl_minutes) * 60_000;
    let new = if key.len() > 128 {
        None
    } else if key.starts_with(AUDITOR_KEY_PREFIX) {
        match state.storage.auditor_key(&hash_key(key)).await? {
            None => None,
            Some(k) => {
                if let Some(at) = k.revoked_at_ms {
                    let msg = format!(
                        "This auditor key was revoked at {}. Ask the operator for a new one.",
                        super::display_time(at)
                    );
                    return form(&state, StatusCode::UNAUTHORIZED, Some(msg), None);
                }
                if now >= k.expires_at_ms {
                    let msg = format!(
                        "This auditor key expired at {}. Ask the operator for a new one.",
                        super::display_time(k.expires_at_ms)
                    );
                    return form(&state, StatusCode::UNAUTHORIZED, Some(msg), None);
                }
                Some((
                    SESSION_KIND_AUDITOR,
                    k.tenant_id,
                    k.id,
                    (now + ttl_ms).min(k.expires_at_ms),
                ))
            }
        }
    } else {
        state
            .auth_cache
            .lookup(state.storage.as_ref(), key)
            .await?
            .map(|o| (SESSION_KIND_TENANT, o.tenant_id, o.key_id, now + ttl_ms))
    };
    let Some((kind, tenant_id, key_id, expires_at_ms)) = new else {
        return form(
            &state,
            StatusCode::UNAUTHORIZED,
            Some(WRONG_KEY.to_owned()),
            None,
        );
    };
    let token = session::new_token()?;
    state.storage.purge_sessions(now).await?;
    state
        .storage
        .create_session(&NewSession {
            token_hash: session::hash_token(&token),
            kind,
            tenant_id,
            key_id,
            created_at_ms: now,
            expires_at_ms,
        })
        .await?;
    let ttl_ms = expires_at_ms - now;
    let mut resp = Redirect::to("/portal/").into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::set_cookie(session::COOKIE, &token, ttl_ms / 1000, secure(&state)),
    );
    h.append(
        header::SET_COOKIE,
        session::set_cookie(SIGNIN_COOKIE, "", 0, secure(&state)),
    );
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

/// `POST /portal/signout`: deletes the session; its cookie stops working
/// at once, wherever it was copied to.
pub async fn signout(
    State(state): State<AppState>,
    session: Session,
    form_data: Result<Form<CsrfOnly>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PortalError> {
    let Form(f) = form_data.map_err(|_| PortalError::Csrf)?;
    session.check_csrf(&f.csrf)?;
    state.storage.delete_session(&session.token_hash).await?;
    let mut resp = Redirect::to("/portal/signin?out=1").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(session::COOKIE, "", 0, secure(&state)),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_read_only_from_well_formed_keys() {
        let id = "0123456789abcdef";
        assert_eq!(key_id_of(&format!("clst_{id}_secret")), Some(id));
        assert_eq!(key_id_of(&format!("clsa_{id}_secret")), Some(id));
        assert_eq!(key_id_of("clst_short_secret"), None);
        assert_eq!(key_id_of(&format!("clst_{id}_")), None);
        assert_eq!(key_id_of(&format!("xxxx_{id}_secret")), None);
        assert_eq!(key_id_of(""), None);
    }

    #[test]
    fn attempts_beyond_the_limit_wait_and_other_keys_do_not() {
        let l = SignInLimiter::new(3, 100);
        for _ in 0..3 {
            l.check("a").unwrap();
        }
        match l.check("a") {
            Err(PortalError::RateLimited { retry_after_secs }) => {
                assert!((1..=60).contains(&retry_after_secs))
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        l.check("b").unwrap();
        let total = SignInLimiter::new(100, 2);
        total.check("x").unwrap();
        total.check("y").unwrap();
        assert!(total.check("z").is_err());
    }
}
