//! Phase 9, relay: the answering attempt's response goes to the client as it arrives. Each
//! upstream read becomes at most one client write, so an SSE event goes out as soon as the
//! provider sends it. Reads the attempt's response head and conversion; adds the status and
//! the token usage seen (for the settle phase).
//!
//! - Pass-through (both sides speak the same API): bodies with a known length keep it;
//!   chunked and close-delimited bodies are sent chunked — a read that holds whole chunks
//!   passes them as the provider framed them (no extensions, trailers dropped), any other
//!   read is decoded and framed again.
//! - Converted (the provider speaks another API): streams go through the dialect's stream
//!   translators piece by piece; whole bodies are read, converted, and sent with a length.
//!
//! A body that breaks midway is never made to look complete: an event stream gets a final
//! error event in the client's API (no `[DONE]`), anything else is cut off.

mod body;

use crate::dialect::{Conversion, StreamChain};
use crate::error::GatewayError;
use crate::governance::units::UnitMeter;
use crate::governance::usage::Tally;
use crate::http::chunked::{push_chunk_frame, LAST_CHUNK};
use crate::http::response::{finish_head, push_proxied_lines, push_status_line, OutFraming};
use crate::http::upstream::{InFraming, ResponseHead};
use crate::io::Stream;
use crate::path::conn::ClientConn;
use crate::path::outcome::Stop;
use crate::snapshot::{Limits, Provider};
use body::BodyReader;

/// Largest provider body read whole for conversion.
const MAX_CONVERTED_BODY: usize = 64 * 1024 * 1024;

/// The response being relayed and everything about it each step needs.
pub struct Relay<'a> {
    pub head: &'a ResponseHead,
    pub provider: &'a Provider,
    pub limits: &'a Limits,
    /// The client's connection may carry another request afterwards.
    pub keep_alive: bool,
    pub conversion: &'a Conversion<'a>,
}

pub struct RelayOutcome {
    /// The client connection is still usable for another request.
    pub client_ok: bool,
    /// The upstream connection, when its response was read exactly and it may be reused.
    pub reusable_upstream: Option<Stream>,
    pub tally: Tally,
    /// The whole answer in OpenAI form, when the response cache is to keep it and it ended
    /// well.
    pub answer: Option<Vec<u8>>,
}

/// How a relay ended well: whether the upstream may be reused, and the answer to keep.
struct Relayed {
    reusable: bool,
    answer: Option<Vec<u8>>,
}

/// Relays one response; `conversion.passthrough` picks the fast path.
pub async fn relay_response(
    conn: &mut ClientConn,
    mut upstream: Stream,
    r: &Relay<'_>,
) -> RelayOutcome {
    let Relay {
        head,
        provider,
        conversion,
        keep_alive,
        ..
    } = *r;
    let streaming = conversion.stream && (200..300).contains(&head.status);
    let chunked = matches!(head.framing, InFraming::Chunked | InFraming::UntilClose);
    let mut tally = Tally::default();
    let result = if conversion.passthrough && !chunked {
        relay_sized(conn, &mut upstream, r, &mut tally).await
    } else if conversion.passthrough || streaming {
        relay_stream(conn, &mut upstream, r, &mut tally).await
    } else {
        let converted = collect_converted(conn, &mut upstream, r).await;
        let mut out = std::mem::take(&mut conn.out);
        converted.render(&mut out, keep_alive, &conn.tracker.head_lines());
        conn.out = out;
        tally = converted.tally;
        if conn.flush_out().await {
            Ok(Relayed {
                reusable: converted.reusable,
                answer: converted.answer,
            })
        } else {
            Err(Stop::ClientGone)
        }
    };
    match result {
        Ok(relayed) => RelayOutcome {
            client_ok: true,
            reusable_upstream: relayed.reusable.then_some(upstream),
            tally,
            answer: relayed.answer,
        },
        Err(Stop::ClientGone) => {
            tracing::info!(peer = %conn.peer, request_id = conn.tracker.echoed_id(), provider = %provider.name, "client left mid-response; upstream request cancelled");
            closed(tally)
        }
        Err(broken) => {
            tracing::warn!(peer = %conn.peer, request_id = conn.tracker.echoed_id(), provider = %provider.name, error = ?broken, "upstream response broke mid-body");
            let reframed =
                streaming || matches!(head.framing, InFraming::Chunked | InFraming::UntilClose);
            if reframed && (head.event_stream || streaming) {
                let message = match broken {
                    Stop::Error(e) => e.to_string(),
                    _ => format!("The stream from provider `{}` broke", provider.name),
                };
                // `out` may still hold the head and frames not yet sent: they go first.
                push_chunk_frame(
                    &mut conn.out,
                    &conversion.inbound.stream_error_event(&message),
                );
                conn.out.extend_from_slice(LAST_CHUNK);
                // The client's framing ends cleanly, so its connection stays usable.
                return RelayOutcome {
                    client_ok: conn.flush_out().await,
                    reusable_upstream: None,
                    tally,
                    answer: None,
                };
            }
            closed(tally)
        }
    }
}

