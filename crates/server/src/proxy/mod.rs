//! The reverse proxy: `ANY /container/{id}/{*path}` to the container's app, and
//! the admin pass-through to a container's own `/admin`.
//!
//! The hot path reads the in-memory route table only (never SQLite, no other
//! lock), streams bodies both ways, keeps pooled keep-alive connections per
//! container, and passes WebSocket (and any HTTP/1.1) upgrades through.
//!
//! - `guard.rs`: the `/admin` refusal, on every reading of a path.
//! - `headers.rs`: what a request and an answer lose or gain on the way
//!   (hop-by-hop headers, warmpool's credentials, `X-Forwarded-*`).
//! - `forward.rs`: [`forward`], which sends (through the pooled client of
//!   [`crate::upstream`])
//!   every proxied and passed-through request to its container, with its error
//!   answers.

mod forward;
mod guard;
mod headers;

pub use forward::forward;
pub use guard::is_admin_path;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::uri::Authority;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use warmpool_core::{ContainerId, ContainerState};

use crate::problem::ApiError;
use crate::state::Shared;
use warmpool_engine::now;
use warmpool_engine::registry::Route;

/// `path`, with `?query` when there is one.
fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

/// Splits `/container/{id}{rest}` into the id and the rest (`""` or `/...`).
fn split_path(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix("/container/")?;
    Some(match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    })
}

/// Whether the HTTP server may hand a request for `path` to [`serve`] without
/// the router: `/container/{id}` and every path below it, with a non-empty id
/// (the router's three proxy routes; `POST /container`, the claim, is not one).
pub fn is_proxied(path: &str) -> bool {
    split_path(path).is_some_and(|(id, _)| !id.is_empty())
}

/// A proxied request ([`is_proxied`]) served as the router would serve it,
/// without the router: the request id ([`crate::request_id::identified`]), then
/// [`handle`]'s work. The HTTP server does so only when the proxy routes need no
/// token (the route table's access class of `Proxy` lets every request through
/// then), so that a proxied request skips the route match, the auth layer and
/// their boxed futures.
pub async fn serve(shared: Arc<Shared>, peer: SocketAddr, req: Request) -> Response {
    crate::request_id::identified(req, |req| proxied(&shared, peer, req)).await
}

/// `ANY /container/{id}/{*path}`: the container's app, unless the path is
/// refused ([`is_admin_path`]) or the id routes nowhere (404) or to an ended
/// container (410); counted in the proxy's metrics.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    proxied(&shared, peer, req).await
}

async fn proxied(shared: &Shared, peer: SocketAddr, req: Request) -> Response {
    let started = std::time::Instant::now();
    let resp = route_and_forward(shared, peer, req).await;
    let metrics = &shared.app.metrics;
    metrics.proxied(resp.status().as_u16());
    metrics
        .proxy_seconds
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn route_and_forward(shared: &Shared, peer: SocketAddr, req: Request) -> Response {
    let Some((raw_id, rest)) = split_path(req.uri().path()) else {
        return ApiError::not_found("no such route").into_response();
    };
    let Ok(id) = raw_id.parse::<ContainerId>() else {
        return ApiError::not_found(format!("no container {raw_id:?}")).into_response();
    };
    if is_admin_path(rest) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "admin-forbidden",
            "Forbidden",
            "the /admin paths of containers are not reachable through the proxy",
        )
        .into_response();
    }
    let (upstream, activity) = match shared.app.registry.route(&id) {
        Some(Route::Live {
            upstream,
            expires_at,
            activity,
        }) => {
            if expires_at <= now() {
                return forward::gone(raw_id, "expired");
            }
            (upstream, activity)
        }
        Some(Route::Gone { reason, .. }) => return forward::gone(raw_id, &reason),
        None => return ApiError::not_found(format!("no allocated container {id}")).into_response(),
    };

    let path_and_query = with_query(if rest.is_empty() { "/" } else { rest }, req.uri().query());
    // Open until the answer's headers (or, upgraded, the end of the connection).
    let open = activity.begin();
    forward(shared, id, upstream, path_and_query, peer, req, Some(open)).await
}

/// `POST /v1/containers/{id}/admin/{*path}` (admin token): forwards to the
/// container's own `/admin/{path}`, which the public proxy never reaches.
pub async fn admin_passthrough(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let path = req.uri().path();
    let Some((raw_id, rest)) = path
        .strip_prefix("/v1/containers/")
        .and_then(|p| p.split_once("/admin/"))
    else {
        return ApiError::not_found("no such route").into_response();
    };
    let Ok(id) = raw_id.parse::<ContainerId>() else {
        return ApiError::not_found(format!("no container {raw_id:?}")).into_response();
    };
    let upstream = match shared.app.registry.get(&id) {
        Some(e) if matches!(e.state, ContainerState::Ready | ContainerState::Allocated) => {
            match e
                .address
                .as_deref()
                .and_then(|a| a.parse::<Authority>().ok())
            {
                Some(a) => a,
                None => {
                    return ApiError::not_found(format!("container {id} has no address"))
                        .into_response()
                }
            }
        }
        Some(e) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "container-not-running",
                "Conflict",
                format!("container {id} is {}", e.state),
            )
            .into_response()
        }
        None => return ApiError::not_found(format!("no live container {id}")).into_response(),
    };
    let path_and_query = with_query(&format!("/admin/{rest}"), req.uri().query());
    forward(&shared, id, upstream, path_and_query, peer, req, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_split_into_id_and_rest() {
        assert_eq!(split_path("/container/abc"), Some(("abc", "")));
        assert_eq!(split_path("/container/abc/"), Some(("abc", "/")));
        assert_eq!(split_path("/container/abc/a/b"), Some(("abc", "/a/b")));
        assert_eq!(split_path("/v1/containers"), None);
    }

    #[test]
    fn only_paths_with_a_container_id_skip_the_router() {
        for path in ["/container/abc", "/container/abc/", "/container/abc/x/y"] {
            assert!(is_proxied(path), "{path}");
        }
        for path in [
            "/container",
            "/container/",
            "/container//x",
            "/containers/abc",
            "/v1/containers/abc",
        ] {
            assert!(!is_proxied(path), "{path}");
        }
    }
}
