//! The Verify page: an artifact's sha256 (typed, or a file uploaded and
//! hashed on the server as it streams, never stored) plus the expected
//! source repository (and optionally a tag) → the verdict of
//! `POST /v1/verify` against the attestation store.
//!
//! Not a second verifier: the page builds the same JSON body a client
//! would send, calls the API's `verify_json` (the core's `verify_with`
//! through the verdict cache) and meters through the API's `metered` with
//! the same event (`attestation.verify`) and request hash, under the same
//! per-key rate limit. So the verdict, the reason codes and the usage are
//! exactly the API's; a request the API would refuse (422, unmetered) is
//! shown as an error on the form. An auditor's verification is the API's
//! for its key: stored provenance only from its engagement's frozen set,
//! nothing metered.

use super::session::Session;
use super::{Area, Chrome, PortalError};
use crate::service::AppState;
use crate::service::api::verify::{SentBody, verify_json};
use crate::service::extract::IdempotencyKey;
use crate::service::metered::metered;
use crate::storage::EVENT_VERIFY;
use askama::Template;
use axum::extract::multipart::MultipartError;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;
use cloister_attestor_core::digest::Sha256Hasher;
use serde::Deserialize;

/// Longest text field accepted.
const MAX_FIELD: usize = 4096;

/// What the form holds (redisplayed after a submission).
#[derive(Debug, Default, Clone)]
pub struct Fields {
    pub artifact_digest: String,
    pub source_uri: String,
    pub source_tag: String,
}

/// A reason of a failed verdict.
#[derive(Debug, Deserialize)]
pub struct ReasonView {
    pub code: String,
    pub message: String,
}

/// The verdict as the API answered it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerdictView {
    pub verified: bool,
    pub reasons: Vec<ReasonView>,
    pub builder_id: Option<String>,
    pub slsa_level: Option<u8>,
    pub subject: Option<SubjectView>,
}

#[derive(Debug, Deserialize)]
pub struct SubjectView {
    pub name: Option<String>,
}

/// The file the digest came from, when one was uploaded.
#[derive(Debug)]
pub struct Upload {
    pub name: String,
    pub bytes: u64,
}

#[derive(Template)]
#[template(path = "portal/verify.html")]
struct VerifyPage {
    chrome: Chrome,
    fields: Fields,
    max_upload: String,
    error: Option<String>,
    upload: Option<Upload>,
    /// The digest that was checked.
    checked: String,
    verdict: Option<VerdictView>,
}

fn page_for(session: &Session, state: &AppState, fields: Fields) -> VerifyPage {
    VerifyPage {
        chrome: Chrome::new("Verify an artifact", Area::Verify, session),
        fields,
        max_upload: human_bytes(state.config.portal.max_upload_bytes),
        error: None,
        upload: None,
        checked: String::new(),
        verdict: None,
    }
}

/// `1.5 MiB` style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `GET /portal/verify`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, PortalError> {
    super::html(&page_for(&session, &state, Fields::default()))
}

/// A typed digest made canonical: trimmed, lower-case, `sha256:` added to
/// a bare 64-digit hex string. Anything else is passed on for the API to
/// refuse with its own message.
pub fn canonical_digest(s: &str) -> String {
    let t = s.trim().to_ascii_lowercase();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("sha256:{t}")
    } else {
        t
    }
}

fn multipart_error(e: MultipartError, limit: u64) -> PortalError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        PortalError::TooLarge { limit }
    } else {
        PortalError::BadRequest(format!("the form could not be read: {}", e.body_text()))
    }
}

