//! The management API: claim, list, get, release, pools, events, health.
//! Handlers are thin: validate, call the domain, convert to a view.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde_json::Value;
use warmpool_client::{
    ClaimResponse, ContainerList, ContainerView, EventList, Health, PoolList, PoolView,
};
use warmpool_core::{ContainerId, ContainerState, Location};
use warmpool_store::ContainerFilter;

use crate::claim::{claim, ClaimError};
use crate::problem::ApiError;
use crate::state::Shared;
use crate::views::{self, rfc3339};

/// Largest accepted management request body.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// Longest `text` a claim may set (the sample app's own limit).
pub const MAX_TEXT: usize = 1024 * 1024;

type ApiResult<T> = Result<Json<T>, ApiError>;

fn store_error(e: warmpool_store::StoreError) -> ApiError {
    tracing::warn!(error = %crate::app::error_chain(&e), "store read failed");
    ApiError::unavailable(
        "store-unavailable",
        "Store Unavailable",
        "the store cannot be read right now",
        1,
    )
}

/// The problem document for a body that could not be read: 408 when the client
/// paused too long ([`crate::body`]), 413 past `limit` bytes, else 400.
pub(crate) fn body_error(e: BytesRejection, limit: usize) -> ApiError {
    use std::error::Error as _;
    if let Some(t) = e.source().and_then(crate::body::is_body_timeout) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            "Request Timeout",
            format!(
                "the request body stalled: nothing came for {}s",
                t.as_secs_f64()
            ),
        );
    }
    match e {
        BytesRejection::FailedToBufferBody(_) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Payload Too Large",
                format!("request bodies are limited to {limit} bytes"),
            )
        }
        other => ApiError::bad_request(format!("cannot read the request body: {other}")),
    }
}

/// Reads a JSON object body: empty means `{}`; wrong content type 415; too large
/// 413; not JSON 400; not an object 422.
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let body = body.map_err(|e| body_error(e, MAX_BODY))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Default::default());
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported Media Type",
                format!("expected application/json, got {essence:?}"),
            ));
        }
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => Ok(m),
        // `null` says what an empty body says: no fields.
        Ok(Value::Null) => Ok(Default::default()),
        Ok(_) => Err(ApiError::invalid("", "the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
    }
}

