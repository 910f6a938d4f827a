//! The upstream side: the pooled HTTP client to containers and [`forward`], which
//! sends a request to a container and streams the answer back (or passes an
//! upgrade through); its failures say whose fault they were (410 the container
//! ended, 502 it did not answer, 504 too late, 408 the client's body stalled).

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::uri::Authority;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use warmpool_core::{ContainerId, TRACE_TARGET};
use warmpool_runtime::Inspection;

use super::headers;
use crate::problem::ApiError;
use crate::state::Shared;
use warmpool_engine::registry::{ActivityGuard, Route};

/// How long the proxy waits for a container's response headers before 504.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest the proxy waits, after a failed request, for the container's exit
/// to be recorded (or for the runtime to say it has ended): a container killed a
/// moment ago answers 410 with its exit, not 502. (Docker may take a few hundred
/// milliseconds to notice that a killed container's process is gone, and more
/// on a loaded host; only failed requests wait.)
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// How long after the runtime said the container ended the proxy still waits
/// for its recorded end, which says more (out of memory, released...).
const RECORD_GRACE: Duration = Duration::from_secs(1);

/// How often the runtime is asked meanwhile (each question runs to its answer).
const EXIT_ASK_EVERY: Duration = Duration::from_millis(200);

/// Why the container ended, if it has: its recorded end (which says the most:
/// out of memory, released...), or else what the runtime says of it (asked
/// every [`EXIT_ASK_EVERY`], then [`RECORD_GRACE`] for the record; the exit
/// event that follows records it as usual). When neither says so within
/// [`EXIT_GRACE`], `Err` with what the runtime last said, for the 502's detail.
/// Only failed requests pay for this.
async fn dies(shared: &Shared, id: ContainerId) -> Result<String, &'static str> {
    use std::sync::atomic::{AtomicU8, Ordering};
    // What the runtime last said: 0 nothing yet, 1 running, 2 an error.
    let last = AtomicU8::new(0);
    let recorded = || match shared.app.registry.route(&id) {
        Some(Route::Gone { reason, .. }) => Some(reason.to_string()),
        None => Some("it ended".to_string()),
        Some(Route::Live { .. }) => None,
    };
    let until_recorded = || async {
        loop {
            if let Some(reason) = recorded() {
                return reason;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let handle = shared.app.registry.get(&id).and_then(|e| e.handle);
    let runtime_says = async {
        let handle = handle?;
        loop {
            match shared.app.runtime.inspect(id, &handle).await {
                Ok(Inspection::Exited { code }) => return Some(exited(code)),
                Ok(Inspection::Gone) => return Some("it was removed".to_string()),
                Ok(Inspection::Running) => {
                    last.store(1, Ordering::Relaxed);
                    tokio::time::sleep(EXIT_ASK_EVERY).await
                }
                Err(_) => {
                    last.store(2, Ordering::Relaxed);
                    tokio::time::sleep(EXIT_ASK_EVERY).await
                }
            }
        }
    };
    let first = tokio::time::timeout(EXIT_GRACE, async {
        tokio::select! {
            reason = until_recorded() => Ok(reason),
            Some(said) = runtime_says => Err(said),
        }
    });
    let Ok(first) = first.await else {
        return Err(match last.load(Ordering::Relaxed) {
            1 => "the runtime says it is running",
            2 => "the runtime could not be asked",
            _ => "the runtime did not answer in time",
        });
    };
    match first {
        Ok(reason) => Ok(reason),
        // The record usually follows within milliseconds, and says more.
        Err(said) => Ok(tokio::time::timeout(RECORD_GRACE, until_recorded())
            .await
            .unwrap_or(said)),
    }
}

/// `exited with code 1`, `exited (killed by signal 9)`.
fn exited(code: Option<i32>) -> String {
    match code {
        Some(c) if c > 128 => format!("exited (killed by signal {})", c - 128),
        Some(c) => format!("exited with code {c}"),
        None => "exited".into(),
    }
}

pub(super) fn gone(id: &str, reason: &str) -> Response {
    ApiError::new(
        StatusCode::GONE,
        "container-gone",
        "Container Gone",
        format!("container {id} is no longer available: {reason}"),
    )
    .into_response()
}

/// Sends `req` to the container at `upstream` as `path_and_query`, streaming both
/// ways and passing upgrades through, and never warmpool's own credentials
/// ([`headers::to_container`]); errors are the proxy's problem documents.
pub async fn forward(
    shared: &Shared,
    id: ContainerId,
    upstream: Authority,
    path_and_query: String,
    peer: SocketAddr,
    mut req: Request,
    activity: Option<ActivityGuard>,
) -> Response {
    let uri = match Uri::builder()
        .scheme("http")
        .authority(upstream)
        .path_and_query(path_and_query)
        .build()
    {
        Ok(u) => u,
        Err(_) => {
            return ApiError::bad_request("the request path cannot be forwarded").into_response()
        }
    };

    // Traced when traces are on (else the span is disabled and costs a comparison):
    // in the client's trace if it sent a traceparent, and passed on to the
    // container as its own, so the container's spans join the trace.
    let span = tracing::trace_span!(target: TRACE_TARGET, "proxy",
        container_id = %id, method = %req.method(), status = tracing::field::Empty);
    crate::otel::continue_trace(&span, req.headers());

    let upgrade = headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    *req.uri_mut() = uri;
    headers::to_container(req.headers_mut(), &shared.config, peer, upgrade);
    crate::otel::pass_on(&span, req.headers_mut());

    let mut resp =
        match tokio::time::timeout(UPSTREAM_TIMEOUT, shared.upstream.client.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(container_id = %id, error = %e, "upstream request failed");
                // Refused or reset: most likely the container died a moment ago.
                let runtime = match dies(shared, id).await {
                    Ok(reason) => return gone(&id.to_string(), &reason),
                    Err(runtime) => runtime,
                };
                if let Some(t) = crate::body::is_body_timeout(&e) {
                    return ApiError::body_timeout(t).into_response();
                }
                let error = warmpool_engine::error_chain(&e);
                tracing::warn!(container_id = %id, error, runtime, "container did not answer");
                return ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "container-unreachable",
                    "Bad Gateway",
                    format!("container {id} did not answer ({error}; {runtime})"),
                )
                .into_response();
            }
            Err(_) => {
                return ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "container-timeout",
                    "Gateway Timeout",
                    format!(
                        "container {id} did not answer within {}s",
                        UPSTREAM_TIMEOUT.as_secs()
                    ),
                )
                .into_response()
            }
        };

    span.record("status", resp.status().as_u16());
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let counted = shared.upgrade_opened();
            tokio::spawn(async move {
                // An open WebSocket keeps the container busy, and shutdown waits
                // for it (up to the drain timeout).
                let _open = (activity, counted);
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let _ = tokio::io::copy_bidirectional(
                            &mut TokioIo::new(client),
                            &mut TokioIo::new(upstream),
                        )
                        .await;
                    }
                    Err(e) => tracing::debug!(container_id = %id, error = %e, "upgrade failed"),
                }
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, Body::empty());
        }
    }
    headers::strip_hop_by_hop(resp.headers_mut());
    resp.map(Body::new)
}
