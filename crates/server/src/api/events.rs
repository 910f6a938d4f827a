//! Events: the state changes, paged and long-polled (`GET /v1/events`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use warmpool_client::{EventList, Problem};

use super::{query_map, store_error, ApiResult};
use crate::openapi::PROBLEM;
use crate::problem::ApiError;
use crate::state::Shared;
use crate::views;

/// Longest a long-polling `GET /v1/events?wait=` waits.
pub(crate) const MAX_EVENTS_WAIT: u64 = 60;

/// `GET /v1/events?after=&limit=&container=&wait=`: with `wait=S`, an empty answer
/// is held back up to S seconds until an event comes.
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
    )
)]
pub(crate) async fn events(
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
