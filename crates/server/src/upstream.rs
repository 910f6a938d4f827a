//! The proxy's pooled HTTP client to containers: keep-alive connections per
//! container address, reused across requests. `proxy::forward` sends requests
//! through it; [`Upstream::ready_hook`] opens a connection to each container
//! that waits in the pool (and keeps it open), so that the first proxied request
//! after a claim does not pay for a connect; [`Upstream::app_post`] sends the
//! claim's own calls to the app (the bind hook, the text) over that same
//! connection.

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

/// How long a claim's call to its app may take, answer and body included.
const APP_POST_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of the answer's body to a claim's call is read (and dropped) so that
/// its connection goes back to the pool; a longer one closes the connection.
const APP_POST_BODY_BYTES: usize = 64 * 1024;

impl Upstream {
    /// The engine's [`warmpool_engine::AppPost`]: a claim's calls to its app go
    /// through this client, over the connection [`Upstream::ready_hook`] opened,
    /// and leave it in the pool for the client's first proxied request. Only
    /// addresses the engine hands over (its own claimed containers) are used.
    pub fn app_post(&self) -> warmpool_engine::AppPost {
        let client = self.client.clone();
        Box::new(move |address, path, content_type, body| {
            let client = client.clone();
            let uri = format!("http://{address}{path}");
            Box::pin(async move {
                let uri: Uri = uri.parse().map_err(|e| format!("bad address: {e}"))?;
                let request = Request::post(uri)
                    .header(hyper::header::CONTENT_TYPE, content_type)
                    .body(Body::from(body))
                    .map_err(|e| e.to_string())?;
                let deadline = tokio::time::Instant::now() + APP_POST_TIMEOUT;
                let response =
                    match tokio::time::timeout_at(deadline, client.request(request)).await {
                        Ok(Ok(response)) => response,
                        Ok(Err(e)) => return Err(format!("the container did not answer: {e}")),
                        Err(_) => return Err("the container did not answer within 10 s".into()),
                    };
                let status = response.status().as_u16();
                // Read to the end, so that the connection is reused, within the
                // same deadline; a body that breaks off or outlives it (or is too
                // long to be worth it) still leaves the status the app answered.
                let body = http_body_util::Limited::new(response.into_body(), APP_POST_BODY_BYTES);
                let _ = tokio::time::timeout_at(deadline, body.collect()).await;
                Ok(status)
            })
        })
    }

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
