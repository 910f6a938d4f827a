//! Named background tasks, in the manner of omicron's background task driver: each
//! has a name, a period and an activator, never overlaps itself (a run is awaited
//! before the next is considered), and keeps a last-run status (start, duration,
//! outcome, error) that `GET /v1/status` and the studio show. One cancellation
//! token ends them all.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warmpool_core::Timestamp;

/// What one run of a task reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// One line on what the run did, for people.
    pub summary: String,
    /// Run again after this long if nothing activates the task sooner (sooner
    /// than its period only: a run cannot postpone the next beyond the period).
    pub next: Option<Duration>,
}

impl Outcome {
    pub fn said(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            next: None,
        }
    }
}

/// How one task is run.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub name: &'static str,
    /// Longest time between two runs.
    pub period: Duration,
    /// Least time between a run and the next one woken by an activation (a burst
    /// of activations is served by one run).
    pub min_gap: Duration,
    /// Run once at start, rather than one period after it.
    pub run_at_start: bool,
}

/// The last finished run of a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastRun {
    pub started_at: Timestamp,
    pub duration: Duration,
    /// `Ok(summary)` or `Err(error)`.
    pub outcome: Result<String, String>,
}

/// A task's status, as `GET /v1/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskStatus {
    pub name: &'static str,
    pub period: Duration,
    /// Runs finished since start.
    pub runs: u64,
    /// Runs that ended in an error.
    pub errors: u64,
    /// A run is in progress, since then.
    pub running_since: Option<Timestamp>,
    pub last: Option<LastRun>,
}

type Run = Pin<Box<dyn Future<Output = Result<Outcome, String>> + Send>>;

struct Handle {
    schedule: Schedule,
    activator: Notify,
    status: Mutex<TaskStatus>,
}

impl Handle {
    fn status(&self) -> std::sync::MutexGuard<'_, TaskStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Owns the tasks: starts them, wakes them by name, reports their status, and
/// ends them with its cancellation token.
pub struct Driver {
    handles: Mutex<Vec<Arc<Handle>>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    clock: fn() -> Timestamp,
}

impl Driver {
    /// A driver whose tasks end when `cancel` is cancelled; `clock` stamps runs.
    pub fn new(cancel: CancellationToken, clock: fn() -> Timestamp) -> Self {
        Self {
            handles: Mutex::new(Vec::new()),
            cancel,
            tracker: TaskTracker::new(),
            clock,
        }
    }

    /// Starts a task: `run` is called for each run, which is awaited before the
    /// next one is considered, so a task never overlaps itself.
    pub fn spawn<F>(&self, schedule: Schedule, mut run: F)
    where
        F: FnMut() -> Run + Send + 'static,
    {
        let handle = Arc::new(Handle {
            schedule,
            activator: Notify::new(),
            status: Mutex::new(TaskStatus {
                name: schedule.name,
                period: schedule.period,
                runs: 0,
                errors: 0,
                running_since: None,
                last: None,
            }),
        });
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle.clone());
        let cancel = self.cancel.clone();
        let clock = self.clock;
        self.tracker.spawn(async move {
            if !schedule.run_at_start
                && wait(&handle, schedule.period, None, &cancel).await.is_err()
            {
                return;
            }
            loop {
                if cancel.is_cancelled() {
                    return;
                }
                let started_at = clock();
                handle.status().running_since = Some(started_at);
                let began = tokio::time::Instant::now();
                let outcome = run().await;
                let duration = began.elapsed();
                let next = outcome.as_ref().ok().and_then(|o| o.next);
                {
                    let mut s = handle.status();
                    s.running_since = None;
                    s.runs += 1;
                    if let Err(e) = &outcome {
                        s.errors += 1;
                        tracing::warn!(task = schedule.name, error = %e, "background task failed");
                    }
                    s.last = Some(LastRun {
                        started_at,
                        duration,
                        outcome: outcome.map(|o| o.summary),
                    });
                }
                let sleep = next.map_or(schedule.period, |n| n.min(schedule.period));
                if wait(&handle, sleep, Some(began), &cancel).await.is_err() {
                    return;
                }
            }
        });
    }

    /// Wakes the task called `name` now (or right after its run in progress, or
    /// its least gap). Unknown names are ignored.
    pub fn activate(&self, name: &str) {
        let handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = handles.iter().find(|h| h.schedule.name == name) {
            h.activator.notify_one();
        }
    }

    /// Every task's status, in the order they were started.
    pub fn status(&self) -> Vec<TaskStatus> {
        let handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        handles.iter().map(|h| h.status().clone()).collect()
    }