/// `POST /portal/verify` (multipart: `csrf` first, then the fields and an
/// optional `file`).
pub async fn submit(
    State(state): State<AppState>,
    session: Session,
    mut form: Multipart,
) -> Result<Response, PortalError> {
    let limit = state.config.portal.max_upload_bytes;
    let mut fields = Fields::default();
    let mut csrf_checked = false;
    let mut upload: Option<(Upload, String)> = None;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "csrf" {
            let v = field.text().await.map_err(|e| multipart_error(e, limit))?;
            session.check_csrf(&v)?;
            csrf_checked = true;
            continue;
        }
        // Nothing is read (above all no file hashed) before the token.
        if !csrf_checked {
            return Err(PortalError::Csrf);
        }
        if name == "file" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let mut hasher = Sha256Hasher::new();
            let mut bytes = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
                bytes += chunk.len() as u64;
                if bytes > limit {
                    return Err(PortalError::TooLarge { limit });
                }
                hasher.update(&chunk);
            }
            // A file input left empty sends a part with no name and no bytes.
            if !file_name.is_empty() || bytes > 0 {
                upload = Some((
                    Upload {
                        name: file_name,
                        bytes,
                    },
                    hasher.finish().to_string(),
                ));
            }
            continue;
        }
        let value = field.text().await.map_err(|e| multipart_error(e, limit))?;
        if value.len() > MAX_FIELD {
            return Err(PortalError::BadRequest(format!(
                "{name} is longer than {MAX_FIELD} characters"
            )));
        }
        match name.as_str() {
            "artifact_digest" => fields.artifact_digest = value,
            "source_uri" => fields.source_uri = value,
            "source_tag" => fields.source_tag = value,
            other => {
                return Err(PortalError::BadRequest(format!(
                    "unexpected form field {other:?}"
                )));
            }
        }
    }
    if !csrf_checked {
        return Err(PortalError::Csrf);
    }

    let mut page = page_for(&session, &state, fields.clone());
    let typed = canonical_digest(&fields.artifact_digest);
    let digest = match (&upload, typed.is_empty()) {
        (Some((_, d)), true) => d.clone(),
        (Some((_, d)), false) if *d == typed => d.clone(),
        (Some((u, d)), false) => {
            page.error = Some(format!(
                "The file {} has digest {d}, not the digest typed ({typed}). Give one or the other.",
                u.name
            ));
            return super::html_status(StatusCode::BAD_REQUEST, &page);
        }
        (None, false) => typed,
        (None, true) => {
            page.error = Some("Give the artifact's sha256 digest or choose the file.".into());
            return super::html_status(StatusCode::BAD_REQUEST, &page);
        }
    };
    page.upload = upload.map(|(u, _)| u);

    let mut body = serde_json::json!({
        "artifactDigest": digest,
        "sourceUri": fields.source_uri.trim(),
    });
    if !fields.source_tag.trim().is_empty() {
        body["sourceTag"] = fields.source_tag.trim().into();
    }
    let raw = serde_json::to_vec(&body).map_err(|e| PortalError::Internal(e.to_string()))?;
    // The key's rate limit, as for `POST /v1/verify`.
    state.limiter.check(session.principal.key_id())?;
    let auditor = session.principal.auditor();
    let sent = SentBody::new(&raw);
    let out = match verify_json(&state, auditor.as_ref(), &sent).await {
        Ok(out) => out,
        // The API's 4xx for a bad request (not metered there either).
        Err(e) if e.status().is_client_error() => {
            page.error = Some(e.to_string());
            return super::html_status(StatusCode::BAD_REQUEST, &page);
        }
        Err(e) => return Err(e.into()),
    };
    // Auditors are never billed: the API meters nothing for them either.
    if auditor.is_none() {
        metered(
            &state,
            &session.principal.authed()?,
            EVENT_VERIFY,
            IdempotencyKey(None),
            sent.request_hash(),
            StatusCode::OK,
            out.clone(),
        )
        .await?;
    }
    page.verdict = Some(
        serde_json::from_slice(&out)
            .map_err(|e| PortalError::Internal(format!("verdict json: {e}")))?,
    );
    page.checked = digest;
    super::html(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_made_canonical() {
        let h = "AB".repeat(32);
        assert_eq!(canonical_digest(&h), format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(
            canonical_digest(&format!(" sha256:{h} ")),
            format!("sha256:{}", "ab".repeat(32))
        );
        assert_eq!(canonical_digest("nonsense"), "nonsense");
        assert_eq!(canonical_digest(""), "");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(human_bytes(512 * 1024 * 1024), "512 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
