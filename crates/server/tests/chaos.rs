//! Issue 7's fault scenarios against the real binary, real child processes, real
//! Docker and real SQLite, with clients claiming, proxying and releasing all along:
//!
//! - the crash loop: `kill -9` of warmpool at chosen moments (a random one, right
//!   after a claim was answered, while a batch of creations is in flight) and a
//!   restart, `WARMPOOL_CHAOS_RESTARTS` times (3 by default), with the process
//!   runtime and with Docker; the books are checked after each restart;
//! - the runtime outage: the Docker Engine unreachable, then hung, for
//!   `WARMPOOL_CHAOS_OUTAGE_SECONDS` (8 by default) through a socket relay the test
//!   controls, under load, without restarting warmpool.
//!
//! The books: what the runtime lists as this instance's (running or not) is
//! exactly what the store says is live, no id was ever handed out twice, every id
//! ever handed out still routes or answers 410 with a reason, and the pool is back
//! at target (timed). The crash loop also asserts, after every restart, that the
//! only records a restart closed are starts cut short, and that every id handed
//! out is still allocated unless its client released it or it expired; and at the
//! end that no claim, proxied request or release failed outside the instant of a
//! kill (defined at [`Target`]).
//! The random choices come from `WARMPOOL_CHAOS_SEED` (printed; a new one each run
//! unless set); timing still varies between runs. Figures are printed (see them
//! with `-- --nocapture`); docs/RELIABILITY.md has the commands and results.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{docker_ready, tagged_processes, wait_ready, Proc};
use futures_util::StreamExt;
use tokio::time::Instant;
use warmpool_client::{ClaimRequest, Client, ClientError, ContainerQuery};
use warmpool_runtime::Runtime;

const T: Duration = Duration::from_secs(60);

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: expected a whole number")),
        Err(_) => default,
    }
}

/// SplitMix64: small, seedable, good enough to choose moments and sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// The run's seed: `WARMPOOL_CHAOS_SEED`, or a fresh one; printed either way.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("WARMPOOL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{test}: seed {seed} (WARMPOOL_CHAOS_SEED={seed} repeats its choices)");
    seed
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rt {
    Process,
    Docker,
}

impl Rt {
    fn settings(self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut s: Vec<(String, String)> = match self {
            Rt::Process => vec![],
            Rt::Docker => vec![
                ("WARMPOOL_RUNTIME".into(), "docker".into()),
                ("WARMPOOL_DOCKER_NETWORK".into(), "warmpool-test".into()),
            ],
        };
        s.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        s
    }

    /// The runtime as the test sees it: same instance id, own connection.
    async fn runtime(self, instance: &str, dir: &Path) -> Arc<dyn Runtime> {
        match self {
            Rt::Process => Arc::new(warmpool_runtime::ProcessRuntime::new(
                warmpool_runtime::ProcessConfig {
                    instance_id: instance.to_owned(),
                    work_root: dir.join("containers"),
                    inherit_stderr: false,
                },
            )),
            Rt::Docker => warmpool_docker::DockerRuntime::connect(common::docker_config(instance))
                .await
                .unwrap(),
        }
    }
}

/// Kills whatever still carries the instance's tag when dropped, even after a
/// panic: a `kill -9`ed warmpool leaves its containers running.
struct Leftovers {
    rt: Rt,
    instance: Mutex<Option<String>>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let Some(instance) = self.instance.lock().unwrap().take() else {
            return;
        };
        match self.rt {
            Rt::Process => {
                for (pid, _) in tagged_processes(&instance) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            Rt::Docker => {
                let out = std::process::Command::new("docker")
                    .args(["ps", "-aq", "--filter"])
                    .arg(format!("label=dev.warmpool.instance={instance}"))
                    .output();
                if let Ok(out) = out {
                    let ids = String::from_utf8_lossy(&out.stdout);
                    let ids: Vec<&str> = ids.split_whitespace().collect();
                    if !ids.is_empty() {
                        let _ = std::process::Command::new("docker")
                            .args(["rm", "-f"])
                            .args(&ids)
                            .stdout(std::process::Stdio::null())
                            .status();
                    }
                }
            }
        }
    }
}

/// Starts the real binary off the async threads (start-up recovery can take a
/// while) and answers it once it listens.
async fn spawn(dir: &Path, settings: &[(String, String)]) -> Proc {
    let dir = dir.to_owned();
    let settings = settings.to_vec();
    tokio::task::spawn_blocking(move || {
        let s: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Proc::spawn(&dir, &s)
    })
    .await
    .unwrap()
}

