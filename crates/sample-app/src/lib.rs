//! The sample app run inside each pooled container: serves a text file, lets
//! `/admin/update-text` replace it, takes a claim's set-up at `/admin/bind` and
//! shows its env at `GET /env`, echoes every other method as JSON, echoes
//! WebSocket messages at `/ws`, streams slowly at `/stream/{chunks}/{ms}`, and tags
//! every response with container headers.
//!
//! # The bind hook (the app contract)
//!
//! When a container is claimed, warmpool may `POST /admin/bind` to it directly
//! (never through its proxy, which refuses `/admin` paths), before it hands the
//! container to the claimer, with a JSON body (`content-type: application/json`):
//!
//! ```json
//! {
//!   "env": {"NAME": "value"},
//!   "files": {"relative/path.txt": "contents"},
//!   "labels": {"team": "a"},
//!   "metadata": {"any": ["json"]}
//! }
//! ```
//!
//! Every member is optional (missing or `null`: none). `env` values and `files`
//! contents are strings (contents as UTF-8 text); `labels` and `metadata` are
//! for the app to use or ignore (this app ignores them), as are members it does
//! not know. An app answers 2xx once it is set up; any other status (or none
//! within 10 s) fails the claim, and a 404 says the app has no hook.
//!
//! This app:
//! - keeps `env` in memory, replacing what an earlier bind set, and answers the
//!   process environment overlaid with it at `GET /env` (a JSON object);
//! - writes each file under `$WARMPOOL_FILES_DIR` (its working directory when
//!   that is not set), parents created, each to a temporary file renamed into
//!   place, so a reader sees the old contents or the new, never part;
//! - answers 204; 400 for a body that is not such JSON or a path that is
//!   absolute, empty, names a directory, or holds `..` (then nothing is written
//!   and the env is unchanged); 413 over [`MAX_BIND_BYTES`]; 500 when a file
//!   cannot be written;
//! - for testing, acts as an app without the hook (404) with
//!   `SAMPLE_APP_BIND=absent`, and as a failing one (500) with
//!   `SAMPLE_APP_BIND=fail`.

mod config;

pub use config::{Config, ConfigError, DEFAULT_PORT, DEFAULT_TEXT_FILE, UNKNOWN};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::{Body, HttpBody};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRef, Request, State};
use axum::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::middleware::map_response_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, MethodRouter};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

/// Largest body `POST /admin/update-text` accepts (1 MiB).
pub const MAX_TEXT_BYTES: u64 = 1024 * 1024;
/// Largest body `POST /admin/bind` accepts (8 MiB: a claim's files are at most
/// 1 MiB, but JSON escaping can make them larger).
pub const MAX_BIND_BYTES: u64 = 8 * 1024 * 1024;
/// Largest body the method echo counts (64 MiB).
pub const MAX_ECHO_BYTES: u64 = 64 * 1024 * 1024;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The container metadata headers added to every response.
type ContainerHeaders = Arc<[(HeaderName, HeaderValue); 4]>;

/// The env set by `POST /admin/bind`, shown over the process's at `GET /env`.
type BoundEnv = Arc<RwLock<BTreeMap<String, String>>>;

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    text_file: Arc<Path>,
    files_dir: Arc<Path>,
    bound_env: BoundEnv,
    /// `SAMPLE_APP_BIND` ([`Config::bind_mode`]).
    bind_mode: Arc<str>,
}

impl FromRef<AppState> for Arc<Path> {
    fn from_ref(state: &AppState) -> Self {
        state.text_file.clone()
    }
}

impl FromRef<AppState> for BoundEnv {
    fn from_ref(state: &AppState) -> Self {
        state.bound_env.clone()
    }
}

/// Builds the app: every route, plus the container headers on every response.
pub fn router(config: &Config) -> Router {
    let state = AppState {
        text_file: config.text_file.clone().into(),
        files_dir: config.files_dir.clone().into(),
        bound_env: BoundEnv::default(),
        bind_mode: config.bind_mode.as_str().into(),
    };
    let headers: ContainerHeaders = Arc::new([
        container_header("x-container-id", &config.container_id),
        container_header("x-container-country", &config.country),
        container_header("x-container-location", &config.location),
        container_header("x-container-region", &config.region),
    ]);
    Router::new()
        .route("/healthz", get(healthz).fallback(echo))
        .route("/env", get(show_env).fallback(echo))
        .route("/ws", get(websocket_or_text).fallback(echo))
        .route("/stream/{chunks}/{ms}", get(stream).fallback(echo))
        .route("/admin/update-text", post(update_text).fallback(not_found))
        .route("/admin/bind", post(bind).fallback(not_found))
        .route(
            "/admin/allocate-mib/{mib}",
            post(allocate).fallback(not_found),
        )
        .route("/admin", any(not_found))
        .route("/admin/", any(not_found))
        .route("/admin/{*rest}", any(not_found))
        .fallback(text_or_echo())
        .with_state(state)
        .layer(map_response_with_state(headers, add_container_headers))
}