/// `POST /container`: claim a ready container (or start one on demand).
pub async fn post_container(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<ClaimResponse> {
    let mut obj = json_object(&headers, body)?;
    // The pool first: its settings bound the other fields.
    let pool = match obj.remove("pool") {
        None | Some(Value::Null) => s.app.default_pool(),
        // A well-formed name of a pool that does not exist: 404, naming the field.
        Some(Value::String(name)) => s
            .app
            .pool(&name)
            .ok_or_else(|| unknown_pool(&s, &name).field("pool"))?,
        Some(_) => return Err(ApiError::invalid("pool", "expected a string")),
    }
    .clone();
    let max = pool.config.max_lifetime.as_secs().max(1);
    let mut location = Location::Default;
    let mut lifetime = pool.config.max_lifetime;
    let mut text: Option<String> = None;
    let mut idle_timeout = pool.config.idle_timeout;
    for (k, v) in obj {
        match (k.as_str(), v) {
            // A known field set to null is left out; an unknown one is refused below.
            ("location" | "maxLifetimeInSeconds" | "idleTimeoutInSeconds" | "text", Value::Null) => {}
            ("location", Value::String(l)) => {
                location = l.parse().map_err(|e: warmpool_core::InvalidLocation| {
                    ApiError::invalid("location", e.to_string())
                })?;
            }
            ("location", _) => return Err(ApiError::invalid("location", "expected a string")),
            ("maxLifetimeInSeconds", Value::Number(n)) => {
                let secs = n
                    .as_u64()
                    .filter(|s| (1..=max).contains(s))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "maxLifetimeInSeconds",
                            format!("expected a whole number from 1 to {max}, got {n}"),
                        )
                    })?;
                lifetime = Duration::from_secs(secs);
            }
            ("maxLifetimeInSeconds", _) => {
                return Err(ApiError::invalid(
                    "maxLifetimeInSeconds",
                    "expected a whole number of seconds",
                ))
            }
            ("idleTimeoutInSeconds", Value::Number(n)) => {
                let secs = n.as_u64().filter(|s| (1..=max).contains(s)).ok_or_else(|| {
                    ApiError::invalid(
                        "idleTimeoutInSeconds",
                        format!("expected a whole number from 1 to {max}, got {n}"),
                    )
                })?;
                idle_timeout = Some(Duration::from_secs(secs));
            }
            ("idleTimeoutInSeconds", _) => {
                return Err(ApiError::invalid(
                    "idleTimeoutInSeconds",
                    "expected a whole number of seconds",
                ))
            }
            ("text", Value::String(t)) if t.len() <= MAX_TEXT => text = Some(t),
            ("text", Value::String(_)) => {
                return Err(ApiError::invalid(
                    "text",
                    format!("at most {MAX_TEXT} bytes"),
                ))
            }
            ("text", _) => return Err(ApiError::invalid("text", "expected a string")),
            (other, _) => {
                return Err(ApiError::invalid(
                    other,
                    format!(
                        "unknown field {other:?}: expected pool, location, maxLifetimeInSeconds, idleTimeoutInSeconds or text"
                    ),
                ))
            }
        }
    }
    let started = std::time::Instant::now();
    let result = claim(&s.app, &pool, location, lifetime, idle_timeout).await;
    let metrics = &s.app.metrics;
    let took = started.elapsed();
    metrics.claim_seconds.observe(took.as_secs_f64());
    if result.is_ok() {
        s.app.history.record_claim(took);
    }
    let key = pool.key(location);
    match &result {
        Ok(c) => metrics.claim(&key, if c.warm { "hit" } else { "miss" }),
        Err(_) => metrics.claim(&key, "rejected"),
    }
    match result {
        Ok(c) => {
            if let Some(text) = text {
                set_text(&s, c.id, text).await?;
            }
            Ok(Json(ClaimResponse {
                id: c.id.to_string(),
                pool: c.pool.to_string(),
                location: c.location.to_string(),
                expires_at: rfc3339(c.expires_at),
                warm: c.warm,
            }))
        }
        Err(e) => {
            let detail = crate::app::error_chain(&e);
            Err(match e {
                ClaimError::AtCapacity { .. } => {
                    ApiError::unavailable("at-capacity", "At Capacity", detail, 5)
                }
                ClaimError::Timeout(_) => {
                    ApiError::unavailable("no-container-ready", "No Container Ready", detail, 2)
                }
                ClaimError::StartFailed(_) => {
                    ApiError::unavailable("start-failed", "Container Start Failed", detail, 5)
                }
                ClaimError::Store(_) => {
                    ApiError::unavailable("store-unavailable", "Store Unavailable", detail, 1)
                }
                ClaimError::ShuttingDown => {
                    ApiError::unavailable("shutting-down", "Shutting Down", detail, 5)
                }
            })
        }
    }
}

/// Sets a just-claimed container's text through its `/admin/update-text`, before
/// the claim is answered. If that fails, the container is released (never
/// leaked) and the claim fails.
async fn set_text(s: &Shared, id: ContainerId, text: String) -> Result<(), ApiError> {
    let address = s.app.registry.get(&id).and_then(|e| e.address);
    let result = match address {
        Some(a) => s.upstream.post(&a, "/admin/update-text", text.into()).await,
        None => Err("the container has no address".into()),
    };
    let failure = match result {
        Ok(status) if status.is_success() => return Ok(()),
        Ok(status) => format!("the container answered {status}"),
        Err(e) => e,
    };
    if s.app.registry.try_begin(id).is_some() {
        s.app
            .stop_container(id, ContainerState::Allocated, "text could not be set")
            .await;
    }
    Err(ApiError::new(
        StatusCode::BAD_GATEWAY,
        "text-not-set",
        "Bad Gateway",
        format!("the claimed container did not take its text ({failure}); it was released"),
    ))
}

