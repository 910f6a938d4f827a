//! warmpool's bearer tokens in a request: reading the presented one, and
//! comparing it with the configured ones in constant time. The auth middleware
//! uses them to let requests in; the proxy, to strip them before a request
//! leaves for a container.

use axum::http::header;

use crate::config::Token;

/// The token of an `Authorization: Bearer` header.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let token = v
        .strip_prefix(b"Bearer ")
        .or_else(|| v.strip_prefix(b"bearer "))?;
    Some(token.trim_ascii())
}

pub fn any_matches(tokens: &[Token], presented: &[u8]) -> bool {
    // Every token is compared, so the time taken does not say which one matched.
    tokens
        .iter()
        .fold(false, |found, t| t.matches(presented) | found)
}
