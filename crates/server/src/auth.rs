//! Who may call what: every route's access class in one table, and the middleware
//! that checks `Authorization: Bearer` tokens (or a studio session cookie)
//! against it.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Token;
use crate::problem::ApiError;
use crate::state::Shared;

/// What a route requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health probes).
    Open,
    /// An API or admin token, when tokens are configured.
    Api,
    /// An admin token, when tokens are configured.
    Admin,
    /// The container id is the capability; an API token too with
    /// `WARMPOOL_PROXY_REQUIRE_TOKEN`.
    Proxy,
}

/// Every route: method (`*` for any), path pattern as routed, and its access.
/// A route missing here is refused to all but admins (fail closed).
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("POST", "/container", Access::Api),
    ("*", "/container/{id}", Access::Proxy),
    ("*", "/container/{id}/", Access::Proxy),
    ("*", "/container/{id}/{*path}", Access::Proxy),
    ("GET", "/v1/containers", Access::Api),
    ("GET", "/v1/containers/{id}", Access::Api),
    ("DELETE", "/v1/containers/{id}", Access::Api),
    ("POST", "/v1/containers/{id}/admin/{*path}", Access::Admin),
    ("GET", "/v1/pools", Access::Api),
    ("PATCH", "/v1/pools/{pool}", Access::Admin),
    ("GET", "/v1/events", Access::Api),
    ("GET", "/metrics", Access::Api),
    ("GET", "/openapi", Access::Open),
    ("GET", "/openapi.json", Access::Open),
    ("GET", "/docs", Access::Open),
    ("GET", "/healthz", Access::Open),
    ("GET", "/readyz", Access::Open),
    ("GET", "/v1/stats/history", Access::Api),
    ("POST", "/v1/sql", Access::Admin),
    ("GET", "/v1/tables", Access::Admin),
    ("GET", "/v1/tables/{name}/rows", Access::Admin),
    // The page and its files hold no data; the page asks for a login itself.
    ("GET", "/studio", Access::Open),
    ("GET", "/studio/studio.css", Access::Open),
    ("GET", "/studio/studio.js", Access::Open),
    ("POST", "/studio/login", Access::Open),
    ("POST", "/studio/logout", Access::Open),
];

/// The access class of a routed path pattern.
pub fn access_of(pattern: &str) -> Access {
    ROUTES
        .iter()
        .find(|(_, p, _)| *p == pattern)
        .map_or(Access::Admin, |(_, _, a)| *a)
}

fn presented(req: &Request) -> Option<&[u8]> {
    bearer_token(req.headers())
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let token = v
        .strip_prefix(b"Bearer ")
        .or_else(|| v.strip_prefix(b"bearer "))?;
    Some(token.trim_ascii())
}

pub fn any_matches(tokens: &[Token], presented: &[u8]) -> bool {
    // Every token is compared, so the time taken does not say which one matched.
    tokens
        .iter()
        .fold(false, |found, t| t.matches(presented) | found)
}

fn unauthorized(detail: &str) -> Response {
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        detail,
    )
    .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"warmpool\""),
    );
    resp
}

/// The middleware: lets a request through if its route's access allows it.
pub async fn check(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let config = &shared.app.config;
    if !config.auth_enabled() {
        // Loopback-only mode (enforced at start-up).
        return next.run(req).await;
    }
    let access = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(Access::Admin, |m| access_of(m.as_str()));
    let needs_api = match access {
        Access::Open => return next.run(req).await,
        Access::Proxy if !config.proxy_require_token => return next.run(req).await,
        Access::Proxy | Access::Api => true,
        Access::Admin => false,
    };
    let Some(token) = presented(&req) else {
        // A studio session counts as an admin token.
        let session = crate::studio::session_cookie(req.headers())
            .is_some_and(|id| shared.sessions.valid(id));
        if !session {
            return unauthorized("this route needs an Authorization: Bearer token");
        }
        if !crate::studio::cookie_may(req.method(), req.headers()) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "cross-site-request",
                "Forbidden",
                "a request authenticated by the studio cookie that changes something \
                 must carry X-Requested-With or a JSON content type",
            )
            .into_response();
        }
        return next.run(req).await;
    };
    let admin = any_matches(&config.admin_tokens, token);
    let allowed = admin || (needs_api && any_matches(&config.api_tokens, token));
    if !allowed {
        return unauthorized("the bearer token is not valid for this route");
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_routes_need_an_admin() {
        assert_eq!(access_of("/v1/pools"), Access::Api);
        assert_eq!(access_of("/healthz"), Access::Open);
        assert_eq!(access_of("/v1/something-new"), Access::Admin);
    }
}
