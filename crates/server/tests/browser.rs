//! The studio in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini) against a real warmpool with tokens. Logs in
//! through the form, checks the pool cards, watches a claim made through the API
//! appear without a reload, runs a SELECT and sees a write refused in the database
//! tab, sees containers' labels and metadata and filters them by a label
//! selector, and saves a screenshot to `target/studio-screenshot.png`.
//!
//! Skips with a printed reason when chromedriver or Chromium is missing, unless
//! `WARMPOOL_REQUIRE_BROWSER=1` (as in CI).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::InProc;
use fantoccini::{Client, ClientBuilder, Locator};
use warmpool_runtime::{SimMode, SimRuntime};

const API: &str = "api-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

/// How long the page gets to show something.
const WITHIN: Duration = Duration::from_secs(20);

/// The first of `names` found on `PATH`.
fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// chromedriver and Chromium, or why the test cannot run.
fn browser(test: &str) -> Option<(PathBuf, PathBuf)> {
    let driver = which(&["chromedriver"]);
    let chromium = which(&["chromium", "chromium-browser", "google-chrome"]);
    let reason = match (&driver, &chromium) {
        (Some(_), Some(_)) => None,
        (None, _) => Some("chromedriver is not installed (apt-get install chromium-driver)"),
        (_, None) => Some("Chromium is not installed (apt-get install chromium)"),
    };
    match reason {
        None => Some((driver?, chromium?)),
        Some(r) if std::env::var("WARMPOOL_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("{test}: {r}, and WARMPOOL_REQUIRE_BROWSER=1")
        }
        Some(r) => {
            eprintln!("skipping {test}: {r}");
            None
        }
    }
}

