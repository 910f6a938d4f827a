//! Pools: their numbers (`GET /v1/pools`) and their targets at runtime
//! (`PATCH /v1/pools/{pool}`).

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use warmpool_client::{PoolList, PoolPatch, PoolView, Problem};
use warmpool_core::Location;

use super::{ApiResult, JsonBody, RequestBody};
use crate::openapi::PROBLEM;
use crate::problem::ApiError;
use crate::state::Shared;
use crate::views::rfc3339;

/// Largest target a pool location may be given at runtime (as in the config).
pub(crate) const MAX_TARGET: u64 = 100_000;

impl RequestBody for PoolPatch {}

/// `GET /v1/pools`
#[utoipa::path(get, path = "/v1/pools", tag = "manage",
    responses(
        (status = 200, description = "Each pool key's numbers", body = PoolList),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn pools(State(s): State<Arc<Shared>>) -> Json<PoolList> {
    Json(pool_list(&s.app, None))
}

/// The pools' views, all or those of one pool.
fn pool_list(app: &warmpool_engine::Engine, only: Option<&str>) -> PoolList {
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

/// `PATCH /v1/pools/{pool}` with `{"targets": {"LOCATION": N, ...}}`: changes the
/// targets of the named locations at runtime (the others keep theirs). Lowering a
/// target stops surplus ready containers; allocated ones are never touched.
/// Runtime targets are not saved: a restart returns to the configured ones.
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
    )
)]
pub(crate) async fn patch_pool(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
    body: Result<JsonBody<PoolPatch>, ApiError>,
) -> ApiResult<PoolList> {
    let Path(name) = raw.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // The pool first: an unknown one is 404 whatever the body says.
    let pool = s
        .app
        .pool(&name)
        .ok_or_else(|| unknown_pool(&s, &name))?
        .clone();
    let JsonBody(patch) = body?;
    if patch.targets.is_empty() {
        return Err(ApiError::invalid(
            "targets",
            "expected at least one location",
        ));
    }
    let mut targets = Vec::new();
    for (l, n) in patch.targets {
        let field = format!("targets.{l}");
        let location: Location = l.parse().map_err(|e: warmpool_core::InvalidLocation| {
            ApiError::invalid(&field, e.to_string())
        })?;
        if !pool.spec.targets.iter().any(|(c, _)| *c == location) {
            let configured: Vec<String> = pool
                .spec
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
        if u64::from(n) > MAX_TARGET {
            return Err(ApiError::invalid(
                &field,
                format!("expected an integer from 0 to {MAX_TARGET}"),
            ));
        }
        targets.push((location, n));
    }
    s.app
        .set_targets(&name, &targets)
        .map_err(|l| ApiError::invalid(&format!("targets.{l}"), "not a location of this pool"))?;
    tracing::info!(pool = %name, ?targets, "pool targets changed at runtime");
    Ok(Json(pool_list(&s.app, Some(&name))))
}

/// 404 for a pool name that is not configured, listing the ones that are.
pub(crate) fn unknown_pool(s: &Shared, name: &str) -> ApiError {
    let names: Vec<&str> = s.app.pools().iter().map(|p| &*p.name).collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown-pool",
        "Unknown Pool",
        format!("no pool named {name:?}; the pools are {}", names.join(", ")),
    )
}
