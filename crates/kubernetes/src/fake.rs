//! A loopback fake of the Kubernetes API server (pods only) with a fake kubelet,
//! for tests (cargo feature `fake`). The API server answers what the runtime uses:
//! pod create, get, list and delete, equality label selectors,
//! `fieldSelector=metadata.name=`, and streaming watches from a resourceVersion with
//! `timeoutSeconds`; resourceVersions and uids only grow, and a 410 can be forced
//! on the next watch to make clients relist. The kubelet "schedules" a pod on one
//! of the configured nodes whose labels match its node selector (else marks it
//! Unschedulable), runs the configured command as a local process bound to a
//! distinct 127.0.0.N address with the pod's env, reports that address as the pod
//! IP, sets Ready once the readiness probe's path answers, and reports the exit
//! code when the process ends. Its work dir stands for the pod's filesystem: the
//! app's `WARMPOOL_FILES_DIR` is mapped under it. Every process it starts is killed when the
//! `FakeCluster` is dropped.
//!
//! What it does not do: real scheduling (resources, taints, affinity), cgroup
//! limits (a pod is only reported OOM-killed when a test says so), networking,
//! admission, authentication or TLS.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

/// What a fake cluster runs and where.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// Program and arguments every pod runs, whatever its image (the sample app).
    /// Images whose name contains `does-not-exist` fail to pull instead.
    pub command: Vec<String>,
    /// The labels of each node.
    pub nodes: Vec<BTreeMap<String, String>>,
}

impl FakeOptions {
    /// Nodes in the given regions (`topology.kubernetes.io/region`).
    pub fn with_regions(command: Vec<String>, regions: &[&str]) -> FakeOptions {
        FakeOptions {
            command,
            nodes: regions
                .iter()
                .map(|r| {
                    BTreeMap::from([("topology.kubernetes.io/region".to_owned(), (*r).to_owned())])
                })
                .collect(),
        }
    }
}

/// One stored change, as a watch sends it.
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    kind: &'static str,
    namespace: String,
    pod: Value,
}

/// What the kubelet is told about a running pod.
enum Ctl {
    /// Deleted: SIGTERM, SIGKILL after the grace period, then the pod goes.
    Terminate { grace: Duration },
    /// Killed from outside: it ends with this code and reason.
    Kill { code: i32, reason: String },
}

struct Proc {
    pid: u32,
    ctl: mpsc::UnboundedSender<Ctl>,
}

#[derive(Default)]
struct State {
    rv: u64,
    uid: u64,
    pods: BTreeMap<(String, String), Value>,
    history: Vec<Change>,
    procs: HashMap<(String, String), Proc>,
    /// The next watch answers 410 Gone.
    expire_next_watch: bool,
    /// Watches are refused (503): the watch is "down".
    hold_watches: bool,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    changes: broadcast::Sender<Change>,
    /// Bumped to end every open watch.
    watch_gen: watch::Sender<u64>,
    opts: FakeOptions,
    dir: PathBuf,
}

/// A fake API server and kubelet on 127.0.0.1.
pub struct FakeCluster {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Pod IPs: 127.B.x.y with B from this process's id, so that two test processes
/// do not share addresses; x.y counts up.
fn next_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let b = 64 + (std::process::id() % 180) as u8;
    Ipv4Addr::new(127, b, (n / 250) as u8, (n % 250) as u8 + 2)
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Days to a civil date (Howard Hinnant's algorithm).
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "code": code, "reason": reason, "message": message
    })
}

fn answer(code: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        serde_json::to_vec(&body).unwrap(),
    )
        .into_response()
}

fn fail(code: u16, reason: &str, message: &str) -> Response {
    answer(code, status(code, reason, message))
}

/// Equality-based selectors (`a=b,c==d`), as pairs; `None` if unsupported.
fn parse_selector(s: &str) -> Option<Vec<(String, String)>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.contains("!=") {
                return None;
            }
            let (k, v) = p.split_once("==").or_else(|| p.split_once('='))?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

