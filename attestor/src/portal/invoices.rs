//! Invoice downloads from the Usage & billing page: `GET
//! /portal/invoices/NUMBER.json` (the signed invoice JSON, exact bytes) and
//! `POST /portal/invoices/NUMBER.pdf` (the PDF; a form with the CSRF token,
//! because it is metered as `portal.download`).
//!
//! Not a second implementation: both call the API's handler of
//! `GET /v1/invoices/{file}` (`service::billing::invoice_file`) with the
//! session's tenant, so the bytes, the tenant scoping (another tenant's
//! invoice is a 404, like one that does not exist), the entitlement check
//! and the metering are the API's. The plan's rate limit applies as for an
//! API call. An auditor session has no invoices: every number is a 404.

use super::session::Session;
use super::{PortalError, session::Principal};
use crate::service::AppState;
use crate::service::auth::Authed;
use crate::service::extract::IdempotencyKey;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde::Deserialize;

/// Longest invoice number accepted (the API's bound).
const MAX_NUMBER: usize = 64;

/// The number of `NUMBER.<ext>`, if `file` has that shape.
pub fn number_of<'a>(file: &'a str, ext: &str) -> Option<&'a str> {
    let n = file.strip_suffix(ext)?.strip_suffix('.')?;
    (!n.is_empty()
        && n.len() <= MAX_NUMBER
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')))
    .then_some(n)
}

/// The session's tenant identity, rate limited as its API key would be.
/// An auditor has no invoices: 404.
async fn tenant(state: &AppState, session: &Session) -> Result<Authed, PortalError> {
    if let Principal::Auditor { .. } = session.principal {
        return Err(PortalError::NotFound);
    }
    let who = session.principal.authed()?;
    state
        .billing
        .entitlements
        .check_rate(&who.tenant_id, &who.key_id, &state.limiter)
        .await?;
    Ok(who)
}

async fn file(state: AppState, who: Authed, file: String) -> Result<Response, PortalError> {
    crate::service::billing::invoice_file(State(state), who, IdempotencyKey(None), Path(file))
        .await
        .map_err(PortalError::from)
}

/// `GET /portal/invoices/NUMBER.json`: the invoice JSON as a download.
pub async fn json(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<Response, PortalError> {
    let number = number_of(&name, "json").ok_or(PortalError::NotFound)?;
    let disposition = format!("attachment; filename=\"{number}.json\"");
    let who = tenant(&state, &session).await?;
    let mut resp = file(state, who, name.clone()).await?;
    resp.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(|e| PortalError::Internal(e.to_string()))?,
    );
    Ok(resp)
}

/// The PDF form's body.
#[derive(Debug, Deserialize)]
pub struct PdfForm {
    csrf: String,
}

/// `POST /portal/invoices/NUMBER.pdf`: the PDF, after its
/// `portal.download` event is committed.
pub async fn pdf(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    form: Result<Form<PdfForm>, FormRejection>,
) -> Result<Response, PortalError> {
    let Form(f) = form.map_err(|_| PortalError::Csrf)?;
    session.check_csrf(&f.csrf)?;
    number_of(&name, "pdf").ok_or(PortalError::NotFound)?;
    let who = tenant(&state, &session).await?;
    file(state, who, name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_numbers_with_the_extension_are_accepted() {
        assert_eq!(
            number_of("CLO-2026-0001.json", "json"),
            Some("CLO-2026-0001")
        );
        assert_eq!(number_of("CLO-2026-0001.pdf", "pdf"), Some("CLO-2026-0001"));
        assert_eq!(number_of("CLO-2026-0001.pdf", "json"), None);
        assert_eq!(number_of("CLO-2026-0001", "json"), None);
        assert_eq!(number_of(".json", "json"), None);
        assert_eq!(number_of("a/b.json", "json"), None);
        assert_eq!(number_of("../x.json", "json"), None);
        assert_eq!(number_of(&format!("{}.json", "9".repeat(65)), "json"), None);
    }
}
