//! Extend and keepalive, with the process runtime and the real sample app: an
//! extension moves the expiry (in the store: a restart keeps it) and the
//! container ends at the new one, not the old; it is bounded by the claim plus
//! the pool's maximum lifetime; keepalives hold off the idle timeout; every
//! refusal is a problem document and changes nothing; tokens; the CLI.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use common::{poll, wait_ready, InProc, Proc};
use warmpool_client::{ClaimRequest, Client, ContainerView};

const T: Duration = Duration::from_secs(30);

fn time(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

fn expiry(c: &ContainerView) -> SystemTime {
    time(c.expires_at.as_deref().expect("an expiry"))
}

/// Claims from the default pool with a lifetime and an idle timeout.
async fn claim(client: &Client, lifetime: u64, idle: Option<u64>) -> String {
    client
        .claim(&ClaimRequest {
            max_lifetime_in_seconds: Some(lifetime),
            idle_timeout_in_seconds: idle,
            ..Default::default()
        })
        .await
        .unwrap()
        .id
}

/// The container's events, as `(from, to, reason)`.
async fn events(client: &Client, id: &str) -> Vec<(Option<String>, String, Option<String>)> {
    client
        .events(0, 1000)
        .await
        .unwrap()
        .events
        .into_iter()
        .filter(|e| e.container_id == id)
        .map(|e| (e.from, e.to, e.reason))
        .collect()
}

/// Waits until the container has ended (`stopped`), and answers its view.
async fn ended(client: &Client, id: &str, within: Duration) -> ContainerView {
    poll(within, &format!("container {id} to end"), || async {
        let c = client.container(id).await.unwrap();
        (c.state == "stopped").then_some(c)
    })
    .await
}

/// A POST with a raw body; answers the status and, for an error, its problem
/// document (checked to be one).
async fn post(
    wp: &InProc,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut req = wp
        .http
        .post(format!("{}{path}", wp.base))
        .body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    let v: serde_json::Value = r.json().await.unwrap();
    if status >= 400 {
        assert_eq!(ct, "application/problem+json", "{path} {body}: {v}");
        assert!(
            v["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("https://warmpool.dev/problems/"))
                && v["title"].is_string()
                && v["status"] == status
                && v["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{path} {body}: not a problem document: {v}"
        );
    }
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_moves_the_expiry_and_the_container_ends_at_the_new_one() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let id = claim(&wp.client, 2, None).await;
    let old = expiry(&wp.client.container(&id).await.unwrap());

    let answer = wp.client.extend(&id, 3).await.unwrap();
    assert_eq!(answer.state, "allocated");
    assert_eq!(expiry(&answer), old + Duration::from_secs(3));
    let new = expiry(&wp.client.container(&id).await.unwrap());
    assert_eq!(
        new,
        old + Duration::from_secs(3),
        "GET shows the new expiry"
    );
    let extended = (
        Some("allocated".to_owned()),
        "allocated".to_owned(),
        Some("extended by 3s".to_owned()),
    );
    assert!(
        events(&wp.client, &id).await.contains(&extended),
        "an extension is an event"
    );

    // Past the old expiry (and a pass's worth more), it is still claimed and
    // answers through the proxy.
    let past_old = old + Duration::from_millis(1500);
    while SystemTime::now() < past_old {
        let c = wp.client.container(&id).await.unwrap();
        assert_eq!(c.state, "allocated", "ended before its new expiry: {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await; // pacing, not waiting
    }
    let r = wp.proxied(&id, "/").await;
    assert!(r.status().is_success(), "{}", r.status());

    // It ends at the new expiry.
    let c = ended(&wp.client, &id, T).await;
    assert_eq!(c.stop_reason.as_deref(), Some("expired"), "{c:?}");
    let stopped = time(c.stopped_at.as_deref().unwrap());
    assert!(stopped >= new, "stopped at {stopped:?}, before {new:?}");
    assert_eq!(wp.proxied(&id, "/").await.status(), 410);
    wp.shutdown().await;
}

#[tokio::test]
async fn an_extension_past_the_maximum_lifetime_is_refused_naming_seconds() {
    let mut wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", "1"),
        ("WARMPOOL_MAX_LIFETIME_SECONDS", "40"),
    ])
    .await;
    wp.wait_ready("default", 1, T).await;
    let id = claim(&wp.client, 30, None).await;
    let before = wp.client.container(&id).await.unwrap();
    let claimed = time(before.allocated_at.as_deref().unwrap());
    assert_eq!(expiry(&before), claimed + Duration::from_secs(30));
    let events_before = events(&wp.client, &id).await;

    let path = format!("/v1/containers/{id}/extend");
    let (status, p) = post(&wp, &path, Some("application/json"), r#"{"seconds": 11}"#).await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(p["field"], "seconds", "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("from 1 to 10"), "{detail}");
    assert!(detail.contains("maximum lifetime of 40s"), "{detail}");
    assert_eq!(wp.client.container(&id).await.unwrap(), before);
    assert_eq!(events(&wp.client, &id).await, events_before);

    // Up to the bound exactly; then no further.
    let at_bound = wp.client.extend(&id, 10).await.unwrap();
    assert_eq!(expiry(&at_bound), claimed + Duration::from_secs(40));
    let (status, p) = post(&wp, &path, Some("application/json"), r#"{"seconds": 1}"#).await;
    assert_eq!((status, p["field"].as_str()), (422, Some("seconds")), "{p}");
    assert_eq!(wp.client.container(&id).await.unwrap(), at_bound);
    wp.shutdown().await;
}

/// A bad request: path, content type, body, status, field.
type Case<'a> = (&'a str, Option<&'a str>, &'a str, u16, Option<&'a str>);

#[tokio::test]
async fn bad_bodies_get_problem_documents_and_change_nothing() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let id = claim(&wp.client, 600, None).await;
    let before = wp.client.container(&id).await.unwrap();
    let events_before = events(&wp.client, &id).await;
    let (extend, keepalive) = (
        format!("/v1/containers/{id}/extend"),
        format!("/v1/containers/{id}/keepalive"),
    );
    let (extend, keepalive) = (extend.as_str(), keepalive.as_str());
    let json = Some("application/json");
    let cases: &[Case] = &[
        (extend, json, "", 422, Some("seconds")),
        (extend, json, "{}", 422, Some("seconds")),
        (extend, json, "{", 400, None),
        (extend, json, "not json", 400, None),
        (extend, json, "[]", 422, Some("")),
        (extend, json, "5", 422, Some("")),
        (extend, json, r#"{"seconds": 0}"#, 422, Some("seconds")),
        (extend, json, r#"{"seconds": -1}"#, 422, Some("seconds")),
        (extend, json, r#"{"seconds": 1.5}"#, 422, Some("seconds")),
        (extend, json, r#"{"seconds": "5"}"#, 422, Some("seconds")),
        (extend, json, r#"{"seconds": null}"#, 422, Some("seconds")),
        (
            extend,
            json,
            r#"{"seconds": 99999999999999999999999}"#,
            422,
            Some("seconds"),
        ),
        // The largest whole number: past any bound, refused without overflow.
        (
            extend,
            json,
            r#"{"seconds": 18446744073709551615}"#,
            422,
            Some("seconds"),
        ),
        (extend, json, r#"{"seconds": 1e400}"#, 400, None),
        (extend, json, r#"{"seconds": 5, "by": 1}"#, 422, Some("by")),
        (extend, Some("text/plain"), r#"{"seconds": 5}"#, 415, None),
        (keepalive, json, "{", 400, None),
        (keepalive, json, r#"{"seconds": 5}"#, 422, Some("seconds")),
        (keepalive, json, "[]", 422, Some("")),
        (keepalive, Some("text/plain"), "{}", 415, None),
    ];
    for (path, ct, body, status, field) in cases {
        let (got, p) = post(&wp, path, *ct, body).await;
        assert_eq!(got, *status, "{path} {body}: {p}");
        assert_eq!(p["field"].as_str(), *field, "{path} {body}: {p}");
    }
    assert_eq!(wp.client.container(&id).await.unwrap(), before);
    assert_eq!(events(&wp.client, &id).await, events_before);

    // The body is judged before the container: past the schema's maximum (ten
    // years), a released container's extension is a 422, not a 410
    // (schemathesis found the 410).
    wp.client.release(&id).await.unwrap();
    for body in [
        r#"{"seconds": 315360001}"#,
        r#"{"seconds": 9223372036854775808}"#,
    ] {
        let (got, p) = post(&wp, extend, json, body).await;
        assert_eq!(
            (got, p["field"].as_str()),
            (422, Some("seconds")),
            "{body}: {p}"
        );
    }
    let id = claim(&wp.client, 600, None).await;
    let keepalive = format!("/v1/containers/{id}/keepalive");
    let keepalive = keepalive.as_str();

    // An empty body, `{}` and `null` are a keepalive.
    for body in ["", "{}", "null"] {
        let (status, v) = post(&wp, keepalive, json, body).await;
        assert_eq!(status, 200, "{body:?}: {v}");
        assert_eq!(v["id"], id.as_str());
    }
    wp.shutdown().await;
}

#[tokio::test]
async fn unknown_unclaimed_and_ended_containers_are_refused() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "2")]).await;
    wp.wait_ready("default", 2, T).await;
    let ended_id = claim(&wp.client, 600, None).await;
    wp.client.release(&ended_id).await.unwrap();
    let ready = common::first_ready(&wp.client).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let json = Some("application/json");
    // (id, status, type)
    let cases = [
        (unknown.as_str(), 404, "not-found"),
        ("not-a-uuid", 404, "not-found"),
        (ready.id.as_str(), 409, "container-not-claimed"),
        (ended_id.as_str(), 410, "container-gone"),
    ];
    for (id, status, kind) in cases {
        for (op, body) in [("extend", r#"{"seconds": 5}"#), ("keepalive", "")] {
            let (got, p) = post(&wp, &format!("/v1/containers/{id}/{op}"), json, body).await;
            assert_eq!(got, status, "{op} {id}: {p}");
            assert_eq!(
                p["type"],
                format!("https://warmpool.dev/problems/{kind}"),
                "{op} {id}: {p}"
            );
        }
    }
    let gone = wp.client.extend(&ended_id, 5).await.unwrap_err();
    assert_eq!(gone.status(), Some(410));
    // The ready one was not touched: still ready, with no expiry.
    let still = wp.client.container(&ready.id).await.unwrap();
    assert_eq!((still.state.as_str(), still.expires_at), ("ready", None));
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_hold_off_the_idle_timeout_and_it_ends_once_they_stop() {
    let idle = Duration::from_secs(2);
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let id = claim(&wp.client, 600, Some(idle.as_secs())).await;
    let claimed = time(
        wp.client
            .container(&id)
            .await
            .unwrap()
            .allocated_at
            .as_deref()
            .unwrap(),
    );

    // Keepalives every 0.5 s, without a single proxied request, until well past
    // the idle timeout counted from the claim.
    let mut last;
    loop {
        let c = wp.client.keepalive(&id).await.unwrap();
        last = SystemTime::now();
        assert_eq!(c.state, "allocated", "ended while kept alive: {c:?}");
        if last > claimed + idle * 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await; // pacing the keepalives
    }
    assert_eq!(wp.client.container(&id).await.unwrap().state, "allocated");

    // Once they stop, it ends as idle: not before the timeout from the last one,
    // and within it plus slack.
    let c = ended(&wp.client, &id, idle + Duration::from_secs(8)).await;
    assert_eq!(c.stop_reason.as_deref(), Some("idle"), "{c:?}");
    let stopped = time(c.stopped_at.as_deref().unwrap());
    assert!(
        stopped + Duration::from_millis(100) >= last + idle,
        "stopped {:?} after the last keepalive",
        stopped.duration_since(last).unwrap_or_default()
    );
    // A keepalive is no event: claimed, stopping, stopped.
    let tos: Vec<String> = events(&wp.client, &id)
        .await
        .into_iter()
        .map(|(_, to, _)| to)
        .collect();
    assert_eq!(
        tos,
        ["starting", "ready", "allocated", "stopping", "stopped"],
        "{tos:?}"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_extended_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("POOL_TARGET_INSTANCES", "1")];
    let mut first = Proc::spawn(dir.path(), &settings);
    wait_ready(&first.client, "default", 1, T).await;
    let id = claim(&first.client, 60, None).await;
    let extended = expiry(&first.client.extend(&id, 120).await.unwrap());
    first.kill9();

    let second = Proc::spawn(dir.path(), &settings);
    let c = second.client.container(&id).await.unwrap();
    assert_eq!((c.state.as_str(), expiry(&c)), ("allocated", extended));
    // Adopted with the new expiry: it still routes, and extends from there.
    let r = reqwest::get(second.client.proxy_url(&id, "/"))
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let again = second.client.extend(&id, 1).await.unwrap();
    assert_eq!(expiry(&again), extended + Duration::from_secs(1));
    drop(second);
}

const API: &str = "api-token-0123456789abcdef";

fn cli(base: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(common::bin());
    cmd.args(args)
        .env("WARMPOOL_URL", base)
        .env_remove("WARMPOOL_API_TOKEN");
    if let Some(t) = token {
        cmd.env("WARMPOOL_API_TOKEN", t);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_and_the_cli_extends_and_keeps_alive() {
    let mut wp =
        InProc::start(&[("POOL_TARGET_INSTANCES", "1"), ("WARMPOOL_API_TOKEN", API)]).await;
    let client = wp.client.clone().with_token(API);
    wait_ready(&client, "default", 1, T).await;
    let id = claim(&client, 60, None).await;
    let before = expiry(&client.container(&id).await.unwrap());

    for (op, body) in [("extend", r#"{"seconds": 5}"#), ("keepalive", "")] {
        let (status, p) = post(
            &wp,
            &format!("/v1/containers/{id}/{op}"),
            Some("application/json"),
            body,
        )
        .await;
        assert_eq!(status, 401, "{op} without a token: {p}");
    }
    assert_eq!(expiry(&client.container(&id).await.unwrap()), before);

    let (base, i) = (wp.base.clone(), id.clone());
    let (extend, keepalive, refused, bad) = tokio::task::spawn_blocking(move || {
        (
            cli(&base, Some(API), &["extend", &i, "5"]),
            cli(&base, Some(API), &["keepalive", &i]),
            cli(&base, None, &["extend", &i, "5"]),
            cli(&base, Some(API), &["extend", &i, "0"]),
        )
    })
    .await
    .unwrap();
    assert!(
        extend.status.success(),
        "{}",
        String::from_utf8_lossy(&extend.stderr)
    );
    let after = client.container(&id).await.unwrap();
    assert_eq!(expiry(&after), before + Duration::from_secs(5));
    assert_eq!(
        String::from_utf8_lossy(&extend.stdout).trim(),
        format!("{id} expires {}", after.expires_at.as_deref().unwrap())
    );
    assert!(
        keepalive.status.success(),
        "{}",
        String::from_utf8_lossy(&keepalive.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&keepalive.stdout).trim(),
        format!("{id} allocated")
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("422"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert_eq!(
        expiry(&client.container(&id).await.unwrap()),
        before + Duration::from_secs(5),
        "refused commands change nothing"
    );
    wp.shutdown().await;
}
