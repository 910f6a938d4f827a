//! Store tests against real SQLite files: migrations, transitions, events, recovery.

use warmpool_core::{ContainerId, ContainerState::*, Location, PoolKey, Timestamp};
use warmpool_store::{
    expected_schema, schema_of, Change, ContainerFilter, Extend, NewContainer, Op, Store,
    StoreError, DB_FILE, SCHEMA_VERSION,
};

fn new(id: ContainerId, at: i64) -> NewContainer {
    NewContainer {
        id,
        key: PoolKey::new("default", Location::Weur),
        runtime: "process".into(),
        on_demand: false,
        revision: 0,
        created_at: Timestamp(at),
    }
}

#[test]
fn migrated_schema_is_what_the_code_expects() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    assert_eq!(schema_of(&conn).unwrap(), expected_schema());
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn reopening_keeps_data_and_instance_id() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path()).unwrap();
    let id = first.instance_id().to_owned();
    drop(first);
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(again.instance_id(), id);
}

#[test]
fn newer_schema_is_refused_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch("CREATE TABLE precious (x); PRAGMA user_version = 99;")
            .unwrap();
    }
    let err = Store::open(dir.path()).err().unwrap();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'precious'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1, "the newer database was touched");
}

#[test]
fn foreign_or_corrupt_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch("CREATE TABLE other (x);").unwrap();
    }
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::Corrupt(_))
    ));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE), vec![0x42u8; 8192]).unwrap();
    assert!(Store::open(dir.path()).is_err());
}

#[tokio::test]
async fn lifecycle_is_recorded_with_events_and_checked_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = ContainerId::random();
    store.insert(new(id, 1)).await.unwrap();
    assert!(matches!(
        store.insert(new(id, 1)).await,
        Err(StoreError::Exists { .. })
    ));
    store
        .apply(Op::SetRuntime {
            id,
            handle: "pid:1:2".into(),
            address: Some("127.0.0.1:9".into()),
        })
        .await
        .unwrap();
    store
        .change(Change::new(id, Starting, Ready, Timestamp(2)))
        .await
        .unwrap();
    let mut claim = Change::new(id, Ready, Allocated, Timestamp(3));
    claim.expires_at = Some(Timestamp(100));
    store.change(claim.clone()).await.unwrap();
    // A second claim of the same container is refused by the compare-and-set.
    assert!(matches!(
        store.change(claim).await,
        Err(StoreError::Conflict {
            found: Allocated,
            ..
        })
    ));
    // Invalid transitions never reach SQL.
    assert!(matches!(
        store
            .change(Change::new(id, Allocated, Ready, Timestamp(4)))
            .await,
        Err(StoreError::Transition(_))
    ));
    store
        .change(Change::new(id, Allocated, Stopping, Timestamp(5)).reason("expired"))
        .await
        .unwrap();
    store
        .change(Change::new(id, Stopping, Stopped, Timestamp(6)).reason("stopped"))
        .await
        .unwrap();

    let row = store.container(id).await.unwrap().unwrap();
    assert_eq!(row.state, Stopped);
    assert_eq!(row.runtime_handle.as_deref(), Some("pid:1:2"));
    assert_eq!(row.address.as_deref(), Some("127.0.0.1:9"));
    assert_eq!(row.ready_at, Some(Timestamp(2)));
    assert_eq!(row.allocated_at, Some(Timestamp(3)));
    assert_eq!(row.expires_at, Some(Timestamp(100)));
    assert_eq!(row.stopped_at, Some(Timestamp(6)));
    assert_eq!(
        row.stop_reason.as_deref(),
        Some("expired"),
        "first reason wins"
    );

    let events = store.events(0, 100, Some(id)).await.unwrap();
    let path: Vec<_> = events.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        path,
        vec![
            (None, Starting),
            (Some(Starting), Ready),
            (Some(Ready), Allocated),
            (Some(Allocated), Stopping),
            (Some(Stopping), Stopped)
        ]
    );
    assert!(store.load_live_blocking().unwrap().is_empty());
    assert_eq!(
        store.load_ended_since_blocking(Timestamp(0)).unwrap().len(),
        1
    );
}

