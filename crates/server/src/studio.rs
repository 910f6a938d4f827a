//! The studio (`/studio`): a web console for the pools and the store, served from
//! files embedded in the binary, and its login.
//!
//! The login form takes an admin token and answers with a cookie holding a random
//! session id (never the token), kept in memory with an expiry. The auth
//! middleware accepts that cookie as an admin token; a cookie-authenticated
//! request that changes state must also carry `X-Requested-With` or a JSON
//! content type, which a cross-site form cannot send (and the cookie is
//! `SameSite=Strict` besides). The page itself reads and acts only through the
//! public API.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::sessions::{session_cookie, COOKIE, SESSION_TTL};
use crate::state::Shared;

const INDEX_HTML: &str = include_str!("../studio/index.html");
const LOGIN_HTML: &str = include_str!("../studio/login.html");
const STUDIO_CSS: &str = include_str!("../studio/studio.css");
const STUDIO_JS: &str = include_str!("../studio/studio.js");

/// Whether the request carries a live session or an admin bearer token.
fn logged_in(s: &Shared, headers: &HeaderMap) -> bool {
    if session_cookie(headers).is_some_and(|id| s.sessions.valid(id)) {
        return true;
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| {
            v.strip_prefix(b"Bearer ")
                .or_else(|| v.strip_prefix(b"bearer "))
        })
        .map(<[u8]>::trim_ascii);
    presented.is_some_and(|t| crate::tokens::any_matches(&s.config.admin_tokens, t))
}

/// Headers of every studio page: no framing, no sniffing, nothing but itself.
fn page(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The login page, with a message (fixed texts only: nothing of the request is
/// echoed).
fn login_page(status: StatusCode, message: &str) -> Response {
    let msg = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" role=\"alert\" id=\"login-error\">{message}</p>")
    };
    page(status, LOGIN_HTML.replace("<!--MESSAGE-->", &msg))
}

const NO_ADMIN: &str =
    "No admin token is configured (WARMPOOL_ADMIN_TOKEN), so the studio is closed.";

/// `GET /studio`: the console, or the login form without a session.
#[utoipa::path(get, path = "/studio", tag = "studio", operation_id = "studio",
    responses((status = 200, description = "The studio page; the login form when tokens are configured and there is no session", content_type = "text/html"))
)]
pub async fn index(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let config = &s.config;
    if !config.auth_enabled() || logged_in(&s, &headers) {
        let auth = if config.auth_enabled() {
            "session"
        } else {
            "open"
        };
        return page(
            StatusCode::OK,
            INDEX_HTML.replace("data-auth=\"\"", &format!("data-auth=\"{auth}\"")),
        );
    }
    if config.admin_tokens.is_empty() {
        return login_page(StatusCode::OK, NO_ADMIN);
    }
    login_page(StatusCode::OK, "")
}

fn see_other(cookie: Option<String>) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/studio"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    resp
}

/// The value of `name` in a form-encoded body.
fn form_value(body: &[u8], name: &str) -> Option<Vec<u8>> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        if k != name.as_bytes() {
            return None;
        }
        let plus: Vec<u8> = v
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        Some(percent_encoding::percent_decode(&plus).collect())
    })
}

/// `POST /studio/login` (form: `token`): a session cookie for an admin token.
#[utoipa::path(post, path = "/studio/login", tag = "studio", operation_id = "studio_login",
    request_body(content = crate::openapi::LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Logged in: a `warmpool_session` cookie (HttpOnly, SameSite=Strict, 12 h) holding a random session id, and back to /studio"),
        (status = 401, description = "Not an admin token: the form again", content_type = "text/html"),
        (status = 403, description = "No admin token is configured", content_type = "text/html"),
    )
)]
pub async fn login(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return crate::api::body_error(e, 4096).into_response(),
    };
    let config = &s.config;
    if !config.auth_enabled() {
        return see_other(None);
    }
    if config.admin_tokens.is_empty() {
        return login_page(StatusCode::FORBIDDEN, NO_ADMIN);
    }
    let token = form_value(&body, "token").unwrap_or_default();
    let token = token.trim_ascii();
    if token.is_empty() || !crate::tokens::any_matches(&config.admin_tokens, token) {
        tracing::info!("studio login refused: wrong token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            "That is not an admin token. Try again.",
        );
    }
    let id = s.sessions.create();
    tracing::info!("studio login");
    see_other(Some(format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    )))
}

/// `POST /studio/logout`: ends the session and clears its cookie.
#[utoipa::path(post, path = "/studio/logout", tag = "studio", operation_id = "studio_logout",
    responses((status = 303, description = "The session is ended and its cookie cleared; back to /studio"))
)]
pub async fn logout(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        s.sessions.remove(id);
    }
    see_other(Some(format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    )))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `GET /studio/studio.css`
#[utoipa::path(get, path = "/studio/studio.css", tag = "studio", operation_id = "studio_css",
    responses((status = 200, description = "The studio's style sheet", content_type = "text/css"))
)]
pub async fn css() -> Response {
    asset("text/css; charset=utf-8", STUDIO_CSS)
}

/// `GET /studio/studio.js`
#[utoipa::path(get, path = "/studio/studio.js", tag = "studio", operation_id = "studio_js",
    responses((status = 200, description = "The studio's script", content_type = "text/javascript"))
)]
pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", STUDIO_JS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded() {
        assert_eq!(
            form_value(b"a=1&token=ab%2Bc+d&z", "token").as_deref(),
            Some(&b"ab+c d"[..])
        );
        assert_eq!(form_value(b"tokens=x", "token"), None);
    }
}
