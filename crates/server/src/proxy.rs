//! The reverse proxy: `ANY /container/{id}/{*path}` to the container's app.
//!
//! The hot path reads the in-memory route table only (never SQLite), streams bodies
//! both ways, keeps pooled keep-alive connections per container, and passes
//! WebSocket (and any HTTP/1.1) upgrades through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::uri::Authority;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use percent_encoding::percent_decode_str;
use warmpool_core::{ContainerId, ContainerState};
use warmpool_runtime::Inspection;

use crate::app::now;
use crate::problem::ApiError;
use crate::registry::{ActivityGuard, Route};
use crate::state::Shared;

/// How long the proxy waits for a container's response headers before 504.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// The pooled HTTP client to containers.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
}

impl Default for Upstream {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Self { client }
    }
}

/// Headers that describe one hop, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether `path` (the part after `/container/{id}`) may reach the app's `/admin`
/// surface under any common reading: any interleaving of percent-decoding and
/// dot-segment resolution (`%2e` counts as a dot; empty segments kept, as URL
/// rules do, or merged first), backslashes read as slashes, in any letter case.
/// Refusing too much is safe; refusing too little is not.
pub fn is_admin_path(path: &str) -> bool {
    // Nothing to decode or resolve (the common case): one reading, no allocation.
    if !path.contains(['%', '\\']) && !path.split('/').any(|s| s == "." || s == "..") {
        return first_segment_is_admin(path.split('/'));
    }
    const MAX_READINGS: usize = 256;
    let mut seen = std::collections::HashSet::new();
    let mut frontier = vec![path.to_owned()];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for p in frontier {
            if first_segment_is_admin(p.split(['/', '\\'])) {
                return true;
            }
            let decoded = percent_decode_str(&p).decode_utf8_lossy().into_owned();
            for reading in [decoded, resolve_dots(&p, true), resolve_dots(&p, false)] {
                if reading != p && seen.insert(reading.clone()) {
                    next.push(reading);
                }
            }
            if seen.len() > MAX_READINGS {
                // Deliberately convoluted: no legitimate client sends this.
                return true;
            }
        }
        frontier = next;
    }
    false
}

fn first_segment_is_admin<'a>(mut segments: impl Iterator<Item = &'a str>) -> bool {
    segments
        .find(|s| !s.is_empty())
        .is_some_and(|s| s.len() >= 5 && s.as_bytes()[..5].eq_ignore_ascii_case(b"admin"))
}

/// `p` with dot segments resolved, keeping empty segments (URL rules: `a//..` is
/// `a/`) or merging them first (`a//..` is `/`).
fn resolve_dots(p: &str, keep_empty: bool) -> String {
    let mut resolved: Vec<&str> = Vec::new();
    for seg in p.split(['/', '\\']).filter(|s| keep_empty || !s.is_empty()) {
        match seg.to_ascii_lowercase().as_str() {
            "." | "%2e" => {}
            ".." | "%2e%2e" | ".%2e" | "%2e." => {
                resolved.pop();
            }
            _ => resolved.push(seg),
        }
    }
    // The leading empty segment (if kept) is the leading slash.
    resolved.join("/")
}

/// `path`, with `?query` when there is one.
fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

/// Splits `/container/{id}{rest}` into the id and the rest (`""` or `/...`).
fn split_path(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix("/container/")?;
    Some(match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    })
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for h in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(h);
    }
    headers.remove(header::UPGRADE);
}

/// Longest the proxy waits, after a failed request, for the container's exit
/// to be recorded (or for the runtime to say it has ended): a container killed a
/// moment ago answers 410 with its exit, not 502. (Docker may take a few hundred
/// milliseconds to notice that a killed container's process is gone.)
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// How often the runtime is asked meanwhile.
const EXIT_ASK_EVERY: Duration = Duration::from_millis(200);

