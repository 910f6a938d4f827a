//! The state every HTTP handler shares: the engine handle, the server's own
//! settings, the proxy's upstream client, studio sessions, and the count of
//! upgraded connections (WebSockets) that shutdown waits for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use warmpool_engine::Engine;

use crate::config::{Config, ConfigError};
use crate::sessions::Sessions;
use crate::upstream::Upstream;

/// Reads the configuration again (SIGHUP, `POST /v1/reload`): the same flags
/// and env vars, the config file as it is now.
pub type Reload = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

pub struct Shared {
    pub app: Arc<Engine>,
    pub config: Arc<Config>,
    /// How to read the configuration again, if it came from one.
    pub reload: Option<Reload>,
    pub upstream: Upstream,
    /// Studio logins.
    pub sessions: Sessions,
    upgrades: Arc<Upgrades>,
}

/// Connections upgraded through the proxy (WebSockets) still open, and a wake-up
/// for when the last one closes.
#[derive(Default)]
pub struct Upgrades {
    open: AtomicUsize,
    closed: Notify,
}

/// Counts one open upgraded connection while it lives.
pub struct UpgradeGuard(Arc<Upgrades>);

impl Drop for UpgradeGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

impl Upgrades {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Returns once no upgraded connection is open.
    pub async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            let mut closed = std::pin::pin!(closed);
            closed.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            closed.await;
        }
    }
}

impl Shared {
    pub fn new(app: Arc<Engine>, config: Arc<Config>, reload: Option<Reload>) -> Self {
        let upstream = Upstream::default();
        // The proxy's connection to each ready container is opened ahead of
        // its claim, and the claim's calls to the app go over it (not to the
        // simulated runtime's made-up addresses).
        if app.runtime.reachable() {
            app.set_ready_hook(upstream.ready_hook());
            app.set_app_post(upstream.app_post());
        }
        Self {
            app,
            config,
            reload,
            upstream,
            sessions: Default::default(),
            upgrades: Default::default(),
        }
    }

    /// Counts an upgraded connection (a WebSocket) as open until the guard drops.
    pub fn upgrade_opened(&self) -> UpgradeGuard {
        self.upgrades.open.fetch_add(1, Ordering::AcqRel);
        UpgradeGuard(self.upgrades.clone())
    }

    pub fn upgrades(&self) -> &Arc<Upgrades> {
        &self.upgrades
    }
}
