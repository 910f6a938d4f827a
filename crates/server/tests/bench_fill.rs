//! The bench's wait for a fill (`warmpool_bench::procs::Server::wait_ready`)
//! completes a fill that lost a start, which the pool's batch spacing (an hour
//! for the bench's static pools) would otherwise replace only at its next
//! batch, and puts the spacing back. With a real warmpool and real processes.

use std::path::Path;
use std::time::Duration;

use warmpool_bench::procs::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_loses_a_start_is_completed_and_its_spacing_put_back() {
    let bin = env!("CARGO_BIN_EXE_warmpool");
    let dir = tempfile::tempdir().unwrap();
    // The first start to get there makes the marker and exits; the others run
    // the sample app.
    let marker = dir.path().join("failed-once");
    let command = format!(
        "sh -c 'if mkdir {} 2>/dev/null; then exit 3; fi; exec {bin} sample-app'",
        marker.display()
    );
    let server = Server::spawn_from(
        Path::new(bin),
        &[
            ("WARMPOOL_RUNTIME", "process".into()),
            ("POOL_TARGET_INSTANCES", "3".into()),
            ("POOL_BATCH_SIZE", "3".into()),
            ("POOL_BATCH_SPACING_IN_SECONDS", "3600".into()),
            ("WARMPOOL_COMMAND", command),
        ],
    )
    .unwrap();
    server.wait_ready(3, Duration::from_secs(60)).await.unwrap();
    assert!(marker.exists(), "no start failed");
    let pools = server.json("/v1/pools").await.unwrap();
    let row = &pools["pools"][0];
    assert_eq!(row["ready"], 3, "{pools}");
    assert!(row["failedStarts"].as_u64().unwrap() >= 1, "{pools}");
    let pool = server.json("/v1/pools/default").await.unwrap();
    assert_eq!(
        pool["settings"]["batch_spacing"], 3600.0,
        "the spacing was put back: {pool}"
    );
    assert_eq!(pool["revision"], 1, "no new revision: {pool}");
    server.stop();
}
