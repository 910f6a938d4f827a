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
    let ours = crate::tokens::bearer_token(headers).is_some_and(|t| {
        crate::tokens::any_matches(&config.api_tokens, t)
            || crate::tokens::any_matches(&config.admin_tokens, t)
    });
    if ours {
        headers.remove(header::AUTHORIZATION);
    }
    // Only requests that carry the session cookie pay for rewriting the header.
    let is_session = |c: &str| {
        c.split_once('=')
            .is_some_and(|(k, _)| k.trim() == crate::sessions::COOKIE)
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

#[cfg(test)]
mod tests {
    use super::*;

    const API: &str = "aaaaaaaaaaaaaaaa-api";
    const ADMIN: &str = "bbbbbbbbbbbbbbbb-admin";

    /// `request`'s headers as they leave for the container (sent by 10.0.0.1 to a
    /// warmpool with the tokens [`API`] and [`ADMIN`]) are `expected`, in any order.
    fn check(request: &[(&str, &str)], expected: &[(&str, &str)]) {
        let config = Config::from_lookup(|k| match k {
            "WARMPOOL_API_TOKEN" => Some(API.into()),
            "WARMPOOL_ADMIN_TOKEN" => Some(ADMIN.into()),
            _ => None,
        })
        .unwrap();
        let mut headers = HeaderMap::new();
        for (k, v) in request {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let upgrade = is_upgrade(&headers);
        to_container(
            &mut headers,
            &config,
            "10.0.0.1:5000".parse().unwrap(),
            upgrade,
        );
        let mut got: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        got.sort();
        let mut expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        expected.sort();
        assert_eq!(got, expected, "for {request:?}");
    }

    /// What every request gains.
    const FORWARDED: [(&str, &str); 2] = [
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-proto", "http"),
    ];

    fn with_forwarded<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        FORWARDED.iter().chain(extra).copied().collect()
    }

    #[test]
    fn a_request_keeps_its_own_headers_and_gains_x_forwarded() {
        check(
            &[("host", "example.test:8787"), ("accept", "*/*")],
            &with_forwarded(&[("accept", "*/*"), ("x-forwarded-host", "example.test:8787")]),
        );
        check(
            &[("x-forwarded-for", "192.0.2.7")],
            &[
                ("x-forwarded-for", "192.0.2.7, 10.0.0.1"),
                ("x-forwarded-proto", "http"),
            ],
        );
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        check(
            &[
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("proxy-authorization", "Basic eDp5"),
                ("te", "trailers"),
                ("trailer", "x-sum"),
                ("transfer-encoding", "chunked"),
                // Without `Connection: upgrade` this is no upgrade.
                ("upgrade", "websocket"),
                ("x-end-to-end", "kept"),
            ],
            &with_forwarded(&[("x-end-to-end", "kept")]),
        );
    }

    #[test]
    fn an_upgrade_is_announced_again() {
        check(
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            &with_forwarded(&[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ]),
        );
    }

    #[test]
    fn warmpool_credentials_are_stripped_and_the_apps_kept() {
        let session = crate::sessions::COOKIE;
        let api = format!("Bearer {API}");
        let admin = format!("bearer {ADMIN}");
        let both = format!("a=1; {session}=s3cret; b=2");
        let only = format!("{session}=s3cret");
        for (request, expected) in [
            (vec![("authorization", api.as_str())], vec![]),
            (vec![("authorization", admin.as_str())], vec![]),
            (
                vec![("authorization", "Bearer the-apps-own-token-1234")],
                vec![("authorization", "Bearer the-apps-own-token-1234")],
            ),
            (
                vec![("cookie", both.as_str())],
                vec![("cookie", "a=1; b=2")],
            ),
            (vec![("cookie", only.as_str())], vec![]),
            (vec![("cookie", "a=1; b=2")], vec![("cookie", "a=1; b=2")]),
        ] {
            check(&request, &with_forwarded(&expected));
        }
    }
}