/// Why the container ended, if it has: its recorded end (which says the most:
/// out of memory, released...), or else, at the end of [`EXIT_GRACE`], what the
/// runtime said of it (asked every [`EXIT_ASK_EVERY`]; the exit event that
/// follows records it as usual). Only failed requests pay for this.
async fn dies(shared: &Shared, id: ContainerId) -> Option<String> {
    let deadline = tokio::time::Instant::now() + EXIT_GRACE;
    let mut ask_at = tokio::time::Instant::now();
    let mut said = None;
    loop {
        match shared.app.registry.route(&id) {
            Some(Route::Gone { reason, .. }) => return Some(reason.to_string()),
            None => return Some("it ended".into()),
            Some(Route::Live { .. }) => {}
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return said;
        }
        if said.is_none() && now >= ask_at {
            ask_at = now + EXIT_ASK_EVERY;
            let handle = shared.app.registry.get(&id).and_then(|e| e.handle);
            if let Some(handle) = handle {
                let asked =
                    tokio::time::timeout(EXIT_ASK_EVERY, shared.app.runtime.inspect(id, &handle));
                said = match asked.await {
                    Ok(Ok(Inspection::Exited { code })) => Some(exited(code)),
                    Ok(Ok(Inspection::Gone)) => Some("it was removed".into()),
                    _ => None,
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `exited with code 1`, `exited (killed by signal 9)`.
fn exited(code: Option<i32>) -> String {
    match code {
        Some(c) if c > 128 => format!("exited (killed by signal {})", c - 128),
        Some(c) => format!("exited with code {c}"),
        None => "exited".into(),
    }
}

fn gone(id: &str, reason: &str) -> Response {
    ApiError::new(
        StatusCode::GONE,
        "container-gone",
        "Container Gone",
        format!("container {id} is no longer available: {reason}"),
    )
    .into_response()
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = std::time::Instant::now();
    let resp = route_and_forward(&shared, peer, req).await;
    let metrics = &shared.app.metrics;
    metrics.proxied(resp.status().as_u16());
    metrics
        .proxy_seconds
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn route_and_forward(shared: &Shared, peer: SocketAddr, req: Request) -> Response {
    let Some((raw_id, rest)) = split_path(req.uri().path()) else {
        return ApiError::not_found("no such route").into_response();
    };
    let Ok(id) = raw_id.parse::<ContainerId>() else {
        return ApiError::not_found(format!("no container {raw_id:?}")).into_response();
    };
    if is_admin_path(rest) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "admin-forbidden",
            "Forbidden",
            "the /admin paths of containers are not reachable through the proxy",
        )
        .into_response();
    }
    let (upstream, activity) = match shared.app.registry.route(&id) {
        Some(Route::Live {
            upstream,
            expires_at,
            activity,
        }) => {
            if expires_at <= now() {
                return gone(raw_id, "expired");
            }
            (upstream, activity)
        }
        Some(Route::Gone { reason, .. }) => return gone(raw_id, &reason),
        None => return ApiError::not_found(format!("no allocated container {id}")).into_response(),
    };

    let path_and_query = with_query(if rest.is_empty() { "/" } else { rest }, req.uri().query());
    // Open until the answer's headers (or, upgraded, the end of the connection).
    let open = activity.begin();
    forward(shared, id, upstream, path_and_query, peer, req, Some(open)).await
}

/// Removes what would let a container act as warmpool's operator: an
/// `Authorization` header holding one of warmpool's tokens (the proxy may have
/// required it; the app never needs it), and the studio's session cookie. Anything
/// else the client sends is the app's business and passes through.
fn strip_warmpool_credentials(config: &crate::config::Config, headers: &mut HeaderMap) {
    let ours = crate::auth::bearer_token(headers).is_some_and(|t| {
        crate::auth::any_matches(&config.api_tokens, t)
            || crate::auth::any_matches(&config.admin_tokens, t)
    });
    if ours {
        headers.remove(header::AUTHORIZATION);
    }
    // Only requests that carry the session cookie pay for rewriting the header.
    let is_session = |c: &str| {
        c.split_once('=')
            .is_some_and(|(k, _)| k.trim() == crate::studio::COOKIE)
    };
    let cookies = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
    };
    let unreadable = headers
        .get_all(header::COOKIE)
        .iter()
        .any(|v| v.to_str().is_err());
    if !unreadable && !cookies().any(is_session) {
        return;
    }
    let kept: Vec<&str> = cookies()
        .map(str::trim)
        .filter(|c| !c.is_empty() && !is_session(c))
        .collect();
    let kept = HeaderValue::from_str(&kept.join("; ")).ok();
    headers.remove(header::COOKIE);
    if let Some(v) = kept.filter(|v| !v.is_empty()) {
        headers.insert(header::COOKIE, v);
    }
}

/// Sends `req` to the container at `upstream` as `path_and_query`, streaming both
/// ways and passing upgrades through, and never warmpool's own credentials
/// ([`strip_warmpool_credentials`]); errors are the proxy's problem documents.
pub async fn forward(
    shared: &Shared,
    id: ContainerId,
    upstream: Authority,
    path_and_query: String,
    peer: SocketAddr,
    mut req: Request,
    activity: Option<ActivityGuard>,
) -> Response {
    let uri = match Uri::builder()
        .scheme("http")
        .authority(upstream)
        .path_and_query(path_and_query)
        .build()
    {
        Ok(u) => u,
        Err(_) => {
            return ApiError::bad_request("the request path cannot be forwarded").into_response()
        }
    };

    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let upgrade_value = req.headers().get(header::UPGRADE).cloned();
    let host = req.headers().get(header::HOST).cloned();
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    strip_warmpool_credentials(&shared.app.config, headers);
    headers.remove(header::HOST);
    if let (true, Some(v)) = (upgrade, upgrade_value) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, v);
    }
    let xff = HeaderName::from_static("x-forwarded-for");
    let peer_ip = peer.ip().to_string();
    let forwarded_for = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {peer_ip}"),
        None => peer_ip,
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(xff, v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Some(h) = host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), h);
    }

    let mut resp =
        match tokio::time::timeout(UPSTREAM_TIMEOUT, shared.upstream.client.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(container_id = %id, error = %e, "upstream request failed");
                // Refused or reset: most likely the container died a moment ago.
                if let Some(reason) = dies(shared, id).await {
                    return gone(&id.to_string(), &reason);
                }
                if let Some(t) = crate::body::is_body_timeout(&e) {
                    return ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "body-timeout",
                        "Request Timeout",
                        format!(
                            "the request body stalled: nothing came for {}s",
                            t.as_secs_f64()
                        ),
                    )
                    .into_response();
                }
                return ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "container-unreachable",
                    "Bad Gateway",
                    format!("container {id} did not answer"),
                )
                .into_response();
            }
            Err(_) => {
                return ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "container-timeout",
                    "Gateway Timeout",
                    format!(
                        "container {id} did not answer within {}s",
                        UPSTREAM_TIMEOUT.as_secs()
                    ),
                )
                .into_response()
            }
        };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let counted = shared.app.upgrade_opened();
            tokio::spawn(async move {
                // An open WebSocket keeps the container busy, and shutdown waits
                // for it (up to the drain timeout).
                let _open = (activity, counted);
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let _ = tokio::io::copy_bidirectional(
                            &mut TokioIo::new(client),
                            &mut TokioIo::new(upstream),
                        )
                        .await;
                    }
                    Err(e) => tracing::debug!(container_id = %id, error = %e, "upgrade failed"),
                }
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, Body::empty());
        }
    }
    strip_hop_by_hop(resp.headers_mut());
    resp.map(Body::new)
}

