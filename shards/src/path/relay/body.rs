//! Reading an upstream response body piece by piece, whatever its framing (length, chunked,
//! until close), as the bytes arrive. Each call yields the decoded payload of what one
//! upstream read brought, so relays write one piece per read and never hold a body whole.

use std::os::fd::RawFd;

use crate::error::GatewayError;
use crate::http::chunked::ChunkedDecoder;
use crate::http::upstream::{InFraming, ResponseHead};
use crate::io::{read_watching, Stream, WaitError};
use crate::path::conn::ClientConn;
use crate::path::outcome::Stop;
use crate::snapshot::{Limits, Provider};

pub struct BodyReader {
    framing: InFraming,
    decoder: ChunkedDecoder,
    /// Next unread byte in `conn.upbuf`.
    pos: usize,
    /// Bytes left of a length-framed body.
    remaining: u64,
    done: bool,
    /// The body ended exactly at the end of what was read (nothing extra after it).
    exact: bool,
    client_fd: RawFd,
}

impl BodyReader {
    /// Starts after the head in `conn.upbuf`.
    pub fn new(head: &ResponseHead, conn: &ClientConn) -> Self {
        Self {
            framing: head.framing,
            decoder: ChunkedDecoder::new(),
            pos: head.head_len,
            remaining: match head.framing {
                InFraming::Length(n) => n,
                _ => 0,
            },
            done: head.framing == InFraming::Empty,
            exact: conn.upbuf.len() == head.head_len,
            client_fd: conn.stream.raw_fd(),
        }
    }

    /// Whether body bytes are already buffered (arrived with the head).
    pub fn has_buffered(&self, conn: &ClientConn) -> bool {
        conn.upbuf.len() > self.pos
    }

    /// The body was read whole and nothing followed it: the connection may be reused.
    pub fn ended_exactly(&self) -> bool {
        self.done && self.exact && self.framing != InFraming::UntilClose
    }

    /// Replaces `conn.payload` with the next piece of the body. `Ok(true)`: more may follow;
    /// `Ok(false)`: the body ended (the payload may still hold its last piece).
    pub async fn next(
        &mut self,
        conn: &mut ClientConn,
        upstream: &mut Stream,
        provider: &Provider,
        limits: &Limits,
    ) -> Result<bool, Stop> {
        let broken = |detail: String| {
            Stop::Error(GatewayError::UpstreamBroken {
                provider: provider.name.clone(),
                detail,
            })
        };
        conn.payload.clear();
        loop {
            if self.done {
                return Ok(false);
            }
            if conn.upbuf.len() > self.pos {
                let available = &conn.upbuf[self.pos..];
                match self.framing {
                    InFraming::Empty => self.done = true,
                    InFraming::Length(_) => {
                        let take = available
                            .len()
                            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                        conn.payload.extend_from_slice(&available[..take]);
                        self.pos += take;
                        self.remaining -= take as u64;
                        self.done = self.remaining == 0;
                    }
                    InFraming::Chunked => {
                        let used = self
                            .decoder
                            .decode(available, &mut conn.payload)
                            .map_err(|e| broken(format!("invalid chunked body: {e}")))?;
                        self.pos += used;
                        self.done = self.decoder.is_done();
                    }
                    InFraming::UntilClose => {
                        conn.payload.extend_from_slice(available);
                        self.pos = conn.upbuf.len();
                    }
                }
                if self.done {
                    self.exact = self.pos == conn.upbuf.len();
                    return Ok(false);
                }
                if !conn.payload.is_empty() {
                    return Ok(true);
                }
            }
            conn.upbuf.clear();
            self.pos = 0;
            let n = read_watching(
                upstream,
                &mut conn.upbuf,
                self.client_fd,
                (provider.timeouts.idle, limits.disconnect_check_interval),
                &mut conn.tracker.upstream_wait,
            )
            .await
            .map_err(|e| match e {
                WaitError::ClientGone => Stop::ClientGone,
                WaitError::Timeout => broken(format!(
                    "no data for {} ms",
                    provider.timeouts.idle.as_millis()
                )),
                WaitError::Io(e) => broken(e.to_string()),
            })?;
            if n == 0 {
                if self.framing == InFraming::UntilClose {
                    self.done = true;
                    return Ok(false);
                }
                return Err(broken(
                    "connection closed before the end of the body".into(),
                ));
            }
        }
    }
}
