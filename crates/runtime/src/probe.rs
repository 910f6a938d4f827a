//! The HTTP readiness probe shared by runtimes whose apps answer on an address.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

/// Probes `http://{address}{path}` until it answers 2xx or 3xx.
#[derive(Clone)]
pub struct HttpProbe {
    client: Client<HttpConnector, Empty<Bytes>>,
    path: String,
}

impl HttpProbe {
    pub fn new(path: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Self { client, path }
    }

    /// One attempt.
    pub async fn check(&self, address: &str) -> bool {
        let Ok(uri) = format!("http://{address}{}", self.path).parse::<http::Uri>() else {
            return false;
        };
        match tokio::time::timeout(Duration::from_secs(2), self.client.get(uri)).await {
            Ok(Ok(resp)) => resp.status().is_success() || resp.status().is_redirection(),
            _ => false,
        }
    }

    /// Probes until success or `deadline`, calling `gave_up` between attempts: when it
    /// returns `Some(error)` the wait ends with that error (the container exited).
    pub async fn wait<E>(
        &self,
        address: &str,
        deadline: Instant,
        mut gave_up: impl FnMut() -> Option<E>,
    ) -> Result<(), Option<E>> {
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(e) = gave_up() {
                return Err(Some(e));
            }
            if self.check(address).await {
                return Ok(());
            }
            if Instant::now() + pause >= deadline {
                return Err(gave_up());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}