/// `POST /v1/containers/{id}/admin/{*path}` (admin token): forwards to the
/// container's own `/admin/{path}`, which the public proxy never reaches.
pub async fn admin_passthrough(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let path = req.uri().path();
    let Some((raw_id, rest)) = path
        .strip_prefix("/v1/containers/")
        .and_then(|p| p.split_once("/admin/"))
    else {
        return ApiError::not_found("no such route").into_response();
    };
    let Ok(id) = raw_id.parse::<ContainerId>() else {
        return ApiError::not_found(format!("no container {raw_id:?}")).into_response();
    };
    let upstream = match shared.app.registry.get(&id) {
        Some(e) if matches!(e.state, ContainerState::Ready | ContainerState::Allocated) => {
            match e
                .address
                .as_deref()
                .and_then(|a| a.parse::<Authority>().ok())
            {
                Some(a) => a,
                None => {
                    return ApiError::not_found(format!("container {id} has no address"))
                        .into_response()
                }
            }
        }
        Some(e) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "container-not-running",
                "Conflict",
                format!("container {id} is {}", e.state),
            )
            .into_response()
        }
        None => return ApiError::not_found(format!("no live container {id}")).into_response(),
    };
    let path_and_query = with_query(&format!("/admin/{rest}"), req.uri().query());
    forward(&shared, id, upstream, path_and_query, peer, req, None).await
}