async fn instance_of(client: &Client) -> String {
    let r = client
        .sql("SELECT value FROM meta WHERE key = 'instance_id'")
        .await
        .unwrap();
    r.rows[0][0].as_str().unwrap().to_owned()
}

async fn sql_count(client: &Client, sql: &str) -> u64 {
    let r = client.sql(sql).await.unwrap();
    r.rows[0][0].as_u64().unwrap()
}

/// What the clients did, in normal times (0) and during a fault (1).
#[derive(Default)]
struct Counts {
    claims: AtomicU64,
    claim_errors: AtomicU64,
    proxied: AtomicU64,
    proxy_errors: AtomicU64,
    released: AtomicU64,
    /// Failed claims by the problem type's last segment (`unreachable`: no answer).
    claim_failures: Mutex<BTreeMap<String, u32>>,
    /// Failed proxied requests by status (`unreachable`: no answer).
    proxy_failures: Mutex<BTreeMap<String, u32>>,
    /// Failed releases by the problem type's last segment.
    release_failures: Mutex<BTreeMap<String, u32>>,
    /// Failures at a kill of warmpool (see [`Target::at_kill`]), of any kind.
    at_kill: AtomicU64,
    /// Every failure that was not at a kill: what failed and how.
    outside_kills: Mutex<Vec<String>>,
}

/// A client error's kind: the problem type's last segment, `unreachable` (no
/// answer), `undecodable`, or `no answer in time`.
fn kind(e: Option<&ClientError>) -> String {
    match e {
        Some(ClientError::Api { problem }) => problem
            .kind
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
        Some(ClientError::Connect { .. }) => "unreachable".to_owned(),
        Some(ClientError::Decode { .. }) => "undecodable".to_owned(),
        None => "no answer in time".to_owned(),
    }
}

impl Counts {
    /// Counts a failure: at a kill of warmpool or not, and of what kind.
    fn failed(&self, at_kill: bool, what: String) {
        if at_kill {
            self.at_kill.fetch_add(1, Ordering::SeqCst);
        } else {
            self.outside_kills.lock().unwrap().push(what);
        }
    }

    fn claim_failed(&self, at_kill: bool, e: Option<&ClientError>) {
        let kind = kind(e);
        self.claim_errors.fetch_add(1, Ordering::SeqCst);
        self.failed(at_kill, format!("claim: {kind}"));
        *self.claim_failures.lock().unwrap().entry(kind).or_default() += 1;
    }

    fn failures(&self) -> BTreeMap<String, u32> {
        self.claim_failures.lock().unwrap().clone()
    }

    fn proxy_failed(&self, at_kill: bool, id: &str, status: Option<u16>) {
        let kind = status.map_or("unreachable".to_owned(), |s| s.to_string());
        self.proxy_errors.fetch_add(1, Ordering::SeqCst);
        self.failed(at_kill, format!("request to {id}: {kind}"));
        *self.proxy_failures.lock().unwrap().entry(kind).or_default() += 1;
    }

    fn release_failed(&self, at_kill: bool, id: &str, e: Option<&ClientError>) {
        let kind = kind(e);
        self.failed(at_kill, format!("release of {id}: {kind}"));
        *self
            .release_failures
            .lock()
            .unwrap()
            .entry(kind)
            .or_default() += 1;
    }

    /// Every kind of failure seen, by what failed.
    fn all_failures(&self) -> BTreeMap<&'static str, BTreeMap<String, u32>> {
        BTreeMap::from([
            ("claims", self.failures()),
            ("requests", self.proxy_failures.lock().unwrap().clone()),
            ("releases", self.release_failures.lock().unwrap().clone()),
        ])
    }
}

/// The shared view of the warmpool under test, and what it handed out.
///
/// Each warmpool process the test starts is a generation (0, 1, ...). A request
/// is **at a kill** if it went to a generation that was killed before the request
/// ended: it was in flight when the SIGKILL was sent, or it was sent after it,
/// before the clients were pointed at the next generation (which happens as soon
/// as that one listens). The generation is marked killed right before the signal
/// is sent, so that every failure the kill causes is seen as at the kill.
struct Target {
    /// The current generation's client, and its number.
    client: Mutex<(Client, u32)>,
    pid: AtomicI32,
    /// Generations killed so far: generation `g` was killed if this is above `g`.
    killed: AtomicU32,
    /// The next claim answer received kills warmpool at once.
    kill_after_claim: AtomicBool,
    claimed_at_kill: Mutex<Option<String>>,
    /// Clients hold it (read) for one claim-proxy-release cycle; the test takes
    /// it (write) to pause them while it checks the books.
    gate: tokio::sync::RwLock<()>,
    stop: AtomicBool,
    /// Counts go to `counts[1]` while this is set.
    in_fault: AtomicBool,
    counts: [Counts; 2],
    /// Every id ever handed out, with the number of claims that got it.
    handed: Mutex<HashMap<String, u32>>,
    /// Every id a client sent a release for.
    releasing: Mutex<BTreeSet<String>>,
}

