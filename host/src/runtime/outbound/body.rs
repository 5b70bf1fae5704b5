//! The response body the plugin reads: capped in size, with a timeout
//! between frames, so a dripping or endless upstream cannot hold the call.

use crate::events::{Event, EventKind, Events};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::Error as HttpError;

/// Wraps hyper's incoming body.
pub struct GuardedBody {
    pub incoming: hyper::body::Incoming,
    pub read: u64,
    pub limit: u64,
    pub between_bytes: Duration,
    pub timer: Pin<Box<tokio::time::Sleep>>,
    events: Events,
    destination: String,
}

impl GuardedBody {
    pub fn new(
        incoming: hyper::body::Incoming,
        limit: u64,
        between_bytes: Duration,
        events: Events,
        destination: String,
    ) -> Self {
        Self {
            events,
            destination,
            incoming,
            read: 0,
            limit,
            between_bytes,
            timer: Box::pin(tokio::time::sleep(between_bytes)),
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(HttpError::from(err)))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    if this.read > this.limit {
                        this.events.push(Event {
                            kind: EventKind::ResponseTooLarge,
                            destination: this.destination.clone(),
                            address: None,
                            detail: format!(
                                "response body passed the limit of {} bytes (limits.maxHttpResponseBytes); cut off",
                                this.limit
                            ),
                        });
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            this.limit,
                        )))));
                    }
                }
                let deadline = tokio::time::Instant::now() + this.between_bytes;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