/// Most chunks `GET /stream/{chunks}/{ms}` sends, and longest pause between two.
const MAX_STREAM_CHUNKS: u32 = 10_000;
const MAX_STREAM_PAUSE_MS: u64 = 60_000;

/// `GET /stream/{chunks}/{ms}`: a slow streaming response, `chunk N` lines sent
/// `ms` apart (for proxy and shutdown tests of long responses).
async fn stream(axum::extract::Path((chunks, ms)): axum::extract::Path<(u32, u64)>) -> Response {
    if chunks > MAX_STREAM_CHUNKS || ms > MAX_STREAM_PAUSE_MS {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "too many chunks or too long a pause\n",
        )
            .into_response();
    }
    let body = futures_util::stream::unfold(0u32, move |i| async move {
        if i >= chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Some((Ok::<_, io::Error>(format!("chunk {i}\n")), i + 1))
    });
    Response::builder()
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(body))
        .expect("static headers")
}

/// Serves the app on `listener` until `shutdown` completes, then lets the
/// requests in flight finish before returning.
///
/// # Errors
///
/// Fails only when serving itself fails; errors on single connections are not reported.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router(&config))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Listens on the configured host and port and serves the app until SIGTERM
/// or SIGINT, then lets the requests in flight finish before returning.
///
/// # Errors
///
/// Fails when the address cannot be listened on, or when [`serve`] fails.
pub async fn run(config: Config) -> io::Result<()> {
    let addr = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}")))?;
    tracing::info!(addr = %listener.local_addr()?, "sample app listening");
    serve(listener, config, shutdown_signal()).await
}

/// Completes when the process receives SIGTERM or SIGINT. A signal that cannot
/// be listened for is logged and never completes this future.
pub async fn shutdown_signal() {
    async fn wait_for(kind: SignalKind, name: &str) {
        match signal(kind) {
            Ok(mut stream) => {
                stream.recv().await;
                tracing::info!("received {name}, shutting down");
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for {name}");
                std::future::pending::<()>().await;
            }
        }
    }
    tokio::select! {
        () = wait_for(SignalKind::terminate(), "SIGTERM") => {}
        () = wait_for(SignalKind::interrupt(), "SIGINT") => {}
    }
}

/// A container header, with control characters (invalid in headers) dropped
/// and an empty value replaced by `unknown`.
fn container_header(name: &'static str, value: &str) -> (HeaderName, HeaderValue) {
    let value: String = value.chars().filter(|c| !c.is_control()).collect();
    let value = if value.is_empty() {
        UNKNOWN.to_owned()
    } else {
        value
    };
    let value = HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static(UNKNOWN));
    (HeaderName::from_static(name), value)
}

