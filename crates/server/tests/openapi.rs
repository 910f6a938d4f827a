//! The OpenAPI document describes every route the router serves (read from the
//! router's source), with its methods; the checked-in `docs/openapi.json` is what
//! the code generates; and the document and the offline reference are served.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use warmpool_runtime::{SimMode, SimRuntime};
use warmpool_server::auth::ROUTES;

const ALL_METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

fn doc() -> serde_json::Value {
    serde_json::from_str(&warmpool_server::openapi::json()).unwrap()
}

/// OpenAPI spells `{*path}` as `{path}`.
fn openapi_path(routed: &str) -> String {
    routed.replace("{*", "{")
}

/// Every path the router is given, read from `.route("...")` in its source.
fn routed_paths() -> BTreeSet<String> {
    let src = include_str!("../src/server.rs");
    src.split(".route(")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start();
            let rest = rest.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
}

#[test]
fn every_routed_path_has_an_access_class_and_a_description() {
    let routed = routed_paths();
    assert!(routed.len() >= 10, "{routed:?}");
    let in_table: BTreeSet<String> = ROUTES.iter().map(|(_, p, _)| p.to_string()).collect();
    assert_eq!(routed, in_table, "auth::ROUTES and the router disagree");

    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    let expected: BTreeSet<String> = routed.iter().map(|p| openapi_path(p)).collect();
    assert_eq!(documented, expected, "the document and the router disagree");
    for (method, path, _) in ROUTES {
        let item = &paths[&openapi_path(path)];
        let methods: Vec<&str> = if *method == "*" {
            ALL_METHODS.to_vec()
        } else {
            vec![method]
        };
        for m in methods {
            let op = &item[m.to_lowercase()];
            assert!(op.is_object(), "{m} {path} is not described");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{m} {path}: no responses"
            );
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[test]
fn the_checked_in_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == warmpool_server::openapi::json(),
        "docs/openapi.json is stale: regenerate it with `cargo run -p warmpool -- openapi > docs/openapi.json`"
    );
}

#[tokio::test]
async fn the_document_and_the_offline_reference_are_served() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = common::InProc::start_with(
        &[
            ("POOL_TARGET_INSTANCES", "0"),
            ("WARMPOOL_API_TOKEN", "api-token-0123456789abcdef"),
        ],
        Some(sim),
    )
    .await;
    for path in ["/openapi", "/openapi.json"] {
        let r = wp
            .http
            .get(format!("{}{path}", wp.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} is open without a token");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.json::<serde_json::Value>().await.unwrap(), doc());
    }
    let page = wp
        .http
        .get(format!("{}/docs", wp.base))
        .send()
        .await
        .unwrap();
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/openapi.json"));
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("src=\"//"),
        "the page must work offline"
    );
    wp.shutdown().await;
}
