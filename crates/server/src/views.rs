//! Conversions from store rows to the API's wire types.

use std::time::{Duration, UNIX_EPOCH};

use warmpool_client::{ContainerView, EventView};
use warmpool_core::Timestamp;
use warmpool_store::{ContainerRow, EventRow};

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: Timestamp) -> String {
    let st = UNIX_EPOCH + Duration::from_millis(t.0.max(0) as u64);
    humantime::format_rfc3339_millis(st).to_string()
}

pub fn container(r: ContainerRow) -> ContainerView {
    ContainerView {
        id: r.id.to_string(),
        pool: r.pool,
        location: r.location.to_string(),
        state: r.state.to_string(),
        runtime: r.runtime,
        runtime_handle: r.runtime_handle,
        address: r.address,
        on_demand: r.on_demand,
        created_at: rfc3339(r.created_at),
        ready_at: r.ready_at.map(rfc3339),
        allocated_at: r.allocated_at.map(rfc3339),
        expires_at: r.expires_at.map(rfc3339),
        stopped_at: r.stopped_at.map(rfc3339),
        stop_reason: r.stop_reason,
        exit_code: r.exit_code,
        revision: r.revision,
        labels: r.labels,
        // Written only after the API checked it is JSON; text that is not
        // (a hand-edited row) is shown as a JSON string rather than lost.
        metadata: r
            .metadata
            .map(|m| serde_json::from_str(&m).unwrap_or(serde_json::Value::String(m))),
    }
}

pub fn event(e: EventRow) -> EventView {
    EventView {
        seq: e.seq,
        at: rfc3339(e.at),
        container_id: e.container_id.to_string(),
        from: e.from.map(|s| s.to_string()),
        to: e.to.to_string(),
        reason: e.reason,
    }
}

/// A history sample, as `GET /v1/stats/history` shows it.
pub fn history_sample(s: &warmpool_engine::history::Sample) -> warmpool_client::HistorySample {
    warmpool_client::HistorySample {
        at: rfc3339(s.at),
        pools: s
            .pools
            .iter()
            .map(|p| warmpool_client::PoolSample {
                pool: p.key.pool.to_string(),
                location: p.key.location.to_string(),
                ready: p.ready,
                allocated: p.allocated,
                failures: p.failures,
            })
            .collect(),
        claims: s.claims,
        claim_p50_ms: s.p50,
        claim_p99_ms: s.p99,
    }
}

/// The background tasks, as `GET /v1/status` shows them.
pub fn status(tasks: &[warmpool_engine::tasks::TaskStatus]) -> warmpool_client::Status {
    use warmpool_client::{TaskRunView, TaskView};
    warmpool_client::Status {
        tasks: tasks
            .iter()
            .map(|t| TaskView {
                name: t.name.to_owned(),
                period_seconds: t.period.as_secs_f64(),
                runs: t.runs,
                errors: t.errors,
                running_since: t.running_since.map(rfc3339),
                last: t.last.as_ref().map(|l| {
                    let (outcome, detail) = match &l.outcome {
                        Ok(s) => ("ok", s.clone()),
                        Err(e) => ("error", e.clone()),
                    };
                    TaskRunView {
                        started_at: rfc3339(l.started_at),
                        duration_ms: l.duration.as_secs_f64() * 1000.0,
                        outcome: outcome.to_owned(),
                        detail,
                    }
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Timestamp(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
