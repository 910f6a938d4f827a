//! Optional trace export: OpenTelemetry spans sent over OTLP/HTTP (protobuf) when
//! `WARMPOOL_OTLP_ENDPOINT` is set, and the W3C trace context (`traceparent`)
//! taken from claims and proxied requests and passed on to the container.
//!
//! The spans are ordinary `tracing` spans with the target
//! [`warmpool_core::TRACE_TARGET`] at `TRACE` level. Only the layer made here
//! enables them, so without an endpoint they are disabled at their call site (one
//! comparison with the maximum level) and the proxy path pays nothing for them.
//!
//! The batch exporter runs on a thread of its own; its HTTP requests are sent by
//! the server's own tokio runtime ([`RuntimeClient`]), so no second HTTP stack or
//! runtime is built. Standard `OTEL_*` variables the SDK reads still apply:
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_BSP_SCHEDULE_DELAY` and the other batch settings.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// How long one export may take, connection and answer included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer that is read.
const MAX_ANSWER: usize = 64 * 1024;
/// Least time between two log lines about failed exports.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The running exporter; [`Exporter::shutdown`] sends what is still buffered.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Flushes the spans still buffered and stops the export thread. Blocks (up to
    /// the export timeout): call it off the async workers.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "trace export did not shut down cleanly");
        }
    }
}

/// The `tracing` layer that turns warmpool's spans into OpenTelemetry spans and
/// exports them to `endpoint` (the full `/v1/traces` URL), with HTTP sent by
/// `runtime`; and the exporter to shut down at exit.
pub fn layer<S>(
    endpoint: &Uri,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<(impl Layer<S> + Send + Sync, Exporter)>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.to_string())
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(RuntimeClient::new(runtime))
        .build()?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("warmpool");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("warmpool");
    let only_ours = Targets::new().with_target(warmpool_core::TRACE_TARGET, tracing::Level::TRACE);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // No busy and idle times on every span: the duration says enough.
        .with_tracked_inactivity(false)
        // Only warmpool's trace spans: log lines stay log lines.
        .with_filter(only_ours);
    Ok((layer, Exporter { provider }))
}

/// Makes `span` a child of the trace a request's `traceparent` names, if it names
/// one. Nothing happens when traces are off (the span is disabled).
pub fn continue_trace(span: &Span, headers: &HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Writes `span`'s context into `headers` as `traceparent` (and `tracestate`),
/// so that what receives the request joins the trace. Nothing happens when traces
/// are off: a client's own `traceparent` then passes through as it came.
pub fn pass_on(span: &Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// The exporter's HTTP client: each request is sent as a task of the server's
/// tokio runtime (the batch exporter's own thread has none), over plain HTTP.
#[derive(Debug, Clone)]
struct RuntimeClient {
    runtime: tokio::runtime::Handle,
    http: Client<HttpConnector, Full<Bytes>>,
    /// When a failed export was last logged.
    warned: Arc<Mutex<Option<Instant>>>,
}

impl RuntimeClient {
    fn new(runtime: tokio::runtime::Handle) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(EXPORT_TIMEOUT));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Self {
            runtime,
            http,
            warned: Arc::new(Mutex::new(None)),
        }
    }

    /// Logs a failed export, at most once a minute (a collector that is down
    /// would otherwise fill the log with a line per batch).
    fn warn(&self, url: &str, error: &str) {
        let mut last = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at: Instant| at.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(endpoint = url, error, "cannot export traces; spans are dropped until the collector answers (said at most once a minute)");
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let url = request.uri().to_string();
        let sent = self.runtime.spawn(async move {
            tokio::time::timeout(EXPORT_TIMEOUT, async move {
                let answer = http.request(request.map(Full::new)).await?;
                let (parts, body) = answer.into_parts();
                let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            })
            .await
            .map_err(|_| HttpError::from("the collector did not answer in time"))?
        });
        let answer = sent.await?;
        // The SDK drops a batch that failed without a word: say so, now and then.
        match &answer {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => self.warn(&url, &format!("the collector answered {}", r.status())),
            Err(e) => self.warn(&url, &warmpool_engine::error_chain(e.as_ref())),
        }
        answer
    }
}
