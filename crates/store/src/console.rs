//! The studio's database console: read-only SQL and table browsing, on a
//! connection of their own that cannot write.
//!
//! Each call opens a fresh connection with `SQLITE_OPEN_READ_ONLY`, turns on
//! `PRAGMA query_only`, caps string sizes and attached databases, and installs an
//! authorizer that allows reading and nothing else (no INSERT, UPDATE, DELETE,
//! DDL, ATTACH, transactions or pragma writes). Only one statement is accepted,
//! and it must be read-only by SQLite's own judgement (`sqlite3_stmt_readonly`).
//! A progress handler cuts a statement off at the time limit, and at most
//! `max_rows` rows (and a byte budget) are returned.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection, ErrorCode, OpenFlags};

use crate::{Store, StoreError};

/// Limits of one console statement.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleLimits {
    /// Rows returned at most; more are reported as `truncated`.
    pub max_rows: usize,
    /// A statement still running after this long is interrupted.
    pub time_limit: Duration,
}

impl Default for ConsoleLimits {
    fn default() -> Self {
        Self {
            max_rows: 500,
            time_limit: Duration::from_secs(2),
        }
    }
}

/// Largest string or blob a console statement may build (bytes).
const MAX_VALUE: i32 = 1024 * 1024;

/// Bytes of cell data returned at most; rows past it are reported as truncated.
const MAX_RESULT_BYTES: usize = 8 * 1024 * 1024;

/// One value of a result row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// The answer to one console statement (or one page of a table).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// More rows were there than returned.
    pub truncated: bool,
    pub elapsed: Duration,
}

/// A column of a table, from `pragma_table_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// The declared type (may be empty).
    pub decl_type: String,
    pub not_null: bool,
    pub primary_key: bool,
}

/// A table of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    pub rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The statement would write, or do something else the console never does.
    #[error("{0}")]
    Refused(String),
    /// Not valid SQL, or it failed while running.
    #[error("{0}")]
    Invalid(String),
    #[error("the statement was stopped after the time limit of {} ms", .0.as_millis())]
    TimedOut(Duration),
    #[error("no table named {0:?}")]
    NoSuchTable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pragmas that only describe the schema, whatever their argument.
const INFO_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "database_list",
    "collation_list",
    "function_list",
    "module_list",
    "pragma_list",
    "compile_options",
];

/// Pragmas that may be read (without a value) but never set.
const READ_PRAGMAS: &[&str] = &[
    "user_version",
    "schema_version",
    "application_id",
    "page_count",
    "page_size",
    "freelist_count",
    "journal_mode",
    "encoding",
    "foreign_keys",
    "query_only",
    "data_version",
];

/// Functions a console statement may not call.
const DENIED_FUNCTIONS: &[&str] = &["load_extension", "fts3_tokenizer", "readfile", "writefile"];

/// What the authorizer refused, in words.
fn describe(action: &AuthAction<'_>) -> String {
    use AuthAction::*;
    match action {
        Insert { table_name } => format!("INSERT into {table_name}"),
        Update {
            table_name,
            column_name,
        } => format!("UPDATE of {table_name}.{column_name}"),
        Delete { table_name } => format!("DELETE from {table_name}"),
        DropTable { table_name } | DropTempTable { table_name } => {
            format!("DROP TABLE {table_name}")
        }
        CreateTable { table_name } | CreateTempTable { table_name } => {
            format!("CREATE TABLE {table_name}")
        }
        Attach { .. } => "ATTACH".to_owned(),
        Detach { .. } => "DETACH".to_owned(),
        Transaction { operation } => format!("transaction control ({operation:?})"),
        Pragma {
            pragma_name,
            pragma_value: Some(v),
        } => format!("PRAGMA {pragma_name} = {v}"),
        Pragma { pragma_name, .. } => format!("PRAGMA {pragma_name}"),
        Function { function_name } => format!("the function {function_name}()"),
        other => format!("{other:?}"),
    }
}

