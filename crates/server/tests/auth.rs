//! Tokens: every route in the access table answers 401 without a token and with a
//! wrong one, and works with the right one; without tokens warmpool stays on
//! loopback unless told otherwise.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::InProc;
use warmpool_runtime::{SimMode, SimRuntime};
use warmpool_server::auth::Access;

const API: &str = "api-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

/// A real sample app for the simulated containers to point at, so that proxied
/// requests get real answers.
async fn sample_app() -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = warmpool_sample_app::Config::from_lookup(|k| match k {
        "TEXT_FILE" => Some(dir.path().join("index.txt").display().to_string()),
        _ => None,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _dir = dir;
        warmpool_sample_app::serve(listener, config, std::future::pending()).await
    });
    addr
}

async fn started(proxy_require_token: bool) -> (InProc, String) {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, sample_app().await));
    let wp = InProc::start_with(
        &[
            ("POOL_TARGET_INSTANCES", "3"),
            (
                "WARMPOOL_API_TOKEN",
                &format!("other-token-0123456789,{API}"),
            ),
            ("WARMPOOL_ADMIN_TOKEN", ADMIN),
            (
                "WARMPOOL_PROXY_REQUIRE_TOKEN",
                if proxy_require_token { "true" } else { "false" },
            ),
        ],
        Some(sim),
    )
    .await;
    let client = wp.client.clone().with_token(API);
    common::wait_ready(&client, "default", 3, Duration::from_secs(10)).await;
    // Shorter than the maximum lifetime, so that it can be extended.
    let claim = warmpool_client::ClaimRequest {
        max_lifetime_in_seconds: Some(600),
        ..Default::default()
    };
    let id = client.claim(&claim).await.unwrap().id;
    (wp, id)
}

/// Every route of the table: method (`*` for every one), path as routed, access.
fn routes() -> Vec<(String, String, Access)> {
    let mut all = Vec::new();
    for r in warmpool_server::routes::table() {
        match &r.methods {
            None => all.push(("*".to_owned(), r.path.clone(), r.access)),
            Some(ms) => all.extend(ms.iter().map(|m| (m.to_string(), r.path.clone(), r.access))),
        }
    }
    assert!(all.len() >= 26, "{all:?}");
    all
}

/// A concrete request for each routed pattern.
fn url(base: &str, pattern: &str, id: &str, pool: &str) -> String {
    format!(
        "{base}{}",
        pattern
            .replace("{id}", id)
            .replace("{*path}", "update-text")
            .replace("{name}", "containers")
            .replace("{pool}", pool)
    )
}

/// A pool for a route that changes it: one to delete, one with a revision to
/// roll back to; the default pool otherwise.
async fn pool_for(wp: &InProc, method: &str, pattern: &str) -> &'static str {
    use warmpool_client::PoolSettings;
    let admin = wp.client.clone().with_token(ADMIN);
    let settings = |v: &str| PoolSettings {
        target: Some(0),
        app_env: Some([("V".to_string(), v.to_string())].into()),
        ..Default::default()
    };
    if method == "DELETE" && pattern.contains("{pool}") {
        admin
            .put_pool("doomed", &settings("1"), false)
            .await
            .unwrap();
        "doomed"
    } else if pattern.ends_with("/rollback") {
        admin
            .put_pool("rolled", &settings("1"), false)
            .await
            .unwrap();
        admin
            .put_pool("rolled", &settings("2"), false)
            .await
            .unwrap();
        "rolled"
    } else {
        "default"
    }
}

