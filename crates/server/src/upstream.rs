//! The proxy's pooled HTTP client to containers: keep-alive connections per
//! container address, reused across requests. Only `proxy::forward` sends
//! through it.

use std::time::Duration;

use axum::body::Body;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// The pooled HTTP client to containers.
#[derive(Clone)]
pub struct Upstream {
    pub(crate) client: Client<HttpConnector, Body>,
}

impl Default for Upstream {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Self { client }
    }
}
