//! The HTTP readiness probe shared by runtimes whose apps answer on an address, and
//! the one client of warmpool's own calls to an app (`/admin/update-text`,
//! `/admin/bind`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::RuntimeError;

/// Probes `http://{address}{path}` until it answers 2xx or 3xx.
#[derive(Clone)]
pub struct HttpProbe {
    client: Client<HttpConnector, Empty<Bytes>>,
    /// The same, for requests with a body ([`HttpProbe::post`]).
    posts: Client<HttpConnector, http_body_util::Full<Bytes>>,
}

impl Default for HttpProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpProbe {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector.clone());
        let posts = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Self { client, posts }
    }

    /// One attempt.
    pub async fn check(&self, address: &str, path: &str) -> bool {
        let slash = if path.starts_with('/') { "" } else { "/" };
        let Ok(uri) = format!("http://{address}{slash}{path}").parse::<http::Uri>() else {
            return false;
        };
        match tokio::time::timeout(Duration::from_secs(2), self.client.get(uri)).await {
            Ok(Ok(resp)) => resp.status().is_success() || resp.status().is_redirection(),
            _ => false,
        }
    }

    /// Probes until the app answers, for at most `timeout`, checking `exited`
    /// between attempts: a container that exits first fails at once.
    pub async fn wait_ready(
        &self,
        address: &str,
        path: &str,
        timeout: Duration,
        mut exited: impl FnMut() -> bool,
    ) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + timeout;
        let exited_early = || RuntimeError::ExitedEarly {
            code: None,
            detail: "it exited before it became ready".into(),
        };
        let mut pause = Duration::from_millis(5);
        loop {
            if exited() {
                return Err(exited_early());
            }
            if self.check(address, path).await {
                return Ok(());
            }
            if Instant::now() + pause >= deadline {
                return Err(if exited() {
                    exited_early()
                } else {
                    RuntimeError::StartTimeout(timeout)
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// How many bytes of a non-2xx answer's body [`PostAnswer::excerpt`] keeps.
pub const EXCERPT_BYTES: usize = 200;

/// What an app answered to [`HttpProbe::post_json_answer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostAnswer {
    /// The HTTP status, whatever it is.
    pub status: u16,
    /// The start of the body (at most [`EXCERPT_BYTES`], lossily UTF-8, trimmed)
    /// when the status is not 2xx, for an error message; empty otherwise.
    pub excerpt: String,
}

impl HttpProbe {
    /// `POST http://{address}{path}` with a JSON body (`content-type:
    /// application/json`), for warmpool's own calls to an app's `/admin` paths
    /// (`/admin/bind`). Answers the HTTP status of any answer, so that the caller
    /// tells 404 (no such hook) from 2xx and from 5xx; `Err` only when the app
    /// gave no answer (refused, reset, or no status within 10 s). The body is
    /// read and discarded within the same 10 s (at most 64 KiB of it; one that
    /// breaks off or is still coming then does not change the answer).
    pub async fn post_json(&self, address: &str, path: &str, body: Vec<u8>) -> Result<u16, String> {
        self.post(address, path, "application/json", body).await
    }

    /// [`HttpProbe::post_json`] with a body of any `content_type`.
    pub async fn post(
        &self,
        address: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<u16, String> {
        self.post_answer(address, path, content_type, body)
            .await
            .map(|a| a.status)
    }

    /// [`HttpProbe::post_json`], also keeping the start of a non-2xx answer's
    /// body ([`PostAnswer::excerpt`]).
    pub async fn post_json_answer(
        &self,
        address: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<PostAnswer, String> {
        self.post_answer(address, path, "application/json", body)
            .await
    }

    async fn post_answer(
        &self,
        address: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<PostAnswer, String> {
        let uri: http::Uri = format!("http://{address}{path}")
            .parse()
            .map_err(|e| format!("bad address {address:?}: {e}"))?;
        let req = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let resp = match tokio::time::timeout_at(deadline, self.posts.request(req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(format!("the container did not answer: {e}")),
            Err(_) => return Err("the container did not answer within 10 s".into()),
        };
        let status = resp.status();
        let keep = if status.is_success() {
            0
        } else {
            EXCERPT_BYTES
        };
        let mut kept = Vec::new();
        let mut body = resp.into_body();
        // Read to the end (at most 64 KiB, then the connection is dropped: it is
        // not reused) within the same deadline; a body that breaks off or
        // outlives it still leaves the status the app answered.
        let _ = tokio::time::timeout_at(deadline, async {
            let mut read = 0;
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    let room = keep.saturating_sub(kept.len()).min(data.len());
                    kept.extend_from_slice(&data[..room]);
                    read += data.len();
                    if read > 64 * 1024 {
                        break;
                    }
                }
            }
        })
        .await;
        Ok(PostAnswer {
            status: status.as_u16(),
            excerpt: String::from_utf8_lossy(&kept).trim().to_owned(),
        })
    }
}