async fn add_container_headers(
    State(headers): State<ContainerHeaders>,
    mut response: Response,
) -> Response {
    for (name, value) in headers.iter() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// `GET`/`HEAD` serve the text file; every other method is echoed.
fn text_or_echo() -> MethodRouter<AppState> {
    get(serve_text).fallback(echo)
}

/// `POST /admin/allocate-mib/{n}`: allocates and touches `n` MiB and keeps it, so
/// that tests can check a runtime's memory limit (an admin path: never reachable
/// through warmpool's proxy).
async fn allocate(axum::extract::Path(mib): axum::extract::Path<usize>) -> Response {
    static HELD: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
    if mib > 64 * 1024 {
        return (StatusCode::UNPROCESSABLE_ENTITY, "at most 65536 MiB").into_response();
    }
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..mib {
        held.push(vec![1u8; 1024 * 1024]);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// Answers the text file's contents, read afresh, or `No Content` without one.
///
/// A plain blocking read: the file is a few bytes on a local disk, so the read
/// takes microseconds, less than handing it to tokio's blocking pool, whose first
/// use starts a thread (about 0.3 ms, paid by the first request to a container
/// that has waited warm in its pool).
async fn serve_text(State(text_file): State<Arc<Path>>) -> Response {
    let body = match std::fs::read(&*text_file) {
        Ok(contents) => contents,
        Err(err) if err.kind() == io::ErrorKind::NotFound => b"No Content".to_vec(),
        Err(err) => {
            tracing::error!(%err, path = %text_file.display(), "cannot read text file");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read text file").into_response();
        }
    };
    ([(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN))], body).into_response()
}

/// Upgrades `GET /ws` to an echoing WebSocket, or serves the text file when
/// the request is not a WebSocket upgrade.
async fn websocket_or_text(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    state: State<Arc<Path>>,
) -> Response {
    match upgrade {
        Ok(upgrade) => upgrade.on_upgrade(echo_websocket),
        Err(_) => serve_text(state).await,
    }
}

async fn echo_websocket(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        match message {
            Message::Text(_) | Message::Binary(_) => {
                if socket.send(message).await.is_err() {
                    break;
                }
            }
            Message::Close(_) => break,
            // Pings are answered by the WebSocket layer itself.
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

/// Replaces the text file with the request body (at most [`MAX_TEXT_BYTES`]).
async fn update_text(State(text_file): State<Arc<Path>>, request: Request) -> Response {
    // Keep one byte beyond the limit, to tell "at the limit" from "over it".
    let (text, length) = match read_body(request.into_body(), MAX_TEXT_BYTES + 1).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    if length > MAX_TEXT_BYTES {
        return payload_too_large(MAX_TEXT_BYTES);
    }
    match write_atomically(text_file.clone(), text).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => {
            tracing::error!(%err, path = %text_file.display(), "cannot write text file");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot write text file").into_response()
        }
    }
}

/// The body of `POST /admin/bind` (see the module doc). `labels`, `metadata`
/// and anything else are accepted and ignored.
#[derive(Deserialize)]
struct Bind {
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    files: Option<BTreeMap<String, String>>,
}

/// `POST /admin/bind`: writes the files, then keeps the env (module doc).
async fn bind(State(state): State<AppState>, request: Request) -> Response {
    match &*state.bind_mode {
        "absent" => return not_found().await,
        "fail" => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "SAMPLE_APP_BIND=fail: this hook fails on purpose\n",
            )
                .into_response()
        }
        _ => {}
    }
    let (body, length) = match read_body(request.into_body(), MAX_BIND_BYTES + 1).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    if length > MAX_BIND_BYTES {
        return payload_too_large(MAX_BIND_BYTES);
    }
    // An object only (serde would also take a struct from an array).
    let parsed = serde_json::from_slice::<serde_json::Value>(&body).and_then(|value| {
        if value.is_object() {
            serde_json::from_value::<Bind>(value)
        } else {
            Err(serde::de::Error::custom("expected a JSON object"))
        }
    });
    let bind = match parsed {
        Ok(bind) => bind,
        Err(err) => {
            let message = format!("invalid bind body: {err}\n");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    let files = bind.files.unwrap_or_default();
    let mut targets = Vec::with_capacity(files.len());
    for (path, contents) in files {
        match relative_path(&path) {
            Ok(relative) => targets.push((state.files_dir.join(relative), contents)),
            Err(reason) => {
                let message = format!("invalid file path {path:?}: {reason}\n");
                return (StatusCode::BAD_REQUEST, message).into_response();
            }
        }
    }
    let written = write_files(targets, &state.files_dir).await;
    if let Err((target, err)) = written {
        tracing::error!(%err, path = %target.display(), "cannot write a bound file");
        let message = format!("cannot write {}: {err}\n", target.display());
        return (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
    }
    if let Some(env) = bind.env {
        *state.bound_env.write().unwrap_or_else(|e| e.into_inner()) = env;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// A bound file's path as a relative path that stays under the files dir, or
/// why it is refused: empty, absolute, naming a directory, or holding `..` (or a
/// NUL). Empty and `.` segments are dropped.
fn relative_path(path: &str) -> Result<PathBuf, &'static str> {
    if path.is_empty() {
        return Err("the path is empty");
    }
    if path.starts_with('/') {
        return Err("the path is absolute");
    }
    if path.contains('\0') {
        return Err("the path holds a NUL byte");
    }
    if matches!(path.rsplit('/').next(), Some("" | ".")) {
        return Err("the path names a directory");
    }
    let mut relative = PathBuf::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("the path holds `..`"),
            part => relative.push(part),
        }
    }
    Ok(relative)
}

/// `GET /env`: the process environment (variables that are UTF-8) overlaid
/// with the env of the last bind, as a JSON object.
async fn show_env(State(bound): State<BoundEnv>) -> Json<BTreeMap<String, String>> {
    let mut env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let bound = bound.read().unwrap_or_else(|e| e.into_inner());
    env.extend(bound.iter().map(|(k, v)| (k.clone(), v.clone())));
    Json(env)
}

/// What the method echo answers.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Echo {
    method: String,
    path: String,
    query: Option<String>,
    body_length: u64,
    /// The W3C trace context the request came with, if any: what a traced app
    /// would continue (warmpool passes on its proxy span's when traces are on).
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

/// Answers the request's method, path, query, body length and `traceparent` as
/// JSON.
async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body_length = match read_body(body, 0).await {
        Ok((_, length)) => length,
        Err(response) => return response,
    };
    Json(Echo {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        body_length,
        traceparent: parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    })
    .into_response()
}

/// Reads `body` to its end, or until it exceeds [`MAX_ECHO_BYTES`], and
/// answers its first `keep` bytes and its length. Reading on past `keep`
/// (rather than stopping there) lets the server answer a too-large body
/// without resetting a client that is still sending it.
async fn read_body(mut body: Body, keep: u64) -> Result<(Vec<u8>, u64), Response> {
    let mut kept = Vec::new();
    let mut length: u64 = 0;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|err| {
            let message = format!("cannot read request body: {err}");
            (StatusCode::BAD_REQUEST, message).into_response()
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let room = usize::try_from(keep.saturating_sub(length))
            .unwrap_or(usize::MAX)
            .min(data.len());
        kept.extend_from_slice(&data[..room]);
        length += data.len() as u64;
        if length > MAX_ECHO_BYTES {
            return Err(payload_too_large(MAX_ECHO_BYTES));
        }
    }
    Ok((kept, length))
}

fn payload_too_large(limit: u64) -> Response {
    let message = format!("request body too large: the limit is {limit} bytes");
    (StatusCode::PAYLOAD_TOO_LARGE, message).into_response()
}

/// A temp file's path beside `path` (hidden, unique in this process).
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "text file path has no file name",
        )
    })?;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    Ok(path.with_file_name(temp_name))
}

