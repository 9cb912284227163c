//! The trust portal: server-rendered HTML pages under `/portal/`, served by
//! `cloister-attestor serve` beside the JSON API, for partners (and later
//! auditors) who want to look rather than call.
//!
//! Shape: one module per area (`repos`: repositories, releases, downloads;
//! `verify`; `usage`: usage and billing, with `invoices` for the invoice
//! downloads; `audit`: the audit tracker; `signin`: sign-in and sign-out,
//! for tenants and auditors), each with its page
//! handlers and their askama templates (`attestor/templates/portal/`).
//! Handlers fetch typed data, turn it into display-ready view structs and
//! render; templates hold no logic beyond loops and conditionals, and escape
//! everything (askama's HTML escaping, on by default for `.html`). Shared
//! pieces: `session` (server-side sessions, the [`session::Principal`], CSRF
//! tokens), `headers` (security headers on every response), `error` (the
//! HTML error type), `slsa` (the chip of a verdict), `release` (what a stored
//! attestation says, for display), `chart` (SVG bar charts), `assets` (the
//! stylesheet).
//!
//! Invariants:
//! - Every page but sign-in requires a live session; every state-changing
//!   request (POST) also requires the session's CSRF token and a same-origin
//!   `Origin` when the browser sends one.
//! - Verification and metering are the API's: the Verify page calls
//!   `service::api::verify::verify_json` and `service::metered::metered`,
//!   downloads go through `metered` as `portal.download`; the portal never checks
//!   provenance itself except through the same verdict cache and core call.
//! - Attestations are the organisation's (every tenant sees them); usage,
//!   invoices and engagements are the session's tenant's only, taken from
//!   the session, never from the request. A tenant-owned object of another
//!   tenant answers 404, exactly like one that does not exist.
//! - An auditor session sees the repositories, verifies (within its
//!   engagement's frozen set, unmetered, as the API does for its key) and
//!   follows its one engagement; it has no usage or billing page and no
//!   metered downloads.
//! - Billing figures are the billing code's: the price card, the projection
//!   (`billing::Billing::projection`, the rating `billing close` runs) and
//!   the invoice files (`service::billing::invoice_file`, the handler of
//!   `GET /v1/invoices/{file}`); the portal formats, never computes, money.
//! - No JavaScript: the CSP allows no script at all; the pages work with
//!   forms and links alone.

use crate::config::PortalConfig;
use crate::service::AppState;
use axum::extract::DefaultBodyLimit;
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::{Extension, Router};
use std::sync::Arc;

pub mod assets;
pub mod audit;
pub mod chart;
pub mod error;
pub mod headers;
pub mod invoices;
pub mod release;
pub mod repos;
pub mod session;
pub mod signin;
pub mod slsa;
pub mod usage;
pub mod verify;

pub use error::PortalError;

/// The path every portal page lives under.
pub const PREFIX: &str = "/portal";

/// A top-level area of the portal: one entry of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Repositories,
    Verify,
    Usage,
    Audit,
    /// Pages outside the navigation (sign-in, errors).
    None,
}

/// One navigation entry.
#[derive(Debug)]
pub struct NavItem {
    pub area: Area,
    pub href: &'static str,
    pub label: &'static str,
    /// Shown to tenants only (auditors have no usage or billing).
    pub tenants_only: bool,
}

/// The navigation, in order.
pub const NAV: &[NavItem] = &[
    NavItem {
        area: Area::Repositories,
        href: "/portal/",
        label: "Repositories",
        tenants_only: false,
    },
    NavItem {
        area: Area::Verify,
        href: "/portal/verify",
        label: "Verify",
        tenants_only: false,
    },
    NavItem {
        area: Area::Usage,
        href: "/portal/usage",
        label: "Usage & billing",
        tenants_only: true,
    },
    NavItem {
        area: Area::Audit,
        href: "/portal/audit",
        label: "Audit",
        tenants_only: false,
    },
];

/// What the page layout (`base.html`) shows around a page: title, the
/// navigation with the current area, who is signed in, and the CSRF token
/// of the sign-out form.
#[derive(Debug)]
pub struct Chrome {
    pub title: String,
    pub area: Area,
    /// The principal's display name; empty when nobody is signed in.
    pub who: String,
    /// "tenant" or "auditor", shown beside the name.
    pub role: &'static str,
    pub csrf: String,
}

impl Chrome {
    pub fn new(title: impl Into<String>, area: Area, session: &session::Session) -> Self {
        Self {
            title: title.into(),
            area,
            who: session.principal.display_name().to_owned(),
            role: session.principal.role(),
            csrf: session.csrf.clone(),
        }
    }