    /// Returns once every task has ended (after the token is cancelled).
    pub async fn stopped(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Waits `sleep`, or for an activation (then at least `min_gap` after `began`).
/// `Err` once cancelled.
async fn wait(
    handle: &Handle,
    sleep: Duration,
    began: Option<tokio::time::Instant>,
    cancel: &CancellationToken,
) -> Result<(), ()> {
    tokio::select! {
        _ = handle.activator.notified() => {
            let gap = handle.schedule.min_gap;
            let since = began.map_or(gap, |b| b.elapsed());
            if since < gap {
                tokio::select! {
                    _ = tokio::time::sleep(gap - since) => {}
                    _ = cancel.cancelled() => return Err(()),
                }
            }
            Ok(())
        }
        _ = tokio::time::sleep(sleep) => Ok(()),
        _ = cancel.cancelled() => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn clock() -> Timestamp {
        Timestamp(0)
    }

    fn schedule(name: &'static str, period_ms: u64, gap_ms: u64, at_start: bool) -> Schedule {
        Schedule {
            name,
            period: Duration::from_millis(period_ms),
            min_gap: Duration::from_millis(gap_ms),
            run_at_start: at_start,
        }
    }

    /// A task that counts its runs, each taking `took`.
    fn counting(runs: &Arc<AtomicU32>, took: Duration, fail: bool) -> impl FnMut() -> Run {
        let runs = runs.clone();
        move || {
            let runs = runs.clone();
            Box::pin(async move {
                tokio::time::sleep(took).await;
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                if fail {
                    Err(format!("run {n} failed"))
                } else {
                    Ok(Outcome::said(format!("run {n}")))
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runs_once_per_period_and_records_its_last_run() {
        let d = Driver::new(CancellationToken::new(), clock);
        let runs = Arc::new(AtomicU32::new(0));
        d.spawn(
            schedule("t", 1000, 0, true),
            counting(&runs, Duration::ZERO, false),
        );
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 4, "at 0, 1, 2 and 3 s");
        let s = &d.status()[0];
        assert_eq!((s.name, s.runs, s.errors), ("t", 4, 0));
        assert_eq!(s.last.as_ref().unwrap().outcome, Ok("run 4".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn without_run_at_start_the_first_run_is_one_period_in() {
        let d = Driver::new(CancellationToken::new(), clock);
        let runs = Arc::new(AtomicU32::new(0));
        d.spawn(
            schedule("t", 1000, 0, false),
            counting(&runs, Duration::ZERO, false),
        );
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn activations_during_a_run_never_overlap_it_and_coalesce() {
        let d = Driver::new(CancellationToken::new(), clock);
        let runs = Arc::new(AtomicU32::new(0));
        // Each run takes 100 ms; 50 activations arrive during the first one.
        d.spawn(
            schedule("t", 3_600_000, 10, true),
            counting(&runs, Duration::from_millis(100), false),
        );
        for _ in 0..50 {
            d.activate("t");
            tokio::time::sleep(Duration::from_millis(1)).await;
            let s = &d.status()[0];
            assert!(s.running_since.is_some(), "the first run is still going");
            assert_eq!(s.runs, 0);
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // The first run, then one run for all the activations it saw.
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_activation_waits_for_the_least_gap() {
        let d = Driver::new(CancellationToken::new(), clock);
        let runs = Arc::new(AtomicU32::new(0));
        d.spawn(
            schedule("t", 3_600_000, 10, true),
            counting(&runs, Duration::ZERO, false),
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        d.activate("t");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "not before the gap");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_counted_and_kept_and_the_task_goes_on() {
        let d = Driver::new(CancellationToken::new(), clock);
        let runs = Arc::new(AtomicU32::new(0));
        d.spawn(
            schedule("t", 1000, 0, true),
            counting(&runs, Duration::ZERO, true),
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let s = &d.status()[0];
        assert_eq!((s.runs, s.errors), (2, 2));
        assert_eq!(
            s.last.as_ref().unwrap().outcome,
            Err("run 2 failed".to_owned())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_ends_every_task() {
        let cancel = CancellationToken::new();
        let d = Driver::new(cancel.clone(), clock);
        let runs = Arc::new(AtomicU32::new(0));
        d.spawn(
            schedule("a", 1000, 0, true),
            counting(&runs, Duration::ZERO, false),
        );
        d.spawn(
            schedule("b", 1000, 0, false),
            counting(&runs, Duration::ZERO, false),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), d.stopped())
            .await
            .expect("every task ends");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
