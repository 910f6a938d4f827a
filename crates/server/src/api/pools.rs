//! Pools as data: their numbers (`GET /v1/pools`), one pool with its settings,
//! revision, rollout and events (`GET /v1/pools/{pool}`), create or replace
//! (`PUT`), change some settings (`PATCH`), delete (`DELETE`), roll back
//! (`POST .../rollback`), and reading the config file again (`POST /v1/reload`,
//! also on SIGHUP). A pool's settings are a `[pools.NAME]` table as JSON, read
//! by the config file's own reader, so they are refused with the same errors.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use warmpool_client::{
    PoolDetail, PoolEvent, PoolList, PoolSettings, PoolView, Problem, PullView, PutPoolResponse,
    ReloadResponse, RolloutStatus,
};
use warmpool_core::{Location, Timestamp};
use warmpool_engine::{Engine, Pool, PoolError, PutOutcome};

use super::{from_object, query_map, store_error, ApiResult, JsonBody, RequestBody};
use crate::config::{pool_from_json, settings_diff, ConfigError};
use crate::openapi::PROBLEM;
use crate::problem::ApiError;
use crate::specs::{engine_config, pool_settings, pool_spec};
use crate::state::Shared;
use crate::views::rfc3339;

/// Largest target a pool location may be given at runtime (as in the config).
pub(crate) const MAX_TARGET: u64 = 100_000;

/// Events a pool's detail shows, the latest.
const DETAIL_EVENTS: u32 = 20;

/// A pool's settings as a request body: any JSON object, read by the config
/// file's reader (documented as [`PoolSettings`]).
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct SettingsBody(serde_json::Map<String, Value>);

impl utoipa::PartialSchema for SettingsBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <PoolSettings as utoipa::PartialSchema>::schema()
    }
}

impl RequestBody for SettingsBody {}

impl RequestBody for PoolSettings {}

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
fn pool_list(app: &Engine, only: Option<&str>) -> PoolList {
    let desired = app.desired();
    let keys: Vec<_> = desired
        .pools
        .iter()
        .filter(|p| only.is_none_or(|name| &*p.key.pool == name))
        .map(|p| p.key.clone())
        .collect();
    let pools = app.pools();
    let revisions: HashMap<String, u32> = pools
        .iter()
        .map(|p| (p.name.to_string(), p.revision))
        .collect();
    // The last pull of each pool's image (image runtimes).
    let pulls: HashMap<String, PullView> = pools
        .iter()
        .filter_map(|p| {
            let (image, _) = p.spec.template.workload.image()?;
            let s = app.runtime.pull_status(image)?;
            Some((
                p.name.to_string(),
                PullView {
                    image: s.image,
                    phase: s.phase.to_owned(),
                    detail: s.detail,
                    started_at: rfc3339(Timestamp(s.started_at)),
                    ended_at: s.ended_at.map(|t| rfc3339(Timestamp(t))),
                },
            ))
        })
        .collect();
    let (counts, live) = app.registry.pool_counts(&keys);
    let sizes = app.sizes(&counts, live);
    let pools = counts
        .into_iter()
        .filter(|(key, _)| only.is_none_or(|name| &*key.pool == name))
        // A location neither desired nor holding containers (an auto location
        // gone idle, an on-demand claim's location) is not listed.
        .filter(|(key, c)| {
            keys.contains(key) || c.ready + c.starting + c.allocated + c.stopping + c.failed > 0
        })
        .map(|(key, c)| {
            let target = desired
                .pools
                .iter()
                .find(|p| p.key == key)
                .map_or(0, |p| p.target);
            let size = sizes.get(&key);
            PoolView {
                desired: size.map_or(0, |d| d.size),
                reason: size.map_or_else(|| "not desired".to_owned(), |d| d.reason.to_string()),
                pool: key.pool.to_string(),
                location: key.location.to_string(),
                target,
                revision: revisions.get(&*key.pool).copied().unwrap_or(0),
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
                pull: pulls.get(&*key.pool).cloned(),
            }
        })
        .collect();
    PoolList {
        pools,
        live,
        max_instances: app.config.max_instances,
    }
}