    /// For pages without a session (sign-in, errors).
    pub fn anonymous(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            area: Area::None,
            who: String::new(),
            role: "",
            csrf: String::new(),
        }
    }

    /// The navigation entries this principal may use.
    pub fn nav(&self) -> Vec<&'static NavItem> {
        NAV.iter()
            .filter(|i| !i.tenants_only || self.role == "tenant")
            .collect()
    }

    pub fn is_current(&self, item: &NavItem) -> bool {
        item.area == self.area
    }
}

/// The portal's routes (mounted on the consumer router by `crate::server`,
/// which keeps `portal` for the hourly clean-up). Every response, errors
/// included, gets the security headers.
pub fn routes(state: AppState, portal: Arc<PortalState>) -> Router<AppState> {
    // The upload plus room for the other fields and the multipart framing.
    let upload_limit = usize::try_from(state.config.portal.max_upload_bytes)
        .unwrap_or(usize::MAX - (1 << 20))
        + (1 << 20);
    // Nested paths are relative to `/portal`; `/` there is `/portal`
    // itself (redirected), the home page is `/portal/`, routed outside.
    let pages = Router::new()
        .route("/", get(|| async { Redirect::permanent("/portal/") }))
        .route("/repo", get(repos::repository))
        .route("/releases/{id}", get(repos::release))
        .route("/releases/{id}/intoto.jsonl", post(repos::download_intoto))
        .route("/releases/{id}/sigstore.json", post(repos::download_bundle))
        .route(
            "/verify",
            get(verify::page)
                .post(verify::submit)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/usage", get(usage::page))
        .route("/invoices/{file}", get(invoices::json).post(invoices::pdf))
        .route("/audit", get(audit::list))
        .route("/audit/{id}", get(audit::page))
        .route("/audit/{id}/pack", get(audit::pack))
        .route("/audit/{id}/notes", post(audit::add_note))
        .route("/signin", get(signin::page).post(signin::submit))
        .route("/signout", post(signin::signout))
        .route(assets::STYLESHEET_ROUTE, get(assets::stylesheet))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed);
    Router::new()
        .route("/portal/", get(repos::home))
        .nest(PREFIX, pages)
        .layer(Extension(portal))
        .layer(axum::middleware::from_fn_with_state(state, headers::secure))
}

/// The portal's own state beside the service's `App` (an extension of its
/// routes).
#[derive(Debug)]
pub struct PortalState {
    pub signin: signin::SignInLimiter,
}

impl PortalState {
    pub fn new(config: &PortalConfig) -> Self {
        Self {
            signin: signin::SignInLimiter::new(
                config.signin_attempts_per_minute,
                config.signin_attempts_total_per_minute,
            ),
        }
    }
}

/// Renders a template into an HTML response (200).
pub fn html<T: askama::Template>(t: &T) -> Result<axum::response::Response, PortalError> {
    html_status(axum::http::StatusCode::OK, t)
}

/// Renders a template into an HTML response with `status`.
pub fn html_status<T: askama::Template>(
    status: axum::http::StatusCode,
    t: &T,
) -> Result<axum::response::Response, PortalError> {
    use axum::response::IntoResponse as _;
    let body = t
        .render()
        .map_err(|e| PortalError::Internal(format!("template: {e}")))?;
    Ok((status, axum::response::Html(body)).into_response())
}

/// `2026-03-01 12:03 UTC` for a Unix-millisecond time.
pub fn display_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_default()
}

/// A repository URI as people read it: scheme and `git+` dropped.
pub fn display_repo(uri: &str) -> String {
    let u = uri.strip_prefix("git+").unwrap_or(uri);
    u.split_once("://").map_or(u, |(_, rest)| rest).to_owned()
}

/// The link to a repository's page.
pub fn repo_href(uri: &str) -> String {
    format!("/portal/repo?uri={}", urlencode(uri))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_links_encode_every_reserved_character() {
        assert_eq!(
            repo_href("https://h/o/r?x=\"<a>\"&y"),
            "/portal/repo?uri=https%3A%2F%2Fh%2Fo%2Fr%3Fx%3D%22%3Ca%3E%22%26y"
        );
        assert_eq!(display_repo("git+https://github.com/o/r"), "github.com/o/r");
        assert_eq!(display_repo("github.com/o/r"), "github.com/o/r");
        assert_eq!(display_time(0), "1970-01-01 00:00 UTC");
    }

    #[test]
    fn every_nav_entry_is_a_route() {
        for item in NAV {
            assert!(crate::metrics::ROUTES.contains(&item.href), "{}", item.href);
        }
    }
}
