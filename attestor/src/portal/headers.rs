//! Security headers on every portal response (pages, redirects, errors,
//! downloads, the stylesheet): a Content-Security-Policy that allows no
//! script at all, styles and images from the portal only, forms posting to
//! the portal only and no framing; `nosniff`; no referrer to other
//! origins (`same-origin`, so the browser's `Origin` still names us); no caching of
//! pages (they show a tenant's data); HSTS when the listener speaks TLS.

use crate::service::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The portal's Content-Security-Policy. No `script-src`: `default-src
/// 'none'` forbids every script, inline or not.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers (a handler's own `Cache-Control` is kept: the
/// stylesheet sets one).
pub async fn secure(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    if state.config.tls.is_some() {
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    resp
}
