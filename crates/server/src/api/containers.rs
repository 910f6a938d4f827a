//! Containers: claim one (`POST /container`), list them, get one, release one,
//! extend one's expiry, keep one alive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use tracing::Instrument;
use warmpool_client::{
    ClaimRequest, ClaimResponse, ContainerList, ContainerView, ExtendRequest, KeepaliveRequest,
    Problem,
};
use warmpool_core::labels::Selector;
use warmpool_core::{Location, TRACE_TARGET};
use warmpool_engine::{ClaimError, ClaimRequest as Claim, ClaimedError, Pool, SetupError};
use warmpool_store::ContainerFilter;

use super::{id_in_path, query_map, setup, store_error, ApiResult, JsonBody, RequestBody};
use crate::openapi::PROBLEM;
use crate::problem::ApiError;
use crate::state::Shared;
use crate::views::{self, rfc3339};

impl RequestBody for ClaimRequest {
    /// Text (1 MiB), files (1 MiB), env, metadata, and their JSON escaping.
    const LIMIT: usize = 4 * 1024 * 1024;
}
impl RequestBody for ExtendRequest {}
impl RequestBody for KeepaliveRequest {}

/// `POST /container`: claim a ready container (or start one on demand).
#[utoipa::path(post, path = "/container", tag = "claim",
    request_body(content = Option<ClaimRequest>, description = "All fields optional", content_type = "application/json"),
    responses(
        (status = 200, description = "Claimed; durable before this answer", body = ClaimResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "Not JSON", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid or unknown field (named in `field`)", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No pool of that name (`field` is `pool`), or none matches `selector` or `preferred` (`no-matching-pool`)", body = Problem, content_type = PROBLEM),
        (status = 502, description = "The container could not be set up (`setup-failed`; `field` names the step: files, bind or text); it was released, never handed out", body = Problem, content_type = PROBLEM),
        (status = 503, description = "At capacity, no container ready in time, or store unavailable (Retry-After)", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn claim(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ClaimRequest>,
) -> ApiResult<ClaimResponse> {
    // The pools first: their settings bound the other fields.
    let pools = claim_pools(&s, &req)?;
    let max = pools
        .iter()
        .map(|p| p.spec.max_lifetime.as_secs().max(1))
        .min()
        .unwrap_or(1);
    let seconds = |field: &str, value: Option<u64>| match value {
        None => Ok(None),
        Some(secs) if (1..=max).contains(&secs) => Ok(Some(Duration::from_secs(secs))),
        Some(secs) => Err(ApiError::invalid(
            field,
            format!("expected a whole number from 1 to {max}, got {secs}"),
        )),
    };
    let location = match &req.location {
        None => Location::Default,
        Some(l) => l.parse().map_err(|e: warmpool_core::InvalidLocation| {
            ApiError::invalid("location", e.to_string())
        })?,
    };
    let lifetime = seconds("maxLifetimeInSeconds", req.max_lifetime_in_seconds)?;
    let idle_timeout = seconds("idleTimeoutInSeconds", req.idle_timeout_in_seconds)?;
    let setup = setup::check(req)?;
    let mut pools = pools.into_iter();
    let pool = pools.next().expect("claim_pools answers at least one pool");
    let claim = Claim {
        pool,
        fallbacks: pools.collect(),
        location,
        lifetime,
        idle_timeout,
        setup,
    };
    // Traced (when traces are on) in the caller's trace, if it sent a traceparent.
    let span = tracing::trace_span!(target: TRACE_TARGET, "claim",
        pool = %claim.pool.name, location = %location,
        container_id = tracing::field::Empty, warm = tracing::field::Empty);
    crate::otel::continue_trace(&span, &headers);
    let claimed = s.app.claim(claim).instrument(span.clone()).await;
    if let Ok(c) = &claimed {
        span.record("container_id", tracing::field::display(c.id));
        span.record("warm", c.warm);
    }
    match claimed {
        Ok(c) => Ok(Json(ClaimResponse {
            id: c.id.to_string(),
            pool: c.pool.to_string(),
            location: c.location.to_string(),
            expires_at: rfc3339(c.expires_at),
            warm: c.warm,
        })),
        Err(e) => {
            let detail = warmpool_engine::error_chain(&e);
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
                // The container was released: never handed out half set up.
                ClaimError::Setup(SetupError { step, .. }) => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "setup-failed",
                    "Setup Failed",
                    detail,
                )
                .field(step),
            })
        }
    }
}

