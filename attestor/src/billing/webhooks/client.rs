//! The HTTP client the delivery worker posts with: hyper over rustls
//! (aws-lc), HTTP/1.1 with keep-alive, the system's root certificates for
//! `https` endpoints, one time limit per attempt covering connect, send and
//! the response head. The response body is read (bounded) and dropped, so
//! the connection can be reused.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::sync::Arc;
use std::time::Duration;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// What a receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After` in milliseconds (seconds or an HTTP date), if given.
    pub retry_after_ms: Option<i64>,
}

/// The delivery client.
#[derive(Clone)]
pub struct WebhookClient {
    inner: Client<Https, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Most bytes of a response body read (the rest is dropped with the connection).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

impl WebhookClient {
    /// A client with the system's roots; without any (a minimal container)
    /// `https` endpoints fail verification, with that reason in the
    /// delivery log, while `http` ones still work.
    pub fn new(timeout: Duration) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system root certificates: https webhook endpoints will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("aws-lc supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let https = builder.https_or_http().enable_http1().build();
        let inner = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(https);
        Self { inner, timeout }
    }

    /// POSTs `body` with `headers`; an error is a transport failure or the
    /// time limit.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let mut req = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let send = async {
            let resp = self.inner.request(req).await.map_err(|e| {
                // The chain of sources says what failed (connect, tls, …).
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    src = s.source();
                }
                msg
            })?;
            let status = resp.status().as_u16();
            let retry_after_ms = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after_ms);
            let _ = Limited::new(resp.into_body(), MAX_RESPONSE_BODY)
                .collect()
                .await;
            Ok::<_, String>(Answer {
                status,
                retry_after_ms,
            })
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no response within {} ms",
                self.timeout.as_millis()
            )),
        }
    }
}

/// `Retry-After`: delay seconds, or an HTTP date (relative to now).
pub fn parse_retry_after_ms(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return i64::try_from(secs).ok()?.checked_mul(1000);
    }
    let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let now = time::OffsetDateTime::now_utc();
    let ms = (at - now).whole_milliseconds();
    Some(i64::try_from(ms.max(0)).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after_ms("120"), Some(120_000));
        assert_eq!(parse_retry_after_ms(" 0 "), Some(0));
        assert_eq!(parse_retry_after_ms("soon"), None);
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(0)
        );
    }
}