#[tokio::test]
async fn an_extension_moves_the_expiry_once_with_an_event_and_only_when_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = ContainerId::random();
    store.insert(new(id, 1)).await.unwrap();
    store
        .change(Change::new(id, Starting, Ready, Timestamp(2)))
        .await
        .unwrap();
    let extend = |from, to| {
        Op::Extend(Extend {
            id,
            from: Timestamp(from),
            to: Timestamp(to),
            at: Timestamp(4),
            reason: "extended by 1s".into(),
        })
    };
    // Not claimed: refused, naming the state it is in.
    assert!(matches!(
        store.apply(extend(100, 200)).await,
        Err(StoreError::Conflict { found: Ready, .. })
    ));
    let mut claim = Change::new(id, Ready, Allocated, Timestamp(3));
    claim.expires_at = Some(Timestamp(100));
    store.change(claim).await.unwrap();
    store.apply(extend(100, 200)).await.unwrap();
    // A second extension that read the old expiry is refused (compare-and-set).
    assert!(matches!(
        store.apply(extend(100, 300)).await,
        Err(StoreError::ExpiryMoved { .. })
    ));
    let row = store.container(id).await.unwrap().unwrap();
    assert_eq!(row.expires_at, Some(Timestamp(200)));
    let events = store.events(0, 100, Some(id)).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!((last.from, last.to), (Some(Allocated), Allocated));
    assert_eq!(last.reason.as_deref(), Some("extended by 1s"));
    assert_eq!(
        events.len(),
        4,
        "one event per extension that took: {events:?}"
    );
    assert!(matches!(
        store
            .apply(Op::Extend(Extend {
                id: ContainerId::random(),
                from: Timestamp(0),
                to: Timestamp(1),
                at: Timestamp(4),
                reason: String::new(),
            }))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn concurrent_claims_of_one_container_let_exactly_one_win() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = ContainerId::random();
    store.insert(new(id, 1)).await.unwrap();
    store
        .change(Change::new(id, Starting, Ready, Timestamp(2)))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .change(Change::new(id, Ready, Allocated, Timestamp(10 + i)))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn many_writers_are_grouped_and_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ids: Vec<_> = (0..500).map(|_| ContainerId::random()).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let store = store.clone();
            let id = *id;
            tokio::spawn(async move { store.insert(new(id, 1)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let rows = store
        .containers(ContainerFilter {
            state: Some(Starting),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 500);
    assert_eq!(store.count_by_state().await.unwrap(), vec![(Starting, 500)]);
}

#[tokio::test]
async fn pools_revisions_events_and_meta_are_written_together_and_read_back() {
    use warmpool_store::{PoolRecord, PoolWrite, RevisionRecord};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let pool = PoolRecord {
        name: "py".into(),
        spec: "{\"batch_size\":1}".into(),
        revision: 2,
        stable_revision: 1,
        rollout_started_at: Some(Timestamp(5)),
        rollout_error: None,
        created_at: Timestamp(1),
        updated_at: Timestamp(5),
    };
    let revision = |n: u32| RevisionRecord {
        pool: "py".into(),
        revision: n,
        template: format!("{{\"n\":{n}}}"),
        hash: format!("h{n}"),
        created_at: Timestamp(i64::from(n)),
    };
    store
        .apply(Op::Pools(vec![
            PoolWrite::Revision(revision(1)),
            PoolWrite::Revision(revision(2)),
            PoolWrite::Put(pool.clone()),
            PoolWrite::Event {
                at: Timestamp(5),
                pool: "py".into(),
                revision: Some(2),
                kind: "rollout-started".into(),
                detail: Some("revision 2 replaces revision 1".into()),
            },
            PoolWrite::Meta {
                key: "declared_pool.py".into(),
                value: "abc".into(),
            },
        ]))
        .await
        .unwrap();
    // A revision is never rewritten; a record is replaced whole.
    let mut again = revision(1);
    again.template = "changed".into();
    let failed = PoolRecord {
        rollout_error: Some("3 starts failed".into()),
        ..pool.clone()
    };
    store
        .apply(Op::Pools(vec![
            PoolWrite::Revision(again),
            PoolWrite::Put(failed.clone()),
        ]))
        .await
        .unwrap();
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let (pools, revisions) = store.load_pools_blocking().unwrap();
    assert_eq!(pools, vec![failed]);
    assert_eq!(revisions, vec![revision(1), revision(2)]);
    assert_eq!(
        store
            .meta("declared_pool.py".into())
            .await
            .unwrap()
            .as_deref(),
        Some("abc")
    );
    let events = store.pool_events("py".into(), 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "rollout-started");
    // Deleting the pool keeps its revisions and events.
    store
        .apply(Op::Pools(vec![PoolWrite::Delete("py".into())]))
        .await
        .unwrap();
    let (pools, revisions) = store.load_pools_blocking().unwrap();
    assert!(pools.is_empty());
    assert_eq!(revisions.len(), 2);
    assert_eq!(store.pool_events("py".into(), 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn containers_from_before_pool_revisions_are_of_revision_one() {
    let dir = tempfile::tempdir().unwrap();
    let id = ContainerId::random();
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert(new(id, 1)).await.unwrap();
    }
    // The same file as a version 2 store wrote it: no pools, no revision column.
    {
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(
            "ALTER TABLE containers DROP COLUMN revision;
             ALTER TABLE containers DROP COLUMN labels;
             ALTER TABLE containers DROP COLUMN metadata;
             DROP TABLE pools; DROP TABLE pool_revisions; DROP TABLE pool_events;
             DROP TABLE pool_sizes;
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let row = store.container(id).await.unwrap().unwrap();
    assert_eq!(row.revision, 1);
    let (pools, revisions) = store.load_pools_blocking().unwrap();
    assert!(pools.is_empty() && revisions.is_empty());
    // Migration 4 made `pool_sizes`, empty.
    assert!(store.load_sizes_blocking().unwrap().is_empty());
}