/// The pools a claim may take a container from, in the order it tries them:
/// the named pool (or the default one), or the pools its `selector` and
/// `preferred` match (each preferred selector within `selector`, in order, then
/// `selector` alone; each pool once).
fn claim_pools(s: &Shared, req: &ClaimRequest) -> Result<Vec<Arc<Pool>>, ApiError> {
    if req.selector.is_none() && req.preferred.is_none() {
        let pool = match &req.pool {
            None => s.app.default_pool().ok_or_else(|| {
                super::pools::unknown_pool(s, s.app.default_pool_name()).field("pool")
            })?,
            // A well-formed name of a pool that does not exist: 404, naming the field.
            Some(name) => s
                .app
                .pool(name)
                .ok_or_else(|| super::pools::unknown_pool(s, name).field("pool"))?,
        };
        return Ok(vec![pool]);
    }
    let field = if req.selector.is_some() {
        "selector"
    } else {
        "preferred"
    };
    if req.pool.is_some() {
        return Err(ApiError::invalid(
            field,
            "a claim names a pool or selects pools by label, not both",
        ));
    }
    let parse = |field: &str, text: &str| {
        text.parse::<Selector>()
            .map_err(|e| ApiError::invalid(field, e.to_string()))
    };
    let required = match &req.selector {
        Some(text) => parse("selector", text)?,
        None => Selector::default(),
    };
    let preferred = req.preferred.as_deref().unwrap_or_default();
    if preferred.len() > 16 {
        return Err(ApiError::invalid("preferred", "at most 16 selectors"));
    }
    let preferred = preferred
        .iter()
        .map(|p| parse("preferred", p))
        .collect::<Result<Vec<_>, _>>()?;
    let all = s.app.pools();
    let mut out: Vec<Arc<Pool>> = Vec::new();
    for extra in preferred.iter().map(Some).chain([None]) {
        for pool in &all {
            let labels = &pool.spec.labels;
            if required.matches(labels)
                && extra.is_none_or(|e| e.matches(labels))
                && !out.iter().any(|p| p.name == pool.name)
            {
                out.push(pool.clone());
            }
        }
    }
    if out.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no-matching-pool",
            "No Matching Pool",
            format!(
                "no pool's labels match {}",
                req.selector.as_deref().map_or_else(
                    || format!(
                        "any of the preferred selectors {preferred:?}",
                        preferred = req.preferred.as_deref().unwrap_or_default()
                    ),
                    |s| format!("the selector {s:?}"),
                )
            ),
        )
        .field(field));
    }
    Ok(out)
}