/// chromedriver as a child on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start(path: &PathBuf) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let driver = Driver { child, url };
        let http = reqwest::Client::new();
        let status = format!("{}/status", driver.url);
        common::poll(WITHIN, "chromedriver to answer", || {
            let (http, status) = (http.clone(), status.clone());
            async move {
                let r = http.get(&status).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn session(driver: &Driver, chromium: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium.display().to_string(),
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,800",
                "--force-device-scale-factor=1",
                "--lang=en-US",
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

/// The text of the first element matching `css`, if there is one.
/// Clicks the element with this id.
async fn click(c: &Client, id: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn text(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Waits until the element matching `css` shows text that `ok` accepts.
async fn wait_text(c: &Client, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let ok = &ok;
    common::poll(WITHIN, what, || async move {
        let t = text(c, css).await?;
        ok(&t).then_some(t)
    })
    .await
}

fn card(pool: &str, location: &str, field: &str) -> String {
    format!(".card[data-pool=\"{pool}\"][data-location=\"{location}\"] [data-field=\"{field}\"]")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_studio_works_in_a_real_browser() {
    let Some((driver_path, chromium)) = browser("the_studio_works_in_a_real_browser") else {
        return;
    };
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(
        &[
            ("POOL_TARGET_INSTANCES", "3"),
            ("WARMPOOL_TARGETS", "default=3,weur=2"),
            ("WARMPOOL_API_TOKEN", API),
            ("WARMPOOL_ADMIN_TOKEN", ADMIN),
        ],
        Some(sim),
    )
    .await;
    let api = wp.client.clone().with_token(API);
    common::wait_ready(&api, "default", 3, WITHIN).await;
    common::wait_ready(&api, "weur", 2, WITHIN).await;

    let driver = Driver::start(&driver_path).await;
    let c = session(&driver, &chromium).await;
    let studio = format!("{}/studio", wp.base);

    // The login form; a wrong token shows the form again with an error.
    c.goto(&studio).await.unwrap();
    let token = c.wait().for_element(Locator::Id("token")).await.unwrap();
    token.send_keys("not-the-admin-token-at-all").await.unwrap();
    click(&c, "login").await;
    wait_text(&c, "#login-error", "the login error", |t| {
        t.contains("not an admin token")
    })
    .await;
    let token = c.find(Locator::Id("token")).await.unwrap();
    token.send_keys(ADMIN).await.unwrap();
    click(&c, "login").await;

    // The pool cards, with the right counts.
    for (location, ready) in [("default", "3"), ("weur", "2")] {
        wait_text(
            &c,
            &card("default", location, "ready"),
            &format!("{ready} ready in the {location} card"),
            |t| t == ready,
        )
        .await;
        assert_eq!(
            text(&c, &card("default", location, "target"))
                .await
                .as_deref(),
            Some(ready)
        );
        assert_eq!(
            text(&c, &card("default", location, "allocated"))
                .await
                .as_deref(),
            Some("0")
        );
        // The pool's revision (issue 14: the studio shows it).
        assert_eq!(
            text(&c, &card("default", location, "revision"))
                .await
                .as_deref(),
            Some("1")
        ); // Its desired size and why (issue 15).
        assert_eq!(
            text(&c, &card("default", location, "desired"))
                .await
                .as_deref(),
            Some(ready)
        );
        assert_eq!(
            text(&c, &card("default", location, "reason"))
                .await
                .as_deref(),
            Some("static target")
        );
    }
    wait_text(&c, "#live", "the live indicator", |t| t == "Live").await;

    // The background tasks, from GET /v1/status: the reconciler has run, and said so.
    let reconcile = wait_text(
        &c,
        "#tasks tr[data-task=\"reconcile\"][data-outcome=\"ok\"]",
        "the reconcile task's row with its last outcome",
        |t| t.contains("launches"),
    )
    .await;
    assert!(reconcile.starts_with("reconcile"), "{reconcile}");
    // The simulated runtime has no real addresses, so no prober.
    for task in ["sweep", "history", "prune_tombstones"] {
        assert!(
            text(&c, &format!("#tasks tr[data-task=\"{task}\"] th"))
                .await
                .is_some_and(|t| t == task),
            "no row for the {task} task"
        );
    }

    // A claim through the API shows up without a reload.
    c.execute("window.__noReload = 42;", vec![]).await.unwrap();
    let claimed = api
        .claim(&warmpool_client::ClaimRequest {
            location: Some("weur".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    wait_text(
        &c,
        &card("default", "weur", "allocated"),
        "the claim in the weur card",
        |t| t == "1",
    )
    .await;
    let row = format!("#containers tr[data-id=\"{}\"]", claimed.id);
    common::poll(WITHIN, "the claimed container's row", || {
        let (c, row) = (&c, &row);
        async move {
            let tr = c.find(Locator::Css(row)).await.ok()?;
            (tr.attr("data-state").await.ok()?.as_deref() == Some("allocated")).then_some(())
        }
    })
    .await;
    // The pool refills, still without a reload.
    wait_text(
        &c,
        &card("default", "weur", "ready"),
        "the weur pool refilled",
        |t| t == "2",
    )
    .await;
    // The events feed has the claim.
    let short = &claimed.id[..8];
    wait_text(&c, "#events tbody", "the claim in the events feed", |t| {
        t.lines()
            .any(|l| l.contains(short) && l.contains("allocated") && l.contains("claimed"))
    })
    .await;
    let still = c
        .execute("return window.__noReload;", vec![])
        .await
        .unwrap();
    assert_eq!(still, serde_json::json!(42), "the page was reloaded");

    // Enter on the row shows its event history.
    let tr = c.find(Locator::Css(&row)).await.unwrap();
    tr.send_keys("\u{E007}").await.unwrap(); // Enter
    wait_text(
        &c,
        "#detail-events tbody",
        "the claimed container's events",
        |t| t.contains("allocated") && t.contains("ready"),
    )
    .await;
    wait_text(
        &c,
        "#detail-fields [data-field=\"state\"]",
        "its state",
        |t| t == "allocated",
    )
    .await;

    c.execute("window.scrollTo(0, 0);", vec![]).await.unwrap();
    let shots = target_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots.join("studio-screenshot.png"), &png).unwrap();

    // The database tab (by keyboard: arrows move between tabs): tables, a
    // SELECT, and a refused write.
    let tab = c.find(Locator::Id("tab-overview")).await.unwrap();
    tab.send_keys("\u{E014}").await.unwrap(); // ArrowRight
    wait_text(
        &c,
        "[role=tab][aria-selected=true]",
        "the database tab",
        |t| t == "Database",
    )
    .await;
    wait_text(
        &c,
        "#tables button[data-table=\"containers\"]",
        "the containers table in the list",
        |t| t.contains("rows"),
    )
    .await;
    let sql = c.find(Locator::Id("sql")).await.unwrap();
    sql.clear().await.unwrap();
    sql.send_keys("SELECT state, count(*) AS n FROM containers WHERE location = 'weur' GROUP BY state ORDER BY state")
        .await
        .unwrap();
    click(&c, "sql-run").await;
    wait_text(&c, "#sql-info", "the query's answer", |t| {
        t.contains("rows in")
    })
    .await;
    let result = text(&c, "#sql-result tbody").await.unwrap();
    assert!(
        result.contains("allocated 1") && result.contains("ready 2"),
        "{result}"
    );

    sql.clear().await.unwrap();
    sql.send_keys("DELETE FROM containers").await.unwrap();
    click(&c, "sql-run").await;
    let refused = wait_text(&c, "#sql-error", "the refusal", |t| t.contains("read-only")).await;
    assert!(refused.contains("403"), "{refused}");
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots.join("studio-screenshot-database.png"), &png).unwrap();
    assert_eq!(
        api.containers(&Default::default())
            .await
            .unwrap()
            .containers
            .len(),
        6,
        "nothing was deleted"
    );

    // Back to the overview (ArrowLeft), and release the claimed container from
    // its detail pane.
    let tab = c.find(Locator::Id("tab-database")).await.unwrap();
    tab.send_keys("\u{E012}").await.unwrap(); // ArrowLeft
    click(&c, "release").await;
    wait_text(
        &c,
        "#detail-fields [data-field=\"state\"]",
        "the released container stopped",
        |t| t == "stopped",
    )
    .await;
    wait_text(
        &c,
        &card("default", "weur", "allocated"),
        "the release in the weur card",
        |t| t == "0",
    )
    .await;
    assert_eq!(
        api.container(&claimed.id)
            .await
            .unwrap()
            .stop_reason
            .as_deref(),
        Some("released")
    );

    // Labels and metadata (issue 16): shown in the containers table, and the
    // label selector filters it. Written as a claim records them: ready ->
    // allocated in the store, with labels and metadata.
    let ready = common::listed_ids(
        &api,
        warmpool_client::ContainerQuery {
            state: Some("ready".into()),
            location: Some("default".into()),
            ..Default::default()
        },
    )
    .await;
    let (team_a, team_b) = (&ready[0], &ready[1]);
    let now = warmpool_core::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    for (id, labels, metadata) in [
        (
            team_a,
            vec![("team", "a"), ("tier", "free")],
            Some(r#"{"user":"ana"}"#),
        ),
        (team_b, vec![("team", "b")], None),
    ] {
        let mut change = warmpool_store::Change::new(
            id.parse().unwrap(),
            warmpool_core::ContainerState::Ready,
            warmpool_core::ContainerState::Allocated,
            now,
        )
        .with_labels(
            labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        );
        change.expires_at = Some(warmpool_core::Timestamp(now.0 + 3_600_000));
        if let Some(m) = metadata {
            change = change.with_metadata(m);
        }
        wp.app().store.change(change).await.unwrap();
    }
    let labels_of = |id: &str| format!("#containers tr[data-id=\"{id}\"] [data-field=\"labels\"]");
    wait_text(&c, &labels_of(team_a), "team a's labels in its row", |t| {
        t.contains("team=a") && t.contains("tier=free")
    })
    .await;
    wait_text(&c, &labels_of(team_b), "team b's labels in its row", |t| {
        t.contains("team=b")
    })
    .await;
    assert_eq!(
        text(
            &c,
            &format!("#containers tr[data-id=\"{team_a}\"] [data-field=\"metadata\"]")
        )
        .await
        .as_deref(),
        Some(r#"{"user":"ana"}"#)
    );
    let rows_shown = || async {
        let mut ids = Vec::new();
        for tr in c
            .find_all(Locator::Css("#containers tbody tr"))
            .await
            .ok()?
        {
            ids.push(tr.attr("data-id").await.ok()??);
        }
        Some(ids)
    };
    let before = rows_shown().await.unwrap();
    assert!(before.len() > 2, "{before:?}");
    // Typing a selector filters the table to the matching rows alone.
    let input = c.find(Locator::Id("f-label")).await.unwrap();
    input.send_keys("team=a,tier!=paid").await.unwrap();
    common::poll(WITHIN, "the table filtered to team a", || async {
        (rows_shown().await? == vec![team_a.clone()]).then_some(())
    })
    .await;
    wait_text(&c, "#containers-count", "the filtered count", |t| {
        t == "1 container"
    })
    .await;
    // A selector that does not parse: the API's refusal, by the input.
    input.clear().await.unwrap();
    input.send_keys("team in (a").await.unwrap();
    let refused = wait_text(&c, "#f-label-error", "the selector's refusal", |t| {
        t.contains("missing ')'")
    })
    .await;
    assert!(refused.contains("422"), "{refused}");
    assert_eq!(
        input.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    // `notin` matches the containers without the key too; then an empty
    // selector shows every row again.
    input.clear().await.unwrap();
    input.send_keys("team notin (a)").await.unwrap();
    common::poll(WITHIN, "the table without team a", || async {
        let shown = rows_shown().await?;
        (shown.contains(team_b) && !shown.contains(team_a) && shown.len() > 1).then_some(())
    })
    .await;
    assert!(c
        .find(Locator::Id("f-label-error"))
        .await
        .unwrap()
        .attr("hidden")
        .await
        .unwrap()
        .is_some());
    input.clear().await.unwrap();
    input.send_keys("\u{E007}").await.unwrap(); // Enter
    common::poll(WITHIN, "every row again", || async {
        let shown = rows_shown().await?;
        (shown.contains(team_a) && shown.contains(team_b)).then_some(())
    })
    .await;
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots.join("studio-screenshot-labels.png"), &png).unwrap();

    // Logging out leads back to the form.
    c.find(Locator::Css("#logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Id("token")).await.unwrap();

    c.close().await.unwrap();
    drop(driver);
    wp.shutdown().await;
}
