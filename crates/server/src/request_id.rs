//! Request ids: every request gets one, logged with it and returned in
//! `X-Request-Id`; the router's outermost layer and the proxy's direct path
//! (`proxy::serve`) both go through [`identified`].

/// Gives `req` an id (the client's `X-Request-Id` when it is short and
/// printable, a random one otherwise), runs `run` inside a log span carrying
/// the id, and returns the id in the answer's `X-Request-Id`.
pub(crate) async fn identified<F, Fut>(
    mut req: axum::extract::Request,
    run: F,
) -> axum::response::Response
where
    F: FnOnce(axum::extract::Request) -> Fut,
    Fut: std::future::Future<Output = axum::response::Response>,
{
    use tracing::Instrument;
    let name = axum::http::HeaderName::from_static("x-request-id");
    let id = req
        .headers()
        .get(&name)
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(u8::is_ascii_graphic)
        })
        .cloned()
        .unwrap_or_else(|| {
            // 128 random bits from the thread's generator (ChaCha, seeded from
            // the OS), not a `getrandom` call per request: an id to find a
            // request in the logs by, not a secret.
            axum::http::HeaderValue::from_str(&format!("{:032x}", rand::random::<u128>()))
                .expect("hex is a valid header value")
        });
    req.headers_mut().insert(name.clone(), id.clone());
    let span = tracing::debug_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id.to_str().unwrap_or("-"),
    );
    let mut resp = run(req).instrument(span).await;
    resp.headers_mut().insert(name, id);
    resp
}
