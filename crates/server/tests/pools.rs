//! Several named pools from a config file, end to end with real sample-app
//! processes: each pool runs its own command with its own env, health path, start
//! timeout, targets per location and lifetime bound, and claims choose their pool.

mod common;

use std::time::Duration;

use common::{poll, pool_ready, InProc};
use warmpool_client::{ClaimRequest, ClientError};

const T: Duration = Duration::from_secs(30);

fn file() -> String {
    let bin = common::bin();
    format!(
        r#"
        [pools.greeter]
        command = ["sh", "-c", "printf '%s' \"$GREETING\" > greeting.txt && exec {bin} sample-app"]
        targets = {{ weur = 2 }}
        batch_spacing = 0
        max_lifetime = 120
        app_env = {{ GREETING = "hello from greeter", TEXT_FILE = "greeting.txt" }}

        # Its health path answers 404, so none of its containers ever becomes ready.
        [pools.broken]
        command = ["{bin}", "sample-app"]
        health_path = "/admin/never"
        targets = {{ wnam = 1 }}
        start_timeout = 0.5
        batch_spacing = 1
        "#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_pools_run_their_own_settings_and_claims_choose_them() {
    let mut wp = InProc::start_with_file(&[("POOL_TARGET_INSTANCES", "1")], &file(), None).await;
    let c = wp.client.clone();
    poll(T, "the default and greeter pools to fill", || {
        let c = c.clone();
        async move {
            (pool_ready(&c, "default", "default").await == 1
                && pool_ready(&c, "greeter", "weur").await == 2)
                .then_some(())
        }
    })
    .await;

    // Each (pool, location) is listed with its own target; the broken pool says why
    // it stays empty.
    let broken = poll(T, "the broken pool's start error", || {
        let c = c.clone();
        async move {
            let pools = c.pools().await.ok()?.pools;
            let target = |pool: &str, loc: &str| {
                pools
                    .iter()
                    .find(|p| p.pool == pool && p.location == loc)
                    .map(|p| p.target)
            };
            assert_eq!(target("default", "default"), Some(1));
            assert_eq!(target("greeter", "weur"), Some(2));
            assert_eq!(target("broken", "wnam"), Some(1));
            assert_eq!(target("greeter", "default"), None, "{pools:?}");
            pools
                .into_iter()
                .find(|p| p.pool == "broken" && p.last_error.is_some())
        }
    })
    .await;
    assert_eq!(broken.ready, 0);
    assert!(
        broken
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("did not become ready")),
        "{broken:?}"
    );

    // A claim of the greeter pool gets one of its containers: its own command and
    // env wrote the text the proxy now serves; its lifetime defaults to the pool's.
    let before = std::time::SystemTime::now();
    let g = c
        .claim(&ClaimRequest {
            pool: Some("greeter".into()),
            location: Some("weur".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (g.pool.as_str(), g.location.as_str(), g.warm),
        ("greeter", "weur", true)
    );
    let body = wp.proxied_text(&g.id, "/").await;
    assert_eq!(body, "hello from greeter");
    let view = c.container(&g.id).await.unwrap();
    assert_eq!(view.pool, "greeter");
    let expires = humantime::parse_rfc3339(&g.expires_at).unwrap();
    let lifetime = expires.duration_since(before).unwrap();
    assert!(
        (Duration::from_secs(118)..=Duration::from_secs(121)).contains(&lifetime),
        "{lifetime:?}"
    );

    // No pool named: the default pool, which runs the plain sample app.
    let d = c.claim(&ClaimRequest::default()).await.unwrap();
    assert_eq!((d.pool.as_str(), d.warm), ("default", true));
    let body = wp.proxied_text(&d.id, "/").await;
    assert_eq!(body, "No Content");

    // A body of JSON null is a claim with no fields: the default pool.
    let r = wp
        .http
        .post(format!("{}/container", wp.base))
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let n: warmpool_client::ClaimResponse = r.json().await.unwrap();
    assert_eq!(n.pool, "default");

    // Each pool bounds its own claims; unknown pools are named in the error.
    let too_long = ClaimRequest {
        pool: Some("greeter".into()),
        location: Some("weur".into()),
        max_lifetime_in_seconds: Some(121),
        ..Default::default()
    };
    let e = c.claim(&too_long).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Api { problem: p } if p.status == 422 && p.field.as_deref() == Some("maxLifetimeInSeconds")),
        "{e:?}"
    );
    let e = c
        .claim(&ClaimRequest {
            pool: Some("nope".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Api { problem: p } if p.status == 404 && p.kind.ends_with("/unknown-pool") && p.field.as_deref() == Some("pool") && p.detail.contains("broken, greeter")),
        "{e:?}"
    );
    // A pool whose containers never become ready fails its on-demand claims cleanly.
    let e = c
        .claim(&ClaimRequest {
            pool: Some("broken".into()),
            location: Some("wnam".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Api { problem: p } if p.status == 503),
        "{e:?}"
    );

    // The claimed greeter container is replaced in its own pool and location.
    let c2 = c.clone();
    poll(T, "the greeter pool to refill", || {
        let c = c2.clone();
        async move { (pool_ready(&c, "greeter", "weur").await == 2).then_some(()) }
    })
    .await;
    wp.shutdown().await;
}
