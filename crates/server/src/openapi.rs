//! The OpenAPI 3.1 document (`GET /openapi`, `/openapi.json`) and the offline
//! reference page (`GET /docs`). Schemas come from the wire types themselves; a
//! test checks that every routed path is described and that `docs/openapi.json`
//! is what this code generates.

#![allow(dead_code)] // the functions below exist for their `#[utoipa::path]` only

use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use warmpool_client::{
    ClaimRequest, ClaimResponse, ColumnView, ContainerList, ContainerView, EventList, EventView,
    Health, History, HistorySample, PoolList, PoolPatch, PoolSample, PoolView, Problem, SqlRequest,
    SqlResult, Status, TableList, TableView, TaskRunView, TaskView,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "warmpool",
        description = "Keeps pools of pre-started containers and hands one out instantly. \
            Errors are application/problem+json documents (RFC 9457).",
        license(name = "Apache-2.0")
    ),
    paths(
        claim, proxy_root, proxy_root_slash, proxy_path, list_containers, get_container,
        release_container, admin_passthrough, pools, patch_pool, events, metrics, healthz, readyz,
        openapi_json, openapi_alias, docs, history, status, sql, tables, table_rows, studio,
        studio_css, studio_js, studio_login, studio_logout
    ),
    components(schemas(
        ClaimRequest, ClaimResponse, ContainerList, ContainerView, EventList, EventView,
        Health, PoolList, PoolPatch, PoolView, Problem, SqlRequest, SqlResult, TableList, TableView,
        ColumnView, History, HistorySample, PoolSample, LoginForm, Status, TaskView, TaskRunView
    )),
    modifiers(&Bearer),
    tags(
        (name = "claim", description = "Claim a ready container"),
        (name = "proxy", description = "Talk to a claimed container"),
        (name = "manage", description = "Containers, pools and events"),
        (name = "operate", description = "Health, metrics and this document"),
        (name = "studio", description = "The web console and its read-only database access")
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON (what `docs/openapi.json` holds).
pub fn json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.openapi = utoipa::openapi::OpenApiVersion::Version31;
    doc.to_pretty_json().expect("the document serialises") + "\n"
}

/// `GET /openapi` and `/openapi.json`.
pub async fn serve_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json(),
    )
        .into_response()
}

/// `GET /docs`: a self-contained page that renders the document (no CDN).
pub async fn serve_docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

const PROBLEM: &str = "application/problem+json";

