//! Who may call what: the access classes, read from the route table
//! ([`crate::routes::table`]), and the middleware that checks
//! `Authorization: Bearer` tokens (or a studio session cookie) against them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::problem::ApiError;
use crate::state::Shared;
use crate::tokens::{any_matches, bearer_token};

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

impl Access {
    /// How much it asks for: a method a path does not serve takes the
    /// strictest class of the path.
    fn rank(self) -> u8 {
        match self {
            Access::Open => 0,
            Access::Proxy => 1,
            Access::Api => 2,
            Access::Admin => 3,
        }
    }
}

/// The access class of every routed path and method. A path missing here is
/// refused to all but admins (fail closed).
#[derive(Debug, Default)]
pub struct Classes {
    /// Path pattern as routed -> (method, `None` for every one; class).
    paths: HashMap<String, Vec<(Option<Method>, Access)>>,
}

impl Classes {
    /// From `(path, methods or None for every one, class)`.
    pub fn new(routes: impl IntoIterator<Item = (String, Option<Vec<Method>>, Access)>) -> Self {
        let mut paths: HashMap<String, Vec<(Option<Method>, Access)>> = HashMap::new();
        for (path, methods, access) in routes {
            let entry = paths.entry(path).or_default();
            match methods {
                None => entry.push((None, access)),
                Some(ms) => entry.extend(ms.into_iter().map(|m| (Some(m), access))),
            }
        }
        Self { paths }
    }

    /// The class of `method` on the routed path pattern `pattern`.
    pub fn of(&self, method: &Method, pattern: &str) -> Access {
        let Some(entries) = self.paths.get(pattern) else {
            return Access::Admin;
        };
        let find = |wanted: Option<&Method>| {
            entries
                .iter()
                .find(|(m, _)| m.as_ref() == wanted)
                .map(|(_, a)| *a)
        };
        find(Some(method))
            // HEAD is answered by the GET handler.
            .or_else(|| {
                (method == Method::HEAD)
                    .then(|| find(Some(&Method::GET)))
                    .flatten()
            })
            .or_else(|| find(None))
            // A method the path does not serve: it gets a 405, behind the
            // strictest class of the path.
            .or_else(|| entries.iter().map(|(_, a)| *a).max_by_key(|a| a.rank()))
            .unwrap_or(Access::Admin)
    }
}

/// What the middleware needs: the handlers' state and the classes.
pub struct Gate {
    pub shared: Arc<Shared>,
    pub classes: Classes,
}

fn presented(req: &Request) -> Option<&[u8]> {
    bearer_token(req.headers())
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
pub async fn check(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let shared = &gate.shared;
    let config = &shared.config;
    if !config.auth_enabled() {
        // Loopback-only mode (enforced at start-up).
        return next.run(req).await;
    }
    let access = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(Access::Admin, |m| gate.classes.of(req.method(), m.as_str()));
    let needs_api = match access {
        Access::Open => return next.run(req).await,
        Access::Proxy if !config.proxy_require_token => return next.run(req).await,
        Access::Proxy | Access::Api => true,
        Access::Admin => false,
    };
    let Some(token) = presented(&req) else {
        // A studio session counts as an admin token.
        let session = crate::sessions::session_cookie(req.headers())
            .is_some_and(|id| shared.sessions.valid(id));
        if !session {
            return unauthorized("this route needs an Authorization: Bearer token");
        }
        if !crate::sessions::cookie_may(req.method(), req.headers()) {
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
        let classes = Classes::new([
            ("/v1/pools".to_owned(), Some(vec![Method::GET]), Access::Api),
            (
                "/v1/pools/{pool}".to_owned(),
                Some(vec![Method::PATCH]),
                Access::Admin,
            ),
            ("/healthz".to_owned(), Some(vec![Method::GET]), Access::Open),
            ("/container/{id}".to_owned(), None, Access::Proxy),
            ("/mixed".to_owned(), Some(vec![Method::GET]), Access::Open),
            ("/mixed".to_owned(), Some(vec![Method::POST]), Access::Api),
        ]);
        assert_eq!(classes.of(&Method::GET, "/v1/pools"), Access::Api);
        assert_eq!(classes.of(&Method::HEAD, "/v1/pools"), Access::Api);
        assert_eq!(classes.of(&Method::GET, "/healthz"), Access::Open);
        assert_eq!(
            classes.of(&Method::PATCH, "/v1/pools/{pool}"),
            Access::Admin
        );
        assert_eq!(classes.of(&Method::TRACE, "/container/{id}"), Access::Proxy);
        assert_eq!(classes.of(&Method::GET, "/mixed"), Access::Open);
        assert_eq!(classes.of(&Method::DELETE, "/mixed"), Access::Api);
        assert_eq!(classes.of(&Method::GET, "/v1/something-new"), Access::Admin);
    }
}
