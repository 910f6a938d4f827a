//! Studio logins: in-memory sessions (random id -> expiry; the cookie never holds
//! a token) and how a request's session cookie is read and trusted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, Method};

/// Name of the session cookie.
pub const COOKIE: &str = "warmpool_session";

/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most (the oldest go first past it).
const MAX_SESSIONS: usize = 1000;

/// Logged-in studio sessions: random id -> expiry.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session; answers its id.
    pub fn create(&self) -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, exp| *exp > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), now + SESSION_TTL);
        id
    }

    /// Whether `id` is a live session.
    pub fn valid(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|exp| *exp > Instant::now())
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The session id in the request's cookies, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == COOKIE && !v.is_empty()).then_some(v)
        })
}

/// Whether a cookie-authenticated request may go through: reading always; a
/// change only with a header a cross-site form cannot set.
pub fn cookie_may(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    if headers.contains_key("x-requested-with") {
        return true;
    }
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|ct| ct == "application/json")
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; warmpool_session=xyz; c=d"),
        );
        assert_eq!(session_cookie(&h), Some("xyz"));
        let sessions = Sessions::default();
        let id = sessions.create();
        assert_eq!(id.len(), 64);
        assert!(sessions.valid(&id) && !sessions.valid("xyz"));
        sessions.remove(&id);
        assert!(!sessions.valid(&id));
    }

    #[test]
    fn cookie_changes_need_a_non_simple_header() {
        let mut h = HeaderMap::new();
        assert!(cookie_may(&Method::GET, &h));
        assert!(!cookie_may(&Method::DELETE, &h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!cookie_may(&Method::POST, &h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(cookie_may(&Method::POST, &h));
        let mut h = HeaderMap::new();
        h.insert("x-requested-with", HeaderValue::from_static("studio"));
        assert!(cookie_may(&Method::DELETE, &h));
    }
}
