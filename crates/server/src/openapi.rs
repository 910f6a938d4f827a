//! The OpenAPI 3.1 document's parts that are not routes: its frame (info, tags,
//! security scheme), the descriptions of the proxy routes, the helpers that walk
//! a document, and the offline reference page (`GET /docs`). The document itself
//! is read from the route table (`routes::document`): each handler's
//! `#[utoipa::path]` describes it, schemas come from the wire types themselves,
//! and each route's access class sets its security. A test checks that
//! `docs/openapi.json` is what this code generates.

use std::collections::HashMap;

use axum::http::Method;
use axum::response::Html;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use warmpool_client::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "warmpool",
        description = "Keeps pools of pre-started containers and hands one out instantly. \
            Errors are application/problem+json documents (RFC 9457).",
        license(name = "Apache-2.0")
    ),
    components(schemas(Problem)),
    modifiers(&Bearer),
    tags(
        (name = "claim", description = "Claim a ready container"),
        (name = "proxy", description = "Talk to a claimed container"),
        (name = "manage", description = "Containers, pools and events"),
        (name = "operate", description = "Health, metrics and this document"),
        (name = "studio", description = "The web console and its read-only database access")
    )
)]
struct ApiDoc;

/// The name of the bearer token security scheme.
pub(crate) const BEARER: &str = "bearer";

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document's frame: info, tags, security schemes; the routes add the rest.
pub(crate) fn frame() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.openapi = utoipa::openapi::OpenApiVersion::Version31;
    doc
}

/// OpenAPI spells a routed `{*rest}` as `{rest}`.
pub fn openapi_path(routed: &str) -> String {
    routed.replace("{*", "{")
}

/// A path item's operations with their methods.
pub(crate) fn operations_mut(
    item: &mut PathItem,
) -> impl Iterator<Item = (Method, &mut Operation)> {
    [
        (Method::GET, &mut item.get),
        (Method::PUT, &mut item.put),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
        (Method::OPTIONS, &mut item.options),
        (Method::HEAD, &mut item.head),
        (Method::PATCH, &mut item.patch),
        (Method::TRACE, &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
}

/// The methods a path item describes.
pub(crate) fn methods(item: &PathItem) -> Vec<Method> {
    [
        (Method::GET, &item.get),
        (Method::PUT, &item.put),
        (Method::POST, &item.post),
        (Method::DELETE, &item.delete),
        (Method::OPTIONS, &item.options),
        (Method::HEAD, &item.head),
        (Method::PATCH, &item.patch),
        (Method::TRACE, &item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.is_some().then_some(m))
    .collect()
}

/// Makes every operationId unique: a description shared by several methods (the
/// proxy's) gets one id per method, `proxy_root_get`, `proxy_root_post`, ...
pub(crate) fn unique_operation_ids(doc: &mut utoipa::openapi::OpenApi) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in doc.paths.paths.values_mut() {
        for (_, op) in operations_mut(item) {
            if let Some(id) = &op.operation_id {
                *seen.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for item in doc.paths.paths.values_mut() {
        for (method, op) in operations_mut(item) {
            if let Some(id) = op.operation_id.as_mut().filter(|id| seen[*id] > 1) {
                *id = format!("{id}_{}", method.as_str().to_ascii_lowercase());
            }
        }
    }
}

/// `GET /docs`: a self-contained page that renders the document (no CDN).
#[utoipa::path(get, path = "/docs", tag = "operate",
    responses((status = 200, description = "A readable reference of this document (works offline)", content_type = "text/html"))
)]
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

/// The content type of every error answer.
pub(crate) const PROBLEM: &str = "application/problem+json";

// Described, never built: `studio.rs` parses the form by hand.
/// The studio's login form.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct LoginForm {
    /// An admin token.
    token: String,
}

// The proxy's handlers (`proxy::handle`, `proxy::admin_passthrough`) live in
// `proxy.rs`, and one of them serves three paths, so their descriptions are here;
// the route table pairs each description with its handler.

/// The proxy routes differ only in their path and its parameters.
macro_rules! proxy_doc {
    ($name:ident, $path:literal $(, $param:tt)*) => {
        #[doc = concat!("Describes `ANY ", $path, "`, served by `proxy::handle`.")]
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
            )
        )]
        pub(crate) async fn $name() {}
    };
}
proxy_doc!(proxy_root, "/container/{id}");
proxy_doc!(proxy_root_slash, "/container/{id}/");
proxy_doc!(
    proxy_path,
    "/container/{id}/{*path}",
    (
        "path" = String,
        Path,
        description = "Forwarded to the container as /{path}, with the query"
    )
);

/// Describes `POST /v1/containers/{id}/admin/{*path}`, served by
/// `proxy::admin_passthrough`.
#[utoipa::path(post, path = "/v1/containers/{id}/admin/{*path}", tag = "manage",
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
    )
)]
pub(crate) async fn admin_passthrough() {}