#[utoipa::path(post, path = "/container", tag = "claim",
    request_body(content = Option<ClaimRequest>, description = "All fields optional", content_type = "application/json"),
    responses(
        (status = 200, description = "Claimed; durable before this answer", body = ClaimResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No pool of that name (`field` is `pool`)", body = Problem, content_type = PROBLEM),
        (status = 415, description = "Not JSON", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid or unknown field (named in `field`)", body = Problem, content_type = PROBLEM),
        (status = 502, description = "The container did not take its text; it was released", body = Problem, content_type = PROBLEM),
        (status = 503, description = "At capacity, no container ready in time, or store unavailable (Retry-After)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn claim() {}

/// The proxy routes differ only in their path and its parameters.
macro_rules! proxy_doc {
    ($name:ident, $path:literal $(, $param:tt)*) => {
        #[utoipa::path(method(get, post, put, patch, delete, head, options), path = $path, tag = "proxy",
            params(("id" = String, Path, description = "The container id (a UUID): the capability") $(, $param)*),
            responses(
                (status = 200, description = "Whatever the container answers, streamed; WebSocket upgrades pass through"),
                (status = 401, description = "Missing or wrong token (with WARMPOOL_PROXY_REQUIRE_TOKEN)", body = Problem, content_type = PROBLEM),
                (status = 403, description = "An /admin path, in any spelling", body = Problem, content_type = PROBLEM),
                (status = 404, description = "Unknown or unclaimed id", body = Problem, content_type = PROBLEM),
                (status = 410, description = "Expired, released, idle or dead; `detail` says which", body = Problem, content_type = PROBLEM),
                (status = 502, description = "The container did not answer", body = Problem, content_type = PROBLEM),
                (status = 504, description = "The container did not answer in time", body = Problem, content_type = PROBLEM),
            ),
            security((), ("bearer" = []))
        )]
        fn $name() {}
    };
}
proxy_doc!(proxy_root, "/container/{id}");
proxy_doc!(proxy_root_slash, "/container/{id}/");
proxy_doc!(
    proxy_path,
    "/container/{id}/{path}",
    (
        "path" = String,
        Path,
        description = "Forwarded to the container as /{path}, with the query"
    )
);

#[utoipa::path(get, path = "/v1/containers", tag = "manage",
    params(
        ("state" = Option<String>, Query, description = "starting, ready, allocated, stopping, stopped or failed; or live (every state but stopped)",
            pattern = "^(starting|ready|allocated|stopping|stopped|failed|live)$"),
        ("location" = Option<String>, Query, description = "default, wnam, enam, sam, weur, eeur, apac, oc, afr or me",
            pattern = "^(default|wnam|enam|sam|weur|eeur|apac|oc|afr|me)$"),
        ("pool" = Option<String>, Query, description = "Pool name"),
        ("limit" = Option<u32>, Query, description = "1 to 10000 (default 1000)", minimum = 1, maximum = 10000)
    ),
    responses(
        (status = 200, description = "Containers, oldest first", body = ContainerList),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid or unknown parameter", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn list_containers() {}

#[utoipa::path(get, path = "/v1/containers/{id}", tag = "manage",
    params(("id" = String, Path, description = "Container id")),
    responses(
        (status = 200, description = "The container", body = ContainerView),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such container", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn get_container() {}

#[utoipa::path(delete, path = "/v1/containers/{id}", tag = "manage",
    params(("id" = String, Path, description = "Container id")),
    responses(
        (status = 200, description = "Stopped (idempotent): its final view", body = ContainerView),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such container", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn release_container() {}

#[utoipa::path(post, path = "/v1/containers/{id}/admin/{path}", tag = "manage",
    params(
        ("id" = String, Path, description = "Container id (ready or allocated)"),
        ("path" = String, Path, description = "Forwarded to the container as /admin/{path}")
    ),
    request_body(content = String, description = "Passed through", content_type = "*/*"),
    responses(
        (status = 200, description = "Whatever the container answers"),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such live container (a problem document), or the container's own 404 (passed through as it is)",
            content((Problem = "application/problem+json"), (String = "*/*"))),
        (status = "default", description = "The container's own answer, any status and content type, passed through"),
        (status = 409, description = "The container is not running", body = Problem, content_type = PROBLEM),
        (status = 502, description = "The container did not answer", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn admin_passthrough() {}

#[utoipa::path(get, path = "/v1/pools", tag = "manage",
    responses(
        (status = 200, description = "Each pool key's numbers", body = PoolList),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn pools() {}

#[utoipa::path(patch, path = "/v1/pools/{pool}", tag = "manage",
    params(("pool" = String, Path, description = "A configured pool", pattern = "^[A-Za-z0-9_-]{1,63}$")),
    request_body(content = PoolPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The pool's locations with their new targets (held in memory: a restart returns to the configured ones)", body = PoolList),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such pool (`unknown-pool`)", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "Not JSON", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A location the pool does not have, a target out of range, or an unknown field", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn patch_pool() {}

#[utoipa::path(get, path = "/v1/events", tag = "manage",
    params(
        ("after" = Option<i64>, Query, description = "Events after this sequence number (default 0)", minimum = 0),
        ("limit" = Option<u32>, Query, description = "1 to 1000 (default 100)", minimum = 1, maximum = 1000),
        ("container" = Option<String>, Query, description = "Only this container's events (a UUID)",
            pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
        ("wait" = Option<u64>, Query, description = "Hold an empty answer up to this many seconds (0 to 60)", maximum = 60)
    ),
    responses(
        (status = 200, description = "Events, oldest first; pass `next` as `after`", body = EventList),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid or unknown parameter", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn events() {}

#[utoipa::path(get, path = "/metrics", tag = "operate",
    responses(
        (status = 200, description = "Prometheus metrics (OpenMetrics text)", body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn metrics() {}

#[utoipa::path(get, path = "/healthz", tag = "operate",
    responses((status = 200, description = "The process is up", body = Health))
)]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operate",
    responses(
        (status = 200, description = "The store is open and the reconciler has run", body = Health),
        (status = 503, description = "Not ready yet, or shutting down", body = Problem, content_type = PROBLEM),
    )
)]
fn readyz() {}

#[utoipa::path(get, path = "/openapi.json", tag = "operate",
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
fn openapi_json() {}

#[utoipa::path(get, path = "/openapi", tag = "operate",
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
fn openapi_alias() {}

#[utoipa::path(get, path = "/docs", tag = "operate",
    responses((status = 200, description = "A readable reference of this document (works offline)", content_type = "text/html"))
)]
fn docs() {}

#[utoipa::path(get, path = "/v1/stats/history", tag = "manage",
    responses(
        (status = 200, description = "Pool depth and claim latency (successful claims) every 10 s over the last hour, kept in memory", body = History),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn history() {}

#[utoipa::path(get, path = "/v1/status", tag = "manage",
    responses(
        (status = 200, description = "warmpool's background tasks (reconcile, sweep, prober, history, prune_tombstones): period, runs, errors, and the last run's start, duration and outcome", body = Status),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn status() {}

#[utoipa::path(post, path = "/v1/sql", tag = "studio",
    request_body(content = SqlRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "At most 500 rows (`truncated` if there were more), on a read-only connection", body = SqlResult),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing or wrong admin token (or studio session)", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Refused: the statement would write, attach, set a pragma or run more than one statement; or a cookie-authenticated request without X-Requested-With", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "Not JSON", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid SQL (`invalid-sql`), or stopped at the 2 s time limit (`query-timeout`)", body = Problem, content_type = PROBLEM),
        (status = 503, description = "The store cannot be read right now", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn sql() {}

#[utoipa::path(get, path = "/v1/tables", tag = "studio",
    responses(
        (status = 200, description = "The store's tables with their columns and row counts", body = TableList),
        (status = 401, description = "Missing or wrong admin token (or studio session)", body = Problem, content_type = PROBLEM),
        (status = 503, description = "The store cannot be read right now", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn tables() {}

#[utoipa::path(get, path = "/v1/tables/{name}/rows", tag = "studio",
    params(
        ("name" = String, Path, description = "A table named by GET /v1/tables"),
        ("offset" = Option<u64>, Query, description = "Rows to skip (default 0)"),
        ("limit" = Option<u32>, Query, description = "1 to 500 (default 100)")
    ),
    responses(
        (status = 200, description = "One page in primary key order; `truncated` if more rows follow", body = SqlResult),
        (status = 401, description = "Missing or wrong admin token (or studio session)", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such table", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid or unknown parameter", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
fn table_rows() {}

#[utoipa::path(get, path = "/studio", tag = "studio",
    responses((status = 200, description = "The studio page; the login form when tokens are configured and there is no session", content_type = "text/html"))
)]
fn studio() {}

#[utoipa::path(get, path = "/studio/studio.css", tag = "studio",
    responses((status = 200, description = "The studio's style sheet", content_type = "text/css"))
)]
fn studio_css() {}

#[utoipa::path(get, path = "/studio/studio.js", tag = "studio",
    responses((status = 200, description = "The studio's script", content_type = "text/javascript"))
)]
fn studio_js() {}

/// The studio's login form.
#[derive(utoipa::ToSchema)]
struct LoginForm {
    /// An admin token.
    token: String,
}

#[utoipa::path(post, path = "/studio/login", tag = "studio",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Logged in: a `warmpool_session` cookie (HttpOnly, SameSite=Strict, 12 h) holding a random session id, and back to /studio"),
        (status = 401, description = "Not an admin token: the form again", content_type = "text/html"),
        (status = 403, description = "No admin token is configured", content_type = "text/html"),
    )
)]
fn studio_login() {}

#[utoipa::path(post, path = "/studio/logout", tag = "studio",
    responses((status = 303, description = "The session is ended and its cookie cleared; back to /studio"))
)]
fn studio_logout() {}
