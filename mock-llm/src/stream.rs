//! Delivery of streamed (SSE) replies: a hyper body that paces events and can
//! break the connection part-way, and a raw writer for close-delimited bodies
//! (hyper always picks chunked encoding for HTTP/1.1 bodies of unknown size).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::io::AsyncWriteExt;
use tokio::time::Sleep;

use crate::conn::ConnCtl;
use crate::faults::FailMode;

/// Time given to hyper to flush what it has written before the connection is
/// broken; an RST discards anything still in the socket's send buffer.
const FLUSH_GRACE: Duration = Duration::from_millis(20);

/// How a stream finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Normal end: terminating chunk (or FIN for close framing).
    Done,
    /// RST after the last event.
    Reset,
    /// FIN after the last event, without the terminating chunk.
    Truncate,
}

/// The events to send and how to end, after fault injection.
#[derive(Debug)]
pub struct StreamPlan {
    pub events: Vec<Bytes>,
    pub interval: Duration,
    pub end: StreamEnd,
}

impl StreamPlan {
    /// Apply a streaming fault to the full event list, whose first
    /// `content_events` events carry reply text.
    pub fn new(
        mut events: Vec<Bytes>,
        content_events: usize,
        interval: Duration,
        fail: FailMode,
    ) -> Self {
        let half = content_events.div_ceil(2);
        let end = match fail {
            FailMode::ResetMidStream => {
                events.truncate(half);
                StreamEnd::Reset
            }
            FailMode::TruncateStream => {
                events.truncate(half);
                StreamEnd::Truncate
            }
            FailMode::BadJsonChunk => {
                events.insert(
                    1.min(events.len()),
                    Bytes::from_static(b"data: {not json\n\n"),
                );
                StreamEnd::Done
            }
            FailMode::None | FailMode::Reset | FailMode::Hang => StreamEnd::Done,
        };
        Self {
            events,
            interval,
            end,
        }
    }
}

/// Response body yielding one frame per SSE event, sleeping `interval`
/// between events, and breaking the connection at the end if planned.
pub struct SseBody {
    events: std::vec::IntoIter<Bytes>,
    interval: Duration,
    end: StreamEnd,
    ctl: Arc<ConnCtl>,
    sleep: Option<Pin<Box<Sleep>>>,
    gap_due: bool,
    breaking: bool,
    broken: bool,
}

impl SseBody {
    pub fn new(plan: StreamPlan, ctl: Arc<ConnCtl>) -> Self {
        Self {
            events: plan.events.into_iter(),
            interval: plan.interval,
            end: plan.end,
            ctl,
            sleep: None,
            gap_due: false,
            breaking: false,
            broken: false,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
                if this.breaking {
                    match this.end {
                        StreamEnd::Reset => this.ctl.reset(),
                        StreamEnd::Truncate => this.ctl.close(),
                        StreamEnd::Done => {}
                    }
                    this.broken = true;
                }
            }
            if this.broken {
                // The connection driver is about to drop the connection (and
                // this body with it); never let hyper finish the message.
                return Poll::Pending;
            }
            if this.events.as_slice().is_empty() {
                if this.end == StreamEnd::Done {
                    return Poll::Ready(None);
                }
                // Returning Pending first lets hyper flush the events sent so far.
                this.breaking = true;
                this.sleep = Some(Box::pin(tokio::time::sleep(FLUSH_GRACE)));
                continue;
            }
            if this.gap_due {
                this.gap_due = false;
                this.sleep = Some(Box::pin(tokio::time::sleep(this.interval)));
                continue;
            }
            let Some(event) = this.events.next() else {
                continue;
            };
            this.gap_due = !this.interval.is_zero();
            return Poll::Ready(Some(Ok(Frame::data(event))));
        }
    }
}

const CLOSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
content-type: text/event-stream\r\n\
cache-control: no-cache\r\n\
connection: close\r\n\r\n";

/// Write a whole SSE response with a close-delimited body on the duplicated
/// socket (hyper is kept waiting on the handler meanwhile), then end the
/// connection: FIN normally, RST for `StreamEnd::Reset`.
pub async fn write_close_delimited(raw: std::net::TcpStream, plan: StreamPlan, ctl: &ConnCtl) {
    let stream = raw
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(raw));
    let Ok(mut stream) = stream else {
        ctl.kill();
        return;
    };
    let mut ok = stream.write_all(CLOSE_HEAD).await.is_ok();
    for (i, event) in plan.events.iter().enumerate() {
        if !ok {
            break;
        }
        if i > 0 && !plan.interval.is_zero() {
            tokio::time::sleep(plan.interval).await;
        }
        ok = stream.write_all(event).await.is_ok();
    }
    if plan.end == StreamEnd::Reset {
        tokio::time::sleep(FLUSH_GRACE).await;
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    } else {
        // FIN now, while hyper still holds its own descriptor.
        let _ = stream.shutdown().await;
    }
    drop(stream);
    ctl.kill();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|i| Bytes::from(format!("data: {i}\n\n")))
            .collect()
    }

    #[test]
    fn plan_faults() {
        // 8 content events + stop + [DONE].
        let plan = StreamPlan::new(events(10), 8, Duration::ZERO, FailMode::None);
        assert_eq!((plan.events.len(), plan.end), (10, StreamEnd::Done));

        let plan = StreamPlan::new(events(10), 8, Duration::ZERO, FailMode::ResetMidStream);
        assert_eq!((plan.events.len(), plan.end), (4, StreamEnd::Reset));

        let plan = StreamPlan::new(events(10), 3, Duration::ZERO, FailMode::TruncateStream);
        assert_eq!((plan.events.len(), plan.end), (2, StreamEnd::Truncate));

        let plan = StreamPlan::new(events(10), 8, Duration::ZERO, FailMode::BadJsonChunk);
        assert_eq!(plan.events.len(), 11);
        assert_eq!(plan.events[0].as_ref(), b"data: 0\n\n");
        assert_eq!(plan.events[1].as_ref(), b"data: {not json\n\n");
        assert_eq!(plan.events[2].as_ref(), b"data: 1\n\n");
    }
}
