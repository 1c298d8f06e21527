//! Delivery of streamed replies (SSE, JSON arrays or AWS event-stream
//! frames, all pre-encoded): a hyper body that paces events and can break the
//! connection part-way, and a raw writer for close-delimited bodies (hyper
//! always picks chunked encoding for HTTP/1.1 bodies of unknown size).

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
use crate::faults::{FailMode, Framing};
use crate::reply::StreamOutput;
use crate::wire;

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
    pub content_type: &'static str,
    pub interval: Duration,
    pub end: StreamEnd,
}

impl StreamPlan {
    /// Apply a streaming fault to an encoded reply: the mid-stream faults
    /// cut it half-way through its content events, `bad-json-chunk` inserts
    /// the reply's malformed event right after the first content event, and
    /// `bad-crc` corrupts the first content frame of an event stream (it is a
    /// no-op for other formats).
    pub fn new(out: StreamOutput, interval: Duration, fail: FailMode) -> Self {
        let StreamOutput {
            mut events,
            content,
            content_type,
            bad_event,
            crc_framed,
        } = out;
        let cut = (content.start + content.len().div_ceil(2)).min(events.len());
        let end = match fail {
            FailMode::ResetMidStream => {
                events.truncate(cut);
                StreamEnd::Reset
            }
            FailMode::TruncateStream => {
                events.truncate(cut);
                StreamEnd::Truncate
            }
            FailMode::BadJsonChunk => {
                events.insert((content.start + 1).min(events.len()), bad_event);
                StreamEnd::Done
            }
            FailMode::BadCrc => {
                if let Some(frame) = events.get_mut(content.start).filter(|_| crc_framed) {
                    *frame = wire::corrupt_message_crc(frame);
                }
                StreamEnd::Done
            }
            FailMode::ErrorEvent => {
                events = vec![Bytes::from_static(
                    b"data: {\"error\":{\"message\":\"mock injected stream error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
                )];
                StreamEnd::Done
            }
            FailMode::None | FailMode::Reset | FailMode::Hang => StreamEnd::Done,
        };
        Self {
            events,
            content_type,
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

fn raw_head(content_type: &str, framing: Framing) -> Vec<u8> {
    let chunked = match framing {
        Framing::CutChunks => "transfer-encoding: chunked\r\n",
        _ => "",
    };
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n\
         cache-control: no-cache\r\n{chunked}connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Pause after each write of a chunked stream's pieces, so that they arrive as reads apart.
const CUT_PAUSE: Duration = Duration::from_millis(5);

/// Write a whole streamed response on the duplicated socket (hyper is kept waiting on the
/// handler meanwhile), then end the connection: FIN normally, RST for `StreamEnd::Reset`.
/// `Framing::Close`: the body ends at the close. `Framing::CutChunks`: chunked, some chunks
/// cut in two writes, some with an extension (`write_event_chunk`), and a trailer after the
/// last chunk — what a proxy must re-frame rather than pass on as it came.
pub async fn write_raw(
    raw: std::net::TcpStream,
    plan: StreamPlan,
    framing: Framing,
    ctl: &ConnCtl,
) {
    let stream = raw
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(raw));
    let Ok(mut stream) = stream else {
        ctl.kill();
        return;
    };
    let mut ok = stream
        .write_all(&raw_head(plan.content_type, framing))
        .await
        .is_ok();
    for (i, event) in plan.events.iter().enumerate() {
        if !ok {
            break;
        }
        if i > 0 && !plan.interval.is_zero() {
            tokio::time::sleep(plan.interval).await;
        }
        ok = match framing {
            Framing::CutChunks => write_event_chunk(&mut stream, event, i).await,
            _ => stream.write_all(event).await.is_ok(),
        };
    }
    if ok && framing == Framing::CutChunks && plan.end == StreamEnd::Done {
        let _ = stream.write_all(b"0\r\nx-mock-trailer: 1\r\n\r\n").await;
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

/// Event `i` as a chunk, then a pause of `CUT_PAUSE` (so that each write arrives as a read
/// of its own): every third chunk cut in two halves with the pause between them, the next
/// with an extension, the one after as it is.
async fn write_event_chunk(stream: &mut tokio::net::TcpStream, event: &[u8], i: usize) -> bool {
    let ext = if i % 3 == 1 { ";mock=1" } else { "" };
    let mut frame = format!("{:x}{ext}\r\n", event.len()).into_bytes();
    frame.extend_from_slice(event);
    frame.extend_from_slice(b"\r\n");
    let cut = if i % 3 == 0 { frame.len() / 2 } else { 0 };
    for piece in [&frame[..cut], &frame[cut..]] {
        if piece.is_empty() {
            continue;
        }
        if stream.write_all(piece).await.is_err() {
            return false;
        }
        tokio::time::sleep(CUT_PAUSE).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(n: usize, content: std::ops::Range<usize>, crc_framed: bool) -> StreamOutput {
        StreamOutput {
            events: (0..n)
                .map(|i| Bytes::from(format!("data: {i}\n\n")))
                .collect(),
            content,
            content_type: "text/event-stream",
            bad_event: Bytes::from_static(b"data: {not json\n\n"),
            crc_framed,
        }
    }

    #[test]
    fn plan_faults() {
        // 8 content events + stop + [DONE].
        let plan = StreamPlan::new(output(10, 0..8, false), Duration::ZERO, FailMode::None);
        assert_eq!((plan.events.len(), plan.end), (10, StreamEnd::Done));

        let plan = StreamPlan::new(
            output(10, 0..8, false),
            Duration::ZERO,
            FailMode::ResetMidStream,
        );
        assert_eq!((plan.events.len(), plan.end), (4, StreamEnd::Reset));

        let plan = StreamPlan::new(
            output(10, 0..3, false),
            Duration::ZERO,
            FailMode::TruncateStream,
        );
        assert_eq!((plan.events.len(), plan.end), (2, StreamEnd::Truncate));

        let plan = StreamPlan::new(
            output(10, 0..8, false),
            Duration::ZERO,
            FailMode::BadJsonChunk,
        );
        assert_eq!(plan.events.len(), 11);
        assert_eq!(plan.events[0].as_ref(), b"data: 0\n\n");
        assert_eq!(plan.events[1].as_ref(), b"data: {not json\n\n");
        assert_eq!(plan.events[2].as_ref(), b"data: 1\n\n");
    }

    #[test]
    fn plan_faults_after_a_preamble() {
        // Anthropic-like: 3 preamble events, 4 content events, 3 closing.
        let plan = StreamPlan::new(
            output(10, 3..7, false),
            Duration::ZERO,
            FailMode::TruncateStream,
        );
        assert_eq!(plan.events.len(), 5);
        let plan = StreamPlan::new(
            output(10, 3..7, false),
            Duration::ZERO,
            FailMode::BadJsonChunk,
        );
        assert_eq!(plan.events[4].as_ref(), b"data: {not json\n\n");
    }

    #[test]
    fn bad_crc_corrupts_first_content_frame_only_when_framed() {
        let plan = StreamPlan::new(output(5, 1..3, true), Duration::ZERO, FailMode::BadCrc);
        let original = output(5, 1..3, true).events;
        let changed: Vec<usize> = (0..5).filter(|&i| plan.events[i] != original[i]).collect();
        assert_eq!(changed, [1]);
        let plan = StreamPlan::new(output(5, 1..3, false), Duration::ZERO, FailMode::BadCrc);
        assert_eq!(plan.events, original);
    }
}