/// One pool as the API shows it.
async fn detail(s: &Shared, pool: &Pool) -> Result<PoolDetail, ApiError> {
    let r = s.app.rollout_status(pool);
    let events = s
        .app
        .pool_events(&pool.name, DETAIL_EVENTS)
        .await
        .map_err(store_error)?;
    Ok(PoolDetail {
        name: pool.name.to_string(),
        settings: pool_settings(&pool.spec),
        revision: pool.revision,
        rollout: RolloutStatus {
            revision: r.revision,
            stable_revision: r.stable_revision,
            updated_ready: r.updated_ready,
            stale_ready: r.stale_ready,
            outdated_allocated: r.outdated_allocated,
            phase: r.phase.as_str().to_owned(),
            error: r.error,
            started_at: r.started_at.map(rfc3339),
            deadline: r.deadline.map(rfc3339),
        },
        locations: pool_list(&s.app, Some(&pool.name)).pools,
        events: events
            .into_iter()
            .map(|e| PoolEvent {
                seq: e.seq,
                at: rfc3339(e.at),
                pool: e.pool,
                revision: e.revision,
                kind: e.kind,
                detail: e.detail,
            })
            .collect(),
        created_at: rfc3339(pool.created_at),
        updated_at: rfc3339(pool.updated_at),
    })
}

/// The pool a path names, or 404 `unknown-pool`.
fn named(s: &Shared, raw: Result<Path<String>, PathRejection>) -> Result<Arc<Pool>, ApiError> {
    let Path(name) = raw.map_err(|e| ApiError::bad_request(e.body_text()))?;
    s.app.pool(&name).ok_or_else(|| unknown_pool(s, &name))
}

/// `GET /v1/pools/{pool}`
#[utoipa::path(get, path = "/v1/pools/{pool}", tag = "manage",
    params(("pool" = String, Path, description = "A pool", pattern = "^[A-Za-z0-9_-]{1,63}$")),
    responses(
        (status = 200, description = "The pool: its settings (every one resolved), revision, rollout, locations and latest events", body = PoolDetail),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such pool (`unknown-pool`)", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn get_pool(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
) -> ApiResult<PoolDetail> {
    let pool = named(&s, raw)?;
    Ok(Json(detail(&s, &pool).await?))
}

/// A config error of a pool's settings as a 422 naming the field (`targets`),
/// with the config file's own message.
fn config_error(name: &str, e: ConfigError) -> ApiError {
    let prefix = format!("pools.{name}.");
    let field = e.key.strip_prefix(&prefix).unwrap_or("").to_owned();
    ApiError::invalid(&field, e.to_string())
}

fn pool_error(s: &Shared, e: PoolError) -> ApiError {
    match e {
        PoolError::NotFound(name) => unknown_pool(s, &name),
        PoolError::NoPreviousRevision { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "no-previous-revision",
            "No Previous Revision",
            e.to_string(),
        ),
        PoolError::Store(e) => store_error(e),
        PoolError::Corrupt { .. } => {
            ApiError::unavailable("store-unavailable", "Store Unavailable", e.to_string(), 1)
        }
    }
}

/// `?dryRun=true|false`; any other parameter is refused.
fn dry_run(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<bool, ApiError> {
    let mut dry = false;
    for (k, v) in query_map(q)? {
        match (k.as_str(), v.as_str()) {
            ("dryRun", "true") => dry = true,
            ("dryRun", "false") => dry = false,
            ("dryRun", _) => return Err(ApiError::invalid("dryRun", "expected true or false")),
            (other, _) => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?}: expected dryRun"
                )))
            }
        }
    }
    Ok(dry)
}

/// Saves `settings` as the pool `name` (or, dry, says what would change).
async fn save(
    s: &Shared,
    name: &str,
    settings: &serde_json::Map<String, Value>,
    dry_run: bool,
) -> Result<PutPoolResponse, ApiError> {
    // What the config file would refuse is refused with its error; then what
    // a file may say but the documented JSON types do not (`"batch_size": "10"`).
    let config = pool_from_json(name, settings).map_err(|e| config_error(name, e))?;
    from_object::<PoolSettings>(Value::Object(settings.clone()))?;
    let spec = pool_spec(&config, s.config.runtime);
    let out = s
        .app
        .put_pool(spec, dry_run)
        .await
        .map_err(|e| pool_error(s, e))?;
    response(s, out, dry_run).await
}

async fn response(s: &Shared, out: PutOutcome, dry_run: bool) -> Result<PutPoolResponse, ApiError> {
    let old = out
        .previous
        .as_ref()
        .map_or_else(PoolSettings::default, |p| pool_settings(&p.spec));
    let changes = if out.changed {
        settings_diff(&old, &pool_settings(&out.pool.spec))
    } else {
        Vec::new()
    };
    Ok(PutPoolResponse {
        pool: detail(s, &out.pool).await?,
        created: out.previous.is_none(),
        dry_run,
        changes,
        new_revision: out.new_revision,
    })
}

