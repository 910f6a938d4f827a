//! The load generator: plain HTTP/1.1 keep-alive connections (hyper's client
//! connection, no pool, no middleware), used identically for every side of a
//! comparison, and a WebSocket echo round trip.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::stats::Samples;

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
    host: String,
}

/// What a request got back.
pub struct Answer {
    pub status: StatusCode,
    /// Time from sending until the response head arrived (first byte).
    pub first_byte: Duration,
    /// The body, when asked to keep it.
    pub body: Bytes,
    /// Bytes of body received.
    pub length: u64,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            send,
            host: addr.to_string(),
        })
    }

    /// Sends one request and reads the whole answer; keeps the body if `keep`.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        keep: bool,
    ) -> anyhow::Result<Answer> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host)
            .body(Full::new(body))?;
        self.send_request(req, keep).await
    }

    /// Sends `body` as `application/json`; returns the status and the answer's
    /// JSON (`null` if it is not JSON).
    pub async fn json(
        &mut self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(StatusCode, serde_json::Value)> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
        let a = self.send_request(req, true).await?;
        let v = serde_json::from_slice(&a.body).unwrap_or(serde_json::Value::Null);
        Ok((a.status, v))
    }

    async fn send_request(
        &mut self,
        req: Request<Full<Bytes>>,
        keep: bool,
    ) -> anyhow::Result<Answer> {
        self.send.ready().await?;
        let started = Instant::now();
        let resp = self.send.send_request(req).await?;
        let first_byte = started.elapsed();
        let status = resp.status();
        let mut body = resp.into_body();
        let mut kept = bytes::BytesMut::new();
        let mut length = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                length += data.len() as u64;
                if keep {
                    kept.extend_from_slice(&data);
                }
            }
        }
        Ok(Answer {
            status,
            first_byte,
            body: kept.freeze(),
            length,
        })
    }

    /// The connection has ended (the server closed it, or it broke).
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Answer> {
        self.request(Method::GET, path, Bytes::new(), false).await
    }
}

/// A claim over `conn`: `POST /container`, until the id is received.
pub struct Claim {
    pub id: String,
    pub warm: bool,
    pub took: Duration,
}

pub async fn claim(conn: &mut Conn) -> anyhow::Result<Claim> {
    let started = Instant::now();
    let a = conn
        .request(Method::POST, "/container", Bytes::new(), true)
        .await?;
    let took = started.elapsed();
    if a.status != StatusCode::OK && a.status != StatusCode::CREATED {
        bail!(
            "claim answered {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&a.body)?;
    Ok(Claim {
        id: v["id"]
            .as_str()
            .context("claim answer without id")?
            .to_owned(),
        warm: v["warm"].as_bool().unwrap_or(false),
        took,
    })
}

/// One claim of an open-loop run ([`OpenClaims`]).
#[derive(Clone, Debug)]
pub struct ClaimRecord {
    /// When the claim was due (its tick): latency counts from here, so a slow
    /// answer cannot hide the claims queued behind it.
    pub due: Instant,
    /// From `due` until the answer (or the failure).
    pub took: Duration,
    /// `Ok(warm)` when answered with an id, `Err(why)` when the claim failed.
    pub warm: Result<bool, String>,
}

/// What an open-loop run saw.
#[derive(Debug, Default)]
pub struct OpenClaimsResult {
    pub claims: Vec<ClaimRecord>,
    /// Releases (`DELETE /v1/containers/{id}`) that failed.
    pub release_errors: u64,
}

/// Claims at a fixed rate, open loop: a ticker starts each claim on its own
/// task whether or not the earlier ones have been answered. Each claim takes an
/// idle keep-alive connection (or opens one), claims with [`claim`], and
/// releases the container as soon as the claim is answered, so that the host
/// holds only the few claimed at a time. Dropped without [`OpenClaims::stop`],
/// the ticker and every claim in flight are aborted.
pub struct OpenClaims {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    ticker: Option<tokio::task::JoinHandle<OpenClaimsResult>>,
}

impl OpenClaims {
    pub fn start(addr: SocketAddr, per_second: f64) -> OpenClaims {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let ticker = tokio::spawn(async move {
            let idle = Idle::default();
            let records: Arc<Mutex<OpenClaimsResult>> = Arc::default();
            let mut tasks = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
            // Late ticks fire at once: the rate holds on average.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                let due = tokio::select! {
                    t = tick.tick() => t.into_std(),
                    _ = &mut stopped => break,
                };
                while tasks.try_join_next().is_some() {}
                spawn_open_claim(&mut tasks, addr, due, Duration::ZERO, &idle, &records);
            }
            while tasks.join_next().await.is_some() {}
            let all = std::mem::take(&mut *records.lock().expect("not poisoned"));
            all
        });
        OpenClaims {
            stop: Some(stop),
            ticker: Some(ticker),
        }
    }

    /// Stops the ticker, waits for the claims in flight (and their releases),
    /// and returns every claim, in no particular order.
    pub async fn stop(mut self) -> anyhow::Result<OpenClaimsResult> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let ticker = self.ticker.take().expect("stopped once");
        Ok(ticker.await?)
    }
}

