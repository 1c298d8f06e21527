//! Reading an upstream response body piece by piece, whatever its framing (length, chunked,
//! until close), as the bytes arrive. Each call yields the decoded payload of what one
//! upstream read brought (or, for a relay that asks, its whole chunks as they came), so
//! relays write one piece per read and never hold a body whole.

use std::ops::Range;
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
    /// A chunked body's whole chunks are given as they came ([`Self::take_frames`]) rather
    /// than decoded.
    keep_frames: bool,
    /// Where in `conn.upbuf` the piece just read lies as whole chunks, when it does.
    frames: Option<Range<usize>>,
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
            keep_frames: false,
            frames: None,
        }
    }

    /// A chunked body's reads that hold whole chunks are then given as those chunks, framed
    /// as they came, in place in `conn.upbuf` ([`Self::take_frames`]): a relay that passes
    /// them on unchanged copies them once (or not at all), rather than decoding and framing
    /// them again. Other reads, and other framings, are decoded into `conn.payload` as ever.
    pub fn keep_frames(&mut self) {
        self.keep_frames = self.framing == InFraming::Chunked;
    }

    /// The piece [`Self::next`] gave, as whole chunks in `conn.upbuf`, when it was so
    /// (`conn.payload` is then empty).
    pub fn take_frames(&mut self) -> Option<Range<usize>> {
        self.frames.take()
    }

    /// Whether body bytes are already buffered (arrived with the head).
    pub fn has_buffered(&self, conn: &ClientConn) -> bool {
        conn.upbuf.len() > self.pos
    }

    /// The body was read whole and nothing followed it: the connection may be reused.
    pub fn ended_exactly(&self) -> bool {
        self.done && self.exact && self.framing != InFraming::UntilClose
    }

    /// Replaces `conn.payload` with the next piece of the body (or gives it as whole chunks,
    /// [`Self::keep_frames`]). `Ok(true)`: more may follow; `Ok(false)`: the body ended (the
    /// piece may still hold its end).
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
        self.frames = None;
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
                        let invalid = |e| broken(format!("invalid chunked body: {e}"));
                        let frames = if self.keep_frames {
                            self.decoder.skim(available).map_err(invalid)?
                        } else {
                            None
                        };
                        let used = match frames {
                            Some(f) => {
                                self.frames = Some(self.pos..self.pos + f.chunks_end);
                                f.used
                            }
                            None => self
                                .decoder
                                .decode(available, &mut conn.payload)
                                .map_err(invalid)?,
                        };
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
                if !conn.payload.is_empty() || self.frames.is_some() {
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