fn closed(tally: Tally) -> RelayOutcome {
    RelayOutcome {
        client_ok: false,
        reusable_upstream: None,
        tally,
        answer: None,
    }
}

/// A pass-through body of known length (or none): the client gets the same length, and the
/// bytes as they arrive.
async fn relay_sized(
    conn: &mut ClientConn,
    upstream: &mut Stream,
    r: &Relay<'_>,
    tally: &mut Tally,
) -> Result<Relayed, Stop> {
    let (head, conversion) = (r.head, r.conversion);
    let total = match head.framing {
        InFraming::Length(n) => n,
        _ => 0,
    };
    let mut reader = start_body(conn, r, OutFraming::Length(total));
    let success = (200..300).contains(&head.status);
    let capture_usage = conversion.capture_usage && success;
    let keep_answer = conversion
        .keep_answer
        .filter(|max| success && total <= *max as u64);
    let mut meter = (conversion.meter_units && success).then(UnitMeter::default);
    // The body as read so far, when it came in more than one piece; a body read in one piece
    // (most are) is read where it lies in `conn.payload`, not copied.
    let mut seen = Vec::new();
    let read_whole = capture_usage || keep_answer.is_some();
    loop {
        let more = reader.next(conn, upstream, r.provider, r.limits).await?;
        if read_whole && (more || !seen.is_empty()) {
            seen.extend_from_slice(&conn.payload);
        }
        if let Some(meter) = &mut meter {
            meter.feed(&conn.payload);
            *tally = Tally::of_units(meter);
        }
        conn.out.extend_from_slice(&conn.payload);
        if let Some(mut relayed) = send_piece(conn, &reader, head, more).await? {
            if capture_usage {
                let body = if seen.is_empty() {
                    &conn.payload
                } else {
                    &seen
                };
                *tally = Tally::of_body(body, conversion.family, conversion.describe_outcome);
            }
            relayed.answer = keep_answer.map(|_| {
                if seen.is_empty() {
                    conn.payload.clone()
                } else {
                    seen
                }
            });
            return Ok(relayed);
        }
    }
}

/// Writes the client's response head and starts reading the provider's body, for the two
/// relays that pass a body on as it arrives. Pass-through keeps the provider's own status and
/// header lines; a converted stream gets the status and the SSE headers of the client's API.
fn start_body(conn: &mut ClientConn, r: &Relay<'_>, framing: OutFraming) -> BodyReader {
    let head = r.head;
    if r.conversion.passthrough {
        push_proxied_lines(&mut conn.out, head.status, &conn.upbuf, &conn.spans_up);
    } else {
        push_status_line(&mut conn.out, head.status);
        conn.out
            .extend_from_slice(b"content-type: text/event-stream\r\ncache-control: no-cache\r\n");
    }
    let lines = conn.tracker.head_lines();
    finish_head(&mut conn.out, framing, r.keep_alive, &lines);
    BodyReader::new(head, conn)
}

/// Sends the piece `conn.out` holds (nothing when empty) and, after the body's last piece
/// (`more` false), says how the relay ended: the upstream may be reused when its body ended
/// exactly. Each read of the two as-it-arrives relays ends here.
async fn send_piece(
    conn: &mut ClientConn,
    reader: &BodyReader,
    head: &ResponseHead,
    more: bool,
) -> Result<Option<Relayed>, Stop> {
    if !conn.out.is_empty() && !conn.flush_out().await {
        return Err(Stop::ClientGone);
    }
    Ok((!more).then(|| Relayed {
        reusable: reader.ended_exactly() && head.reusable,
        answer: None,
    }))
}

/// A stream, re-framed as chunked: passed through as it is, or through the translators.
/// What it used is tallied however it ends.
async fn relay_stream(
    conn: &mut ClientConn,
    upstream: &mut Stream,
    r: &Relay<'_>,
    tally: &mut Tally,
) -> Result<Relayed, Stop> {
    let mut chain = r.conversion.stream();
    let result = relay_events(conn, upstream, r, &mut chain).await;
    *tally = chain.tally();
    result.map(|relayed| Relayed {
        answer: chain.take_answer(),
        ..relayed
    })
}

