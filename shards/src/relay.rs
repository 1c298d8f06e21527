//! Relaying an upstream response body to the client as it arrives. Each upstream read
//! becomes at most one client write, so an SSE event goes out as soon as the provider sends
//! it. Bodies with a known length keep it; chunked and close-delimited bodies are re-framed
//! as chunked. A body that breaks midway is never made to look complete: an event stream
//! gets a final `data: {"error":…}` event (no `[DONE]`), anything else is cut off.

use crate::conn::ClientConn;
use crate::error::write_error_json;
use crate::exchange::{read_watching, WaitError};
use crate::http::chunked::{push_chunk_frame, ChunkedDecoder, LAST_CHUNK};
use crate::http::response::{finish_head, push_proxied_head, push_proxied_lines, OutFraming};
use crate::http::upstream::{InFraming, ResponseHead};
use crate::io::Stream;
use crate::snapshot::{Limits, Provider};

pub struct RelayOutcome {
    /// The client connection is still usable for another request.
    pub client_ok: bool,
    /// The upstream connection, when its response was read exactly and it may be reused.
    pub reusable_upstream: Option<Stream>,
}

impl RelayOutcome {
    fn closed() -> Self {
        Self {
            client_ok: false,
            reusable_upstream: None,
        }
    }
}

/// How the upstream body ended, when it did not end well.
enum Break {
    ClientGone,
    Upstream(String),
}

pub async fn relay_response(
    conn: &mut ClientConn,
    mut upstream: Stream,
    head: &ResponseHead,
    provider: &Provider,
    limits: &Limits,
    keep_alive: bool,
) -> RelayOutcome {
    let result = match head.framing {
        InFraming::Empty | InFraming::Length(_) => {
            relay_sized(conn, &mut upstream, head, provider, limits, keep_alive).await
        }
        InFraming::Chunked | InFraming::UntilClose => {
            relay_reframed(conn, &mut upstream, head, provider, limits, keep_alive).await
        }
    };
    match result {
        Ok(reusable) => RelayOutcome {
            client_ok: true,
            reusable_upstream: reusable.then_some(upstream),
        },
        Err(Break::ClientGone) => {
            tracing::info!(peer = %conn.peer, provider = %provider.name, "client left mid-response; upstream request cancelled");
            RelayOutcome::closed()
        }
        Err(Break::Upstream(detail)) => {
            tracing::warn!(peer = %conn.peer, provider = %provider.name, %detail, "upstream response broke mid-body");
            if head.event_stream {
                push_stream_error(&mut conn.out, provider, &detail);
                conn.flush_out().await;
            }
            RelayOutcome::closed()
        }
    }
}

/// A body of known length (or none): the client gets the same length.
async fn relay_sized(
    conn: &mut ClientConn,
    upstream: &mut Stream,
    head: &ResponseHead,
    provider: &Provider,
    limits: &Limits,
    keep_alive: bool,
) -> Result<bool, Break> {
    let total = match head.framing {
        InFraming::Length(n) => n,
        _ => 0,
    };
    push_proxied_head(
        &mut conn.out,
        head.status,
        &conn.upbuf,
        &conn.spans_up,
        OutFraming::Length(total),
        keep_alive,
    );
    let available = (conn.upbuf.len() - head.head_len) as u64;
    let first = available.min(total) as usize;
    conn.out
        .extend_from_slice(&conn.upbuf[head.head_len..head.head_len + first]);
    let mut exact = available <= total;
    let mut remaining = total - first as u64;
    if !conn.flush_out().await {
        return Err(Break::ClientGone);
    }
    let client_fd = conn.stream.raw_fd();
    while remaining > 0 {
        conn.upbuf.clear();
        let n = read_upstream(upstream, &mut conn.upbuf, client_fd, provider, limits).await?;
        if n == 0 {
            return Err(Break::Upstream(format!(
                "connection closed with {remaining} body bytes missing"
            )));
        }
        if n as u64 > remaining {
            conn.upbuf.truncate(remaining as usize);
            exact = false;
        }
        remaining -= conn.upbuf.len() as u64;
        let piece = std::mem::take(&mut conn.upbuf);
        let (res, piece) = conn.stream.write_all(piece).await;
        conn.upbuf = piece;
        if res.is_err() {
            return Err(Break::ClientGone);
        }
    }
    Ok(exact && head.reusable)
}

