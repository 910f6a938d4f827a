//! The watch shared by the runtimes that follow an engine's event stream (Docker,
//! Kubernetes): the exit ledger (each container's end is reported once), the relist
//! every [`RELIST_EVERY`] that compares what is listed with what is known, and the
//! loop that follows the stream for only as long as the runtime lives.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use warmpool_core::ContainerId;

use crate::RuntimeEvent;

/// How often a watched runtime also relists and compares, as a safety net for
/// what its stream missed (events lost while it reconnected, a watch resumed
/// after a quiet drop).
pub const RELIST_EVERY: Duration = Duration::from_secs(15);

/// The containers a runtime started or adopted and has not removed ("known"),
/// and which of them were reported ended: every end goes to subscribers once,
/// however many ways it was noticed (an exit, a deletion, a relist).
pub struct ExitLedger {
    state: Mutex<Ledger>,
    events: broadcast::Sender<RuntimeEvent>,
}

#[derive(Default)]
struct Ledger {
    /// Known containers, with the relist epoch they became known in.
    known: HashMap<ContainerId, u64>,
    /// Known containers whose end was reported.
    ended: HashSet<ContainerId>,
    /// Bumped when a relist begins: a container known since then may be missing
    /// from that list without being gone (it was made after the list was taken).
    epoch: u64,
}

/// A relist in progress ([`ExitLedger::begin_relist`]).
#[must_use = "a relist ends with ExitLedger::relisted"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relist {
    epoch: u64,
}

impl Default for ExitLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl ExitLedger {
    pub fn new() -> Self {
        Self {
            state: Mutex::default(),
            events: broadcast::channel(4096).0,
        }
    }

    /// The runtime's [`crate::Runtime::subscribe`].
    pub fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }

    /// `id` was started or adopted: its end is to be reported.
    pub fn know(&self, id: ContainerId) {
        let mut st = self.state.lock().unwrap();
        let epoch = st.epoch;
        st.known.insert(id, epoch);
    }

    /// `id` was removed (or its start given up): nothing more is reported of it.
    pub fn forget(&self, id: ContainerId) {
        let mut st = self.state.lock().unwrap();
        st.known.remove(&id);
        st.ended.remove(&id);
    }

    /// Whether the end of known container `id` was reported.
    pub fn has_ended(&self, id: ContainerId) -> bool {
        self.state.lock().unwrap().ended.contains(&id)
    }

    /// Reports the end of `id`, if it is known and its end was not reported yet;
    /// returns whether it was reported now.
    pub fn report(&self, id: ContainerId, code: Option<i32>, detail: impl Into<String>) -> bool {
        let first = {
            let mut st = self.state.lock().unwrap();
            st.known.contains_key(&id) && st.ended.insert(id)
        };
        if first {
            let detail = detail.into();
            let _ = self.events.send(RuntimeEvent::Exited { id, code, detail });
        }
        first
    }

    /// A relist begins: call before taking the list.
    pub fn begin_relist(&self) -> Relist {
        let mut st = self.state.lock().unwrap();
        st.epoch += 1;
        Relist { epoch: st.epoch }
    }

    /// The list begun with `relist` holds `alive`: every container known before it
    /// that is not alive has ended, and is reported with `detail` (once). Returns
    /// those containers, reported now or before.
    pub fn relisted(
        &self,
        relist: Relist,
        alive: &HashSet<ContainerId>,
        detail: &str,
    ) -> Vec<ContainerId> {
        let missing: Vec<ContainerId> = {
            let st = self.state.lock().unwrap();
            st.known
                .iter()
                .filter(|(id, since)| **since < relist.epoch && !alive.contains(id))
                .map(|(id, _)| *id)
                .collect()
        };
        for id in &missing {
            self.report(*id, None, detail);
        }
        missing
    }
}

/// A runtime whose events [`follow`] follows.
#[async_trait]
pub trait Watched: Send + Sync + 'static {
    /// One item of the runtime's event stream.
    type Event: Send;

    /// Lists the runtime's containers and compares them with the ledger
    /// ([`ExitLedger::begin_relist`], [`ExitLedger::relisted`]). A failure is
    /// logged; the next relist tries again.
    async fn relist(&self);

    /// Applies one event. `Break`: the stream is broken and is not followed any
    /// further (the caller reconnects).
    async fn on_event(self: Arc<Self>, event: Self::Event) -> ControlFlow<()>;
}

/// Why [`follow`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The runtime was dropped.
    RuntimeDropped,
    /// The stream ended.
    StreamEnded,
    /// An event said the stream is broken ([`Watched::on_event`] broke).
    Broken,
}

/// Follows `events` for the runtime behind `rt`, relisting every `relist_every`,
/// until the stream ends or the runtime is dropped. Holds the runtime only while it
/// handles an event or relists, so that the watch never keeps it alive.
pub async fn follow<W, S>(rt: &Weak<W>, events: S, relist_every: Duration) -> Stopped
where
    W: Watched,
    S: Stream<Item = W::Event>,
{
    futures_util::pin_mut!(events);
    let mut tick = tokio::time::interval_at(Instant::now() + relist_every, relist_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(this) = rt.upgrade() else { return Stopped::RuntimeDropped };
                let Some(event) = event else { return Stopped::StreamEnded };
                if this.on_event(event).await.is_break() {
                    return Stopped::Broken;
                }
            }
            _ = tick.tick() => {
                let Some(this) = rt.upgrade() else { return Stopped::RuntimeDropped };
                this.relist().await;
            }
        }
    }
}

