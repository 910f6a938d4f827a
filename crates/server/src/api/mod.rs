//! The management API, one module per resource: `containers` (claim, list, get,
//! release), `pools`, `events` and `meta` (health, readiness, metrics, history).
//! Handlers are thin: deserialize into the client crate's wire types, call the
//! domain, convert to a view. Each handler carries its `#[utoipa::path]`;
//! `crate::routes` lists it with its access class. Shared here: reading a JSON
//! body into a wire type, and the problem documents every resource answers.

use std::collections::HashMap;
use std::error::Error as _;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::Value;
use warmpool_core::ContainerId;

use crate::problem::ApiError;

pub(crate) mod containers;
pub(crate) mod events;
pub(crate) mod meta;
pub(crate) mod pools;
pub(crate) mod setup;

/// Largest accepted management request body.
pub(crate) const MAX_BODY: usize = 2 * 1024 * 1024;

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;

/// The problem document for a store that cannot be read.
pub(crate) fn store_error(e: warmpool_store::StoreError) -> ApiError {
    tracing::warn!(error = %warmpool_engine::error_chain(&e), "store read failed");
    ApiError::unavailable(
        "store-unavailable",
        "Store Unavailable",
        "the store cannot be read right now",
        1,
    )
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Payload Too Large",
        format!("request bodies are limited to {limit} bytes"),
    )
}

/// The problem document for a body that could not be read: 408 when the client
/// paused too long ([`crate::body`]), 413 past `limit` bytes, else 400.
pub(crate) fn body_error(e: BytesRejection, limit: usize) -> ApiError {
    if let Some(t) = e.source().and_then(crate::body::is_body_timeout) {
        return ApiError::body_timeout(t);
    }
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(limit);
    }
    ApiError::bad_request(format!("cannot read the request body: {e}"))
}

/// A wire type of the client crate taken as a JSON request body.
pub(crate) trait RequestBody: DeserializeOwned + utoipa::PartialSchema {
    /// The largest body accepted, in bytes.
    const LIMIT: usize = MAX_BODY;
}

/// Extracts a request body of type `T`. Every failure is a problem document: 408
/// stalled, 413 past `T::LIMIT`, 400 not JSON, 415 a content type other than
/// JSON, 422 not an object or not a `T` (unknown fields included: the wire types
/// refuse them), naming the field. An empty body, or `null`, is `{}`.
pub(crate) struct JsonBody<T>(pub T);

impl<T: RequestBody, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, T::LIMIT)
            .await
            .map_err(|e| read_error(&e, T::LIMIT))?;
        let object = json_object(&parts.headers, &bytes)?;
        from_object(object).map(JsonBody)
    }
}

/// [`body_error`] for a body read with [`axum::body::to_bytes`].
fn read_error(e: &(dyn std::error::Error + 'static), limit: usize) -> ApiError {
    if let Some(t) = crate::body::is_body_timeout(e) {
        return ApiError::body_timeout(t);
    }
    let mut next = Some(e);
    while let Some(cause) = next {
        if cause.is::<http_body_util::LengthLimitError>() {
            return too_large(limit);
        }
        next = cause.source();
    }
    ApiError::bad_request(format!("cannot read the request body: {e}"))
}

/// Reads a JSON object body: empty means `{}`; wrong content type 415; not JSON
/// 400; not an object 422.
fn json_object(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let empty = || Value::Object(Default::default());
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(empty());
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported Media Type",
                format!("expected application/json, got {essence:?}"),
            ));
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        // `null` says what an empty body says: no fields.
        Ok(Value::Null) => Ok(empty()),
        Ok(_) => Err(ApiError::invalid("", "the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
    }
}

/// Deserializes a JSON object into `T`; a failure is a 422 naming the field
/// (`targets.wnam` inside an object), a missing one by `T`'s schema.
pub(crate) fn from_object<T: RequestBody>(object: Value) -> Result<T, ApiError> {
    let e = match serde_path_to_error::deserialize::<_, T>(&object) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    let field = field_of(e.path())
        .or_else(|| missing_required::<T>(&object))
        .unwrap_or_default();
    Err(ApiError::invalid(&field, e.into_inner().to_string()))
}

/// `a.b.c` for a path into nested objects; `None` at the root.
fn field_of(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let parts: Vec<String> = path
        .iter()
        .map(|s| match s {
            Segment::Map { key } => key.clone(),
            Segment::Seq { index } => index.to_string(),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => "?".to_owned(),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// The first property `T`'s schema requires that `object` lacks (serde reports a
/// missing field at the object's own path).
fn missing_required<T: utoipa::PartialSchema>(object: &Value) -> Option<String> {
    use utoipa::openapi::{RefOr, Schema};
    let RefOr::T(Schema::Object(schema)) = T::schema() else {
        return None;
    };
    schema
        .required
        .into_iter()
        .find(|r| object.get(r).is_none())
}

/// The container id of a path, as a problem document when the path cannot even be
/// decoded (bad percent-encoding).
pub(crate) fn id_in_path(
    raw: Result<Path<String>, PathRejection>,
) -> Result<ContainerId, ApiError> {
    match raw {
        Ok(Path(raw)) => raw
            .parse()
            .map_err(|e: warmpool_core::InvalidContainerId| ApiError::not_found(e.to_string())),
        Err(e) => Err(ApiError::not_found(format!("no such container: {e}"))),
    }
}

/// The query string's parameters, as a problem document when it cannot be decoded.
pub(crate) fn query_map(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
}

/// Any path no route matches.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// A routed path asked with a method it does not serve.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method Not Allowed",
        "this route does not accept that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_client::{ClaimRequest, SqlRequest};

    fn check<T: RequestBody + std::fmt::Debug>(body: &str) -> Result<T, (u16, Option<String>)> {
        json_object(&HeaderMap::new(), &Bytes::copy_from_slice(body.as_bytes()))
            .and_then(from_object::<T>)
            .map_err(|e| (e.status.as_u16(), e.field))
    }

    #[test]
    fn body_errors_name_their_field() {
        let f = |s: &str| Some(s.to_owned());
        assert_eq!(check::<ClaimRequest>("").unwrap(), ClaimRequest::default());
        assert_eq!(
            check::<ClaimRequest>("null").unwrap(),
            ClaimRequest::default()
        );
        assert_eq!(check::<ClaimRequest>("{").unwrap_err(), (400, None));
        assert_eq!(check::<ClaimRequest>("[]").unwrap_err(), (422, f("")));
        assert_eq!(
            check::<ClaimRequest>(r#"{"": null}"#).unwrap_err(),
            (422, f(""))
        );
        assert_eq!(
            check::<ClaimRequest>(r#"{"pool": null, "colour": 1}"#).unwrap_err(),
            (422, f("colour"))
        );
        assert_eq!(
            check::<ClaimRequest>(r#"{"maxLifetimeInSeconds": -1}"#).unwrap_err(),
            (422, f("maxLifetimeInSeconds"))
        );
        assert_eq!(check::<SqlRequest>("").unwrap_err(), (422, f("sql")));
        assert_eq!(
            check::<SqlRequest>(r#"{"sql": "SELECT 1"}"#).unwrap().sql,
            "SELECT 1"
        );
    }
}
