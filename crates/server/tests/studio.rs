//! The studio's server side against a real warmpool: the read-only SQL endpoint
//! (reads work within limits; writes, attaches, pragma writes and second
//! statements are refused and change nothing; slow statements are cut off), table
//! browsing, the history for the charts, and the login cookie.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::InProc;
use serde_json::{json, Value};
use warmpool_runtime::{SimMode, SimRuntime};

const API: &str = "api-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

async fn started(tokens: bool) -> InProc {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut settings = vec![("POOL_TARGET_INSTANCES", "3")];
    if tokens {
        settings.push(("WARMPOOL_API_TOKEN", API));
        settings.push(("WARMPOOL_ADMIN_TOKEN", ADMIN));
    }
    let wp = InProc::start_with(&settings, Some(sim)).await;
    let client = wp.client.clone().with_token(ADMIN);
    common::wait_ready(&client, "default", 3, Duration::from_secs(10)).await;
    wp
}

/// `POST /v1/sql` as admin: status and JSON body.
async fn sql(wp: &InProc, statement: &str) -> (u16, Value) {
    let r = wp
        .http
        .post(format!("{}/v1/sql", wp.base))
        .bearer_auth(ADMIN)
        .json(&json!({ "sql": statement }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status != 200 {
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{statement}"
        );
    }
    (status, r.json().await.unwrap())
}

/// Everything in the store, to compare before and after.
async fn dump(wp: &InProc) -> Value {
    let mut out = serde_json::Map::new();
    for (name, q) in [
        (
            "schema",
            "SELECT type, name, sql FROM sqlite_schema ORDER BY name",
        ),
        ("containers", "SELECT * FROM containers ORDER BY id"),
        ("events", "SELECT * FROM events ORDER BY seq"),
        ("meta", "SELECT * FROM meta ORDER BY key"),
        ("version", "PRAGMA user_version"),
    ] {
        let (status, body) = sql(wp, q).await;
        assert_eq!(status, 200, "{q}: {body}");
        out.insert(name.into(), body["rows"].clone());
    }
    Value::Object(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_works_and_is_limited() {
    let mut wp = started(true).await;
    let (status, body) = sql(&wp, "SELECT id, state, pool FROM containers ORDER BY id").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["columns"], json!(["id", "state", "pool"]));
    assert_eq!(body["rows"].as_array().unwrap().len(), 3);
    assert_eq!(body["truncated"], false);
    assert!(body["elapsedMs"].as_f64().unwrap() >= 0.0);

    let (status, body) = sql(
        &wp,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 10000) \
         SELECT i, i * 0.5, 'row ' || i, NULL, x'cafe' FROM n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 500, "the row limit");
    assert_eq!(body["truncated"], true);
    assert_eq!(rows[1], json!([2, 1.0, "row 2", null, "x'cafe'"]));

    // Schema pragmas read fine.
    let (status, body) = sql(&wp, "PRAGMA table_info(containers)").await;
    assert_eq!(status, 200, "{body}");
    // Invalid SQL is a 422 with SQLite's message.
    let (status, body) = sql(&wp, "SELEC 1").await;
    assert_eq!(status, 422);
    assert_eq!(body["type"], "https://warmpool.dev/problems/invalid-sql");
    assert!(
        body["detail"].as_str().unwrap().contains("syntax error"),
        "{body}"
    );
    // A body without sql, or with something else, is a 422 naming the field.
    let r = wp
        .http
        .post(format!("{}/v1/sql", wp.base))
        .bearer_auth(ADMIN)
        .json(&json!({ "query": "SELECT 1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "query");
    // The API token is not enough.
    let r = wp
        .http
        .post(format!("{}/v1/sql", wp.base))
        .bearer_auth(API)
        .json(&json!({ "sql": "SELECT 1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_and_change_nothing() {
    let mut wp = started(true).await;
    let before = dump(&wp).await;
    for statement in [
        "INSERT INTO meta (key, value) VALUES ('x', 'y')",
        "UPDATE containers SET state = 'stopped'",
        "DELETE FROM containers",
        "DELETE FROM events",
        "DROP TABLE events",
        "CREATE TABLE evil (x)",
        "CREATE TEMP TABLE evil (x)",
        "CREATE INDEX evil ON containers (pool)",
        "ALTER TABLE meta ADD COLUMN evil",
        "ATTACH DATABASE ':memory:' AS evil",
        "ATTACH DATABASE '/tmp/studio-evil.db' AS evil",
        "PRAGMA writable_schema=1",
        "PRAGMA user_version=5",
        "PRAGMA query_only=0",
        "PRAGMA journal_mode=DELETE",
        "SELECT 1; DELETE FROM containers",
        "SELECT 1;DROP TABLE meta;",
        "WITH c AS (SELECT id FROM containers) DELETE FROM containers WHERE id IN c",
        "INSERT INTO meta SELECT 'a', 'b'",
        "BEGIN IMMEDIATE",
        "VACUUM",
        "VACUUM INTO '/tmp/studio-evil-copy.db'",
    ] {
        let (status, body) = sql(&wp, statement).await;
        assert_eq!(status, 403, "{statement}: {body}");
        assert_eq!(body["type"], "https://warmpool.dev/problems/read-only");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("read-only") || detail.contains("one statement"),
            "{statement}: {detail}"
        );
    }
    assert!(!std::path::Path::new("/tmp/studio-evil-copy.db").exists());
    assert_eq!(dump(&wp).await, before, "the store changed");
    // And warmpool itself still writes: a claim goes through.
    wp.client
        .clone()
        .with_token(API)
        .claim(&Default::default())
        .await
        .unwrap();
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_is_cut_off() {
    let mut wp = started(true).await;
    let started = Instant::now();
    let (status, body) = sql(
        &wp,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) \
         SELECT count(*) FROM n",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["type"], "https://warmpool.dev/problems/query-timeout");
    assert!(
        body["detail"].as_str().unwrap().contains("time limit"),
        "{body}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    // The server stays responsive meanwhile and after.
    wp.client.clone().with_token(API).pools().await.unwrap();
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_listed_and_paged() {
    let mut wp = started(true).await;
    let get = |path: String| {
        let (http, base) = (wp.http.clone(), wp.base.clone());
        async move {
            let r = http
                .get(format!("{base}{path}"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = get("/v1/tables".into()).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "containers",
            "events",
            "meta",
            "pool_events",
            "pool_revisions",
            "pool_sizes",
            "pools"
        ]
    );
    // The instance id, and the hash of the default pool's declaration.
    let meta_rows = body["tables"][2]["rows"].clone();
    assert_eq!(meta_rows, 2);
    let containers = &body["tables"][0];
    assert_eq!(containers["rows"], 3);
    assert_eq!(containers["columns"][0]["name"], "id");
    assert_eq!(containers["columns"][0]["primaryKey"], true);
    assert_eq!(containers["columns"][0]["type"], "TEXT");

    let (status, page) = get("/v1/tables/containers/rows?limit=2".into()).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["rows"].as_array().unwrap().len(), 2);
    assert_eq!(page["truncated"], true);
    assert_eq!(page["columns"][0], "id");
    let (_, rest) = get("/v1/tables/containers/rows?offset=2&limit=2".into()).await;
    assert_eq!(rest["rows"].as_array().unwrap().len(), 1);
    assert_eq!(rest["truncated"], false);
    assert_ne!(rest["rows"][0], page["rows"][0]);

    for bad in [
        "nope",
        "sqlite_schema",
        "sqlite_sequence",
        "meta%3B%20DROP%20TABLE%20meta",
        "%22meta%22",
        "Meta",
    ] {
        let (status, body) = get(format!("/v1/tables/{bad}/rows")).await;
        assert_eq!(status, 404, "{bad}: {body}");
        assert_eq!(body["type"], "https://warmpool.dev/problems/not-found");
    }
    // A path that is not UTF-8 is still a problem document.
    let (status, body) = get("/v1/tables/%FF/rows".into()).await;
    assert_eq!(status, 404, "{body}");
    for bad in ["limit=0", "limit=501", "offset=-1", "sort=id"] {
        let (status, _) = get(format!("/v1/tables/meta/rows?{bad}")).await;
        assert_eq!(status, 422, "{bad}");
    }
    let (_, meta) = get("/v1/tables".into()).await;
    assert_eq!(meta["tables"][2]["rows"], meta_rows, "meta is untouched");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_samples_pools_and_claim_latency() {
    let mut wp = started(true).await;
    let client = wp.client.clone().with_token(API);
    for _ in 0..3 {
        client.claim(&Default::default()).await.unwrap();
    }
    let h = client.history().await.unwrap();
    assert_eq!(h.interval_seconds, 10);
    assert!(!h.samples.is_empty());
    let now = h.samples.last().unwrap();
    assert_eq!(now.claims, 3, "{now:?}");
    assert!(now.claim_p50_ms.unwrap() <= now.claim_p99_ms.unwrap());
    let p = now
        .pools
        .iter()
        .find(|p| p.pool == "default" && p.location == "default")
        .unwrap();
    assert_eq!(p.allocated, 3);
    // The first sample, taken at start, is the baseline.
    assert!(h.samples[0].at <= now.at);
    wp.shutdown().await;
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_a_session_cookie_that_opens_the_api_until_logout() {
    let mut wp = started(true).await;
    let http = no_redirects();
    let base = wp.base.clone();

    // No session: the login form, with a labelled token field.
    let r = http.get(format!("{base}/studio")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = r.text().await.unwrap();
    assert!(html.contains("<label for=\"token\""), "{html}");
    assert!(html.contains("action=\"/studio/login\""));
    assert!(!html.contains("studio.js"), "no console without a session");

    let login = |token: &str| {
        http.post(format!("{base}/studio/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
    };
    // An oversized form is a problem document too.
    let r = http
        .post(format!("{base}/studio/login"))
        .body(vec![b'a'; 10_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    // A wrong token (or the API token): the form again, 401, no cookie.
    for wrong in ["wrong-token-0123456789abcdef", API, ""] {
        let r = login(wrong).await.unwrap();
        assert_eq!(r.status(), 401, "{wrong}");
        assert!(r.headers().get("set-cookie").is_none());
        assert!(r.text().await.unwrap().contains("not an admin token"));
    }

    // The admin token: a cookie holding a session id, not the token.
    let r = login(ADMIN).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/studio");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("warmpool_session="), "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains(ADMIN));
    let cookie = set.split(';').next().unwrap().to_owned();
    assert!(cookie.len() > "warmpool_session=".len() + 32);
    // A request carrying the session cookie (and no token).
    let with_cookie = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .header("cookie", &cookie)
    };

    // The cookie opens the page and the API, admin routes included.
    let r = with_cookie(reqwest::Method::GET, "/studio")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("/studio/studio.js"));
    for path in ["/v1/pools", "/v1/tables", "/v1/stats/history", "/metrics"] {
        let r = with_cookie(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = with_cookie(reqwest::Method::POST, "/v1/sql")
        .json(&json!({"sql": "SELECT count(*) FROM containers"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A change authenticated by the cookie needs a header a cross-site form cannot
    // send.
    let id = common::first_ready(&wp.client.clone().with_token(API))
        .await
        .id;
    let r = with_cookie(reqwest::Method::DELETE, &format!("/v1/containers/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["type"],
        "https://warmpool.dev/problems/cross-site-request"
    );
    let r = with_cookie(reqwest::Method::POST, "/container")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a simple cross-site POST is refused");
    let r = with_cookie(reqwest::Method::DELETE, &format!("/v1/containers/{id}"))
        .header("x-requested-with", "warmpool-studio")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A made-up session opens nothing.
    let r = http
        .get(format!("{base}/v1/pools"))
        .header(
            "cookie",
            "warmpool_session=0123456789abcdef0123456789abcdef",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Logout ends the session and clears the cookie.
    let r = with_cookie(reqwest::Method::POST, "/studio/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("warmpool_session=;") && cleared.contains("Max-Age=0"));
    let r = with_cookie(reqwest::Method::GET, "/v1/pools")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the old cookie no longer works");
    let r = with_cookie(reqwest::Method::GET, "/studio")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("action=\"/studio/login\""));
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_studio_is_open_and_its_files_are_served() {
    let mut wp = started(false).await;
    let r = wp
        .http
        .get(format!("{}/studio", wp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("/studio/studio.js") && html.contains("/studio/studio.css"));
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("src=\"//"),
        "the page must work offline"
    );
    for (path, ct) in [
        ("/studio/studio.js", "text/javascript; charset=utf-8"),
        ("/studio/studio.css", "text/css; charset=utf-8"),
    ] {
        let r = wp
            .http
            .get(format!("{}{path}", wp.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], ct);
        // The SVG namespace is a name, not a load.
        let body = r
            .text()
            .await
            .unwrap()
            .replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} is offline"
        );
    }
    let (status, _) = sql(&wp, "SELECT 1").await;
    assert_eq!(status, 200);
    wp.shutdown().await;
}