async fn status(wp: &InProc, method: &str, url: &str, token: Option<&str>) -> u16 {
    let method = if method == "*" { "GET" } else { method };
    let mut req = wp.http.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    // Routes that need a body to succeed.
    if url.ends_with("/v1/sql") {
        req = req.json(&serde_json::json!({"sql": "SELECT 1"}));
    } else if url.ends_with("/v1/pools/default") && method != "GET" {
        req = req.json(&serde_json::json!({"targets": {"default": 1}}));
    } else if url.ends_with("/extend") {
        req = req.json(&serde_json::json!({"seconds": 1}));
    } else if url.ends_with("/studio/login") {
        req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={ADMIN}"));
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    if s == 401 {
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_route_needs_a_valid_token() {
    for proxy_require_token in [false, true] {
        let (mut wp, id) = started(proxy_require_token).await;
        for (method, pattern, access) in &routes() {
            // DELETE last would stop the container the proxy routes use: use
            // another one.
            let target = if *method == "DELETE" {
                wp.client
                    .clone()
                    .with_token(API)
                    .claim(&Default::default())
                    .await
                    .unwrap()
                    .id
            } else {
                id.clone()
            };
            let pool = pool_for(&wp, method, pattern).await;
            let u = url(&wp.base, pattern, &target, pool);
            let protected = match access {
                Access::Open => false,
                Access::Proxy => proxy_require_token,
                Access::Api | Access::Admin => true,
            };
            let what = format!("{method} {pattern} (proxy token required: {proxy_require_token})");
            if protected {
                assert_eq!(
                    status(&wp, method, &u, None).await,
                    401,
                    "{what} without a token"
                );
                assert_eq!(
                    status(&wp, method, &u, Some("wrong-token-0123456789abcdef")).await,
                    401,
                    "{what} with a wrong token"
                );
                assert_eq!(
                    status(&wp, method, &u, Some(&API[..API.len() - 1])).await,
                    401,
                    "{what} with a prefix of the token"
                );
            }
            let good = if *access == Access::Admin { ADMIN } else { API };
            let s = status(&wp, method, &u, Some(good)).await;
            // An in-process warmpool has no config file to read again.
            let reload = *pattern == "/v1/reload" && s == 409;
            assert!(
                (200..300).contains(&s) || reload,
                "{what} with the right token: {s}"
            );
            if *access != Access::Admin {
                let s = status(&wp, method, &u, Some(ADMIN)).await;
                assert!(
                    s != 401 && s != 403,
                    "{what}: the admin token opens the API too: {s}"
                );
            }
        }
        wp.shutdown().await;
    }
}

#[tokio::test]
async fn without_tokens_warmpool_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env("WARMPOOL_DATA_DIR", dir.path())
        .env_remove("WARMPOOL_API_TOKEN")
        .env_remove("WARMPOOL_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("refusing to listen on 0.0.0.0:0 without tokens"));
    assert!(
        !dir.path().join("warmpool.db").exists(),
        "nothing may happen before the refusal"
    );

    // --insecure-no-auth (a bare flag) lets it start.
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(
        &[
            ("WARMPOOL_LISTEN", "0.0.0.0:0"),
            ("WARMPOOL_INSECURE_NO_AUTH", "true"),
            ("POOL_TARGET_INSTANCES", "0"),
        ],
        Some(sim),
    )
    .await;
    wp.shutdown().await;
    let ok = std::process::Command::new(common::bin())
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure-no-auth",
            "--check-config",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\ninsecure_no_auth = true\n"));
}

#[test]
fn tokens_never_show_in_check_config() {
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--check-config"])
        .env("WARMPOOL_API_TOKEN", API)
        .env("WARMPOOL_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!text.contains(API) && !text.contains(ADMIN), "{text}");
    assert!(
        text.contains("# api_token = <1 token(s), redacted>"),
        "{text}"
    );
}

/// What the proxy (and the admin pass-through) forwards cannot make a container
/// warmpool's operator: warmpool's own tokens and the studio's session cookie are
/// removed on the way, while the app's own `Authorization` and cookies pass through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_never_forwards_warmpool_credentials() {
    // An upstream that answers with the headers it was sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let echo = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        headers
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
            .collect::<String>()
    });
    tokio::spawn(async move { axum::serve(listener, echo).await });
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, addr));
    let mut wp = InProc::start_with(
        &[
            ("POOL_TARGET_INSTANCES", "1"),
            ("WARMPOOL_API_TOKEN", API),
            ("WARMPOOL_ADMIN_TOKEN", ADMIN),
        ],
        Some(sim),
    )
    .await;
    let client = warmpool_client::Client::new(&wp.base).with_token(API);
    common::wait_ready(&client, "default", 1, Duration::from_secs(10)).await;
    let id = client.claim(&Default::default()).await.unwrap().id;
    let seen = |auth: &'static str, cookie: &'static str| {
        let url = format!("{}/container/{id}/x", wp.base);
        let http = wp.http.clone();
        async move {
            http.get(url)
                .header("authorization", auth)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    for token in [API, ADMIN] {
        let got = seen(
            if token == API {
                "Bearer api-token-0123456789abcdef"
            } else {
                "Bearer admin-token-0123456789abcdef"
            },
            "a=1; warmpool_session=the-session-id; b=2",
        )
        .await;
        assert!(!got.contains(token), "{got}");
        assert!(!got.contains("authorization"), "{got}");
        assert!(!got.contains("the-session-id"), "{got}");
        assert!(got.contains("cookie: a=1; b=2\n"), "{got}");
    }
    // The admin pass-through needs the admin token, and does not pass it on.
    let got = wp
        .http
        .post(format!("{}/v1/containers/{id}/admin/x", wp.base))
        .bearer_auth(ADMIN)
        .header("cookie", "warmpool_session=the-session-id")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(got.contains("host: "), "{got}");
    assert!(
        !got.contains(ADMIN) && !got.contains("authorization"),
        "{got}"
    );
    assert!(!got.contains("the-session-id"), "{got}");
    let got = seen("Bearer the-app-s-own-token", "warmpool_session=x").await;
    assert!(
        got.contains("authorization: Bearer the-app-s-own-token\n"),
        "{got}"
    );
    assert!(!got.contains("cookie"), "{got}");
    wp.shutdown().await;
}