/// Writes of at most this many bytes are made on the app's own thread: a few
/// small files take microseconds, less than a hop to tokio's blocking pool, whose
/// first use starts a thread (about 0.3 ms, which a warm container would pay at
/// its first set-up). Larger ones go to the blocking pool.
const INLINE_WRITE_BYTES: usize = 64 * 1024;

/// Runs `write`, a blocking write of `bytes` bytes, on the app's own thread or
/// in tokio's blocking pool ([`INLINE_WRITE_BYTES`]).
async fn blocking_write<T: Send + 'static>(
    bytes: usize,
    write: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if bytes <= INLINE_WRITE_BYTES {
        return Ok(write());
    }
    tokio::task::spawn_blocking(write).await
}

/// Replaces `path` with `contents` by writing a temporary file next to it and
/// renaming it over `path`, so readers see either the old or the new text.
async fn write_atomically(path: Arc<Path>, contents: Vec<u8>) -> io::Result<()> {
    blocking_write(contents.len(), move || {
        write_atomically_blocking(&path, &contents)
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// Writes each file atomically ([`write_atomically`]), creating its parent
/// directories; all in one [`blocking_write`] (at most one hop off the runtime,
/// not one per file). The error names the file.
async fn write_files(
    targets: Vec<(PathBuf, String)>,
    files_dir: &Path,
) -> Result<(), (PathBuf, io::Error)> {
    fn write_all(targets: &[(PathBuf, String)]) -> Result<(), (PathBuf, io::Error)> {
        for (target, contents) in targets {
            let write = || {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                write_atomically_blocking(target, contents.as_bytes())
            };
            write().map_err(|err| (target.clone(), err))?;
        }
        Ok(())
    }
    let total: usize = targets.iter().map(|(_, contents)| contents.len()).sum();
    blocking_write(total, move || write_all(&targets))
        .await
        .unwrap_or_else(|e| Err((files_dir.to_path_buf(), io::Error::other(e))))
}

/// [`write_atomically`], blocking.
fn write_atomically_blocking(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temp = temp_path(path)?;
    let result = std::fs::write(&temp, contents).and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: the temporary file may not even exist.
        let _ = std::fs::remove_file(&temp);
    }
    result
}
