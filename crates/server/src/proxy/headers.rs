//! Headers on the way to a container and back: hop-by-hop headers removed (and
//! upgrades re-announced), warmpool's own credentials stripped, `X-Forwarded-*`
//! added.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};

use crate::config::Config;

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

pub(super) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

/// Rewrites a request's headers for the hop to a container: hop-by-hop headers
/// and warmpool's credentials removed, `Host` replaced by `X-Forwarded-Host`, the
/// peer appended to `X-Forwarded-For`, and, for an `upgrade`, `Connection` and
/// `Upgrade` announced again.
pub(super) fn to_container(
    headers: &mut HeaderMap,
    config: &Config,
    peer: SocketAddr,
    upgrade: bool,
) {
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    let host = headers.get(header::HOST).cloned();
    strip_hop_by_hop(headers);
    strip_warmpool_credentials(config, headers);
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
}

/// Removes what would let a container act as warmpool's operator: an
/// `Authorization` header holding one of warmpool's tokens (the proxy may have
/// required it; the app never needs it), and the studio's session cookie. Anything
/// else the client sends is the app's business and passes through.
fn strip_warmpool_credentials(config: &Config, headers: &mut HeaderMap) {
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