/// Reading is allowed; anything else is denied, and the first denial is kept.
fn authorizer(denied: Arc<Mutex<Option<String>>>) -> impl FnMut(AuthContext<'_>) -> Authorization {
    move |ctx: AuthContext<'_>| {
        let allowed = match ctx.action {
            AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => true,
            // Functions read, except those that reach outside the database.
            AuthAction::Function { function_name } => !DENIED_FUNCTIONS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(function_name)),
            AuthAction::Pragma {
                pragma_name,
                pragma_value,
            } => {
                let name = pragma_name.to_ascii_lowercase();
                INFO_PRAGMAS.contains(&name.as_str())
                    || (pragma_value.is_none() && READ_PRAGMAS.contains(&name.as_str()))
            }
            _ => false,
        };
        if allowed {
            Authorization::Allow
        } else {
            let mut d = denied.lock().unwrap_or_else(|e| e.into_inner());
            d.get_or_insert_with(|| describe(&ctx.action));
            Authorization::Deny
        }
    }
}

/// A fresh read-only connection with the console's limits, and the instant its
/// statement must end by.
fn open(path: &Path, time_limit: Duration) -> Result<Connection, ConsoleError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_secs(1))?;
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(())
    };
    setup().map_err(StoreError::from)?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE);
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0);
    let deadline = Instant::now() + time_limit;
    conn.progress_handler(1000, Some(move || Instant::now() >= deadline));
    Ok(conn)
}

fn cell(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Integer(i),
        ValueRef::Real(r) => Cell::Real(r),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
    }
}

fn cell_size(c: &Cell) -> usize {
    match c {
        Cell::Text(t) => t.len(),
        Cell::Blob(b) => b.len(),
        _ => 8,
    }
}

/// Maps an error of a running statement.
fn running_error(e: rusqlite::Error, limits: &ConsoleLimits) -> ConsoleError {
    match e.sqlite_error_code() {
        Some(ErrorCode::OperationInterrupted) => ConsoleError::TimedOut(limits.time_limit),
        Some(ErrorCode::ReadOnly) => {
            ConsoleError::Refused("the console is read-only: this statement would write".to_owned())
        }
        _ => ConsoleError::Invalid(sqlite_message(&e)),
    }
}

/// SQLite's own message, without rusqlite's wrapping.
fn sqlite_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
        rusqlite::Error::SqlInputError { msg, offset, .. } => {
            format!("{msg} (at character {offset})")
        }
        other => other.to_string(),
    }
}

/// Runs a prepared statement and collects at most `limits.max_rows` rows.
fn collect(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    limits: &ConsoleLimits,
    started: Instant,
) -> Result<QueryResult, ConsoleError> {
    let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let n = columns.len();
    let mut rows = Vec::new();
    let mut truncated = false;
    let mut bytes = 0usize;
    let mut it = stmt.query(params).map_err(|e| running_error(e, limits))?;
    while let Some(row) = it.next().map_err(|e| running_error(e, limits))? {
        if rows.len() >= limits.max_rows || bytes > MAX_RESULT_BYTES {
            truncated = true;
            break;
        }
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let c = cell(row.get_ref(i).map_err(|e| running_error(e, limits))?);
            bytes += cell_size(&c);
            out.push(c);
        }
        rows.push(out);
    }
    Ok(QueryResult {
        columns,
        rows,
        truncated,
        elapsed: started.elapsed(),
    })
}

/// Runs one read-only statement (see the module doc).
pub(crate) fn query(
    path: &Path,
    sql: &str,
    limits: &ConsoleLimits,
) -> Result<QueryResult, ConsoleError> {
    let started = Instant::now();
    let conn = open(path, limits.time_limit)?;
    let denied = Arc::new(Mutex::new(None));
    conn.authorizer(Some(authorizer(denied.clone())));
    let refused = |what: String| {
        ConsoleError::Refused(format!(
            "refused: the console is read-only and runs only reading statements \
             (SELECT, WITH ... SELECT, VALUES, EXPLAIN); {what} is not allowed"
        ))
    };
    let prepare_error = |e: rusqlite::Error| {
        if let Some(what) = denied.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return refused(what);
        }
        running_error(e, limits)
    };
    let mut batch = Batch::new(&conn, sql);
    let Some(mut stmt) = batch.next().map_err(prepare_error)? else {
        return Err(ConsoleError::Invalid(
            "there is no statement to run".to_owned(),
        ));
    };
    match batch.next() {
        Ok(None) => {}
        Ok(Some(_)) | Err(_) => {
            return Err(ConsoleError::Refused(
                "refused: one statement at a time (found more after the first `;`)".to_owned(),
            ))
        }
    }
    if !stmt.readonly() {
        return Err(refused("a statement that writes".to_owned()));
    }
    collect(&mut stmt, [], limits, started)
}

