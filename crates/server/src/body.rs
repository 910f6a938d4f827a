//! A time limit on request bodies: a client that stops sending its body midway
//! (or never sends it) is cut off after `WARMPOOL_BODY_TIMEOUT_SECONDS` without a
//! byte, as nginx's `client_body_timeout` does, instead of holding a connection
//! and a handler forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error a body gives once its client has been silent too long.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no part of the request body for {0:?}")]
pub struct BodyTimeout(pub Duration);

/// Whether `e`, or any error under it, is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<BodyTimeout>() {
            return Some(t.0);
        }
        next = e.source();
    }
    None
}

/// A body that fails with [`BodyTimeout`] when no frame comes for `limit`. The
/// timer is armed only while the body is actually waiting, so a request without a
/// body (most proxied `GET`s) costs nothing.
pub struct TimedBody<B> {
    inner: B,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: None,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                // Progress: the next wait starts its own clock.
                this.timer = None;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let limit = this.limit;
                let timer = this.timer.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + limit))
                });
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(limit))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    /// A body fed by a channel, as a client sending it in pieces.
    fn fed() -> (
        tokio::sync::mpsc::Sender<Bytes>,
        TimedBody<impl Body<Data = Bytes, Error = std::io::Error> + Unpin>,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let stream = futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|o| o.map(|b| Ok::<_, std::io::Error>(Frame::data(b))))
        });
        (
            tx,
            TimedBody::new(StreamBody::new(stream), Duration::from_secs(5)),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_midway_times_out_after_the_limit_of_silence() {
        let (tx, body) = fed();
        let t0 = Instant::now();
        tokio::spawn(async move {
            // Three pieces 4 s apart (each within the limit), then silence.
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tx.send(Bytes::from_static(b"part")).await.unwrap();
            }
            std::future::pending::<()>().await;
        });
        let err = body.collect().await.expect_err("a timeout");
        assert_eq!(is_body_timeout(err.as_ref()), Some(Duration::from_secs(5)));
        assert_eq!(t0.elapsed(), Duration::from_secs(17));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_sent_steadily_is_read_whole() {
        let (tx, body) = fed();
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tx.send(Bytes::from_static(b"part")).await.unwrap();
            }
        });
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), 40);
    }
}