struct Filter {
    labels: Vec<(String, String)>,
    name: Option<String>,
}

impl Filter {
    /// The selectors of a query; what is not supported is named in the error.
    fn from_query(q: &HashMap<String, String>) -> Result<Filter, String> {
        let labels = parse_selector(q.get("labelSelector").map_or("", String::as_str))
            .ok_or("only equality label selectors")?;
        let mut name = None;
        for (k, v) in parse_selector(q.get("fieldSelector").map_or("", String::as_str))
            .ok_or("only equality field selectors")?
        {
            if k != "metadata.name" {
                return Err(format!("field {k} not supported"));
            }
            name = Some(v);
        }
        Ok(Filter { labels, name })
    }

    fn matches(&self, pod: &Value) -> bool {
        let meta = &pod["metadata"];
        if let Some(n) = &self.name {
            if meta["name"].as_str() != Some(n) {
                return false;
            }
        }
        self.labels
            .iter()
            .all(|(k, v)| meta["labels"][k].as_str() == Some(v.as_str()))
    }
}

impl Shared {
    /// Records a change: a new resourceVersion, stored, kept for watches, sent.
    fn commit(&self, st: &mut State, kind: &'static str, ns: &str, mut pod: Value) -> Value {
        st.rv += 1;
        pod["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (ns.to_owned(), name);
        if kind == "DELETED" {
            st.pods.remove(&key);
        } else {
            st.pods.insert(key, pod.clone());
        }
        let change = Change {
            rv: st.rv,
            kind,
            namespace: ns.to_owned(),
            pod: pod.clone(),
        };
        st.history.push(change.clone());
        let _ = self.changes.send(change);
        pod
    }

    /// Changes the status (and whatever else `f` does) of a pod still there.
    fn update(&self, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.state.lock().unwrap();
        let Some(mut pod) = st.pods.get(&(ns.to_owned(), name.to_owned())).cloned() else {
            return;
        };
        f(&mut pod);
        self.commit(&mut st, "MODIFIED", ns, pod);
    }

    fn remove(&self, ns: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        st.procs.remove(&(ns.to_owned(), name.to_owned()));
        if let Some(pod) = st.pods.get(&(ns.to_owned(), name.to_owned())).cloned() {
            self.commit(&mut st, "DELETED", ns, pod);
        }
    }
}

impl FakeCluster {
    /// Starts the API server on 127.0.0.1 (a free port).
    pub async fn start(opts: FakeOptions) -> FakeCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let (changes, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            changes,
            watch_gen: watch::channel(0).0,
            opts,
            dir: dir.path().to_owned(),
        });
        let app = Router::new()
            .route(
                "/api/v1/namespaces/{ns}/pods",
                get(list_or_watch).post(create),
            )
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}",
                get(read).delete(delete),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeCluster {
            addr,
            shared,
            server,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The work dir of pod `name`'s app, which stands for the pod's filesystem
    /// (its `WARMPOOL_FILES_DIR`, `/warmpool/files`, is `<this>/warmpool/files`).
    pub fn pod_dir(&self, name: &str) -> PathBuf {
        self.shared.dir.join(name)
    }

    /// A kube client talking to this fake.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Writes a kubeconfig pointing at this fake (namespace `namespace`), for a
    /// warmpool started as a separate process; returns its path.
    pub fn write_kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let kc = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url()}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        });
        let path = dir.join("kubeconfig");
        std::fs::write(&path, serde_json::to_vec_pretty(&kc).unwrap()).unwrap();
        path
    }

    /// Every pod, as the API server would answer it.
    pub fn pods(&self) -> Vec<Value> {
        self.shared
            .state
            .lock()
            .unwrap()
            .pods
            .values()
            .cloned()
            .collect()
    }

    /// The pod called `name` (any namespace).
    pub fn pod(&self, name: &str) -> Option<Value> {
        self.pods()
            .into_iter()
            .find(|p| p["metadata"]["name"].as_str() == Some(name))
    }

    /// Processes the kubelet runs now.
    pub fn running_apps(&self) -> usize {
        self.shared.state.lock().unwrap().procs.len()
    }

    fn key_of(&self, name: &str) -> Option<(String, String)> {
        self.shared
            .state
            .lock()
            .unwrap()
            .pods
            .keys()
            .find(|(_, n)| n == name)
            .cloned()
    }

    /// Kills the app of pod `name`; the pod then reports `code` and `reason`
    /// (`OOMKilled`, `Error`). False if it runs no app.
    pub fn kill_app(&self, name: &str, code: i32, reason: &str) -> bool {
        let Some(key) = self.key_of(name) else {
            return false;
        };
        let st = self.shared.state.lock().unwrap();
        st.procs.get(&key).is_some_and(|p| {
            p.ctl
                .send(Ctl::Kill {
                    code,
                    reason: reason.to_owned(),
                })
                .is_ok()
        })
    }

    /// Deletes pod `name` at once, behind its owner's back (`kubectl delete
    /// --force --grace-period=0`).
    pub fn delete_now(&self, name: &str) -> bool {
        let Some((ns, name)) = self.key_of(name) else {
            return false;
        };
        let proc = self
            .shared
            .state
            .lock()
            .unwrap()
            .procs
            .remove(&(ns.clone(), name.clone()));
        if let Some(p) = proc {
            kill(p.pid, nix::sys::signal::Signal::SIGKILL);
        }
        self.shared.remove(&ns, &name);
        true
    }

    /// Creates a pod as a client would (orphans for tests of adoption).
    pub fn create_pod(&self, namespace: &str, pod: Value) -> Result<Value, u16> {
        create_pod(&self.shared, namespace, pod)
    }

    /// Ends every open watch, and makes the next one answer 410 Gone (its
    /// resourceVersion "too old"), so that clients relist.
    pub fn expire_watches(&self) {
        self.shared.state.lock().unwrap().expire_next_watch = true;
        self.shared.watch_gen.send_modify(|g| *g += 1);
    }

    /// While `on`, ends every open watch and refuses new ones with 503 (the
    /// watch is down; lists still work).
    pub fn hold_watches(&self, on: bool) {
        self.shared.state.lock().unwrap().hold_watches = on;
        if on {
            self.shared.watch_gen.send_modify(|g| *g += 1);
        }
    }

    /// Ends every open watch (a dropped connection).
    pub fn drop_watches(&self) {
        self.shared.watch_gen.send_modify(|g| *g += 1);
    }
}

