//! A simulated runtime sharing the real trait: containers are entries in a map, and
//! tests either let them become ready at once or step each one explicitly, and can
//! inject failures. A claim's files are kept in memory ([`SimRuntime::files`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;
use warmpool_core::ContainerId;

use crate::{
    file_path_parts, ContainerSpec, Inspection, OwnedContainer, Runtime, RuntimeError,
    RuntimeEvent, Started, Template,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimMode {
    /// Every started container is ready at once.
    Instant,
    /// A started container becomes ready only when the test calls
    /// [`SimRuntime::make_ready`].
    Manual,
    /// A started container becomes ready this long after its start (a
    /// Docker-like cold start, on tokio's clock).
    Delayed(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Starting,
    Running,
    Exited(Option<i32>),
}

struct State {
    mode: SimMode,
    containers: HashMap<ContainerId, Status>,
    fail_starts: u32,
    fail_readies: u32,
    starts: u64,
    fail_removals: bool,
    removals: u64,
    /// Each container's files, by their path under its files dir.
    files: HashMap<ContainerId, BTreeMap<String, Vec<u8>>>,
    fail_writes: u32,
}

pub struct SimRuntime {
    state: Mutex<State>,
    changed: Notify,
    events: broadcast::Sender<RuntimeEvent>,
    /// The address every container reports (point it at a real server to proxy).
    address: String,
}

impl SimRuntime {
    pub fn new(mode: SimMode, address: impl Into<String>) -> Self {
        let (events, _) = broadcast::channel(65536);
        Self {
            state: Mutex::new(State {
                mode,
                containers: HashMap::new(),
                fail_starts: 0,
                fail_readies: 0,
                starts: 0,
                fail_removals: false,
                removals: 0,
                files: HashMap::new(),
                fail_writes: 0,
            }),
            changed: Notify::new(),
            events,
            address: address.into(),
        }
    }

    pub fn set_mode(&self, mode: SimMode) {
        self.state.lock().unwrap().mode = mode;
        self.changed.notify_waiters();
    }

    /// The next `n` starts fail.
    pub fn fail_next_starts(&self, n: u32) {
        self.state.lock().unwrap().fail_starts = n;
    }

    /// The next `n` containers exit instead of becoming ready.
    pub fn fail_next_readies(&self, n: u32) {
        self.state.lock().unwrap().fail_readies = n;
    }

    /// Removals fail (as with an engine that is down) until set back to false.
    pub fn fail_removals(&self, fail: bool) {
        self.state.lock().unwrap().fail_removals = fail;
    }

    /// The next `n` calls of [`Runtime::write_files`] fail (writing nothing).
    pub fn fail_next_writes(&self, n: u32) {
        self.state.lock().unwrap().fail_writes = n;
    }

    /// The files written into container `id` ([`Runtime::write_files`]), by
    /// their path under its files dir (`a/b.txt`); empty for an unknown one.
    pub fn files(&self, id: ContainerId) -> BTreeMap<String, Vec<u8>> {
        self.state
            .lock()
            .unwrap()
            .files
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Removals ever asked for (including failed ones).
    pub fn removals(&self) -> u64 {
        self.state.lock().unwrap().removals
    }

    /// Containers started and waiting to be made ready (manual mode).
    pub fn starting(&self) -> Vec<ContainerId> {
        self.with_status(Status::Starting)
    }

    /// Containers running.
    pub fn running(&self) -> Vec<ContainerId> {
        self.with_status(Status::Running)
    }

    /// Total starts ever asked for (including failed ones).
    pub fn starts(&self) -> u64 {
        self.state.lock().unwrap().starts
    }

    fn with_status(&self, want: Status) -> Vec<ContainerId> {
        let mut v: Vec<_> = self
            .state
            .lock()
            .unwrap()
            .containers
            .iter()
            .filter(|(_, s)| **s == want)
            .map(|(id, _)| *id)
            .collect();
        v.sort();
        v
    }

    /// Makes a starting container ready. False if it was not starting.
    pub fn make_ready(&self, id: ContainerId) -> bool {
        let mut st = self.state.lock().unwrap();
        let ok = match st.containers.get_mut(&id) {
            Some(s @ Status::Starting) => {
                *s = Status::Running;
                true
            }
            _ => false,
        };
        drop(st);
        self.changed.notify_waiters();
        ok
    }

    /// The container dies with `code`, as if it crashed.
    pub fn kill(&self, id: ContainerId, code: i32) -> bool {
        let mut st = self.state.lock().unwrap();
        let ok = match st.containers.get_mut(&id) {
            Some(s @ (Status::Starting | Status::Running)) => {
                *s = Status::Exited(Some(code));
                true
            }
            _ => false,
        };
        drop(st);
        if ok {
            let _ = self.events.send(RuntimeEvent::Exited {
                id,
                code: Some(code),
                detail: format!("exited with code {code}"),
            });
            self.changed.notify_waiters();
        }
        ok
    }
}

/// A simulated container's handle: derived from its id, so listing gives it back.
fn handle_of(id: ContainerId) -> String {
    format!("sim-{id}")
}

#[async_trait]
impl Runtime for SimRuntime {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn reachable(&self) -> bool {
        false
    }

    async fn start(&self, spec: &ContainerSpec) -> Result<Started, RuntimeError> {
        let mut st = self.state.lock().unwrap();
        st.starts += 1;
        if st.fail_starts > 0 {
            st.fail_starts -= 1;
            return Err(RuntimeError::Injected("start refused".into()));
        }
        let handle = handle_of(spec.id);
        st.containers.insert(spec.id, Status::Starting);
        Ok(Started {
            handle,
            address: self.address.clone(),
        })
    }

    async fn wait_ready(
        &self,
        spec: &ContainerSpec,
        _started: &Started,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let id = spec.id;
        let deadline = Instant::now() + timeout;
        let delay = match self.state.lock().unwrap().mode {
            SimMode::Delayed(d) => Some(d),
            _ => None,
        };
        if let Some(d) = delay {
            tokio::time::sleep(d.min(timeout)).await;
            let mut st = self.state.lock().unwrap();
            if st.containers.get(&id) == Some(&Status::Starting) && d < timeout {
                st.containers.insert(id, Status::Running);
            }
        }
        loop {
            let changed = self.changed.notified();
            {
                let mut st = self.state.lock().unwrap();
                let fail = st.fail_readies > 0;
                let mode = st.mode;
                match st.containers.get(&id).copied() {
                    Some(Status::Running) => return Ok(()),
                    Some(Status::Starting) if fail => {
                        st.fail_readies -= 1;
                        st.containers.insert(id, Status::Exited(Some(1)));
                        return Err(RuntimeError::ExitedEarly {
                            code: Some(1),
                            detail: "injected".into(),
                        });
                    }
                    Some(Status::Starting) if mode == SimMode::Instant => {
                        st.containers.insert(id, Status::Running);
                        return Ok(());
                    }
                    Some(Status::Starting) => {}
                    Some(Status::Exited(code)) => {
                        return Err(RuntimeError::ExitedEarly {
                            code,
                            detail: "exited".into(),
                        })
                    }
                    None => {
                        return Err(RuntimeError::ExitedEarly {
                            code: None,
                            detail: "removed".into(),
                        })
                    }
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(RuntimeError::StartTimeout(timeout));
            }
        }
    }

    async fn stop(
        &self,
        id: ContainerId,
        _handle: &str,
        _grace: Duration,
    ) -> Result<(), RuntimeError> {
        if let Some(s) = self.state.lock().unwrap().containers.get_mut(&id) {
            *s = Status::Exited(Some(0));
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn remove(&self, id: ContainerId, _handle: &str) -> Result<(), RuntimeError> {
        {
            let mut st = self.state.lock().unwrap();
            st.removals += 1;
            if st.fail_removals {
                return Err(RuntimeError::Injected("removal refused".into()));
            }
            st.containers.remove(&id);
            st.files.remove(&id);
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Keeps the files in memory ([`SimRuntime::files`]); only a running
    /// container takes them.
    async fn write_files(
        &self,
        id: ContainerId,
        _handle: &str,
        _template: &Template,
        files: &[(String, Vec<u8>)],
    ) -> Result<(), RuntimeError> {
        let mut parsed = Vec::with_capacity(files.len());
        for (path, contents) in files {
            parsed.push((file_path_parts(path)?.join("/"), contents.clone()));
        }
        let mut st = self.state.lock().unwrap();
        if st.fail_writes > 0 {
            st.fail_writes -= 1;
            return Err(RuntimeError::Injected("file write refused".into()));
        }
        match st.containers.get(&id) {
            Some(Status::Running) => {}
            Some(_) => {
                return Err(RuntimeError::Api {
                    status: Some(409),
                    message: format!("sim: container {id} is not running"),
                    retryable: false,
                })
            }
            None => {
                return Err(RuntimeError::NotFound {
                    message: format!("no container {id}"),
                })
            }
        }
        st.files.entry(id).or_default().extend(parsed);
        Ok(())
    }

    async fn inspect(&self, id: ContainerId, _handle: &str) -> Result<Inspection, RuntimeError> {
        Ok(match self.state.lock().unwrap().containers.get(&id) {
            Some(Status::Starting | Status::Running) => Inspection::Running,
            Some(Status::Exited(code)) => Inspection::Exited { code: *code },
            None => Inspection::Gone,
        })
    }

    async fn list_owned(&self) -> Result<Vec<OwnedContainer>, RuntimeError> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .containers
            .iter()
            .map(|(id, s)| OwnedContainer {
                id: *id,
                handle: handle_of(*id),
                address: Some(self.address.clone()),
                running: matches!(s, Status::Starting | Status::Running),
            })
            .collect())
    }

    async fn adopt(&self, _owned: &OwnedContainer) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }
}
