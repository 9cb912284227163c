//! The portal's one stylesheet, compiled into the binary (no build step)
//! and served with an hour's cache lifetime.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet's text.
pub const CSS: &str = include_str!("../../templates/portal/portal.css");

/// Its route (under `/portal`).
pub const STYLESHEET_ROUTE: &str = "/static/portal.css";

/// `GET /portal/static/portal.css`.
pub async fn stylesheet() -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}