impl Target {
    fn new(p: &Proc) -> Arc<Target> {
        Arc::new(Target {
            client: Mutex::new((p.client.clone(), 0)),
            pid: AtomicI32::new(p.child.id() as i32),
            killed: AtomicU32::new(0),
            kill_after_claim: AtomicBool::new(false),
            claimed_at_kill: Mutex::new(None),
            gate: tokio::sync::RwLock::new(()),
            stop: AtomicBool::new(false),
            in_fault: AtomicBool::new(false),
            counts: Default::default(),
            handed: Mutex::new(HashMap::new()),
            releasing: Mutex::new(BTreeSet::new()),
        })
    }

    /// The clients' next cycles go to `p`, the next generation.
    fn point_at(&self, p: &Proc) {
        let mut c = self.client.lock().unwrap();
        *c = (p.client.clone(), c.1 + 1);
        self.pid.store(p.child.id() as i32, Ordering::SeqCst);
    }

    fn client(&self) -> (Client, u32) {
        self.client.lock().unwrap().clone()
    }

    /// Marks the current generation killed; call right before sending SIGKILL.
    fn mark_killed(&self) {
        let g = self.client.lock().unwrap().1;
        self.killed.store(g + 1, Ordering::SeqCst);
    }

    /// Whether a request to generation `g` that has just ended was at a kill.
    fn at_kill(&self, g: u32) -> bool {
        self.killed.load(Ordering::SeqCst) > g
    }

    fn counts(&self) -> &Counts {
        &self.counts[self.in_fault.load(Ordering::SeqCst) as usize]
    }

    fn record(&self, id: &str) {
        *self
            .handed
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default() += 1;
    }

