//! Phase 2, read: one request's head and body from the client, under the configured size
//! limits and read timeouts. Adds `head` and `body` to the context; bad framing is a 4xx
//! (`Stop::Error`, then the connection closes); a peer that closes or idles out is
//! `Stop::ClientGone`.
//!
//! Hot-path cost: a request whose head and body arrive in one read costs one read.

use std::time::Instant;

use crate::error::GatewayError;
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{parse_request_head, BodyFraming, RequestHead};
use crate::path::conn::{BodyLocation, ClientConn};
use crate::path::context::Phases;
use crate::path::outcome::Stop;
use crate::snapshot::Limits;

/// Reads the next request on `conn`: its head, where its body is, and how many bytes of
/// `inbuf` it used. The read phase starts when the request's first bytes are there.
pub async fn request(
    conn: &mut ClientConn,
    limits: &Limits,
    times: &mut Phases,
) -> Result<(RequestHead, BodyLocation, usize), Stop> {
    let head = read_head(conn, limits, times).await?;
    let (body, used) = read_body(conn, &head, limits).await?;
    Ok((head, body, used))
}

async fn read_head(
    conn: &mut ClientConn,
    limits: &Limits,
    times: &mut Phases,
) -> Result<RequestHead, Stop> {
    if conn.inbuf.is_empty() {
        let ClientConn {
            stream,
            inbuf,
            idle,
            ..
        } = conn;
        match idle.read(stream, inbuf, limits.idle_timeout).await {
            Ok(n) if n > 0 => {}
            _ => return Err(Stop::ClientGone),
        }
    }
    let deadline = times.start_read() + limits.header_read_timeout;
    loop {
        match parse_request_head(&conn.inbuf, limits.max_header_bytes, &mut conn.spans) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(e) => return Err(Stop::Error(e)),
        }
        read_more(conn, deadline).await?;
    }
}

/// One more read before `deadline`; a timeout becomes 408.
async fn read_more(conn: &mut ClientConn, deadline: Instant) -> Result<(), Stop> {
    let left = deadline.saturating_duration_since(crate::poll_clock::now());
    match crate::timer::timeout(left, conn.stream.read_into(&mut conn.inbuf)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        Ok(_) => Err(Stop::ClientGone),
        Err(_) => Err(Stop::Error(GatewayError::RequestTimeout)),
    }
}

/// Reads the body; returns where it is and how many bytes of `inbuf` the request used.
async fn read_body(
    conn: &mut ClientConn,
    head: &RequestHead,
    limits: &Limits,
) -> Result<(BodyLocation, usize), Stop> {
    let start = head.head_len;
    let too_large = || {
        Stop::Error(GatewayError::BodyTooLarge {
            limit: limits.max_body_bytes,
        })
    };
    // Read from the clock only when the body is not all there yet (most requests' is).
    let deadline = std::cell::LazyCell::new(|| crate::poll_clock::now() + limits.body_read_timeout);
    match head.body {
        BodyFraming::Empty => Ok((BodyLocation::InBuf(start..start), start)),
        BodyFraming::Length(n) => {
            let n = usize::try_from(n).map_err(|_| too_large())?;
            if n > limits.max_body_bytes {
                return Err(too_large());
            }
            let end = start + n;
            if conn.inbuf.len() < end {
                continue_if_expected(conn, head).await?;
                conn.inbuf.reserve(end - conn.inbuf.len());
            }
            while conn.inbuf.len() < end {
                read_more(conn, *deadline).await?;
            }
            Ok((BodyLocation::InBuf(start..end), end))
        }
        BodyFraming::Chunked => {
            conn.decoded_body.clear();
            let mut decoder = ChunkedDecoder::new();
            let mut pos = start;
            if conn.inbuf.len() == pos {
                continue_if_expected(conn, head).await?;
            }
            loop {
                let used = decoder
                    .decode(&conn.inbuf[pos..], &mut conn.decoded_body)
                    .map_err(|e| Stop::Error(GatewayError::InvalidRequest(e.to_string())))?;
                pos += used;
                if conn.decoded_body.len() > limits.max_body_bytes {
                    return Err(too_large());
                }
                if decoder.is_done() {
                    return Ok((BodyLocation::Decoded, pos));
                }
                read_more(conn, *deadline).await?;
            }
        }
    }
}

async fn continue_if_expected(conn: &mut ClientConn, head: &RequestHead) -> Result<(), Stop> {
    if head.expect_continue {
        conn.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        if !conn.flush_out().await {
            return Err(Stop::ClientGone);
        }
    }
    Ok(())
}
