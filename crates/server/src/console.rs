//! The database console's endpoints (admin only): one read-only SQL statement
//! (`POST /v1/sql`), the store's tables (`GET /v1/tables`) and their rows, a page
//! at a time (`GET /v1/tables/{name}/rows`). The SQL and its safeguards live in
//! the store crate (`warmpool_store::console`).
//!
//! Errors: a statement that would write (or ATTACH, set a pragma, run a second
//! statement) is 403 `read-only`; invalid SQL is 422 `invalid-sql`; a statement
//! cut off at the time limit is 422 `query-timeout`; an unknown table is 404.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use warmpool_client::{ColumnView, Problem, SqlRequest, SqlResult, TableList, TableView};
use warmpool_store::{Cell, ConsoleError, ConsoleLimits, QueryResult};

use crate::api::{JsonBody, RequestBody};
use crate::openapi::PROBLEM;
use crate::problem::ApiError;
use crate::state::Shared;

/// Largest `POST /v1/sql` body.
pub const MAX_SQL_BODY: usize = 64 * 1024;

impl RequestBody for SqlRequest {
    const LIMIT: usize = MAX_SQL_BODY;
}

/// Rows a table page holds at most.
pub const MAX_PAGE: usize = 500;

fn cell(c: Cell) -> Value {
    match c {
        Cell::Null => Value::Null,
        Cell::Integer(i) => Value::from(i),
        Cell::Real(r) => serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number),
        Cell::Text(t) => Value::String(t),
        Cell::Blob(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Value::String(format!("x'{hex}'"))
        }
    }
}

fn result(r: QueryResult) -> SqlResult {
    SqlResult {
        columns: r.columns,
        rows: r
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(cell).collect())
            .collect(),
        truncated: r.truncated,
        elapsed_ms: (r.elapsed.as_secs_f64() * 1e6).round() / 1e3,
    }
}

fn console_error(e: ConsoleError) -> ApiError {
    match e {
        ConsoleError::Refused(m) => {
            ApiError::new(StatusCode::FORBIDDEN, "read-only", "Read-Only", m).field("sql")
        }
        ConsoleError::Invalid(m) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-sql",
            "Invalid SQL",
            m,
        )
        .field("sql"),
        e @ ConsoleError::TimedOut(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "query-timeout",
            "Query Too Slow",
            e.to_string(),
        )
        .field("sql"),
        e @ ConsoleError::NoSuchTable(_) => ApiError::not_found(e.to_string()),
        ConsoleError::Store(e) => {
            tracing::warn!(error = %warmpool_engine::error_chain(&e), "console read failed");
            ApiError::unavailable(
                "store-unavailable",
                "Store Unavailable",
                "the store cannot be read right now",
                1,
            )
        }
    }
}

/// `POST /v1/sql` `{"sql": "..."}`: runs one read-only statement.
#[utoipa::path(post, path = "/v1/sql", tag = "studio",
    request_body(content = SqlRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "At most 500 rows (`truncated` if there were more), on a read-only connection", body = SqlResult),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing or wrong admin token (or studio session)", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Refused: the statement would write, attach, set a pragma or run more than one statement; or a cookie-authenticated request without X-Requested-With", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "Not JSON", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid SQL (`invalid-sql`), or stopped at the 2 s time limit (`query-timeout`)", body = Problem, content_type = PROBLEM),
        (status = 503, description = "The store cannot be read right now", body = Problem, content_type = PROBLEM),
    )
)]
pub(crate) async fn sql(
    State(s): State<Arc<Shared>>,
    JsonBody(SqlRequest { sql }): JsonBody<SqlRequest>,
) -> Result<Json<SqlResult>, ApiError> {
    let r = s
        .app
        .store
        .console_query(sql, ConsoleLimits::default())
        .await
        .map_err(console_error)?;
    Ok(Json(result(r)))
}

/// `GET /v1/tables`: the store's tables, their columns and row counts.
#[utoipa::path(get, path = "/v1/tables", tag = "studio",
    responses(
        (status = 200, description = "The store's tables with their columns and row counts", body = TableList),
        (status = 401, description = "Missing or wrong admin token (or studio session)", body = Problem, content_type = PROBLEM),
        (status = 503, description = "The store cannot be read right now", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn tables(State(s): State<Arc<Shared>>) -> Result<Json<TableList>, ApiError> {
    let tables = s
        .app
        .store
        .console_tables(ConsoleLimits::default())
        .await
        .map_err(console_error)?;
    Ok(Json(TableList {
        tables: tables
            .into_iter()
            .map(|t| TableView {
                name: t.name,
                rows: t.rows,
                columns: t
                    .columns
                    .into_iter()
                    .map(|c| ColumnView {
                        name: c.name,
                        decl_type: c.decl_type,
                        not_null: c.not_null,
                        primary_key: c.primary_key,
                    })
                    .collect(),
            })
            .collect(),
    }))
}

/// `GET /v1/tables/{name}/rows?offset=&limit=`: one page, in key order;
/// `truncated` says more rows follow.
#[utoipa::path(get, path = "/v1/tables/{name}/rows", tag = "studio", operation_id = "table_rows",
    params(
        ("name" = String, Path, description = "A table named by GET /v1/tables"),
        ("offset" = Option<u64>, Query, description = "Rows to skip (default 0)"),
        ("limit" = Option<u32>, Query, description = "1 to 500 (default 100)")
    ),
    responses(
        (status = 200, description = "One page in primary key order; `truncated` if more rows follow", body = SqlResult),
        (status = 401, description = "Missing or wrong admin token (or studio session)", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such table", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid or unknown parameter", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn rows(
    State(s): State<Arc<Shared>>,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<SqlResult>, ApiError> {
    // Every error is a problem document, even for a mangled path or query.
    let Ok(Path(name)) = name else {
        return Err(ApiError::not_found("no such table"));
    };
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let mut offset = 0u64;
    let mut limit = 100usize;
    for (k, v) in q {
        match k.as_str() {
            "offset" => {
                offset = v
                    .parse()
                    .ok()
                    .filter(|o| *o <= i64::MAX as u64)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "offset",
                            format!("expected a non-negative whole number, got {v:?}"),
                        )
                    })?
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE).contains(l))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "limit",
                            format!("expected a whole number from 1 to {MAX_PAGE}, got {v:?}"),
                        )
                    })?
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!("unknown query parameter {other:?}: expected offset or limit"),
                ))
            }
        }
    }
    let r = s
        .app
        .store
        .console_rows(name, offset, limit, ConsoleLimits::default())
        .await
        .map_err(console_error)?;
    Ok(Json(result(r)))
}
