//! The proxy's pooled HTTP client to containers: keep-alive connections per
//! container address, reused across requests. `proxy::forward` sends requests
//! through it; [`Upstream::ready_hook`] opens a connection to each container
//! that waits in the pool (and keeps it open), so that the first proxied request
//! after a claim does not pay for a connect.

use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use hyper::{Request, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// How long an idle connection stays in the pool: above the health probes'
/// default interval (10 s), whose passing probes refresh the connection of a
/// container that waits in the pool.
pub const POOL_IDLE: Duration = Duration::from_secs(30);

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
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(64)
            .build(connector);
        Self { client }
    }
}

impl Upstream {
    /// The engine's [`warmpool_engine::ReadyHook`]: a `GET` of the health path
    /// through this client, its answer read to the end, so that its connection
    /// stays in the pool for the first proxied request. Only addresses the
    /// engine hands over (its own ready containers) are ever connected to.
    pub fn ready_hook(&self) -> warmpool_engine::ReadyHook {
        let client = self.client.clone();
        Box::new(move |id, address, path| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let Ok(uri) = format!("http://{address}{path}").parse::<Uri>() else {
                return;
            };
            let client = client.clone();
            runtime.spawn(async move {
                let Ok(request) = Request::get(uri).body(Body::empty()) else {
                    return;
                };
                let answered = tokio::time::timeout(Duration::from_secs(5), async {
                    let response = client.request(request).await?;
                    // Read to the end, or the connection is not reused.
                    let _ = response.into_body().collect().await;
                    Ok::<_, hyper_util::client::legacy::Error>(())
                })
                .await;
                if !matches!(answered, Ok(Ok(()))) {
                    tracing::debug!(container_id = %id, "the proxy could not open its connection ahead of a claim");
                }
            });
        })
    }
}