fn kill(pid: u32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

impl Drop for FakeCluster {
    /// Kills every app the kubelet runs.
    fn drop(&mut self) {
        let mut st = self.shared.state.lock().unwrap();
        st.closed = true;
        for (_, p) in st.procs.drain() {
            kill(p.pid, nix::sys::signal::Signal::SIGKILL);
        }
        drop(st);
        self.shared.watch_gen.send_modify(|g| *g += 1);
        self.server.abort();
    }
}

async fn read(
    AxState(shared): AxState<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    let st = shared.state.lock().unwrap();
    match st.pods.get(&(ns, name.clone())) {
        Some(p) => answer(200, p.clone()),
        None => fail(404, "NotFound", &format!("pods \"{name}\" not found")),
    }
}

async fn create(
    AxState(shared): AxState<Arc<Shared>>,
    UrlPath(ns): UrlPath<String>,
    body: Bytes,
) -> Response {
    let Ok(pod) = serde_json::from_slice::<Value>(&body) else {
        return fail(400, "BadRequest", "the body is not a pod");
    };
    match create_pod(&shared, &ns, pod) {
        Ok(p) => answer(201, p),
        Err(409) => fail(409, "AlreadyExists", "pods already exists"),
        Err(code) => fail(code, "Invalid", "invalid pod"),
    }
}

fn create_pod(shared: &Arc<Shared>, ns: &str, mut pod: Value) -> Result<Value, u16> {
    let Some(name) = pod["metadata"]["name"].as_str().map(str::to_owned) else {
        return Err(422);
    };
    if pod["spec"]["containers"]
        .as_array()
        .is_none_or(|c| c.is_empty())
    {
        return Err(422);
    }
    let created = {
        let mut st = shared.state.lock().unwrap();
        if st.closed {
            return Err(503);
        }
        if st.pods.contains_key(&(ns.to_owned(), name.clone())) {
            return Err(409);
        }
        st.uid += 1;
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        pod["metadata"]["namespace"] = json!(ns);
        pod["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", st.uid));
        pod["metadata"]["creationTimestamp"] = json!(now_rfc3339());
        pod["status"] = json!({"phase": "Pending"});
        shared.commit(&mut st, "ADDED", ns, pod)
    };
    tokio::spawn(kubelet(shared.clone(), ns.to_owned(), name));
    Ok(created)
}

