//! `invoice.created` webhooks per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com/>).
//!
//! - Endpoints belong to a tenant; each has a secret `whsec_` + base64 of
//!   32 random bytes, shown once when the endpoint is added, stored in the
//!   database (0600, never logged: `Debug` redacts it).
//! - A message (`webhook-id` `msg_…`, fixed for every attempt) is written
//!   with its outbox rows in the transaction that finalizes the invoice;
//!   the delivery worker (`worker`) sends it.
//! - Each attempt carries `webhook-timestamp` (seconds, the attempt's time)
//!   and `webhook-signature: v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>`.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub mod client;
pub mod worker;

/// Prefix of an endpoint secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a secret (the specification allows 24 to 64).
pub const SECRET_BYTES: usize = 32;
/// The event type of a finalized invoice.
pub const INVOICE_CREATED: &str = "invoice.created";

/// Errors of the webhook helpers.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no randomness from the operating system: {0}")]
    Random(#[from] getrandom::Error),
    #[error("invalid webhook secret: {0}")]
    Secret(String),
    #[error("invalid endpoint URL {url:?}: {reason}")]
    Url { url: String, reason: String },
}

/// A new endpoint secret.
pub fn generate_secret() -> Result<String, WebhookError> {
    let mut raw = [0u8; SECRET_BYTES];
    getrandom::fill(&mut raw)?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(raw)))
}

/// The key bytes of a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, WebhookError> {
    let b64 = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| WebhookError::Secret(format!("does not start with {SECRET_PREFIX}")))?;
    let key = STANDARD
        .decode(b64)
        .map_err(|e| WebhookError::Secret(e.to_string()))?;
    if !(24..=64).contains(&key.len()) {
        return Err(WebhookError::Secret(format!(
            "{} bytes, expected 24 to 64",
            key.len()
        )));
    }
    Ok(key)
}

/// The `webhook-signature` header value for one attempt.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(msg_id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// Checks an endpoint URL: `http` or `https`, a host, no credentials, at
/// most 2048 characters.
pub fn check_url(url: &str) -> Result<(), WebhookError> {
    let bad = |reason: &str| WebhookError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if url.len() > 2048 {
        return Err(bad("longer than 2048 characters"));
    }
    let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not allowed"));
    }
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's example: secret
    /// `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, id `msg_p5jXN8AQM9LWM0D4loKWxJek`,
    /// timestamp 1614265330, body `{"test": 2432232314}`.
    #[test]
    fn signature_matches_the_specification_example() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_and_urls() {
        let s = generate_secret().unwrap();
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).unwrap().len(), 32);
        assert_ne!(s, generate_secret().unwrap());
        assert!(secret_key("whsec_AAAA").is_err());
        assert!(secret_key("nope").is_err());
        check_url("https://example.com/hooks").unwrap();
        check_url("http://127.0.0.1:8080/x").unwrap();
        for bad in [
            "ftp://x/y",
            "example.com",
            "https://u:p@x.example/",
            "/relative",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
