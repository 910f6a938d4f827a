//! The database console: reading works, within limits; nothing can write.

use std::time::Duration;

use warmpool_store::{Cell, ConsoleError, ConsoleLimits, Store};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[tokio::test]
async fn reads_are_answered_and_limited() {
    let (_dir, store) = store();
    let r = store
        .console_query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 1000) SELECT i, 'x' || i AS s, NULL, 1.5, x'00ff' FROM n".into(),
            ConsoleLimits::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.columns.len(), 5);
    assert_eq!(r.rows.len(), 500);
    assert!(r.truncated);
    assert_eq!(
        r.rows[0],
        vec![
            Cell::Integer(1),
            Cell::Text("x1".into()),
            Cell::Null,
            Cell::Real(1.5),
            Cell::Blob(vec![0, 255])
        ]
    );
    let r = store
        .console_query(
            "SELECT name FROM pragma_table_info('meta'); -- trailing comment".into(),
            ConsoleLimits::default(),
        )
        .await
        .unwrap();
    assert!(!r.truncated);
    assert_eq!(
        r.rows,
        vec![
            vec![Cell::Text("key".into())],
            vec![Cell::Text("value".into())]
        ]
    );
    for ok in [
        "PRAGMA table_info(containers)",
        "PRAGMA user_version",
        "EXPLAIN SELECT 1",
        "VALUES (1), (2)",
    ] {
        store
            .console_query(ok.into(), ConsoleLimits::default())
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[tokio::test]
async fn writes_and_tricks_are_refused() {
    let (_dir, store) = store();
    for sql in [
        "INSERT INTO meta (key, value) VALUES ('a', 'b')",
        "UPDATE meta SET value = 'x'",
        "DELETE FROM meta",
        "DROP TABLE events",
        "CREATE TABLE t (x)",
        "CREATE TEMP TABLE t (x)",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA writable_schema = 1",
        "PRAGMA user_version = 5",
        "PRAGMA query_only = OFF",
        "BEGIN",
        "SELECT 1; DELETE FROM meta",
        "SELECT 1; SELECT 2",
        "WITH x AS (SELECT 1) DELETE FROM meta",
        "REPLACE INTO meta VALUES ('a', 'b')",
        "VACUUM",
        "REINDEX",
        "ANALYZE",
        "SELECT load_extension('/tmp/x.so')",
        "SELECT fts3_tokenizer('simple')",
    ] {
        match store
            .console_query(sql.into(), ConsoleLimits::default())
            .await
        {
            Err(ConsoleError::Refused(m)) => assert!(m.starts_with("refused"), "{sql}: {m}"),
            other => panic!("{sql}: {other:?}"),
        }
    }
    let r = store
        .console_query("SELECT count(*) FROM meta".into(), ConsoleLimits::default())
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![Cell::Integer(1)]]);
    let r = store
        .console_query("PRAGMA user_version".into(), ConsoleLimits::default())
        .await
        .unwrap();
    assert_eq!(
        r.rows,
        vec![vec![Cell::Integer(warmpool_store::SCHEMA_VERSION)]]
    );
    assert!(matches!(
        store
            .console_query("SELEC 1".into(), ConsoleLimits::default())
            .await,
        Err(ConsoleError::Invalid(_))
    ));
    assert!(matches!(
        store
            .console_query("  -- nothing".into(), ConsoleLimits::default())
            .await,
        Err(ConsoleError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_slow_statement_is_cut_off() {
    let (_dir, store) = store();
    let limits = ConsoleLimits {
        time_limit: Duration::from_millis(300),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let r = store
        .console_query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) SELECT count(*) FROM n".into(),
            limits,
        )
        .await;
    assert!(matches!(r, Err(ConsoleError::TimedOut(_))), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn tables_are_listed_and_paged() {
    let (_dir, store) = store();
    let tables = store
        .console_tables(ConsoleLimits::default())
        .await
        .unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
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
    let meta = &tables[2];
    assert_eq!(meta.rows, 1);
    assert!(meta.columns[0].primary_key && meta.columns[0].name == "key");
    let page = store
        .console_rows("meta".into(), 0, 10, ConsoleLimits::default())
        .await
        .unwrap();
    assert_eq!(page.columns, ["key", "value"]);
    assert_eq!(page.rows.len(), 1);
    assert!(!page.truncated);
    let page = store
        .console_rows("meta".into(), 1, 10, ConsoleLimits::default())
        .await
        .unwrap();
    assert!(page.rows.is_empty());
    for bad in ["nope", "meta; DROP TABLE meta", "sqlite_schema", "\"meta\""] {
        assert!(
            matches!(
                store
                    .console_rows(bad.into(), 0, 10, ConsoleLimits::default())
                    .await,
                Err(ConsoleError::NoSuchTable(_))
            ),
            "{bad}"
        );
    }
}