async fn delete(
    AxState(shared): AxState<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let from_body = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["gracePeriodSeconds"].as_u64());
    let grace = from_body
        .or_else(|| q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()))
        .unwrap_or(30);
    let key = (ns.clone(), name.clone());
    let mut st = shared.state.lock().unwrap();
    let Some(mut pod) = st.pods.get(&key).cloned() else {
        return fail(404, "NotFound", &format!("pods \"{name}\" not found"));
    };
    match st.procs.get(&key) {
        Some(p) => {
            let _ = p.ctl.send(Ctl::Terminate {
                grace: Duration::from_secs(grace),
            });
            if pod["metadata"]["deletionTimestamp"].is_null() {
                pod["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                pod = shared.commit(&mut st, "MODIFIED", &ns, pod);
            }
            answer(200, pod)
        }
        None => {
            // Nothing runs (pending, or ended): gone at once.
            let pod = shared.commit(&mut st, "DELETED", &ns, pod);
            answer(200, pod)
        }
    }
}

async fn list_or_watch(
    AxState(shared): AxState<Arc<Shared>>,
    UrlPath(ns): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = match Filter::from_query(&q) {
        Ok(f) => f,
        Err(why) => return fail(400, "BadRequest", &why),
    };
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch_pods(shared, ns, filter, &q);
    }
    let st = shared.state.lock().unwrap();
    let items: Vec<Value> = st
        .pods
        .iter()
        .filter(|((n, _), p)| *n == ns && filter.matches(p))
        .map(|(_, p)| p.clone())
        .collect();
    answer(
        200,
        json!({
            "apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": items,
        }),
    )
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
    v.push(b'\n');
    Bytes::from(v)
}