/// A chunked or close-delimited body: decoded as it arrives and sent on as chunks.
async fn relay_reframed(
    conn: &mut ClientConn,
    upstream: &mut Stream,
    head: &ResponseHead,
    provider: &Provider,
    limits: &Limits,
    keep_alive: bool,
) -> Result<bool, Break> {
    push_proxied_head(
        &mut conn.out,
        head.status,
        &conn.upbuf,
        &conn.spans_up,
        OutFraming::Chunked,
        keep_alive,
    );
    let chunked = head.framing == InFraming::Chunked;
    let mut decoder = ChunkedDecoder::new();
    let mut pos = head.head_len;
    let client_fd = conn.stream.raw_fd();
    loop {
        conn.payload.clear();
        if chunked {
            let used = decoder
                .decode(&conn.upbuf[pos..], &mut conn.payload)
                .map_err(|e| Break::Upstream(format!("invalid chunked body: {e}")))?;
            pos += used;
        } else {
            conn.payload.extend_from_slice(&conn.upbuf[pos..]);
            pos = conn.upbuf.len();
        }
        push_chunk_frame(&mut conn.out, &conn.payload);
        let done = decoder.is_done();
        if done {
            conn.out.extend_from_slice(LAST_CHUNK);
        }
        if !conn.out.is_empty() && !conn.flush_out().await {
            return Err(Break::ClientGone);
        }
        if done {
            return Ok(head.reusable && pos == conn.upbuf.len());
        }
        conn.upbuf.clear();
        pos = 0;
        if read_upstream(upstream, &mut conn.upbuf, client_fd, provider, limits).await? == 0 {
            if chunked {
                return Err(Break::Upstream(
                    "connection closed before the end of the stream".into(),
                ));
            }
            conn.out.extend_from_slice(LAST_CHUNK);
            return if conn.flush_out().await {
                Ok(false)
            } else {
                Err(Break::ClientGone)
            };
        }
    }
}

/// Reads a whole (error) response body, up to `max` bytes, and renders the complete response
/// the client would get, so it can be sent later if nothing better turns up. Returns the
/// rendered response and the upstream connection when it may be reused.
pub async fn collect_response(
    conn: &mut ClientConn,
    mut upstream: Stream,
    head: &ResponseHead,
    provider: &Provider,
    limits: &Limits,
    keep_alive: bool,
    max: usize,
) -> (Vec<u8>, Option<Stream>) {
    let client_fd = conn.stream.raw_fd();
    // The head's header positions point into `upbuf`, which is reused below: render first.
    let mut response = Vec::with_capacity(1024);
    push_proxied_lines(&mut response, head.status, &conn.upbuf, &conn.spans_up);
    let mut body = Vec::new();
    let mut decoder = ChunkedDecoder::new();
    let mut pos = head.head_len;
    let mut complete = false;
    loop {
        match head.framing {
            InFraming::Empty => complete = true,
            InFraming::Length(n) => {
                let want = (n as usize).saturating_sub(body.len());
                let take = want.min(conn.upbuf.len() - pos);
                body.extend_from_slice(&conn.upbuf[pos..pos + take]);
                pos += take;
                complete = body.len() as u64 == n;
            }
            InFraming::Chunked => match decoder.decode(&conn.upbuf[pos..], &mut body) {
                Ok(used) => {
                    pos += used;
                    complete = decoder.is_done();
                }
                Err(_) => break,
            },
            InFraming::UntilClose => {
                body.extend_from_slice(&conn.upbuf[pos..]);
                pos = conn.upbuf.len();
            }
        }
        if complete || body.len() > max {
            break;
        }
        conn.upbuf.clear();
        pos = 0;
        match read_upstream(&mut upstream, &mut conn.upbuf, client_fd, provider, limits).await {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    body.truncate(max);
    finish_head(
        &mut response,
        OutFraming::Length(body.len() as u64),
        keep_alive,
    );
    response.extend_from_slice(&body);
    let reusable = complete && head.reusable && pos == conn.upbuf.len();
    (response, reusable.then_some(upstream))
}

async fn read_upstream(
    upstream: &mut Stream,
    buf: &mut Vec<u8>,
    client_fd: std::os::fd::RawFd,
    provider: &Provider,
    limits: &Limits,
) -> Result<usize, Break> {
    read_watching(
        upstream,
        buf,
        client_fd,
        provider.timeouts.idle,
        limits.disconnect_check_interval,
    )
    .await
    .map_err(|e| match e {
        WaitError::ClientGone => Break::ClientGone,
        WaitError::Timeout => Break::Upstream(format!(
            "no data for {} ms",
            provider.timeouts.idle.as_millis()
        )),
        WaitError::Io(e) => Break::Upstream(e.to_string()),
    })
}

/// Appends the final frames of a broken event stream: one error event, then the end.
pub fn push_stream_error(out: &mut Vec<u8>, provider: &Provider, detail: &str) {
    let mut event = Vec::with_capacity(256);
    event.extend_from_slice(b"data: ");
    let message = format!(
        "The stream from provider `{}` broke before it ended: {detail}",
        provider.name
    );
    write_error_json(
        &mut event,
        &message,
        "api_error",
        None,
        "upstream_stream_broken",
    );
    event.extend_from_slice(b"\n\n");
    out.clear();
    push_chunk_frame(out, &event);
    out.extend_from_slice(LAST_CHUNK);
}