/// Idle connections older than this are not reused (warmpool closes idle
/// keep-alive connections after its header timeout, 30 s by default: a claim
/// must not fail because its connection was closed while it sat unused).
const MAX_IDLE: Duration = Duration::from_secs(5);

/// The idle keep-alive connections of an open-loop run, shared by its tasks.
#[derive(Clone, Default)]
struct Idle(Arc<Mutex<Vec<(Instant, Conn)>>>);

impl Idle {
    /// The most recently used idle connection (the stale ones are dropped), or
    /// a new one.
    async fn take(&self, addr: SocketAddr) -> anyhow::Result<Conn> {
        let taken = {
            let mut idle = self.0.lock().expect("not poisoned");
            idle.retain(|(since, c)| since.elapsed() < MAX_IDLE && !c.is_closed());
            idle.pop().map(|(_, c)| c)
        };
        match taken {
            Some(c) => Ok(c),
            None => Conn::connect(addr).await,
        }
    }

    fn put(&self, conn: Conn) {
        self.0
            .lock()
            .expect("not poisoned")
            .push((Instant::now(), conn));
    }
}

/// Releases `id` (`DELETE /v1/containers/{id}`) over an idle connection;
/// true if the release failed.
async fn release_over(addr: SocketAddr, id: &str, idle: &Idle) -> bool {
    let mut conn = match idle.take(addr).await {
        Ok(c) => c,
        Err(_) => return true,
    };
    let path = format!("/v1/containers/{id}");
    let released = conn
        .request(Method::DELETE, &path, Bytes::new(), false)
        .await;
    let failed = !matches!(&released, Ok(a) if a.status.is_success());
    // A connection whose request failed is not reused.
    if released.is_ok() {
        idle.put(conn);
    }
    failed
}

/// Starts [`open_claim`] as a task of `tasks` that adds its record to `records`.
fn spawn_open_claim(
    tasks: &mut tokio::task::JoinSet<()>,
    addr: SocketAddr,
    due: Instant,
    hold: Duration,
    idle: &Idle,
    records: &Arc<Mutex<OpenClaimsResult>>,
) {
    let (idle, records) = (idle.clone(), records.clone());
    tasks.spawn(async move {
        let (record, release_failed) = open_claim(addr, due, hold, &idle).await;
        let mut r = records.lock().expect("not poisoned");
        r.claims.push(record);
        r.release_errors += u64::from(release_failed);
    });
}