impl Upstream {
    /// `POST http://{address}{path}` with `body`; the answer's status.
    pub async fn post(
        &self,
        address: &str,
        path: &str,
        body: bytes::Bytes,
    ) -> Result<StatusCode, String> {
        let uri: Uri = format!("http://{address}{path}")
            .parse()
            .map_err(|e| format!("bad address {address:?}: {e}"))?;
        let req = axum::http::Request::post(uri)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from(body))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(10), self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp.status()),
            Ok(Err(e)) => Err(format!("the container did not answer: {e}")),
            Err(_) => Err("the container did not answer within 10 s".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths_are_recognised_in_every_spelling() {
        for p in [
            "/admin",
            "/admin/",
            "/admin/update-text",
            "/ADMIN/update-text",
            "/%61dmin/update-text",
            "/%2561dmin/update-text",
            "/x/../admin/update-text",
            "/x/%2e%2e/admin",
            "/x/%2E%2E/admin",
            "//admin/update-text",
            "/./admin",
            "/admin%2fupdate-text",
            "\\admin\\update-text",
            "/x/..\\admin",
            "/../../admin",
            "/admin;x=1",
            // Found by the property tests below: an unresolved reading, a
            // resolution that keeps empty segments, resolution between decodings.
            "/admin/%2e%2e",
            "/..%2fadmin//%2e%2e",
            "/../%2561dmin%252f%2e%2e",
        ] {
            assert!(is_admin_path(p), "{p} not refused");
        }
        for p in [
            "",
            "/",
            "/x",
            "/x/admin",
            "/adm",
            "/ws",
            "/x/../y",
            "/static/app.js",
            "/%C3%A4dmin",
            "/\u{e4}dmin\u{e4}",
        ] {
            assert!(!is_admin_path(p), "{p} refused");
        }
    }

    /// Pieces of hostile paths: spellings of `admin`, dot segments (plain and
    /// encoded), separators (plain, doubled, encoded, backslashes), and noise.
    pub(crate) fn hostile_path() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let segment = prop_oneof![
            Just("admin".to_owned()),
            Just("ADMIN".to_owned()),
            Just("Admin".to_owned()),
            Just("%61dmin".to_owned()),
            Just("adm%69n".to_owned()),
            Just("%2561dmin".to_owned()),
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just("%2e%2e".to_owned()),
            Just("%2E.".to_owned()),
            Just(".%2e".to_owned()),
            Just("%252e%252e".to_owned()),
            Just(String::new()),
            Just("update-text".to_owned()),
            "[a-z]{1,3}",
        ];
        let sep = prop_oneof![
            Just("/"),
            Just("//"),
            Just("\\"),
            Just("%2f"),
            Just("%2F"),
            Just("%5c"),
            Just("%252f"),
            Just(";x=1/"),
        ];
        proptest::collection::vec((sep, segment), 1..6)
            .prop_map(|parts| parts.into_iter().map(|(s, g)| format!("{s}{g}")).collect())
    }

    /// Ways a server might read a path: as is, decoded once, with dot segments
    /// resolved (WHATWG URL rules, which also read `\\` as `/`), in both orders.
    fn readings(path: &str) -> Vec<String> {
        let once = percent_decode_str(path).decode_utf8_lossy().into_owned();
        let mut out = vec![path.to_owned(), once.clone()];
        for p in [path, once.as_str()] {
            let slashed = if p.starts_with('/') {
                p.to_owned()
            } else {
                format!("/{p}")
            };
            if let Ok(u) = url::Url::parse(&format!("http://h{slashed}")) {
                out.push(
                    percent_decode_str(u.path())
                        .decode_utf8_lossy()
                        .into_owned(),
                );
                out.push(u.path().to_owned());
            }
        }
        out
    }

    /// A reading reaches `/admin` when, with empty segments merged and case
    /// ignored, it starts there.
    fn reaches_admin(reading: &str) -> bool {
        let merged: Vec<&str> = reading
            .split(['/', '\\'])
            .filter(|s| !s.is_empty())
            .collect();
        format!("/{}", merged.join("/"))
            .to_ascii_lowercase()
            .starts_with("/admin")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4_000))]
        /// No path that any common reading takes to `/admin` gets through.
        #[test]
        fn no_reading_of_a_passed_path_reaches_admin(path in hostile_path()) {
            if !is_admin_path(&path) {
                for r in readings(&path) {
                    proptest::prop_assert!(!reaches_admin(&r), "{path:?} passes but reads as {r:?}");
                }
            }
        }

        /// Arbitrary input never panics the check.
        #[test]
        fn any_path_is_checked_without_panicking(path in "\\PC{0,64}") {
            let _ = is_admin_path(&path);
        }
    }

    #[test]
    fn container_paths_split_into_id_and_rest() {
        assert_eq!(split_path("/container/abc"), Some(("abc", "")));
        assert_eq!(split_path("/container/abc/"), Some(("abc", "/")));
        assert_eq!(split_path("/container/abc/a/b"), Some(("abc", "/a/b")));
        assert_eq!(split_path("/v1/containers"), None);
    }
}
