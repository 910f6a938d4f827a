//! About warmpool itself: liveness (`/healthz`), readiness (`/readyz`),
//! Prometheus metrics (`/metrics`) and the last hour's history
//! (`/v1/stats/history`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use warmpool_client::{Health, History, Problem};

use super::ApiResult;
use crate::openapi::PROBLEM;
use crate::problem::ApiError;
use crate::state::Shared;

/// `GET /metrics`: Prometheus text exposition, in the classic text format
/// unless the scraper's `Accept` asks for OpenMetrics.
#[utoipa::path(get, path = "/metrics", tag = "operate",
    responses(
        (status = 200, description = "Prometheus metrics: the classic text format (`text/plain; version=0.0.4`), or OpenMetrics text when the request's Accept header names `application/openmetrics-text` (as Prometheus's scraper does)",
            content((String = "text/plain"), (String = "application/openmetrics-text"))),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn metrics(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let openmetrics = wants_openmetrics(&headers);
    let app = &s.app;
    let keys = app.desired_keys();
    let (counts, live) = app.registry.pool_counts(&keys);
    app.metrics.desired.clear();
    for (key, d) in app.sizes(&counts, live) {
        let labels = warmpool_engine::metrics::KeyLabels::of(&key);
        // Every pool key's start failures are shown, from 0.
        drop(app.metrics.start_failures.get_or_create(&labels));
        app.metrics
            .desired
            .get_or_create(&labels)
            .set(i64::from(d.size));
    }
    {
        // Two scrapes at once must not both add the same difference.
        static CATCH_UP: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = CATCH_UP.lock().unwrap_or_else(|e| e.into_inner());
        let store_errors = app.store.write_errors();
        let shown = app.metrics.store_write_errors.get();
        if store_errors > shown {
            app.metrics.store_write_errors.inc_by(store_errors - shown);
        }
    }
    app.metrics
        .store_wal_backlog
        .set(app.store.wal_backlog_frames());
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
                .get_or_create(&warmpool_engine::metrics::StateLabels {
                    pool: key.pool.to_string(),
                    location: key.location.to_string(),
                    state: state.into(),
                })
                .set(i64::from(n));
        }
    }
    let (content_type, body) = if openmetrics {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            app.metrics.render(),
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            app.metrics.render_classic(),
        )
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Whether the request's `Accept` names `application/openmetrics-text` with a
/// quality above 0 (Prometheus sends it first; curl and browsers do not).
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && parts.all(|p| {
                    let Some((k, v)) = p.split_once('=') else {
                        return true;
                    };
                    !k.trim().eq_ignore_ascii_case("q")
                        || v.trim().parse::<f32>().ok().is_none_or(|q| q > 0.0)
                })
        })
}

/// `GET /v1/status`: the background tasks and how their last runs went.
#[utoipa::path(get, path = "/v1/status", tag = "manage",
    responses(
        (status = 200, description = "warmpool's background tasks (reconcile, sweep, prober, history, prune_tombstones): period, runs, errors, and the last run's start, duration and outcome", body = warmpool_client::Status),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn status(State(s): State<Arc<Shared>>) -> Json<warmpool_client::Status> {
    Json(crate::views::status(&s.app.task_status()))
}

/// `GET /v1/stats/history`: pool depth and claim latency over the last hour.
#[utoipa::path(get, path = "/v1/stats/history", tag = "manage",
    responses(
        (status = 200, description = "Pool depth and claim latency (successful claims) every 10 s over the last hour, kept in memory", body = History),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn history(State(s): State<Arc<Shared>>) -> Json<History> {
    Json(History {
        interval_seconds: warmpool_engine::history::INTERVAL.as_secs(),
        samples: s
            .app
            .history_snapshot()
            .iter()
            .map(crate::views::history_sample)
            .collect(),
    })
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operate",
    responses((status = 200, description = "The process is up", body = Health))
)]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// `GET /readyz`: the store is open and the reconciler has run once.
#[utoipa::path(get, path = "/readyz", tag = "operate",
    responses(
        (status = 200, description = "The store is open and the reconciler has run", body = Health),
        (status = 503, description = "Not ready yet, or shutting down", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn readyz(State(s): State<Arc<Shared>>) -> ApiResult<Health> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        assert!(!wants_openmetrics(&HeaderMap::new()));
        assert!(!wants_openmetrics(&accept("*/*")));
        assert!(!wants_openmetrics(&accept("text/plain; version=0.0.4")));
        assert!(wants_openmetrics(&accept(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(wants_openmetrics(&accept("Application/OpenMetrics-Text")));
        assert!(!wants_openmetrics(&accept(
            "application/openmetrics-text; q=0, text/plain"
        )));
    }
}