/// `GET /v1/containers?state=&location=&pool=&label=&limit=`
#[utoipa::path(get, path = "/v1/containers", tag = "manage",
    params(
        ("state" = Option<String>, Query, description = "starting, ready, allocated, stopping, stopped or failed; or live (every state but stopped)",
            pattern = "^(starting|ready|allocated|stopping|stopped|failed|live)$"),
        ("location" = Option<String>, Query, description = "default, wnam, enam, sam, weur, eeur, apac, oc, afr or me",
            pattern = "^(default|wnam|enam|sam|weur|eeur|apac|oc|afr|me)$"),
        ("pool" = Option<String>, Query, description = "Pool name"),
        ("label" = Option<String>, Query, description = "A label selector in Kubernetes syntax, URL-encoded: comma-separated requirements, each `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (has the key) or `!k` (lacks it); `!=` and `notin` match containers without the key. Example: `team=a,tier!=free`",
            example = "team=a,tier!=free"),
        ("limit" = Option<u32>, Query, description = "1 to 10000 (default 1000), applied after the other filters", minimum = 1, maximum = 10000)
    ),
    responses(
        (status = 200, description = "Containers, oldest first", body = ContainerList),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid or unknown parameter, or a label selector that does not parse (named in `field`)", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn list_containers(
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
            "label" => {
                f.labels = Some(v.parse().map_err(|e: warmpool_core::SelectorError| {
                    ApiError::invalid("label", format!("not a label selector: {e}"))
                })?)
            }
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
                    "unknown query parameter {other:?}: expected state, location, pool, label or limit"
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

async fn view(s: &Shared, id: warmpool_core::ContainerId) -> ApiResult<ContainerView> {
    match s.app.store.container(id).await.map_err(store_error)? {
        Some(row) => Ok(Json(views::container(row))),
        None => Err(ApiError::not_found(format!("no container {id}"))),
    }
}

/// `GET /v1/containers/{id}`
#[utoipa::path(get, path = "/v1/containers/{id}", tag = "manage",
    params(("id" = String, Path, description = "Container id")),
    responses(
        (status = 200, description = "The container", body = ContainerView),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such container", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn get_container(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
) -> ApiResult<ContainerView> {
    view(&s, id_in_path(raw)?).await
}

/// `DELETE /v1/containers/{id}`: stop and release early. Idempotent: releasing a
/// container that is already stopping or stopped answers its current view.
#[utoipa::path(delete, path = "/v1/containers/{id}", tag = "manage",
    params(("id" = String, Path, description = "Container id")),
    responses(
        (status = 200, description = "Stopped (idempotent): its final view", body = ContainerView),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such container", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn release_container(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
) -> ApiResult<ContainerView> {
    let id = id_in_path(raw)?;
    s.app.release(id).await;
    view(&s, id).await
}

/// `POST /v1/containers/{id}/extend`: moves a claimed container's expiry.
#[utoipa::path(post, path = "/v1/containers/{id}/extend", tag = "manage",
    params(("id" = String, Path, description = "Container id")),
    request_body(content = ExtendRequest, description = "Seconds to add to its expiry", content_type = "application/json"),
    responses(
        (status = 200, description = "Extended (recorded before this answer): the container, with its new expiry", body = ContainerView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such container", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Not claimed (starting or ready)", body = Problem, content_type = PROBLEM),
        (status = 410, description = "Ended (stopped, failed or expired), with the reason", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "Not JSON", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`seconds` missing, not a whole number from 1 to 315360000 (ten years), or past the claim plus the pool's maximum lifetime (`field` is `seconds`)", body = Problem, content_type = PROBLEM),
        (status = 503, description = "Store unavailable (Retry-After)", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn extend_container(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
    JsonBody(req): JsonBody<ExtendRequest>,
) -> ApiResult<ContainerView> {
    let id = id_in_path(raw)?;
    // The body is checked before the container is looked up: a bad body is a
    // 422 whatever the container's state.
    if req.seconds == 0 || req.seconds > ExtendRequest::MAX_SECONDS {
        return Err(ApiError::invalid(
            "seconds",
            format!(
                "expected a whole number from 1 to {}, got {}",
                ExtendRequest::MAX_SECONDS,
                req.seconds
            ),
        ));
    }
    s.app
        .extend(id, Duration::from_secs(req.seconds))
        .await
        .map_err(claimed_error)?;
    view(&s, id).await
}

/// `POST /v1/containers/{id}/keepalive`: resets a claimed container's idle timer.
#[utoipa::path(post, path = "/v1/containers/{id}/keepalive", tag = "manage",
    params(("id" = String, Path, description = "Container id")),
    request_body(content = Option<KeepaliveRequest>, description = "None, or an empty object", content_type = "application/json"),
    responses(
        (status = 200, description = "Its idle timer starts again, as after a proxied request: the container", body = ContainerView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such container", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Not claimed (starting or ready)", body = Problem, content_type = PROBLEM),
        (status = 410, description = "Ended (stopped, failed or expired), with the reason", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "Not JSON", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Not an empty object (an unknown field is named in `field`)", body = Problem, content_type = PROBLEM),
        (status = 503, description = "Store unavailable (Retry-After)", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn keepalive_container(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
    JsonBody(KeepaliveRequest {}): JsonBody<KeepaliveRequest>,
) -> ApiResult<ContainerView> {
    let id = id_in_path(raw)?;
    s.app.keepalive(id).await.map_err(claimed_error)?;
    view(&s, id).await
}

/// The problem document of a refused extension or keepalive.
fn claimed_error(e: ClaimedError) -> ApiError {
    let detail = warmpool_engine::error_chain(&e);
    match e {
        ClaimedError::NotFound(_) => ApiError::not_found(detail),
        // As the proxy answers for the same id.
        ClaimedError::Gone { .. } => {
            ApiError::new(StatusCode::GONE, "container-gone", "Container Gone", detail)
        }
        ClaimedError::NotClaimed { id, state } => ApiError::new(
            StatusCode::CONFLICT,
            "container-not-claimed",
            "Conflict",
            format!(
                "container {id} is {state}: only a claimed container can be extended or kept alive"
            ),
        ),
        ClaimedError::BeyondMaxLifetime {
            room,
            bound,
            max_lifetime,
            ..
        } => {
            let why = format!(
                "its expiry may not pass {} (its claim plus its pool's maximum lifetime of {}s)",
                rfc3339(bound),
                max_lifetime.as_secs()
            );
            ApiError::invalid(
                "seconds",
                if room == 0 {
                    format!("it cannot be extended: {why}")
                } else {
                    format!("expected a whole number from 1 to {room}: {why}")
                },
            )
        }
        ClaimedError::Store(_) => {
            tracing::warn!(error = %detail, "extension or keepalive failed");
            ApiError::unavailable("store-unavailable", "Store Unavailable", detail, 1)
        }
    }
}