    fn duplicates(&self) -> Vec<String> {
        let h = self.handed.lock().unwrap();
        h.iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn ids(&self) -> Vec<String> {
        self.handed.lock().unwrap().keys().cloned().collect()
    }
}

/// One client: claim, proxy a few requests, usually release; over and over until
/// told to stop. Errors (warmpool down, engine down) are counted, not fatal.
async fn client_loop(t: Arc<Target>, seed: u64, pace: (u64, u64)) {
    let mut rng = Rng(seed);
    let http = reqwest::Client::builder()
        .timeout(T)
        .build()
        .expect("a plain HTTP client builds");
    while !t.stop.load(Ordering::SeqCst) {
        {
            let _cycle = t.gate.read().await;
            let (client, g) = t.client();
            let req = ClaimRequest {
                max_lifetime_in_seconds: Some(60 + rng.below(60)),
                ..Default::default()
            };
            match tokio::time::timeout(T, client.claim(&req)).await {
                Ok(Ok(c)) => {
                    if t.kill_after_claim.swap(false, Ordering::SeqCst) {
                        t.mark_killed();
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(t.pid.load(Ordering::SeqCst)),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                        *t.claimed_at_kill.lock().unwrap() = Some(c.id.clone());
                    }
                    t.record(&c.id);
                    t.counts().claims.fetch_add(1, Ordering::SeqCst);
                    for _ in 0..1 + rng.below(3) {
                        match http.get(client.proxy_url(&c.id, "/")).send().await {
                            Ok(r)
                                if r.status() == 200
                                    && r.headers()
                                        .get("x-container-id")
                                        .is_some_and(|h| h == c.id.as_str()) =>
                            {
                                t.counts().proxied.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(r) => t.counts().proxy_failed(
                                t.at_kill(g),
                                &c.id,
                                Some(r.status().as_u16()),
                            ),
                            Err(_) => t.counts().proxy_failed(t.at_kill(g), &c.id, None),
                        }
                    }
                    // Most are released; the others stay allocated until they expire.
                    if rng.below(10) != 0 {
                        t.releasing.lock().unwrap().insert(c.id.clone());
                        match tokio::time::timeout(T, client.release(&c.id)).await {
                            Ok(Ok(_)) => {
                                t.counts().released.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(Err(e)) => t.counts().release_failed(t.at_kill(g), &c.id, Some(&e)),
                            Err(_) => t.counts().release_failed(t.at_kill(g), &c.id, None),
                        }
                    }
                }
                Ok(Err(e)) => t.counts().claim_failed(t.at_kill(g), Some(&e)),
                Err(_) => t.counts().claim_failed(t.at_kill(g), None),
            }
        }
        // Spreads the load out: a client's pause between cycles, not a wait for state.
        tokio::time::sleep(rng.ms(pace.0, pace.1)).await;
    }
}

/// Polls `check` until it answers `Ok`, or panics after `within` with its last
/// complaint.
async fn settle<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("{what}: not so after {within:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the books balance and the pool is back at target: the runtime's
/// containers of this instance, running or not, are exactly the store's live
/// rows, and all of them run; the pool has `target` ready, none starting, none
/// failed, and its counts add up to the live total.
async fn books_balance(client: &Client, runtime: &dyn Runtime, target: u32) {
    settle(T, "books balanced and pool at target", || async {
        let listed = runtime.list_owned().await.map_err(|e| e.to_string())?;
        let stopped: Vec<String> = listed
            .iter()
            .filter(|o| !o.running)
            .map(|o| o.id.to_string())
            .collect();
        if !stopped.is_empty() {
            return Err(format!("listed but not running: {stopped:?}"));
        }
        let owned: BTreeSet<String> = listed.into_iter().map(|o| o.id.to_string()).collect();
        let live: BTreeSet<String> = client
            .containers(&ContainerQuery {
                state: Some("live".into()),
                limit: Some(10_000),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect();
        if owned != live {
            return Err(format!(
                "runtime only: {:?}; store only: {:?}",
                owned.difference(&live).collect::<Vec<_>>(),
                live.difference(&owned).collect::<Vec<_>>()
            ));
        }
        let pools = client.pools().await.map_err(|e| e.to_string())?;
        let p = &pools.pools[0];
        let sum = p.ready + p.starting + p.allocated + p.stopping + p.failed;
        if sum != pools.live || pools.live as usize != live.len() {
            return Err(format!(
                "counts do not add up: {p:?}, live {} (store: {})",
                pools.live,
                live.len()
            ));
        }
        if p.ready != target || p.starting != 0 || p.failed != 0 {
            return Err(format!(
                "{} ready, {} starting, {} failed (target {target})",
                p.ready, p.starting, p.failed
            ));
        }
        Ok(())
    })
    .await
}

/// Every id ever handed out routes to its container (200) or answers 410 with a
/// problem document giving the reason. Answers how many did which.
async fn every_id_answers(base: &str, ids: Vec<String>) -> (usize, usize) {
    let http = reqwest::Client::new();
    let answers: Vec<Result<bool, String>> = futures_util::stream::iter(ids)
        .map(|id| {
            let http = http.clone();
            let url = format!("{base}/container/{id}/");
            async move {
                let r = http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                match r.status().as_u16() {
                    200 if r
                        .headers()
                        .get("x-container-id")
                        .is_some_and(|h| h == id.as_str()) =>
                    {
                        Ok(true)
                    }
                    410 if r
                        .headers()
                        .get("content-type")
                        .is_some_and(|c| c == "application/problem+json") =>
                    {
                        let p: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
                        match p["detail"].as_str() {
                            Some(d) if !d.is_empty() => Ok(false),
                            _ => Err(format!("{url}: 410 without a reason: {p}")),
                        }
                    }
                    s => Err(format!("{url}: {s}: {:?}", r.text().await)),
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let bad: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        bad.is_empty(),
        "ids that neither route nor answer 410: {bad:#?}"
    );
    let routes = answers.iter().filter(|a| matches!(a, Ok(true))).count();
    (routes, answers.len() - routes)
}

fn millis(d: &[Duration]) -> String {
    let mut v: Vec<u128> = d.iter().map(|d| d.as_millis()).collect();
    v.sort();
    match v.len() {
        0 => "-".into(),
        n => format!("p50 {} ms, max {} ms", v[(n - 1) / 2], v[n - 1]),
    }
}

#[derive(Clone, Copy, Debug)]
enum Kill {
    /// After a random delay.
    Random,
    /// Right after a client received a claim's answer.
    AfterClaim,
    /// While the pool is creating containers (`starting` > 0).
    MidBatch,
}

/// Waits for a child that something else killed.
async fn reap(p: &mut Proc) {
    let deadline = Instant::now() + T;
    while p.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "warmpool was not killed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The reason start-up recovery gives a record whose start a kill cut short: the
/// only record a restart may close (a container that was running is adopted).
const START_CUT_SHORT: &str = "lost (start interrupted)";

/// Records closed as lost at restarts, by reason.
async fn lost_records(client: &Client) -> BTreeMap<String, u64> {
    client
        .sql(
            "SELECT stop_reason, count(*) FROM containers \
             WHERE stop_reason LIKE 'lost%' GROUP BY stop_reason",
        )
        .await
        .unwrap()
        .rows
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_u64().unwrap()))
        .collect()
}

/// Every id ever handed out is still allocated (adopted by every restart so far),
/// unless a client sent its release or its lifetime ran out. Answers how many
/// were allocated, released and expired.
async fn claimed_ids_adopted(client: &Client, t: &Target) -> (usize, usize, usize) {
    let releasing = t.releasing.lock().unwrap().clone();
    let views: Vec<(String, Result<warmpool_client::ContainerView, ClientError>)> =
        futures_util::stream::iter(t.ids())
            .map(|id| {
                let client = client.clone();
                async move {
                    let v = client.container(&id).await;
                    (id, v)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
    let (mut allocated, mut released, mut expired) = (0, 0, 0);
    let mut bad = Vec::new();
    for (id, v) in views {
        let v = match v {
            Ok(v) => v,
            Err(e) => {
                bad.push(format!("{id}: {e}"));
                continue;
            }
        };
        // RFC 3339 UTC with milliseconds: ordered as text.
        let ran_out = match (&v.expires_at, &v.stopped_at) {
            (Some(e), Some(s)) => e <= s,
            (Some(_), None) => v.state == "stopping",
            (None, _) => false,
        };
        match (v.state.as_str(), v.stop_reason.as_deref()) {
            ("allocated", _) => allocated += 1,
            (_, Some("released")) if releasing.contains(&id) => released += 1,
            (_, Some("expired")) if ran_out => expired += 1,
            _ => bad.push(format!("{id}: {v:?}")),
        }
    }
    assert!(
        bad.is_empty(),
        "handed out, and neither allocated, released by its client, nor expired: {bad:#?}"
    );
    (allocated, released, expired)
}

async fn crash_loop(rt: Rt) {
    let test = format!("crash_loop_{rt:?}");
    let restarts = env_u64("WARMPOOL_CHAOS_RESTARTS", 3) as usize;
    let mut rng = Rng(seed(&test));
    let target_n: u32 = 4;
    let dir = tempfile::tempdir().unwrap();
    let settings = rt.settings(&[
        ("POOL_TARGET_INSTANCES", "4"),
        ("POOL_BATCH_SIZE", "4"),
        ("POOL_BATCH_SPACING_IN_SECONDS", "0"),
        // Orphans of creations that a kill cut short are found by the sweep.
        ("WARMPOOL_SWEEP_SECONDS", "2"),
    ]);
    let leftovers = Leftovers {
        rt,
        instance: Mutex::new(None),
    };
    let mut proc = spawn(dir.path(), &settings).await;
    let instance = instance_of(&proc.client).await;
    *leftovers.instance.lock().unwrap() = Some(instance.clone());
    let runtime = rt.runtime(&instance, dir.path()).await;
    wait_ready(&proc.client, "default", target_n, T).await;

    let t = Target::new(&proc);
    let clients: Vec<_> = (0..3)
        .map(|i| tokio::spawn(client_loop(t.clone(), rng.next() ^ i, (20, 200))))
        .collect();
    let (mut to_listen, mut to_target) = (Vec::new(), Vec::new());
    let mut starting_at_kill = Vec::new();
    for round in 0..restarts {
        let kind = [Kill::Random, Kill::AfterClaim, Kill::MidBatch][round % 3];
        match kind {
            Kill::Random => {
                // Choosing the kill moment, not waiting for a state.
                tokio::time::sleep(rng.ms(200, 2500)).await;
                t.mark_killed();
                proc.kill9();
            }
            Kill::AfterClaim => {
                t.kill_after_claim.store(true, Ordering::SeqCst);
                reap(&mut proc).await;
            }
            Kill::MidBatch => {
                // Demand jumps: a burst of claims empties the pool, and the
                // reconciler starts a batch of replacements.
                let client = proc.client.clone();
                for _ in 0..target_n {
                    let (client, t) = (client.clone(), t.clone());
                    tokio::spawn(async move {
                        let req = ClaimRequest {
                            max_lifetime_in_seconds: Some(5),
                            ..Default::default()
                        };
                        if let Ok(c) = client.claim(&req).await {
                            t.record(&c.id);
                        }
                    });
                }
                let mut starting = 0;
                let deadline = Instant::now() + T;
                while starting == 0 {
                    assert!(Instant::now() < deadline, "no batch of creations seen");
                    if let Ok(p) = client.pools().await {
                        starting = p.pools[0].starting;
                    }
                }
                // Somewhere in the batch's creation: planned, recorded, being
                // created or probed (choosing the moment, not waiting for a state).
                tokio::time::sleep(rng.ms(0, 150)).await;
                t.mark_killed();
                proc.kill9();
                starting_at_kill.push(starting);
            }
        }
        let killed = Instant::now();
        // Down for a moment: clients meet a dead address meanwhile.
        tokio::time::sleep(rng.ms(0, 300)).await;
        proc = spawn(dir.path(), &settings).await;
        to_listen.push(killed.elapsed());
        t.point_at(&proc);

        // Pause the clients (they finish their cycle) and check the books.
        let paused = t.gate.write().await;
        books_balance(&proc.client, runtime.as_ref(), target_n).await;
        to_target.push(killed.elapsed());
        let dups = t.duplicates();
        assert!(dups.is_empty(), "ids handed out twice: {dups:?}");
        every_id_answers(&proc.base, t.ids()).await;
        let lost = lost_records(&proc.client).await;
        assert!(
            lost.keys().all(|r| r == START_CUT_SHORT),
            "records closed at a restart other than starts cut short: {lost:?}"
        );
        let (adopted, released, expired) = claimed_ids_adopted(&proc.client, &t).await;
        let claimed_at_kill = t.claimed_at_kill.lock().unwrap().take();
        if let Some(id) = claimed_at_kill {
            // Claimed right before the kill: the claim was durable, and the
            // container was adopted, not restarted.
            let v = proc.client.container(&id).await.unwrap();
            assert_eq!(v.state, "allocated", "claimed before the kill: {v:?}");
            let r = reqwest::get(proc.client.proxy_url(&id, "/")).await.unwrap();
            assert_eq!(r.status(), 200);
        }
        eprintln!(
            "{test}: restart {}/{restarts} ({kind:?}): listening after {:?}, books balanced and pool at target after {:?}; \
             of the ids handed out, {adopted} allocated, {released} released, {expired} expired",
            round + 1,
            to_listen[round],
            to_target[round]
        );
        drop(paused);
    }

    t.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let (routes, gone) = every_id_answers(&proc.base, t.ids()).await;
    let lost = lost_records(&proc.client).await;
    assert!(
        lost.keys().all(|r| r == START_CUT_SHORT),
        "records closed at a restart other than starts cut short: {lost:?}"
    );
    let (adopted, released, expired) = claimed_ids_adopted(&proc.client, &t).await;
    let c = &t.counts[0];
    eprintln!(
        "{test}: FIGURES: {restarts} kill -9 and restarts survived (mid-batch kills with {starting_at_kill:?} starting); \
         {} claims answered ({} failed: {:?}), {} requests proxied ({} failed: {:?}), {} released; \
         {} failures at a kill, {} outside; \
         {} ids handed out, none twice, {routes} still route, {gone} answer 410 with a reason \
         ({adopted} allocated, {released} released, {expired} expired); \
         records closed at restarts: {lost:?}; \
         kill to listening: {}; kill to books balanced and pool at target: {}",
        c.claims.load(Ordering::SeqCst),
        c.claim_errors.load(Ordering::SeqCst),
        c.failures(),
        c.proxied.load(Ordering::SeqCst),
        c.proxy_errors.load(Ordering::SeqCst),
        c.proxy_failures.lock().unwrap().clone(),
        c.released.load(Ordering::SeqCst),
        c.at_kill.load(Ordering::SeqCst),
        c.outside_kills.lock().unwrap().len(),
        routes + gone,
        millis(&to_listen),
        millis(&to_target),
    );
    assert!(c.claims.load(Ordering::SeqCst) > 0 && c.proxied.load(Ordering::SeqCst) > 0);
    // Outside the instant of a kill (see `Target`), nothing failed: no 5xx, no
    // refused connection, no failed claim or release.
    let outside = c.outside_kills.lock().unwrap().clone();
    assert!(
        outside.is_empty(),
        "failures outside a kill of warmpool ({} at kills): {outside:#?}; all: {:?}",
        c.at_kill.load(Ordering::SeqCst),
        c.all_failures()
    );

    // A clean shutdown leaves nothing of ours running.
    assert!(proc.sigterm().success());
    let left = runtime.list_owned().await.unwrap();
    assert!(left.is_empty(), "left after shutdown: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_with_processes_keeps_the_books() {
    crash_loop(Rt::Process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_with_docker_keeps_the_books() {
    if !docker_ready("crash_loop_with_docker_keeps_the_books") {
        return;
    }
    crash_loop(Rt::Docker).await;
}

/// What the relay does with the engine's traffic.
const UP: u32 = 0;
/// Like a stopped daemon: every connection is closed at once, unanswered.
const DOWN: u32 = 1;
/// Like a frozen daemon (SIGSTOP): connections are accepted, and what is sent
/// is held, unanswered, until the engine is back; then it is delivered late.
const HUNG: u32 = 2;

/// A unix-socket relay to the Docker Engine that warmpool is pointed at
/// (`DOCKER_HOST`), so that the engine can be made unreachable or unresponsive for
/// warmpool alone, while its containers and every other test keep the real one.
struct Relay {
    path: std::path::PathBuf,
    mode: Arc<AtomicU32>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    fn start(dir: &Path) -> Relay {
        let path = dir.join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let mode = Arc::new(AtomicU32::new(UP));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (mode2, conns2) = (mode.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if mode2.load(Ordering::SeqCst) == DOWN {
                    continue; // closed unanswered
                }
                let mode = mode2.clone();
                let task = tokio::spawn(async move {
                    let Ok(engine) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (er, ew) = engine.into_split();
                    tokio::join!(pump(cr, ew, mode.clone()), pump(er, cw, mode));
                });
                conns2.lock().unwrap().push(task);
            }
        });
        Relay { path, mode, conns }
    }

    fn set(&self, mode: u32) {
        self.mode.store(mode, Ordering::SeqCst);
        if mode == DOWN {
            for t in self.conns.lock().unwrap().drain(..) {
                t.abort();
            }
        }
    }
}

/// Copies one direction; while the relay is hung, holds what it read.
async fn pump(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    mode: Arc<AtomicU32>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while mode.load(Ordering::SeqCst) == HUNG {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_outage_under_load_keeps_serving_and_recovers_without_a_restart() {
    let test = "docker_outage_under_load_keeps_serving_and_recovers_without_a_restart";
    if !docker_ready(test) {
        return;
    }
    let outage = Duration::from_secs(env_u64("WARMPOOL_CHAOS_OUTAGE_SECONDS", 8));
    // The full form keeps the default API timeout (10 s); a short outage needs a
    // shorter one to show the timeout at work.
    let api_timeout = if outage >= Duration::from_secs(20) {
        "10"
    } else {
        "2"
    };
    let mut rng = Rng(seed(test));
    let target_n: u32 = 6;
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path());
    let docker_host = format!("unix://{}", relay.path.display());
    let settings = Rt::Docker.settings(&[
        ("DOCKER_HOST", &docker_host),
        ("WARMPOOL_DOCKER_TIMEOUT_SECONDS", api_timeout),
        ("POOL_TARGET_INSTANCES", "6"),
        ("POOL_BATCH_SIZE", "6"),
        // Failed creations are retried a batch at a time, at most once a second.
        ("POOL_BATCH_SPACING_IN_SECONDS", "1"),
        ("WARMPOOL_SWEEP_SECONDS", "2"),
    ]);
    let leftovers = Leftovers {
        rt: Rt::Docker,
        instance: Mutex::new(None),
    };
    let mut proc = spawn(dir.path(), &settings).await;
    let instance = instance_of(&proc.client).await;
    *leftovers.instance.lock().unwrap() = Some(instance.clone());
    let runtime = Rt::Docker.runtime(&instance, dir.path()).await;
    wait_ready(&proc.client, "default", target_n, T).await;

    let t = Target::new(&proc);
    let clients: Vec<_> = (0..3)
        .map(|i| tokio::spawn(client_loop(t.clone(), rng.next() ^ i, (500, 1500))))
        .collect();
    // Load before the outage (spreading it over time, not waiting for a state).
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A container the test holds and talks to all through the outage; the clients
    // pause until the pool is full again, so that the outage starts with a full
    // pool.
    let client = proc.client.clone();
    let paused = t.gate.write().await;
    let held = client.claim(&ClaimRequest::default()).await.unwrap();
    t.record(&held.id);
    wait_ready(&client, "default", target_n, T).await;
    let ready_at_start = client.pools().await.unwrap().pools[0].ready;

    // The outage: first the daemon is gone (a third of it), then it hangs (long
    // enough for a creation to run into the API timeout), then it is back.
    t.in_fault.store(true, Ordering::SeqCst);
    relay.set(DOWN);
    drop(paused);
    let http = reqwest::Client::builder().timeout(T).build().unwrap();
    let mut held_proxied = 0;
    let began = Instant::now();
    let mut errors: BTreeSet<String> = BTreeSet::new();
    let mut samples = 0;
    while began.elapsed() < outage {
        if began.elapsed() >= outage / 3 && relay.mode.load(Ordering::SeqCst) == DOWN {
            relay.set(HUNG);
        }
        let p = client.pools().await.unwrap();
        let v = &p.pools[0];
        // Nothing counted twice: every live container is in exactly one state.
        assert_eq!(
            v.ready + v.starting + v.allocated + v.stopping + v.failed,
            p.live,
            "{p:?}"
        );
        samples += 1;
        if let Some(e) = &v.last_error {
            errors.insert(e.clone());
        }
        let r = http
            .get(client.proxy_url(&held.id, "/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "proxying to a held container failed");
        held_proxied += 1;
        // Sampling the pools' view, not waiting for a state.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.set(UP);
    t.in_fault.store(false, Ordering::SeqCst);
    let ended = Instant::now();
    // When the pool is full again, with the clients still at it.
    let refilled = {
        let client = client.clone();
        tokio::spawn(async move {
            wait_ready(&client, "default", target_n, T).await;
            ended.elapsed()
        })
    };

    let f = &t.counts[1];
    let (claims, proxied) = (
        f.claims.load(Ordering::SeqCst),
        f.proxied.load(Ordering::SeqCst),
    );
    // Nothing refills the pool meanwhile, so the first claims, as many as were
    // ready, must all have been served; later ones fail only for want of a ready
    // container (their on-demand start fails).
    let failures = f.failures();
    let attempts = claims + f.claim_errors.load(Ordering::SeqCst);
    assert!(
        claims >= attempts.min(ready_at_start as u64),
        "{claims} of {attempts} claims served with {ready_at_start} ready: {failures:?}"
    );
    assert!(
        failures
            .keys()
            .all(|k| k == "start-failed" || k == "no-container-ready"),
        "{failures:?}"
    );
    assert!(proxied > 0, "nothing was proxied during the outage");
    assert_eq!(
        f.proxy_errors.load(Ordering::SeqCst),
        0,
        "proxying to allocated containers failed during the outage: {:?}",
        f.proxy_failures.lock().unwrap()
    );
    let timeout_error = format!("the Docker Engine did not answer within {api_timeout}s");
    assert!(
        errors.iter().any(|e| e.contains(&timeout_error)),
        "no pool error saying {timeout_error:?} during the outage: {errors:#?}"
    );

    // Back: the pool recovers without a restart of warmpool.
    let paused = t.gate.write().await;
    client.release(&held.id).await.unwrap();
    books_balance(&client, runtime.as_ref(), target_n).await;
    let balanced = ended.elapsed();
    let refilled = refilled.await.unwrap();
    let dups = t.duplicates();
    assert!(dups.is_empty(), "ids handed out twice: {dups:?}");
    let (routes, gone) = every_id_answers(&proc.base, t.ids()).await;
    // Each failed start was counted once, and has one record saying so.
    let p = client.pools().await.unwrap();
    let failed_records = sql_count(
        &client,
        "SELECT count(*) FROM events WHERE from_state = 'starting' AND to_state = 'failed'",
    )
    .await;
    assert_eq!(p.pools[0].failed_starts, failed_records, "{p:?}");
    assert!(
        proc.child.try_wait().unwrap().is_none(),
        "warmpool restarted"
    );
    drop(paused);

    t.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let n = &t.counts[0];
    eprintln!(
        "{test}: FIGURES: outage {outage:?} (down {:.1} s, then hung), API timeout {api_timeout} s; \
         during it: {claims} claims answered from the pool ({ready_at_start} ready at the start; \
         then failed for want of one: {failures:?}), \
         {} requests proxied (0 failed), {} released, {samples} pool samples consistent; \
         pool errors seen: {errors:?}; {} failed starts, each recorded once; \
         pool back at target {refilled:?} after the engine was back (books balanced after {balanced:?}, \
         clients paused once their cycles ended), without a restart; \
         outside the outage: {} claims, {} proxied; {} ids handed out, none twice, {routes} route, {gone} answer 410",
        (outage / 3).as_secs_f64(),
        proxied + held_proxied,
        f.released.load(Ordering::SeqCst),
        failed_records,
        n.claims.load(Ordering::SeqCst),
        n.proxied.load(Ordering::SeqCst),
        routes + gone,
    );
    assert!(proc.sigterm().success());
    let left = runtime.list_owned().await.unwrap();
    assert!(left.is_empty(), "left after shutdown: {left:?}");
}
