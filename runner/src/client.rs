//! A small HTTP/1.1 client over a Unix socket or TCP (hyper's connection
//! API): used by the CLI to talk to the runner daemon and by the daemon to
//! reach the attestor's signing socket. One connection per request.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;

/// Errors talking HTTP to a local daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("http to {endpoint}: {source}")]
    Http {
        endpoint: String,
        source: hyper::Error,
    },
    #[error("{endpoint} answered {status}: {body}")]
    Status {
        endpoint: String,
        status: StatusCode,
        body: String,
    },
    #[error("{endpoint} sent invalid json: {source}")]
    Json {
        endpoint: String,
        source: serde_json::Error,
    },
}

/// Where a daemon listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp { addr: String, token: Option<String> },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp { addr, .. } => write!(f, "http://{addr}"),
        }
    }
}

/// One HTTP/1.1 request on a fresh connection.
async fn exchange<S>(
    stream: S,
    req: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    sender.send_request(req).await
}

impl Endpoint {
    /// Sends one request and returns the streaming response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let endpoint = self.to_string();
        let connect_err = |source| ClientError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let http_err = |source| ClientError::Http {
            endpoint: endpoint.clone(),
            source,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        if let Endpoint::Tcp {
            token: Some(token), ..
        } = self
        {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("a valid request");
        match self {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_err)?;
                exchange(stream, req).await.map_err(http_err)
            }
            Endpoint::Tcp { addr, .. } => {
                let stream = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(connect_err)?;
                exchange(stream, req).await.map_err(http_err)
            }
        }
    }

    /// [`Self::send`] where a non-2xx answer is an error carrying the
    /// body's text (the JSON error's message when there is one); the body of
    /// a 2xx answer is left to the caller to stream.
    pub async fn send_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
        Err(ClientError::Status {
            endpoint: self.to_string(),
            status,
            body,
        })
    }

    /// Sends one request and reads the whole body; non-2xx is an error
    /// (see [`Self::send_ok`]).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        let resp = self.send_ok(method, path, body).await?;
        Ok(resp
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Http {
                endpoint: self.to_string(),
                source,
            })?
            .to_bytes())
    }

    /// [`Self::call`] decoding a JSON answer.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Json {
            endpoint: self.to_string(),
            source,
        })
    }
}