async fn relay_events(
    conn: &mut ClientConn,
    upstream: &mut Stream,
    r: &Relay<'_>,
    chain: &mut StreamChain,
) -> Result<Relayed, Stop> {
    let (head, provider) = (r.head, r.provider);
    let mut reader = start_body(conn, r, OutFraming::Chunked);
    if chain.is_identity() {
        reader.keep_frames();
    }
    // The head goes out at once unless body bytes came with it (then they share a write).
    if !reader.has_buffered(conn) && !conn.flush_out().await {
        return Err(Stop::ClientGone);
    }
    let mut translated = Vec::new();
    loop {
        let more = reader.next(conn, upstream, provider, r.limits).await?;
        if let Some(frames) = reader.take_frames() {
            pass_frames(conn, frames);
        } else if chain.is_identity() {
            push_chunk_frame(&mut conn.out, &conn.payload);
        } else {
            translated.clear();
            let fed = chain.feed(&conn.payload, &mut translated);
            let ended = if more || fed.is_err() {
                Ok(())
            } else {
                chain.finish(&mut translated)
            };
            push_chunk_frame(&mut conn.out, &translated);
            if let Err(e) = fed.and(ended) {
                return Err(Stop::Error(GatewayError::UpstreamBroken {
                    provider: provider.name.clone(),
                    detail: e.message().to_owned(),
                }));
            }
        }
        if !more {
            conn.out.extend_from_slice(LAST_CHUNK);
        }
        if let Some(relayed) = send_piece(conn, &reader, head, more).await? {
            return Ok(relayed);
        }
    }
}

/// Queues whole chunks the provider framed (`conn.upbuf[frames]`) for the client as they
/// came. When they are all that was read and nothing waits to be sent, the read buffer
/// itself becomes the one to send (the two are swapped): the events are not copied at all.
fn pass_frames(conn: &mut ClientConn, frames: std::ops::Range<usize>) {
    if conn.out.is_empty() && frames.start == 0 && frames.end == conn.upbuf.len() {
        std::mem::swap(&mut conn.out, &mut conn.upbuf);
    } else {
        conn.out.extend_from_slice(&conn.upbuf[frames]);
    }
}

/// Reads a whole body (up to `max` bytes). Returns it and whether the connection may be
/// reused.
async fn collect_body(
    conn: &mut ClientConn,
    upstream: &mut Stream,
    r: &Relay<'_>,
    max: usize,
) -> (Vec<u8>, bool) {
    let Relay {
        head,
        provider,
        limits,
        ..
    } = *r;
    let mut reader = BodyReader::new(head, conn);
    let mut body = Vec::new();
    loop {
        match reader.next(conn, upstream, provider, limits).await {
            Ok(more) => {
                body.extend_from_slice(&conn.payload);
                if !more {
                    return (body, reader.ended_exactly() && head.reusable);
                }
                if body.len() > max {
                    body.truncate(max);
                    return (body, false);
                }
            }
            Err(_) => return (body, false),
        }
    }
}

/// A provider response read whole and converted for the client.
struct Collected {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    retry_after: Option<String>,
    reusable: bool,
    tally: Tally,
    answer: Option<Vec<u8>>,
}

impl Collected {
    fn render(&self, out: &mut Vec<u8>, keep_alive: bool, extra: &[u8]) {
        push_status_line(out, self.status);
        out.extend_from_slice(b"content-type: ");
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(v) = &self.retry_after {
            out.extend_from_slice(b"retry-after: ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        finish_head(
            out,
            OutFraming::Length(self.body.len() as u64),
            keep_alive,
            extra,
        );
        out.extend_from_slice(&self.body);
    }
}

async fn collect_converted(
    conn: &mut ClientConn,
    upstream: &mut Stream,
    r: &Relay<'_>,
) -> Collected {
    let Relay {
        head, conversion, ..
    } = *r;
    // Read what is needed from the head before `upbuf` is reused for the body.
    let error_type = conn.response_header("x-amzn-errortype").map(str::to_owned);
    let retry_after = conn
        .response_header("retry-after")
        .map(|v| v.trim().to_owned());
    let (body, reusable) = collect_body(conn, upstream, r, MAX_CONVERTED_BODY).await;
    let converted = conversion.whole(head.status, &body, error_type.as_deref());
    Collected {
        status: converted.status,
        body: converted.body,
        content_type: converted.content_type,
        retry_after,
        reusable,
        tally: converted.tally,
        answer: converted.answer,
    }
}

/// Reads and renders a response that may become the client's answer later (a failed attempt
/// kept in case every target fails), converted to the client's API.
pub async fn keep_response(
    conn: &mut ClientConn,
    mut upstream: Stream,
    r: &Relay<'_>,
    max: usize,
) -> (Vec<u8>, Option<Stream>) {
    let Relay {
        head,
        keep_alive,
        conversion,
        ..
    } = *r;
    let mut response = Vec::with_capacity(1024);
    let reusable = if conversion.passthrough {
        // The head's header positions point into `upbuf`, which is reused below: render first.
        push_proxied_lines(&mut response, head.status, &conn.upbuf, &conn.spans_up);
        let (body, reusable) = collect_body(conn, &mut upstream, r, max).await;
        finish_head(
            &mut response,
            OutFraming::Length(body.len() as u64),
            keep_alive,
            &conn.tracker.head_lines(),
        );
        response.extend_from_slice(&body);
        reusable
    } else {
        let converted = collect_converted(conn, &mut upstream, r).await;
        converted.render(&mut response, keep_alive, &conn.tracker.head_lines());
        converted.reusable
    };
    (response, reusable.then_some(upstream))
}
