//! Attempt step "exchange": sending the built request upstream and waiting for the response
//! head. A connection taken from the pool may have been closed by the provider while idle;
//! if it fails before a single response byte arrives, the request is sent once more on a
//! fresh connection (the provider cannot have answered it). While waiting, the client is
//! checked for a disconnect so that a vanished client cancels its upstream request instead
//! of holding it open.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::error::GatewayError;
use crate::http::upstream::{parse_response_head, Parsed, ResponseHead};
use crate::io::{read_watching, Stream, WaitError};
use crate::path::conn::ClientConn;
use crate::path::outcome::Stop;
use crate::snapshot::{Limits, Provider};
use crate::state::Shard;

/// Sends `conn.out` (a complete upstream request) and returns the connection with the
/// response head parsed; the head and any body bytes already read are in `conn.upbuf`.
/// The wait for the head is bounded by the provider's first-byte timeout and by `budget`
/// (what is left of the request's deadline at `started`, the attempt's start, which is also
/// the instant a pooled connection's idle time is measured to).
pub async fn exchange(
    shard: &Shard,
    provider: &Provider,
    conn: &mut ClientConn,
    limits: &Limits,
    (started, budget): (Instant, Duration),
) -> Result<(Stream, ResponseHead), Stop> {
    let client_fd = conn.stream.raw_fd();
    let mut retried = false;
    loop {
        // A failure before the first response byte on a reused connection is worth one
        // redial: the provider may have closed it while it was idle.
        let (mut upstream, reused) = match shard.pool.take_idle(provider, started) {
            Some(idle) => (idle, true),
            None => {
                let asked = crate::poll_clock::now_exact();
                let opened = shard.pool.open(provider).await?;
                // Connecting (and the TLS handshake) is waiting on the provider.
                conn.tracker.waited_upstream(asked);
                (opened, false)
            }
        };
        let request = std::mem::take(&mut conn.out);
        let (written, request) = upstream.write_all(request).await;
        conn.out = request;
        conn.upbuf.clear();
        let result = match written {
            Ok(()) => {
                let wait = provider.timeouts.first_byte.min(budget);
                let up = Upstream {
                    stream: &mut upstream,
                    buf: &mut conn.upbuf,
                    spans: &mut conn.spans_up,
                    waited: &mut conn.tracker.upstream_wait,
                };
                read_head(up, client_fd, limits, wait).await
            }
            Err(e) => Err(HeadError::Io(e)),
        };
        match result {
            Ok(head) => {
                conn.out.clear();
                return Ok((upstream, head));
            }
            Err(HeadError::Io(_)) if reused && !retried && conn.upbuf.is_empty() => {
                retried = true;
            }
            Err(e) => {
                conn.out.clear();
                return Err(e.into_stop(provider));
            }
        }
    }
}

enum HeadError {
    Io(io::Error),
    Timeout,
    ClientGone,
    Protocol(String),
}

impl HeadError {
    fn into_stop(self, provider: &Provider) -> Stop {
        let name = provider.name.clone();
        match self {
            Self::ClientGone => Stop::ClientGone,
            Self::Timeout => GatewayError::UpstreamTimeout {
                provider: name,
                phase: "waiting for the response head",
            }
            .into(),
            Self::Io(e) => GatewayError::UpstreamReset {
                provider: name,
                detail: e.to_string(),
            }
            .into(),
            Self::Protocol(detail) => GatewayError::UpstreamProtocol {
                provider: name,
                detail,
            }
            .into(),
        }
    }
}

/// The upstream connection a response head is read from, and where it goes.
struct Upstream<'a> {
    stream: &'a mut Stream,
    buf: &'a mut Vec<u8>,
    spans: &'a mut Vec<crate::http::request::HeaderSpan>,
    /// The request's time waiting on its provider.
    waited: &'a mut Duration,
}

async fn read_head(
    up: Upstream<'_>,
    client_fd: RawFd,
    limits: &Limits,
    wait: Duration,
) -> Result<ResponseHead, HeadError> {
    let Upstream {
        stream: upstream,
        buf,
        spans,
        waited,
    } = up;
    // The reads' time is added to `waited`, so what is left of `wait` is known without a
    // clock read between reads (the few µs of parsing between them are not counted).
    let waited_before = *waited;
    let mut head = ResponseHead::default();
    loop {
        match parse_response_head(
            buf,
            limits.max_header_bytes.max(64 * 1024),
            spans,
            &mut head,
        ) {
            Ok(Parsed::Complete) => return Ok(head),
            Ok(Parsed::Interim(n)) => {
                buf.drain(..n);
                continue;
            }
            Ok(Parsed::Partial) => {}
            Err(detail) => return Err(HeadError::Protocol(detail)),
        }
        let left = wait.saturating_sub(*waited - waited_before);
        match read_watching(
            upstream,
            buf,
            client_fd,
            (left, limits.disconnect_check_interval),
            waited,
        )
        .await
        {
            Ok(0) => {
                return Err(HeadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the response head",
                )))
            }
            Ok(_) => {}
            Err(WaitError::Io(e)) => return Err(HeadError::Io(e)),
            Err(WaitError::Timeout) => return Err(HeadError::Timeout),
            Err(WaitError::ClientGone) => return Err(HeadError::ClientGone),
        }
    }
}
