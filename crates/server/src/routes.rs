//! The one route table: every route's path, methods, handler, OpenAPI
//! description and access class, in one list ([`table`]). The router
//! ([`router`]), the auth classes ([`auth::Classes`]) and the OpenAPI document
//! ([`document`]) are all read from it, so they cannot drift; a route the table
//! does not know is admin-only (fail closed).
//!
//! Adding a route is a change in one place: write its handler, with its
//! `#[utoipa::path(get, path = "/v1/...", ...)]` (which gives the path and the
//! methods), in the module of its resource, and add one line to [`table`] saying
//! who may call it: `api(routes!(api::status::status)),`.

use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, MethodFilter, MethodRouter};
use axum::Router;
use utoipa::openapi::security::SecurityRequirement;
use utoipa_axum::router::{UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::{self, Access};
use crate::openapi::{self, operations_mut};
use crate::state::Shared;
use crate::{api, console, proxy, studio};

type Handlers = UtoipaMethodRouter<Arc<Shared>>;

/// Every route, with who may call it.
pub fn table() -> Vec<Route> {
    use api::{containers, events, meta, pools};
    vec![
        api(routes!(containers::claim)),
        proxy(every_method(routes!(openapi::proxy_root), proxy::handle)),
        proxy(every_method(
            routes!(openapi::proxy_root_slash),
            proxy::handle,
        )),
        proxy(every_method(routes!(openapi::proxy_path), proxy::handle)),
        api(routes!(containers::list_containers)),
        api(routes!(containers::get_container)),
        api(routes!(containers::release_container)),
        api(routes!(containers::extend_container)),
        api(routes!(containers::keepalive_container)),
        admin(served_by(
            routes!(openapi::admin_passthrough),
            proxy::admin_passthrough,
        )),
        api(routes!(pools::pools)),
        api(routes!(pools::get_pool)),
        admin(routes!(pools::put_pool)),
        admin(routes!(pools::patch_pool)),
        admin(routes!(pools::delete_pool)),
        admin(routes!(pools::rollback)),
        admin(routes!(pools::reload)),
        api(routes!(events::events)),
        api(routes!(meta::metrics)),
        open(routes!(openapi_alias)),
        open(routes!(openapi_json)),
        open(routes!(openapi::docs)),
        open(routes!(meta::healthz)),
        open(routes!(meta::readyz)),
        api(routes!(meta::history)),
        api(routes!(meta::status)),
        admin(routes!(console::sql)),
        admin(routes!(console::tables)),
        admin(routes!(console::rows)),
        // The page and its files hold no data; the page asks for a login itself.
        open(routes!(studio::index)),
        open(routes!(studio::css)),
        open(routes!(studio::js)),
        open(body_limit(routes!(studio::login), 4096)),
        open(routes!(studio::logout)),
    ]
}

/// One route of the [`table`].
pub struct Route {
    /// Who may call it.
    pub access: Access,
    /// Its path as routed (`{*rest}` for the rest of a path).
    pub path: String,
    /// The methods it serves; `None`: every method.
    pub methods: Option<Vec<Method>>,
    handlers: Handlers,
}

/// Handlers with their description (what `routes!` makes of handlers with a
/// `#[utoipa::path]`), and whether they serve every method.
struct Described {
    handlers: Handlers,
    every_method: bool,
}

impl From<Handlers> for Described {
    fn from(handlers: Handlers) -> Self {
        Self {
            handlers,
            every_method: false,
        }
    }
}

/// A route anyone may call.
fn open(h: impl Into<Described>) -> Route {
    Route::new(Access::Open, h.into())
}

/// A route for API (or admin) tokens.
fn api(h: impl Into<Described>) -> Route {
    Route::new(Access::Api, h.into())
}

/// A route for admin tokens (or a studio session).
fn admin(h: impl Into<Described>) -> Route {
    Route::new(Access::Admin, h.into())
}

/// A proxy route: the container id is the capability.
fn proxy(h: impl Into<Described>) -> Route {
    Route::new(Access::Proxy, h.into())
}

/// The described route, served for every method, described or not (the proxy
/// passes them all), by `handler`.
fn every_method<H, T>(doc: Handlers, handler: H) -> Described
where
    H: Handler<T, Arc<Shared>>,
    T: 'static,
{
    let (schemas, paths, _) = doc;
    Described {
        handlers: (schemas, paths, any(handler)),
        every_method: true,
    }
}

/// The described route, its described methods served by `handler` (one that
/// lives outside the annotated modules).
fn served_by<H, T>(doc: Handlers, handler: H) -> Handlers
where
    H: Handler<T, Arc<Shared>>,
    T: 'static,
{
    let (schemas, paths, _) = doc;
    let methods = paths.paths.values().flat_map(openapi::methods);
    let router = methods.fold(MethodRouter::new(), |r, m| {
        r.on(
            MethodFilter::try_from(m).expect("a described method"),
            handler.clone(),
        )
    });
    (schemas, paths, router)
}

/// Refuses request bodies past `bytes` (413) on a handler reading `Bytes`.
fn body_limit(h: Handlers, bytes: usize) -> Handlers {
    h.layer(DefaultBodyLimit::max(bytes))
}

impl Route {
    fn new(access: Access, d: Described) -> Self {
        let paths = &d.handlers.1.paths;
        assert_eq!(paths.len(), 1, "one path per table line");
        let (path, item) = paths.iter().next().expect("one path");
        let described = openapi::methods(item);
        Self {
            access,
            path: path.clone(),
            methods: (!d.every_method).then_some(described),
            handlers: d.handlers,
        }
    }
}

/// The router of the [`table`], with the auth check, the fallbacks and the
/// request id.
pub fn router(shared: Arc<Shared>) -> Router {
    let table = table();
    let classes = auth::Classes::new(
        table
            .iter()
            .map(|r| (r.path.clone(), r.methods.clone(), r.access)),
    );
    let router = table.into_iter().fold(Router::new(), |router, r| {
        router.route(&r.path, r.handlers.2)
    });
    let gate = Arc::new(auth::Gate {
        shared: shared.clone(),
        classes,
    });
    router
        .route_layer(axum::middleware::from_fn_with_state(gate, auth::check))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(shared)
        // Outermost: every request gets an id, logged with it and returned.
        .layer(axum::middleware::from_fn(request_id))
}

/// The OpenAPI document of the [`table`]: each route's description, with the
/// security its access class asks for.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = openapi::frame();
    for r in table() {
        let (schemas, paths, _) = r.handlers;
        let security = match r.access {
            Access::Open => None,
            Access::Api | Access::Admin => Some(vec![bearer()]),
            // The id is the capability; a token too with WARMPOOL_PROXY_REQUIRE_TOKEN.
            Access::Proxy => Some(vec![SecurityRequirement::default(), bearer()]),
        };
        for (path, mut item) in paths.paths {
            for (_, op) in operations_mut(&mut item) {
                op.security.clone_from(&security);
                // utoipa takes a handler's doc comment as its summary; those are
                // written for the code's readers, the document's words are the
                // annotation's.
                op.summary = None;
                op.description = None;
            }
            doc.paths
                .paths
                .entry(openapi::openapi_path(&path))
                .or_default()
                .merge_operations(item);
        }
        let components = doc.components.get_or_insert_with(Default::default);
        components.schemas.extend(schemas);
    }
    openapi::unique_operation_ids(&mut doc);
    doc
}

fn bearer() -> SecurityRequirement {
    SecurityRequirement::new(openapi::BEARER, Vec::<String>::new())
}

/// Gives every request an id (the client's `X-Request-Id` when it is short and
/// printable, a random one otherwise), runs it inside a log span carrying the id,
/// and returns the id in the answer's `X-Request-Id`.
async fn request_id(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    crate::request_id::identified(req, |req| next.run(req)).await
}

/// The document as pretty JSON (what `docs/openapi.json` holds).
pub fn json() -> String {
    document()
        .to_pretty_json()
        .expect("the document serialises")
        + "\n"
}

/// The document, made once.
fn served() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(json)
}

fn serve_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        served(),
    )
        .into_response()
}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "operate",
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Response {
    serve_json()
}

/// `GET /openapi`: this document.
#[utoipa::path(get, path = "/openapi", tag = "operate",
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
pub async fn openapi_alias() -> Response {
    serve_json()
}