/// The task that follows a runtime's events, aborted when the runtime (which owns
/// this) is dropped: a stream waiting for its next event does not outlive it.
#[derive(Default)]
pub struct WatchTask(Mutex<Option<JoinHandle<()>>>);

impl WatchTask {
    /// Spawns `watch` as the task (ending any previous one).
    pub fn start(&self, watch: impl Future<Output = ()> + Send + 'static) {
        let previous = self.0.lock().unwrap().replace(tokio::spawn(watch));
        if let Some(h) = previous {
            h.abort();
        }
    }
}

impl Drop for WatchTask {
    fn drop(&mut self) {
        if let Some(h) = self.0.lock().unwrap().take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::mpsc;

    use super::*;

    fn stream<T>(mut rx: mpsc::UnboundedReceiver<T>) -> impl Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    fn drain(rx: &mut broadcast::Receiver<RuntimeEvent>) -> Vec<(ContainerId, String)> {
        let mut got = Vec::new();
        while let Ok(RuntimeEvent::Exited { id, detail, .. }) = rx.try_recv() {
            got.push((id, detail));
        }
        got
    }

    #[test]
    fn an_end_is_reported_once_and_only_for_known_containers() {
        let ledger = ExitLedger::new();
        let mut rx = ledger.subscribe();
        let (a, stranger) = (ContainerId::random(), ContainerId::random());
        ledger.know(a);
        assert!(!ledger.report(stranger, Some(1), "exited with code 1"));
        assert!(!ledger.has_ended(a));
        assert!(ledger.report(a, Some(137), "exited with code 137"));
        assert!(!ledger.report(a, None, "removed from docker"));
        assert!(ledger.has_ended(a));
        assert_eq!(drain(&mut rx), vec![(a, "exited with code 137".to_owned())]);
        // Removed: forgotten, and its end no longer counts.
        ledger.forget(a);
        assert!(!ledger.has_ended(a));
        assert!(!ledger.report(a, None, "gone"));
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn a_relist_reports_known_containers_it_misses_but_not_newer_ones() {
        let ledger = ExitLedger::new();
        let mut rx = ledger.subscribe();
        let [alive, gone, ended, newer] = [(); 4].map(|()| ContainerId::random());
        for id in [alive, gone, ended] {
            ledger.know(id);
        }
        assert!(ledger.report(ended, Some(0), "exited with code 0"));
        let relist = ledger.begin_relist();
        // Started after the list was taken: missing from it, yet not gone.
        ledger.know(newer);
        let mut missing = ledger.relisted(relist, &HashSet::from([alive]), "found missing");
        missing.sort();
        let mut want = vec![gone, ended];
        want.sort();
        assert_eq!(missing, want);
        assert_eq!(
            drain(&mut rx),
            vec![
                (ended, "exited with code 0".to_owned()),
                (gone, "found missing".to_owned())
            ]
        );
        // The next relist reports nothing twice, and now sees `newer` missing.
        let relist = ledger.begin_relist();
        ledger.relisted(relist, &HashSet::from([alive]), "found missing");
        assert_eq!(drain(&mut rx), vec![(newer, "found missing".to_owned())]);
    }

    /// Counts what `follow` asked of it.
    #[derive(Default)]
    struct Counting {
        relists: AtomicUsize,
        events: AtomicUsize,
    }

    #[async_trait]
    impl Watched for Counting {
        type Event = bool;

        async fn relist(&self) {
            self.relists.fetch_add(1, Ordering::SeqCst);
        }

        async fn on_event(self: Arc<Self>, keep_going: bool) -> ControlFlow<()> {
            self.events.fetch_add(1, Ordering::SeqCst);
            if keep_going {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        }
    }

    async fn poll(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn follow_applies_events_relists_on_its_period_and_stops_on_a_break() {
        let rt = Arc::new(Counting::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let weak = Arc::downgrade(&rt);
        let task =
            tokio::spawn(async move { follow(&weak, stream(rx), Duration::from_millis(20)).await });
        tx.send(true).unwrap();
        tx.send(true).unwrap();
        poll("two events", || rt.events.load(Ordering::SeqCst) == 2).await;
        poll("two relists", || rt.relists.load(Ordering::SeqCst) >= 2).await;
        tx.send(false).unwrap();
        assert_eq!(task.await.unwrap(), Stopped::Broken);
        assert_eq!(rt.events.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn follow_ends_when_the_stream_ends_or_the_runtime_is_dropped() {
        let rt = Arc::new(Counting::default());
        let (tx, rx) = mpsc::unbounded_channel::<bool>();
        drop(tx);
        let ended = follow(&Arc::downgrade(&rt), stream(rx), RELIST_EVERY).await;
        assert_eq!(ended, Stopped::StreamEnded);

        // A stream that never ends: the next tick finds the runtime gone.
        let weak = Arc::downgrade(&rt);
        drop(rt);
        let ended = tokio::time::timeout(
            Duration::from_secs(10),
            follow(
                &weak,
                futures_util::stream::pending::<bool>(),
                Duration::from_millis(10),
            ),
        )
        .await
        .expect("follow outlived its runtime");
        assert_eq!(ended, Stopped::RuntimeDropped);
    }

    #[tokio::test]
    async fn a_watch_task_is_aborted_when_dropped() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = WatchTask::default();
        task.start(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(task);
        // The sender is dropped with the aborted task.
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("the task still runs")
            .unwrap_err();
    }
}