fn parse_id(raw: &str) -> Result<ContainerId, ApiError> {
    raw.parse()
        .map_err(|e: warmpool_core::InvalidContainerId| ApiError::not_found(e.to_string()))
}

/// `GET /v1/containers?state=&location=&pool=&limit=`
pub async fn list_containers(
    State(s): State<Arc<Shared>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<ContainerList> {
    let q = query_map(q)?;
    let mut f = ContainerFilter {
        limit: Some(1000),
        ..Default::default()
    };
    for (k, v) in q {
        match k.as_str() {
            "state" if v == "live" => f.live_only = true,
            "state" => {
                f.state = Some(v.parse().map_err(|e: warmpool_core::InvalidState| {
                    ApiError::invalid("state", e.to_string())
                })?)
            }
            "location" => {
                f.location = Some(v.parse().map_err(|e: warmpool_core::InvalidLocation| {
                    ApiError::invalid("location", e.to_string())
                })?)
            }
            "pool" => f.pool = Some(v),
            "limit" => {
                f.limit = Some(
                    v.parse()
                        .ok()
                        .filter(|l| (1..=10_000).contains(l))
                        .ok_or_else(|| {
                            ApiError::invalid(
                                "limit",
                                format!("expected a whole number from 1 to 10000, got {v:?}"),
                            )
                        })?,
                )
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!(
                    "unknown query parameter {other:?}: expected state, location, pool or limit"
                ),
                ))
            }
        }
    }
    let rows = s.app.store.containers(f).await.map_err(store_error)?;
    Ok(Json(ContainerList {
        containers: rows.into_iter().map(views::container).collect(),
    }))
}

async fn view(s: &Shared, id: ContainerId) -> ApiResult<ContainerView> {
    match s.app.store.container(id).await.map_err(store_error)? {
        Some(row) => Ok(Json(views::container(row))),
        None => Err(ApiError::not_found(format!("no container {id}"))),
    }
}

/// The container id of a path, as a problem document when the path cannot even be
/// decoded (bad percent-encoding).
fn id_in_path(raw: Result<Path<String>, PathRejection>) -> Result<ContainerId, ApiError> {
    match raw {
        Ok(Path(raw)) => parse_id(&raw),
        Err(e) => Err(ApiError::not_found(format!("no such container: {e}"))),
    }
}

/// The query string's parameters, as a problem document when it cannot be decoded.
fn query_map(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
}

/// `GET /v1/containers/{id}`
pub async fn get_container(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
) -> ApiResult<ContainerView> {
    view(&s, id_in_path(raw)?).await
}

/// `DELETE /v1/containers/{id}`: stop and release early. Idempotent: releasing a
/// container that is already stopping or stopped answers its current view.
pub async fn delete_container(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
) -> ApiResult<ContainerView> {
    let id = id_in_path(raw)?;
    if let Some(e) = s.app.registry.try_begin(id) {
        match e.state {
            ContainerState::Starting | ContainerState::Ready | ContainerState::Allocated => {
                s.app.stop_container(id, e.state, "released").await;
            }
            _ => s.app.registry.set_busy(id, false),
        }
    }
    view(&s, id).await
}

/// `GET /v1/pools`
pub async fn pools(State(s): State<Arc<Shared>>) -> Json<PoolList> {
    Json(pool_list(&s.app, None))
}

