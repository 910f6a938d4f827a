//! End-to-end tests of the sample app, served on a loopback port.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use warmpool_sample_app::{serve, Config};

const MIB: usize = 1024 * 1024;
/// Upper bound for anything a test waits on, so a bug fails instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A sample app served on a loopback port, with its text file in a temporary directory.
struct TestServer {
    addr: SocketAddr,
    text_file: PathBuf,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
    _dir: TempDir,
}

fn config(text_file: PathBuf) -> Config {
    Config {
        host: Ipv4Addr::LOCALHOST.into(),
        port: 0,
        files_dir: text_file.with_file_name("files"),
        bind_mode: String::new(),
        text_file,
        container_id: "c-42".to_owned(),
        country: "DE".to_owned(),
        location: "Frankfurt".to_owned(),
        region: "eu-central".to_owned(),
    }
}

impl TestServer {
    async fn start() -> Self {
        let dir = TempDir::new().unwrap();
        let text_file = dir.path().join("index.txt");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, config(text_file.clone()), async {
            let _ = shutdown_rx.await;
        }));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Self {
            addr,
            text_file,
            client,
            shutdown: Some(shutdown),
            task,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn send(&self, method: Method, path: &str, body: impl Into<reqwest::Body>) -> Response {
        self.client
            .request(method, self.url(path))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    async fn get_text(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    /// Shuts the server down and checks that it stops cleanly.
    async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        tokio::time::timeout(TIMEOUT, &mut self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

fn assert_container_headers(response: &Response) {
    let headers = response.headers();
    assert_eq!(headers["x-container-id"], "c-42");
    assert_eq!(headers["x-container-country"], "DE");
    assert_eq!(headers["x-container-location"], "Frankfurt");
    assert_eq!(headers["x-container-region"], "eu-central");
}

fn content_type(response: &Response) -> &str {
    response.headers()["content-type"].to_str().unwrap()
}

#[tokio::test]
async fn get_without_text_file_serves_no_content() {
    let server = TestServer::start().await;
    let response = server.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "text/plain; charset=utf-8");
    assert_container_headers(&response);
    assert_eq!(response.text().await.unwrap(), "No Content");
    server.stop().await;
}

#[tokio::test]
async fn head_answers_headers_without_body() {
    let server = TestServer::start().await;
    let response = server.send(Method::HEAD, "/some/page", "").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "text/plain; charset=utf-8");
    assert_container_headers(&response);
    assert_eq!(response.text().await.unwrap(), "");
    server.stop().await;
}

#[tokio::test]
async fn text_file_is_read_on_every_request() {
    let server = TestServer::start().await;
    std::fs::write(&server.text_file, "first").unwrap();
    assert_eq!(server.get_text("/").await, "first");
    std::fs::write(&server.text_file, "second").unwrap();
    assert_eq!(server.get_text("/other").await, "second");
    server.stop().await;
}

#[tokio::test]
async fn update_text_replaces_what_every_path_serves() {
    let server = TestServer::start().await;
    let response = server
        .send(Method::POST, "/admin/update-text", "hello, pool")
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_container_headers(&response);
    assert_eq!(server.get_text("/any/path").await, "hello, pool");
    assert_eq!(server.get_text("/").await, "hello, pool");
    assert_eq!(
        std::fs::read_to_string(&server.text_file).unwrap(),
        "hello, pool"
    );
    // No temporary file is left behind.
    let entries = std::fs::read_dir(server.text_file.parent().unwrap()).unwrap();
    assert_eq!(entries.count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn update_text_accepts_one_mib_and_rejects_more() {
    let server = TestServer::start().await;
    let at_limit = "a".repeat(MIB);
    let response = server
        .send(Method::POST, "/admin/update-text", at_limit.clone())
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let response = server
        .send(Method::POST, "/admin/update-text", "b".repeat(MIB + 1))
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_container_headers(&response);
    assert_eq!(server.get_text("/").await, at_limit);
    server.stop().await;
}

#[tokio::test]
async fn other_admin_requests_are_not_found() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/admin/update-text"),
        (Method::PUT, "/admin/update-text"),
        (Method::POST, "/admin"),
        (Method::GET, "/admin"),
        (Method::GET, "/admin/"),
        (Method::POST, "/admin/other"),
        (Method::DELETE, "/admin/update-text/deeper"),
    ] {
        let response = server.send(method.clone(), path, "x").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        assert_container_headers(&response);
    }
    assert!(
        !server.text_file.exists(),
        "no admin request wrote the text file"
    );
    // Only `/admin` itself and what is under it is reserved.
    assert_eq!(server.get_text("/administrator").await, "No Content");
    server.stop().await;
}

#[tokio::test]
async fn other_methods_echo_the_request_as_json() {
    let server = TestServer::start().await;
    let custom = Method::from_bytes(b"PURGE").unwrap();
    for method in [
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::POST,
        Method::OPTIONS,
        custom,
    ] {
        let response = server
            .send(method.clone(), "/x/y?z=1", "twelve bytes")
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        assert_eq!(content_type(&response), "application/json");
        assert_container_headers(&response);
        let echo: Value = response.json().await.unwrap();
        assert_eq!(
            echo,
            json!({"method": method.as_str(), "path": "/x/y", "query": "z=1", "bodyLength": 12})
        );
    }
    // Paths with routes of their own echo other methods too.
    for path in ["/healthz", "/ws", "/"] {
        let response = server.send(Method::POST, path, "").await;
        let echo: Value = response.json().await.unwrap();
        assert_eq!(
            echo,
            json!({"method": "POST", "path": path, "query": null, "bodyLength": 0})
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn echo_counts_bodies_larger_than_the_text_limit() {
    let server = TestServer::start().await;
    let response = server.send(Method::PUT, "/big", vec![7u8; 3 * MIB]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["bodyLength"], 3 * MIB);
    server.stop().await;
}

#[tokio::test]
async fn healthz_is_ok() {
    let server = TestServer::start().await;
    std::fs::write(&server.text_file, "not the health answer").unwrap();
    let response = server.get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_container_headers(&response);
    assert_eq!(response.text().await.unwrap(), "ok");
    server.stop().await;
}

#[tokio::test]
async fn ws_without_upgrade_serves_the_text() {
    let server = TestServer::start().await;
    std::fs::write(&server.text_file, "plain").unwrap();
    assert_eq!(server.get_text("/ws").await, "plain");
    server.stop().await;
}

#[tokio::test]
async fn websocket_echoes_messages() {
    let server = TestServer::start().await;
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["x-container-id"], "c-42");

    socket.send(Message::text("hello over ws")).await.unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply, Message::text("hello over ws"));

    socket
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply, Message::binary(vec![0u8, 1, 2, 255]));

    socket.close(None).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let dir = TempDir::new().unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, triggered) = oneshot::channel::<()>();
    let (observed_tx, observed) = oneshot::channel::<()>();
    // The shutdown future reports when the server has seen it complete.
    let shutdown = async move {
        let _ = triggered.await;
        let _ = observed_tx.send(());
    };
    let mut server = tokio::spawn(serve(
        listener,
        config(dir.path().join("index.txt")),
        shutdown,
    ));

    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"POST /slow?part=1 HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\
                  Expect: 100-continue\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        // The server asks for the body once the handler reads it: the request is in flight.
        let mut interim = [0u8; 25];
        stream.read_exact(&mut interim).await.unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(b"hello").await.unwrap();

        trigger.send(()).unwrap();
        observed.await.unwrap();
        assert!(!server.is_finished());

        stream.write_all(b"world").await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    };
    let response = tokio::time::timeout(TIMEOUT, exchange).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response
        .to_ascii_lowercase()
        .contains("\r\nx-container-id: c-42\r\n"));
    let echo: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        echo,
        json!({"method": "POST", "path": "/slow", "query": "part=1", "bodyLength": 10})
    );

    tokio::time::timeout(TIMEOUT, &mut server)
        .await
        .expect("server did not stop after the request finished")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn allocate_holds_memory_and_bounds_its_input() {
    let server = TestServer::start().await;
    let ok = server
        .client
        .post(server.url("/admin/allocate-mib/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    let too_much = server
        .client
        .post(server.url("/admin/allocate-mib/70000"))
        .send()
        .await
        .unwrap();
    assert_eq!(too_much.status(), StatusCode::UNPROCESSABLE_ENTITY);
    server.stop().await;
}

impl TestServer {
    /// Where `/admin/bind` writes files (see [`config`]).
    fn files_dir(&self) -> PathBuf {
        self.text_file.with_file_name("files")
    }

    async fn bind(&self, body: impl Into<reqwest::Body>) -> Response {
        self.client
            .post(self.url("/admin/bind"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn env(&self) -> serde_json::Map<String, Value> {
        let response = self.get("/env").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(content_type(&response), "application/json");
        match response.json::<Value>().await.unwrap() {
            Value::Object(map) => map,
            other => panic!("GET /env answered {other}"),
        }
    }
}

/// Every path under `dir`, relative to it, sorted (empty when it does not exist).
fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn bind_writes_files_and_keeps_the_env_that_get_env_shows() {
    let server = TestServer::start().await;
    let before = server.env().await;
    if let Ok(path) = std::env::var("PATH") {
        assert_eq!(before["PATH"], path.as_str(), "the process env is shown");
    }
    assert!(!before.contains_key("BOUND"));

    let response = server
        .bind(
            json!({
                "env": {"BOUND": "yes", "PATH": "/bound/bin", "EMPTY": ""},
                "files": {"a.txt": "one", "deep/er/./b.json": "{\"k\": [1]}", "ü.txt": "grüß"},
                "labels": {"team": "a"},
                "metadata": {"any": ["json", 1, null]},
                "unknown": true
            })
            .to_string(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_container_headers(&response);
    let dir = server.files_dir();
    assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "one");
    assert_eq!(
        std::fs::read_to_string(dir.join("deep/er/b.json")).unwrap(),
        "{\"k\": [1]}"
    );
    assert_eq!(std::fs::read_to_string(dir.join("ü.txt")).unwrap(), "grüß");
    // No temporary file is left behind.
    assert_eq!(
        tree(&dir),
        ["a.txt", "deep", "deep/er", "deep/er/b.json", "ü.txt"]
    );

    let env = server.env().await;
    assert_eq!(env["BOUND"], "yes");
    assert_eq!(env["PATH"], "/bound/bin", "the bound env wins");
    assert_eq!(env["EMPTY"], "");

    // A second bind replaces the bound env and a file; others stay.
    let response = server
        .bind(json!({"env": {"OTHER": "1"}, "files": {"a.txt": "two"}}).to_string())
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let env = server.env().await;
    assert_eq!(env["OTHER"], "1");
    assert!(!env.contains_key("BOUND"), "{env:?}");
    assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "two");
    assert_eq!(tree(&dir).len(), 5);

    // Everything is optional; an empty bind changes nothing.
    for body in [
        "{}",
        r#"{"env": null, "files": null, "labels": null, "metadata": null}"#,
    ] {
        let response = server.bind(body).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{body}");
    }
    assert_eq!(server.env().await["OTHER"], "1");
    server.stop().await;
}

#[tokio::test]
async fn bind_refuses_paths_leaving_its_dir_and_bad_bodies_changing_nothing() {
    let server = TestServer::start().await;
    let response = server.bind(json!({"env": {"KEPT": "1"}}).to_string()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for bad in ["../x", "/etc/x", "a/../../x", "a/..", "", ".", "a/", "a\0b"] {
        let response = server
            .bind(json!({"env": {"KEPT": "2"}, "files": {"good.txt": "g", bad: "x"}}).to_string())
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        let text = response.text().await.unwrap();
        assert!(text.contains("invalid file path"), "{bad:?}: {text}");
    }
    for body in [
        "not json",
        r#"{"env": {"A": 1}}"#,
        r#"{"env": ["A"]}"#,
        r#"{"files": {"a": 5}}"#,
        "[]",
    ] {
        let response = server.bind(body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let response = server
        .bind(format!(
            r#"{{"files": {{"big": "{}"}}}}"#,
            "a".repeat(8 * MIB)
        ))
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        tree(&server.files_dir()).is_empty(),
        "{:?}",
        tree(&server.files_dir())
    );
    assert!(!server.text_file.with_file_name("x").exists());
    assert_eq!(server.env().await["KEPT"], "1");
    // Only POST binds; other methods are not found, like every /admin path.
    for method in [Method::GET, Method::PUT] {
        let response = server.send(method.clone(), "/admin/bind", "{}").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method}");
    }
    server.stop().await;
}

#[tokio::test]
async fn bind_reports_a_file_it_cannot_write() {
    let server = TestServer::start().await;
    // A file where the files dir should be.
    std::fs::write(server.files_dir(), "in the way").unwrap();
    // Small files are written on the app's thread, large ones off it: both fail alike.
    for contents in ["x".to_owned(), "x".repeat(100 * 1024)] {
        let response = server
            .bind(json!({"env": {"B": "1"}, "files": {"a.txt": contents}}).to_string())
            .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !server.env().await.contains_key("B"),
            "env kept after a failed bind"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn bind_writes_files_too_large_to_write_inline() {
    let server = TestServer::start().await;
    let (a, b) = ("a".repeat(48 * 1024), "b".repeat(48 * 1024));
    let response = server
        .bind(json!({"files": {"a.txt": a, "sub/b.txt": b}}).to_string())
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let dir = server.files_dir();
    assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), a);
    assert_eq!(std::fs::read_to_string(dir.join("sub/b.txt")).unwrap(), b);
    assert_eq!(tree(&dir), ["a.txt", "sub", "sub/b.txt"]);
    server.stop().await;
}