/// Quotes an identifier for SQL.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let names = stmt.query_map([], |r| r.get(0))?;
    names.collect()
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<ColumnInfo>> {
    let mut stmt =
        conn.prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid")?;
    let cols = stmt.query_map([table], |r| {
        Ok(ColumnInfo {
            name: r.get(0)?,
            decl_type: r.get(1)?,
            not_null: r.get(2)?,
            primary_key: r.get::<_, i64>(3)? > 0,
        })
    })?;
    cols.collect()
}

/// Every table of the store (SQLite's own `sqlite_*` tables left out), with
/// its columns and row count.
pub(crate) fn tables(path: &Path, limits: &ConsoleLimits) -> Result<Vec<TableInfo>, ConsoleError> {
    let conn = open(path, limits.time_limit)?;
    let err = |e| running_error(e, limits);
    let mut out = Vec::new();
    for name in table_names(&conn).map_err(err)? {
        let columns = columns(&conn, &name).map_err(err)?;
        let rows: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {}", quote(&name)), [], |r| {
                r.get(0)
            })
            .map_err(err)?;
        out.push(TableInfo {
            name,
            columns,
            rows: rows.max(0) as u64,
        });
    }
    Ok(out)
}

/// One page of a table's rows, in primary key (or rowid) order. The name must
/// be one of [`tables`]'s; it is quoted, never spliced in as given.
pub(crate) fn rows(
    path: &Path,
    table: &str,
    offset: u64,
    limit: usize,
    limits: &ConsoleLimits,
) -> Result<QueryResult, ConsoleError> {
    let started = Instant::now();
    let conn = open(path, limits.time_limit)?;
    let err = |e| running_error(e, limits);
    let names = table_names(&conn).map_err(err)?;
    let Some(name) = names.iter().find(|n| *n == table) else {
        return Err(ConsoleError::NoSuchTable(table.to_owned()));
    };
    let cols = columns(&conn, name).map_err(err)?;
    let pk: Vec<String> = cols
        .iter()
        .filter(|c| c.primary_key)
        .map(|c| quote(&c.name))
        .collect();
    let order = if pk.is_empty() {
        "rowid".to_owned()
    } else {
        pk.join(", ")
    };
    let sql = format!(
        "SELECT * FROM {} ORDER BY {order} LIMIT ?1 OFFSET ?2",
        quote(name)
    );
    let mut stmt = conn.prepare(&sql).map_err(err)?;
    let page = ConsoleLimits {
        max_rows: limit,
        ..*limits
    };
    collect(
        &mut stmt,
        rusqlite::params![limit as i64 + 1, offset.min(i64::MAX as u64) as i64],
        &page,
        started,
    )
}

impl Store {
    /// Runs one read-only SQL statement on a connection of its own (see
    /// [`crate::console`]), on a blocking thread.
    pub async fn console_query(
        &self,
        sql: String,
        limits: ConsoleLimits,
    ) -> Result<QueryResult, ConsoleError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || query(&path, &sql, &limits))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// The store's tables, their columns and row counts.
    pub async fn console_tables(
        &self,
        limits: ConsoleLimits,
    ) -> Result<Vec<TableInfo>, ConsoleError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || tables(&path, &limits))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// One page of a table's rows.
    pub async fn console_rows(
        &self,
        table: String,
        offset: u64,
        limit: usize,
        limits: ConsoleLimits,
    ) -> Result<QueryResult, ConsoleError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || rows(&path, &table, offset, limit, &limits))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}