/// The pools' views, all or those of one pool.
fn pool_list(app: &crate::app::App, only: Option<&str>) -> PoolList {
    let desired = app.desired();
    let keys: Vec<_> = desired
        .pools
        .iter()
        .filter(|p| only.is_none_or(|name| &*p.key.pool == name))
        .map(|p| p.key.clone())
        .collect();
    let (counts, live) = app.registry.pool_counts(&keys);
    let pools = counts
        .into_iter()
        .filter(|(key, _)| only.is_none_or(|name| &*key.pool == name))
        .map(|(key, c)| {
            let target = desired
                .pools
                .iter()
                .find(|p| p.key == key)
                .map_or(0, |p| p.target);
            PoolView {
                pool: key.pool.to_string(),
                location: key.location.to_string(),
                target,
                ready: c.ready,
                starting: c.starting,
                allocated: c.allocated,
                stopping: c.stopping,
                failed: c.failed,
                hits: c.stats.hits,
                misses: c.stats.misses,
                failed_starts: c.stats.failed_starts,
                last_error_at: c.stats.last_error.as_ref().map(|(t, _)| rfc3339(*t)),
                last_error: c.stats.last_error.map(|(_, e)| e),
            }
        })
        .collect();
    PoolList {
        pools,
        live,
        max_instances: app.config.max_instances,
    }
}

/// Largest target a pool location may be given at runtime (as in the config).
pub const MAX_TARGET: u64 = 100_000;

/// `PATCH /v1/pools/{pool}` with `{"targets": {"LOCATION": N, ...}}`: changes the
/// targets of the named locations at runtime (the others keep theirs). Lowering a
/// target stops surplus ready containers; allocated ones are never touched.
/// Runtime targets are not saved: a restart returns to the configured ones.
pub async fn patch_pool(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<PoolList> {
    let Path(name) = raw.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let pool = s
        .app
        .pool(&name)
        .ok_or_else(|| unknown_pool(&s, &name))?
        .clone();
    let obj = json_object(&headers, body)?;
    let mut targets = Vec::new();
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("targets", Value::Object(m)) => {
                for (l, n) in m {
                    let field = format!("targets.{l}");
                    let location: Location =
                        l.parse().map_err(|e: warmpool_core::InvalidLocation| {
                            ApiError::invalid(&field, e.to_string())
                        })?;
                    if !pool.config.targets.iter().any(|(c, _)| *c == location) {
                        let configured: Vec<String> = pool
                            .config
                            .targets
                            .iter()
                            .map(|(c, _)| c.to_string())
                            .collect();
                        return Err(ApiError::invalid(
                            &field,
                            format!(
                                "pool {name:?} has no location {l:?}; its locations are {}",
                                configured.join(", ")
                            ),
                        ));
                    }
                    let n = n.as_u64().filter(|n| *n <= MAX_TARGET).ok_or_else(|| {
                        ApiError::invalid(
                            &field,
                            format!("expected an integer from 0 to {MAX_TARGET}"),
                        )
                    })?;
                    targets.push((location, n as u32));
                }
            }
            ("targets", _) => {
                return Err(ApiError::invalid(
                    "targets",
                    "expected an object of location: target",
                ))
            }
            (other, _) => {
                return Err(ApiError::invalid(other, format!("unknown field {other:?}")));
            }
        }
    }
    if targets.is_empty() {
        return Err(ApiError::invalid(
            "targets",
            "expected at least one location",
        ));
    }
    s.app
        .set_targets(&name, &targets)
        .map_err(|l| ApiError::invalid(&format!("targets.{l}"), "not a location of this pool"))?;
    tracing::info!(pool = %name, ?targets, "pool targets changed at runtime");
    Ok(Json(pool_list(&s.app, Some(&name))))
}

fn unknown_pool(s: &Shared, name: &str) -> ApiError {
    let names: Vec<&str> = s.app.pools().iter().map(|p| &*p.name).collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown-pool",
        "Unknown Pool",
        format!("no pool named {name:?}; the pools are {}", names.join(", ")),
    )
}

/// Longest a long-polling `GET /v1/events?wait=` waits.
pub const MAX_EVENTS_WAIT: u64 = 60;