/// `PUT /v1/pools/{pool}`: creates the pool or replaces its settings (any left
/// out take their defaults). A new template rolls out: new-revision containers
/// start first, and each that is ready replaces one of the old revision.
#[utoipa::path(put, path = "/v1/pools/{pool}", tag = "manage",
    params(
        ("pool" = String, Path, description = "A pool name: up to 63 letters, digits, - or _", pattern = "^[A-Za-z0-9_-]{1,63}$"),
        ("dryRun" = Option<bool>, Query, description = "Say what would change, change nothing"),
    ),
    request_body(content = PoolSettings, content_type = "application/json", description = "The pool's settings, keyed as in a `[pools.NAME]` table of the config file"),
    responses(
        (status = 200, description = "The pool as saved (or, dry, as it would be), and what changed", body = PutPoolResponse),
        (status = 400, description = "Malformed JSON or query", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "Not JSON", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A setting refused as the config file refuses it (named in `field`)", body = Problem, content_type = PROBLEM),
        (status = 503, description = "The store cannot be written (Retry-After)", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn put_pool(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Result<JsonBody<SettingsBody>, ApiError>,
) -> ApiResult<PutPoolResponse> {
    let Path(name) = raw.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let dry = dry_run(q)?;
    let JsonBody(SettingsBody(settings)) = body?;
    Ok(Json(save(&s, &name, &settings, dry).await?))
}

/// `PATCH /v1/pools/{pool}`: changes the settings it names, the others keep
/// theirs; `targets` changes the named locations only (which must be the
/// pool's; PUT sets every location).
#[utoipa::path(patch, path = "/v1/pools/{pool}", tag = "manage",
    params(
        ("pool" = String, Path, description = "A pool", pattern = "^[A-Za-z0-9_-]{1,63}$"),
        ("dryRun" = Option<bool>, Query, description = "Say what would change, change nothing"),
    ),
    request_body(content = PoolSettings, content_type = "application/json", description = "The settings to change; `target` and `locations` are PUT's"),
    responses(
        (status = 200, description = "The pool as saved, and what changed", body = PutPoolResponse),
        (status = 400, description = "Malformed JSON or query", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such pool (`unknown-pool`)", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "Not JSON", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A location the pool does not have, a value out of range, or an unknown setting (named in `field`)", body = Problem, content_type = PROBLEM),
        (status = 503, description = "The store cannot be written (Retry-After)", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn patch_pool(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Result<JsonBody<SettingsBody>, ApiError>,
) -> ApiResult<PutPoolResponse> {
    // The pool first: an unknown one is 404 whatever the body says.
    let pool = named(&s, raw)?;
    let dry = dry_run(q)?;
    let JsonBody(SettingsBody(patch)) = body?;
    if patch.is_empty() {
        return Err(ApiError::invalid("", "expected at least one setting"));
    }
    // The patch is read as the wire type first, as every other body is: an
    // unknown setting or a wrong type is refused naming its field. The merge
    // below is RFC 7396's, on the JSON (a `null` removes), and its result is
    // read again, whole, by `save`.
    let typed: PoolSettings = from_object(Value::Object(patch.clone()))?;
    let serde_json::Value::Object(mut merged) = serde_json::to_value(pool_settings(&pool.spec))
        .map_err(|e| ApiError::bad_request(e.to_string()))?
    else {
        return Err(ApiError::bad_request(
            "the pool's settings are not an object",
        ));
    };
    for (key, value) in patch {
        match key.as_str() {
            "target" | "locations" => return Err(ApiError::invalid(
                &key,
                "PATCH changes the targets of named locations (`targets`); PUT sets every location",
            )),
            "targets" => {
                let targets = typed.targets.clone().unwrap_or_default();
                if targets.is_empty() {
                    return Err(ApiError::invalid(
                        "targets",
                        "expected at least one location",
                    ));
                }
                let current = merged
                    .entry("targets")
                    .or_insert_with(|| Value::Object(Default::default()));
                let Value::Object(current) = current else {
                    return Err(ApiError::bad_request(
                        "the pool's targets are not an object",
                    ));
                };
                for (l, n) in targets {
                    let field = format!("targets.{l}");
                    let location: Location =
                        l.parse().map_err(|e: warmpool_core::InvalidLocation| {
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
                                "pool {:?} has no location {l:?}; its locations are {} (PUT sets every location)",
                                pool.name,
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
                    current.insert(l, Value::from(n));
                }
            }
            // A merge patch: its fields change the policy's, null removes it
            // (the pool's targets become static again).
            "scaling" => match (value, merged.get_mut("scaling")) {
                (Value::Null, _) => {
                    merged.remove("scaling");
                }
                (Value::Object(fields), Some(Value::Object(current))) => {
                    for (k, v) in fields {
                        if v.is_null() {
                            current.remove(&k);
                        } else {
                            current.insert(k, v);
                        }
                    }
                }
                (value, _) => {
                    merged.insert(key, value);
                }
            },
            _ => {
                merged.insert(key, value);
            }
        }
    }
    let out = save(&s, &pool.name, &merged, dry).await?;
    if !dry && out.changes.iter().any(|c| c.key == "targets") {
        tracing::info!(pool = %pool.name, "pool targets changed at runtime");
    }
    Ok(Json(out))
}

/// `DELETE /v1/pools/{pool}`: the pool drains. Claims naming it answer 404
/// from now on; its ready containers stop; allocated ones run to the end of
/// their lifetime.
#[utoipa::path(delete, path = "/v1/pools/{pool}", tag = "manage",
    params(("pool" = String, Path, description = "A pool", pattern = "^[A-Za-z0-9_-]{1,63}$")),
    responses(
        (status = 200, description = "The pool as it was deleted (it drains)", body = PoolDetail),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such pool (`unknown-pool`)", body = Problem, content_type = PROBLEM),
        (status = 503, description = "The store cannot be written (Retry-After)", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn delete_pool(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
) -> ApiResult<PoolDetail> {
    let pool = named(&s, raw)?;
    let deleted = s
        .app
        .delete_pool(&pool.name)
        .await
        .map_err(|e| pool_error(&s, e))?;
    Ok(Json(detail(&s, &deleted).await?))
}

/// `POST /v1/pools/{pool}/rollback`: back to the previous revision (the last
/// complete one while a rollout is under way or failed).
#[utoipa::path(post, path = "/v1/pools/{pool}/rollback", tag = "manage",
    params(("pool" = String, Path, description = "A pool", pattern = "^[A-Za-z0-9_-]{1,63}$")),
    responses(
        (status = 200, description = "The pool at its previous revision", body = PoolDetail),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such pool (`unknown-pool`)", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The pool has no earlier revision (`no-previous-revision`)", body = Problem, content_type = PROBLEM),
        (status = 503, description = "The store cannot be written (Retry-After)", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn rollback(
    State(s): State<Arc<Shared>>,
    raw: Result<Path<String>, PathRejection>,
) -> ApiResult<PoolDetail> {
    let pool = named(&s, raw)?;
    let out = s
        .app
        .rollback(&pool.name)
        .await
        .map_err(|e| pool_error(&s, e))?;
    Ok(Json(detail(&s, &out.pool).await?))
}

/// `POST /v1/reload`: reads the config file again and applies its pools if
/// they changed since they were last applied (as SIGHUP does).
#[utoipa::path(post, path = "/v1/reload", tag = "manage",
    responses(
        (status = 200, description = "What the config file's pools changed (nothing if they are as last applied)", body = ReloadResponse),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = PROBLEM),
        (status = 409, description = "warmpool was not started from a config it can read again (`no-config-source`)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "The config file is invalid: nothing changed (the setting is named in `field`)", body = Problem, content_type = PROBLEM),
        (status = 503, description = "The store cannot be written (Retry-After)", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn reload(State(s): State<Arc<Shared>>) -> ApiResult<ReloadResponse> {
    Ok(Json(reload_config(&s).await?))
}

/// Reads the configuration again and applies the pools it declares.
pub(crate) async fn reload_config(s: &Shared) -> Result<ReloadResponse, ApiError> {
    let Some(read) = &s.reload else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no-config-source",
            "No Config Source",
            "this warmpool was started without a configuration it can read again",
        ));
    };
    let config = read().map_err(|e| ApiError::invalid(&e.key, e.to_string()))?;
    if config.runtime != s.config.runtime {
        tracing::warn!("the runtime setting changed; it takes a restart");
    }
    let specs = engine_config(&config).pools;
    let applied = s
        .app
        .apply_declared(&specs)
        .await
        .map_err(|e| pool_error(s, e))?;
    let Some(applied) = applied else {
        return Ok(ReloadResponse {
            applied: false,
            reason: "the configured pools are as they were last applied".into(),
            pools: Vec::new(),
        });
    };
    let mut pools = Vec::new();
    for out in applied {
        pools.push(response(s, out, false).await?);
    }
    tracing::info!(
        changed = pools.iter().filter(|p| !p.changes.is_empty()).count(),
        "configuration reloaded"
    );
    Ok(ReloadResponse {
        applied: true,
        reason: "the configured pools changed since they were last applied".into(),
        pools,
    })
}

/// 404 for a pool name that does not exist, listing the ones that do.
pub(crate) fn unknown_pool(s: &Shared, name: &str) -> ApiError {
    let names: Vec<String> = s.app.pools().iter().map(|p| p.name.to_string()).collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown-pool",
        "Unknown Pool",
        format!("no pool named {name:?}; the pools are {}", names.join(", ")),
    )
}
