//! The OpenAPI document describes every route of the route table (the one the
//! router and the auth check are built from), with its methods, and nothing
//! else; its security says what the route's access class asks; it is valid
//! (unique operationIds); the checked-in `docs/openapi.json` is what the code
//! generates; and the document and the offline reference are served.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use serde_json::json;
use warmpool_runtime::{SimMode, SimRuntime};
use warmpool_server::auth::Access;
use warmpool_server::openapi::openapi_path;
use warmpool_server::routes::table;

const ALL_METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

fn doc() -> serde_json::Value {
    serde_json::from_str(&warmpool_server::routes::json()).unwrap()
}

#[test]
fn every_route_of_the_table_is_described_with_its_access() {
    let table = table();
    assert!(table.len() >= 26, "{} routes", table.len());
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    let expected: BTreeSet<String> = table.iter().map(|r| openapi_path(&r.path)).collect();
    assert_eq!(documented, expected, "the document and the table disagree");

    let mut routed = HashSet::new();
    for r in &table {
        let item = &paths[&openapi_path(&r.path)];
        let methods: Vec<String> = match &r.methods {
            None => ALL_METHODS.iter().map(|m| m.to_string()).collect(),
            Some(ms) => ms.iter().map(|m| m.as_str().to_lowercase()).collect(),
        };
        assert!(!methods.is_empty(), "{}: no methods", r.path);
        let security = match r.access {
            Access::Open => serde_json::Value::Null,
            Access::Api | Access::Admin => json!([{"bearer": []}]),
            Access::Proxy => json!([{}, {"bearer": []}]),
        };
        for m in methods {
            let what = format!("{m} {}", r.path);
            assert!(routed.insert(what.clone()), "{what} is in the table twice");
            let op = &item[&m];
            assert!(op.is_object(), "{what} is not described");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{what}: no responses"
            );
            assert_eq!(op["security"], security, "{what} ({:?})", r.access);
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[test]
fn operation_ids_are_unique() {
    let doc = doc();
    let mut seen = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(
                seen.insert(id.to_owned()),
                "operationId {id} repeats ({method} {path})"
            );
        }
    }
    assert!(
        seen.contains("claim") && seen.contains("proxy_path_get"),
        "{seen:?}"
    );
}

#[test]
fn the_checked_in_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == warmpool_server::routes::json(),
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