/// `GET /v1/events?after=&limit=&container=&wait=`: with `wait=S`, an empty answer
/// is held back up to S seconds until an event comes.
pub async fn events(
    State(s): State<Arc<Shared>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<EventList> {
    let q = query_map(q)?;
    let mut after = 0i64;
    let mut limit = 100u32;
    let mut container = None;
    let mut wait = Duration::ZERO;
    for (k, v) in q {
        match k.as_str() {
            "wait" => {
                let secs = v
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s <= MAX_EVENTS_WAIT)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "wait",
                            format!("expected 0 to {MAX_EVENTS_WAIT} seconds, got {v:?}"),
                        )
                    })?;
                wait = Duration::from_secs(secs);
            }
            "after" => {
                after = v.parse().ok().filter(|a| *a >= 0).ok_or_else(|| {
                    ApiError::invalid(
                        "after",
                        format!("expected a non-negative event number, got {v:?}"),
                    )
                })?
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=1000).contains(l))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "limit",
                            format!("expected a whole number from 1 to 1000, got {v:?}"),
                        )
                    })?
            }
            "container" => {
                container = Some(v.parse().map_err(|e: warmpool_core::InvalidContainerId| {
                    ApiError::invalid("container", e.to_string())
                })?)
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!(
                    "unknown query parameter {other:?}: expected after, limit, container or wait"
                ),
                ))
            }
        }
    }
    // Registered before the first read, so that no event slips between the read
    // and the wait.
    let registry = &s.app.registry;
    let written = registry.events_written.notified();
    tokio::pin!(written);
    written.as_mut().enable();
    let read = || async {
        s.app
            .store
            .events(after, limit, container)
            .await
            .map_err(store_error)
    };
    let mut rows = read().await?;
    let deadline = tokio::time::Instant::now() + wait;
    while rows.is_empty() && tokio::time::Instant::now() < deadline {
        if tokio::time::timeout_at(deadline, written.as_mut())
            .await
            .is_err()
        {
            break;
        }
        written.set(registry.events_written.notified());
        written.as_mut().enable();
        rows = read().await?;
    }
    let next = rows.last().map_or(after, |e| e.seq);
    Ok(Json(EventList {
        events: rows.into_iter().map(views::event).collect(),
        next,
    }))
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(s): State<Arc<Shared>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let app = &s.app;
    let keys: Vec<_> = app.desired().pools.iter().map(|p| p.key.clone()).collect();
    let (counts, _) = app.registry.pool_counts(&keys);
    app.metrics.containers.clear();
    for (key, c) in counts {
        for (state, n) in [
            ("starting", c.starting),
            ("ready", c.ready),
            ("allocated", c.allocated),
            ("stopping", c.stopping),
            ("failed", c.failed),
        ] {
            app.metrics
                .containers
                .get_or_create(&crate::metrics::StateLabels {
                    pool: key.pool.to_string(),
                    location: key.location.to_string(),
                    state: state.into(),
                })
                .set(i64::from(n));
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

/// `GET /v1/stats/history`: pool depth and claim latency over the last hour.
pub async fn history(State(s): State<Arc<Shared>>) -> Json<warmpool_client::History> {
    Json(warmpool_client::History {
        interval_seconds: crate::history::INTERVAL.as_secs(),
        samples: s.app.history.snapshot(&s.app),
    })
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// `GET /readyz`: the store is open and the reconciler has run once.
pub async fn readyz(State(s): State<Arc<Shared>>) -> ApiResult<Health> {
    if s.app.has_reconciled() && !s.app.is_shutting_down() {
        Ok(Json(Health {
            status: "ready".into(),
        }))
    } else {
        Err(ApiError::unavailable(
            "not-ready",
            "Not Ready",
            "the reconciler has not run yet or warmpool is shutting down",
            1,
        ))
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method Not Allowed",
        "this route does not accept that method",
    )
}
