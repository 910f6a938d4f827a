//! Request header limits, as nginx has them: a request line or header line over
//! `max_line` bytes, more than `max_total` bytes of headers or more than
//! `max_count` header lines is refused before it reaches the API or the proxy,
//! with a problem document (414 for the request line, 431 for headers).
//!
//! hyper is told limits just above these ([`HeaderLimits::hyper_max_headers`],
//! [`HeaderLimits::hyper_max_buf`]), so that any request these limits refuse by a
//! small margin is still parsed and answered with a problem document, while a
//! request far beyond them never takes more memory than that: hyper answers it
//! with its own 431 (no body) and closes the connection.

use axum::http::{Request, StatusCode};

use crate::problem::ApiError;

/// The bytes a request line, or a header line, adds beyond its parts: the
/// separators (` `, ` `, or `: `) and CRLF.
const HEADER_LINE_EXTRA: usize = 4;

/// How much a client may send before its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Longest request line or header line, CRLF included.
    pub max_line: usize,
    /// Most bytes of header lines in all.
    pub max_total: usize,
    /// Most header lines.
    pub max_count: usize,
}

impl Default for HeaderLimits {
    /// nginx's defaults (`large_client_header_buffers 4 8k`, in spirit), and
    /// hyper's count.
    fn default() -> Self {
        HeaderLimits {
            max_line: 8192,
            max_total: 65536,
            max_count: 100,
        }
    }
}

impl HeaderLimits {
    /// The header count hyper parses: one more than allowed, so that the first
    /// header too many still gets a problem document.
    pub fn hyper_max_headers(&self) -> usize {
        self.max_count + 1
    }

    /// hyper's read buffer while it parses a request's head: room for a request
    /// line and headers just over the limits (at least hyper's least, 8 KiB).
    pub fn hyper_max_buf(&self) -> usize {
        (2 * self.max_line + self.max_total + 1024).max(8192)
    }

    /// The problem with `req`'s head, if any. No allocation unless it is refused.
    pub fn check<B>(&self, req: &Request<B>) -> Option<ApiError> {
        let target = req
            .uri()
            .path_and_query()
            .map_or(req.uri().path().len(), |p| p.as_str().len());
        // `GET /path HTTP/1.1` (the version is 8 bytes).
        let line = req.method().as_str().len() + target + 8 + HEADER_LINE_EXTRA;
        if line > self.max_line {
            return Some(ApiError::new(
                StatusCode::URI_TOO_LONG,
                "uri-too-long",
                "URI Too Long",
                format!(
                    "the request line is {line} bytes; the limit is {} (WARMPOOL_MAX_HEADER_LINE_BYTES)",
                    self.max_line
                ),
            ));
        }
        let headers = req.headers();
        if headers.len() > self.max_count {
            return Some(too_large(format!(
                "the request has {} header lines; the limit is {} (WARMPOOL_MAX_HEADERS)",
                headers.len(),
                self.max_count
            )));
        }
        let mut total = 0;
        for (name, value) in headers {
            let len = name.as_str().len() + value.len() + HEADER_LINE_EXTRA;
            if len > self.max_line {
                return Some(
                    too_large(format!(
                        "header {name} is {len} bytes; the limit is {} (WARMPOOL_MAX_HEADER_LINE_BYTES)",
                        self.max_line
                    ))
                    .field(name.as_str()),
                );
            }
            total += len;
        }
        if total > self.max_total {
            return Some(too_large(format!(
                "the headers are {total} bytes; the limit is {} (WARMPOOL_MAX_HEADER_BYTES)",
                self.max_total
            )));
        }
        None
    }
}

fn too_large(detail: String) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "header-too-large",
        "Request Header Fields Too Large",
        detail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, headers: &[(&str, String)]) -> Request<()> {
        let mut b = Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        b.body(()).unwrap()
    }

    const LIMITS: HeaderLimits = HeaderLimits {
        max_line: 100,
        max_total: 300,
        max_count: 5,
    };

    #[test]
    fn a_request_within_every_limit_passes() {
        // A header line of exactly 100 bytes: 1 + 2 + 95 + 2.
        let at_line = vec![("a", "v".repeat(95))];
        assert!(LIMITS.check(&request("/x", &at_line)).is_none());
        let five: Vec<(&str, String)> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|k| (*k, "v".repeat(50)))
            .collect();
        assert!(LIMITS.check(&request("/x", &five)).is_none());
        assert!(HeaderLimits::default()
            .check(&request("/container/x/", &[("host", "h".into())]))
            .is_none());
    }

    #[test]
    fn each_limit_refuses_what_passes_it_by_one() {
        let e = LIMITS
            .check(&request("/x", &[("a", "v".repeat(96))]))
            .unwrap();
        assert_eq!(e.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(e.field.as_deref(), Some("a"));
        assert!(e.detail.contains("101 bytes"), "{}", e.detail);

        let six: Vec<(&str, String)> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|k| (*k, "v".into()))
            .collect();
        let e = LIMITS.check(&request("/x", &six)).unwrap();
        assert_eq!(e.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(e.detail.contains("6 header lines"), "{}", e.detail);

        // 4 lines of 76 bytes: 304 > 300, each under 100.
        let big: Vec<(&str, String)> = ["a", "b", "c", "d"]
            .iter()
            .map(|k| (*k, "v".repeat(71)))
            .collect();
        let e = LIMITS.check(&request("/x", &big)).unwrap();
        assert_eq!(e.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(e.detail.contains("304 bytes"), "{}", e.detail);

        // `GET ` + 86 + ` HTTP/1.1` + CRLF = 101.
        let uri = format!("/{}", "p".repeat(85));
        let e = LIMITS.check(&request(&uri, &[])).unwrap();
        assert_eq!(e.status, StatusCode::URI_TOO_LONG);
        let uri = format!("/{}", "p".repeat(84));
        assert!(LIMITS.check(&request(&uri, &[])).is_none());
    }

    #[test]
    fn hyper_parses_just_past_the_limits_and_no_further() {
        let d = HeaderLimits::default();
        assert_eq!(d.hyper_max_headers(), 101);
        assert_eq!(d.hyper_max_buf(), 2 * 8192 + 65536 + 1024);
        let tiny = HeaderLimits {
            max_line: 10,
            max_total: 10,
            max_count: 1,
        };
        assert_eq!(tiny.hyper_max_buf(), 8192, "hyper's least");
    }
}
