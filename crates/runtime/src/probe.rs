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

impl HttpProbe {
    /// `POST http://{address}{path}` with `body` of `content_type`, for
    /// warmpool's own calls to an app's `/admin` paths (`/admin/bind`,
    /// `/admin/update-text`) when the server gives the engine no client of its
    /// own. Answers the HTTP status of any answer, so that the caller tells 404
    /// (no such hook) from 2xx and from 5xx; `Err` only when the app gave no
    /// answer (refused, reset, or no status within 10 s). The body is read and
    /// discarded within the same 10 s (at most 64 KiB of it; one that breaks off
    /// or is still coming then does not change the answer).
    pub async fn post(
        &self,
        address: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<u16, String> {
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
        let status = resp.status().as_u16();
        // Read to the end (at most 64 KiB) within the same deadline; a body that
        // breaks off, outlives it or is longer still leaves the status the app
        // answered.
        let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024);
        let _ = tokio::time::timeout_at(deadline, body.collect()).await;
        Ok(status)
    }
}