/// One claim of an open-loop run, due at `due`, held for `hold` once answered,
/// then released; the second value is true if the release failed.
async fn open_claim(
    addr: SocketAddr,
    due: Instant,
    hold: Duration,
    idle: &Idle,
) -> (ClaimRecord, bool) {
    let failed = |e: anyhow::Error| ClaimRecord {
        due,
        took: due.elapsed(),
        warm: Err(format!("{e:#}")),
    };
    let mut conn = match idle.take(addr).await {
        Ok(c) => c,
        Err(e) => return (failed(e), false),
    };
    // A connection whose claim failed is not reused.
    let c = match claim(&mut conn).await {
        Ok(c) => c,
        Err(e) => return (failed(e), false),
    };
    let record = ClaimRecord {
        due,
        took: due.elapsed(),
        warm: Ok(c.warm),
    };
    if hold.is_zero() {
        // Released on the claim's own connection, at once.
        let path = format!("/v1/containers/{}", c.id);
        let released = conn
            .request(Method::DELETE, &path, Bytes::new(), false)
            .await;
        let release_failed = !matches!(&released, Ok(a) if a.status.is_success());
        if released.is_ok() {
            idle.put(conn);
        }
        return (record, release_failed);
    }
    idle.put(conn);
    tokio::time::sleep(hold).await;
    (record, release_over(addr, &c.id, idle).await)
}

/// One arrival of a replayed trace: when its claim is due (from the start of
/// the replay), and how long it holds its container once answered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arrival {
    pub at: Duration,
    pub hold: Duration,
}

/// Replays `trace` against `addr`, open loop: each claim starts on its own task
/// at `start + at`, whether or not the earlier ones have been answered, holds
/// its container for its `hold` once answered, then releases it
/// (`DELETE /v1/containers/{id}`). Returns when every claim and release is
/// done; the claims in no particular order.
pub async fn replay(addr: SocketAddr, start: Instant, trace: &[Arrival]) -> OpenClaimsResult {
    let idle = Idle::default();
    let records: Arc<Mutex<OpenClaimsResult>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for a in trace {
        let due = start + a.at;
        tokio::time::sleep_until(due.into()).await;
        while tasks.try_join_next().is_some() {}
        spawn_open_claim(&mut tasks, addr, due, a.hold, &idle, &records);
    }
    while tasks.join_next().await.is_some() {}
    let all = std::mem::take(&mut *records.lock().expect("not poisoned"));
    all
}

impl Drop for OpenClaims {
    fn drop(&mut self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
    }
}

/// Result of a closed-loop load run.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub latency: Samples,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    pub fn merge(&mut self, other: LoadResult) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.seconds += other.seconds;
        self.latency.extend(&other.latency);
    }
}

/// `conns` connections each sending `GET path` back to back for `duration`.
pub async fn load(
    addr: SocketAddr,
    path: &str,
    conns: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        clients.push(Conn::connect(addr).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in clients {
        let path = path.to_owned();
        tasks.spawn(async move {
            let mut r = LoadResult::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                match c.get(&path).await {
                    Ok(a) if a.status.is_success() => {
                        r.requests += 1;
                        r.latency.push(t.elapsed());
                    }
                    Ok(_) => r.errors += 1,
                    Err(_) => {
                        r.errors += 1;
                        match Conn::connect(addr).await {
                            Ok(n) => c = n,
                            Err(_) => break,
                        }
                    }
                }
            }
            r
        });
    }
    let mut total = LoadResult::default();
    while let Some(r) = tasks.join_next().await {
        total.merge(r?);
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// An open WebSocket to an echo server.
pub struct Ws {
    url: String,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    pub async fn connect(url: &str) -> anyhow::Result<Ws> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("cannot open {url}"))?;
        Ok(Ws {
            url: url.to_owned(),
            ws,
        })
    }

    /// One round trip of a small text message.
    pub async fn round_trip(&mut self, i: usize) -> anyhow::Result<Duration> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let msg = format!("ping {i}");
        let t = Instant::now();
        self.ws.send(Message::text(msg.clone())).await?;
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == msg => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("{}: the WebSocket closed", self.url),
            }
        }
        Ok(t.elapsed())
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Polls `GET path` at `addr` until it answers; returns the time from `since`
/// to the first byte of the first answer.
pub async fn wait_first_byte(
    addr: SocketAddr,
    path: &str,
    since: Instant,
    within: Duration,
) -> anyhow::Result<Duration> {
    loop {
        if let Ok(mut c) = Conn::connect(addr).await {
            if c.get(path).await.is_ok() {
                return Ok(since.elapsed());
            }
        }
        if since.elapsed() > within {
            bail!("{addr} did not answer within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