fn watch_pods(
    shared: Arc<Shared>,
    ns: String,
    filter: Filter,
    q: &HashMap<String, String>,
) -> Response {
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let mut gen = shared.watch_gen.subscribe();
    gen.mark_unchanged();
    let (backlog, mut live) = {
        let mut st = shared.state.lock().unwrap();
        if st.hold_watches {
            return fail(503, "ServiceUnavailable", "watches are held");
        }
        if std::mem::take(&mut st.expire_next_watch) || from > st.rv {
            let gone = status(410, "Expired", &format!("too old resource version: {from}"));
            let body = line("ERROR", &gone);
            return Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
        }
        let backlog: Vec<Change> = st
            .history
            .iter()
            .filter(|c| c.rv > from && c.namespace == ns && filter.matches(&c.pod))
            .cloned()
            .collect();
        (backlog, shared.changes.subscribe())
    };
    tokio::spawn(async move {
        for c in backlog {
            if tx.send(line(c.kind, &c.pod)).await.is_err() {
                return;
            }
        }
        let end = tokio::time::sleep(timeout);
        tokio::pin!(end);
        loop {
            tokio::select! {
                biased;
                _ = gen.changed() => return,
                _ = &mut end => return,
                c = live.recv() => match c {
                    Ok(c) if c.namespace == ns && filter.matches(&c.pod) => {
                        // Ended meanwhile: what changed since is not sent.
                        if gen.has_changed().unwrap_or(true)
                            || tx.send(line(c.kind, &c.pod)).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Too slow a reader: end the watch, the client resumes or relists.
                    Err(_) => return,
                },
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<Bytes, Infallible>))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Whether a node with `labels` takes a pod with `selector`.
fn fits(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    selector.as_object().is_none_or(|sel| {
        sel.iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
    })
}

/// One GET of `http://addr{path}`: whether it answered 2xx or 3xx.
async fn probe(addr: SocketAddr, path: &str) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.ok()?;
        let head = std::str::from_utf8(&buf[..n]).ok()?;
        let code: u16 = head.split(' ').nth(1)?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

/// The fake kubelet of one pod: schedule, run, probe, report the exit; on
/// deletion, SIGTERM then SIGKILL after the grace period, then the pod goes.
async fn kubelet(shared: Arc<Shared>, ns: String, name: String) {
    let Some(pod) = shared
        .state
        .lock()
        .unwrap()
        .pods
        .get(&(ns.clone(), name.clone()))
        .cloned()
    else {
        return;
    };
    let spec = &pod["spec"];
    let nodes = &shared.opts.nodes;
    let Some(node) = nodes
        .iter()
        .position(|labels| fits(&spec["nodeSelector"], labels))
    else {
        let n = nodes.len();
        let message = format!(
            "0/{n} nodes are available: {n} node(s) didn't match Pod's node affinity/selector."
        );
        shared.update(&ns, &name, |p| {
            p["status"]["conditions"] = json!([{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message,
            }]);
        });
        return;
    };
    let container = &spec["containers"][0];
    let image = container["image"].as_str().unwrap_or_default().to_owned();
    let scheduled = json!({"type": "PodScheduled", "status": "True"});
    if image.contains("does-not-exist") {
        shared.update(&ns, &name, |p| {
            p["spec"]["nodeName"] = json!(format!("node-{node}"));
            p["status"]["conditions"] = json!([scheduled]);
            p["status"]["containerStatuses"] = json!([{
                "name": container["name"], "ready": false, "restartCount": 0, "image": image,
                "imageID": "", "state": {"waiting": {
                    "reason": "ImagePullBackOff",
                    "message": format!("Back-off pulling image \"{image}\""),
                }},
            }]);
        });
        return;
    }
    let ip = next_ip();
    let port: u16 = container["env"]
        .as_array()
        .and_then(|env| {
            env.iter()
                .find(|e| e["name"] == "PORT")
                .and_then(|e| e["value"].as_str()?.parse().ok())
        })
        .unwrap_or(8080);
    let health = container["readinessProbe"]["httpGet"]["path"]
        .as_str()
        .unwrap_or("/")
        .to_owned();
    let workdir = shared.dir.join(&name);
    let _ = std::fs::create_dir_all(&workdir);
    let mut cmd = tokio::process::Command::new(&shared.opts.command[0]);
    cmd.args(&shared.opts.command[1..])
        .env_clear()
        .env("HOST", ip.to_string())
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for e in container["env"].as_array().into_iter().flatten() {
        if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
            if k == warmpool_runtime::FILES_DIR_ENV {
                // A path in the pod's filesystem: the pod's work dir is its root,
                // so that the app's bind hook never writes outside it.
                cmd.env(k, workdir.join(v.trim_start_matches('/')));
            } else {
                cmd.env(k, v);
            }
        }
    }
    let (ctl_tx, mut ctl) = mpsc::unbounded_channel();
    let mut child = {
        let mut st = shared.state.lock().unwrap();
        if st.closed || !st.pods.contains_key(&(ns.clone(), name.clone())) {
            return;
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                drop(st);
                shared.update(&ns, &name, |p| {
                    p["status"]["phase"] = json!("Failed");
                    p["status"]["containerStatuses"] = json!([{
                        "name": container["name"], "ready": false, "restartCount": 0,
                        "image": image, "imageID": "",
                        "state": {"terminated": {"exitCode": 128, "reason": "StartError", "message": e.to_string()}},
                    }]);
                });
                return;
            }
        };
        st.procs.insert(
            (ns.clone(), name.clone()),
            Proc {
                pid: child.id().unwrap_or(0),
                ctl: ctl_tx,
            },
        );
        child
    };
    let container_status = |ready: bool, state: Value| {
        json!([{
            "name": container["name"], "ready": ready, "restartCount": 0, "image": image,
            "imageID": "", "state": state,
        }])
    };
    let started = json!({"running": {"startedAt": now_rfc3339()}});
    shared.update(&ns, &name, |p| {
        p["spec"]["nodeName"] = json!(format!("node-{node}"));
        p["status"]["phase"] = json!("Running");
        p["status"]["podIP"] = json!(ip.to_string());
        p["status"]["podIPs"] = json!([{"ip": ip.to_string()}]);
        p["status"]["hostIP"] = json!("127.0.0.1");
        p["status"]["conditions"] = json!([scheduled, {"type": "Ready", "status": "False"}]);
        p["status"]["containerStatuses"] = container_status(false, started.clone());
    });
    let addr = SocketAddr::from((ip, port));
    let mut ready = false;
    let mut forced: Option<(i32, String)> = None;
    let mut deleting: Option<tokio::time::Instant> = None;
    let exit = loop {
        let kill_at = deleting
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(365 * 86_400));
        tokio::select! {
            status = child.wait() => break status.ok(),
            c = ctl.recv() => match c {
                Some(Ctl::Terminate { grace }) => {
                    if let Some(pid) = child.id() {
                        kill(pid, nix::sys::signal::Signal::SIGTERM);
                    }
                    let at = tokio::time::Instant::now() + grace;
                    deleting = Some(deleting.map_or(at, |d| d.min(at)));
                }
                Some(Ctl::Kill { code, reason }) => {
                    forced = Some((code, reason));
                    let _ = child.start_kill();
                }
                None => {}
            },
            _ = tokio::time::sleep_until(kill_at) => {
                let _ = child.start_kill();
            }
            _ = tokio::time::sleep(Duration::from_millis(50)), if !ready => {
                if probe(addr, &health).await {
                    ready = true;
                    shared.update(&ns, &name, |p| {
                        p["status"]["conditions"] =
                            json!([scheduled, {"type": "Ready", "status": "True"}]);
                        p["status"]["containerStatuses"] = container_status(true, started.clone());
                    });
                }
            }
        }
    };
    let (code, reason) = match forced {
        Some(f) => f,
        None => {
            use std::os::unix::process::ExitStatusExt;
            let code = exit
                .and_then(|s| s.code().or_else(|| s.signal().map(|sig| 128 + sig)))
                .unwrap_or(137);
            (
                code,
                if code == 0 { "Completed" } else { "Error" }.to_owned(),
            )
        }
    };
    shared.update(&ns, &name, |p| {
        p["status"]["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
        p["status"]["conditions"] = json!([scheduled, {"type": "Ready", "status": "False"}]);
        p["status"]["containerStatuses"] = container_status(
            false,
            json!({"terminated": {"exitCode": code, "reason": reason, "finishedAt": now_rfc3339()}}),
        );
    });
    // Deleted meanwhile (the delete saw this process and marked the pod): gone.
    let deleted = {
        let mut st = shared.state.lock().unwrap();
        let key = (ns.clone(), name.clone());
        st.procs.remove(&key);
        st.pods
            .get(&key)
            .is_some_and(|p| !p["metadata"]["deletionTimestamp"].is_null())
    };
    if deleted || deleting.is_some() {
        shared.remove(&ns, &name);
    }
}
