//! One client connection: read a request (head, then body) under the configured limits and
//! timeouts, hand it to the pipeline, repeat while keep-alive holds. Bad input is answered
//! with an OpenAI-shaped error and, when the stream can no longer be trusted, a close.
//!
//! Hot-path cost: buffers are owned by the connection and reused across its requests; a
//! request whose head and body arrive in one read costs one read.

use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::time::Instant;

use crate::error::GatewayError;
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{parse_request_head, BodyFraming, HeaderSpan, RequestHead};
use crate::http::response::push_error_response;
use crate::io::Stream;
use crate::pipeline;
use crate::shard::Shard;
use crate::snapshot::Limits;
use crate::stats::ShardStats;

/// Buffers and stream of one client connection.
pub struct ClientConn {
    pub stream: Stream,
    pub peer: SocketAddr,
    /// Bytes read from the client: the current request's head and (unless chunked) body.
    pub inbuf: Vec<u8>,
    /// The current request's header positions in `inbuf`.
    pub spans: Vec<HeaderSpan>,
    /// A chunked request body, decoded.
    pub decoded_body: Vec<u8>,
    /// Output buffer, reused for upstream requests and client responses.
    pub out: Vec<u8>,
    /// Upstream read buffer.
    pub upbuf: Vec<u8>,
    /// The upstream response's header positions in `upbuf`.
    pub spans_up: Vec<HeaderSpan>,
    /// Decoded upstream body piece, framed again for the client.
    pub payload: Vec<u8>,
}

/// Where the current request's body is.
#[derive(Debug, Clone)]
pub enum BodyLocation {
    InBuf(Range<usize>),
    Decoded,
}

/// Why reading a request stopped without one.
enum ReadStop {
    /// Peer closed, idle timeout, or an I/O error: close quietly.
    Quiet,
    /// Bad input: answer with this error, then close.
    Reject(GatewayError),
}

impl ClientConn {
    /// Buffers start empty and grow to what the connection's requests need, so an idle
    /// keep-alive connection holds little more than its pending read's buffer.
    pub fn new(stream: Stream, peer: SocketAddr) -> Self {
        Self {
            stream,
            peer,
            inbuf: Vec::new(),
            spans: Vec::new(),
            decoded_body: Vec::new(),
            out: Vec::new(),
            upbuf: Vec::new(),
            spans_up: Vec::new(),
            payload: Vec::new(),
        }
    }

    pub fn body<'a>(&'a self, loc: &BodyLocation) -> &'a [u8] {
        match loc {
            BodyLocation::InBuf(r) => &self.inbuf[r.clone()],
            BodyLocation::Decoded => &self.decoded_body,
        }
    }

    /// Writes `self.out` to the client and clears it. False when the client is gone.
    pub async fn flush_out(&mut self) -> bool {
        let out = std::mem::take(&mut self.out);
        let (res, mut out) = self.stream.write_all(out).await;
        out.clear();
        self.out = out;
        res.is_ok()
    }

    async fn read_head(&mut self, limits: &Limits) -> Result<RequestHead, ReadStop> {
        if self.inbuf.is_empty() {
            match monoio::time::timeout(limits.idle_timeout, self.stream.read_into(&mut self.inbuf))
                .await
            {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Err(ReadStop::Quiet),
            }
        }
        let deadline = Instant::now() + limits.header_read_timeout;
        loop {
            match parse_request_head(&self.inbuf, limits.max_header_bytes, &mut self.spans) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => return Err(ReadStop::Reject(e)),
            }
            self.read_more(deadline).await?;
        }
    }

    /// One more read before `deadline`; a timeout becomes 408.
    async fn read_more(&mut self, deadline: Instant) -> Result<(), ReadStop> {
        let left = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, self.stream.read_into(&mut self.inbuf)).await {
            Ok(Ok(n)) if n > 0 => Ok(()),
            Ok(_) => Err(ReadStop::Quiet),
            Err(_) => Err(ReadStop::Reject(GatewayError::RequestTimeout)),
        }
    }

    /// Reads the body; returns where it is and how many bytes of `inbuf` the request used.
    async fn read_body(
        &mut self,
        head: &RequestHead,
        limits: &Limits,
    ) -> Result<(BodyLocation, usize), ReadStop> {
        let start = head.head_len;
        let too_large = || {
            ReadStop::Reject(GatewayError::BodyTooLarge {
                limit: limits.max_body_bytes,
            })
        };
        let deadline = Instant::now() + limits.body_read_timeout;
        match head.body {
            BodyFraming::Empty => Ok((BodyLocation::InBuf(start..start), start)),
            BodyFraming::Length(n) => {
                let n = usize::try_from(n).map_err(|_| too_large())?;
                if n > limits.max_body_bytes {
                    return Err(too_large());
                }
                let end = start + n;
                if self.inbuf.len() < end {
                    self.continue_if_expected(head).await?;
                    self.inbuf.reserve(end - self.inbuf.len());
                }
                while self.inbuf.len() < end {
                    self.read_more(deadline).await?;
                }
                Ok((BodyLocation::InBuf(start..end), end))
            }
            BodyFraming::Chunked => {
                self.decoded_body.clear();
                let mut decoder = ChunkedDecoder::new();
                let mut pos = start;
                if self.inbuf.len() == pos {
                    self.continue_if_expected(head).await?;
                }
                loop {
                    let used = decoder
                        .decode(&self.inbuf[pos..], &mut self.decoded_body)
                        .map_err(|e| {
                            ReadStop::Reject(GatewayError::InvalidRequest(e.to_string()))
                        })?;
                    pos += used;
                    if self.decoded_body.len() > limits.max_body_bytes {
                        return Err(too_large());
                    }
                    if decoder.is_done() {
                        return Ok((BodyLocation::Decoded, pos));
                    }
                    self.read_more(deadline).await?;
                }
            }
        }
    }

    async fn continue_if_expected(&mut self, head: &RequestHead) -> Result<(), ReadStop> {
        if head.expect_continue {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if !self.flush_out().await {
                return Err(ReadStop::Quiet);
            }
        }
        Ok(())
    }

    /// Takes working buffers from the shard for one request. Between requests a keep-alive
    /// connection holds only its read buffer (lent to the kernel while it waits).
    fn lend_buffers(&mut self, buffers: &BufferPool) {
        self.out = buffers.take();
        self.upbuf = buffers.take();
        self.payload = buffers.take();
    }

    fn return_buffers(&mut self, buffers: &BufferPool) {
        buffers.put(std::mem::take(&mut self.out));
        buffers.put(std::mem::take(&mut self.upbuf));
        buffers.put(std::mem::take(&mut self.payload));
        buffers.put(std::mem::take(&mut self.decoded_body));
    }

    /// Drops the bytes of the request just served, keeping any pipelined next request.
    fn consume(&mut self, n: usize) {
        if n >= self.inbuf.len() {
            self.inbuf.clear();
        } else {
            self.inbuf.drain(..n);
        }
    }
}

/// A shard's spare byte buffers, reused by its requests so that idle connections hold none.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// Buffers kept for reuse at most (more are freed).
    const MAX_FREE: usize = 1024;
    /// Buffers that grew larger than this are freed rather than kept.
    const MAX_KEPT_CAPACITY: usize = 64 * 1024;

    pub fn take(&self) -> Vec<u8> {
        self.free.borrow_mut().pop().unwrap_or_default()
    }

    pub fn put(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > Self::MAX_KEPT_CAPACITY {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < Self::MAX_FREE {
            buf.clear();
            free.push(buf);
        }
    }
}

/// Counts a request as in flight until dropped (also when its task is dropped mid-way).
struct InFlight<'a>(&'a ShardStats);

impl<'a> InFlight<'a> {
    fn new(stats: &'a ShardStats) -> Self {
        stats.in_flight.incr();
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.decr();
    }
}

/// Serves requests on one client connection until it closes.
pub async fn serve(shard: Rc<Shard>, stream: Stream, peer: SocketAddr) {
    let mut conn = ClientConn::new(stream, peer);
    loop {
        let snapshot = shard.snapshot();
        let limits = &snapshot.limits;
        let read = match conn.read_head(limits).await {
            Ok(head) => conn.read_body(&head, limits).await.map(|body| (head, body)),
            Err(stop) => Err(stop),
        };
        let (mut head, (body, used)) = match read {
            Ok(request) => request,
            Err(ReadStop::Quiet) => break,
            Err(ReadStop::Reject(err)) => {
                tracing::warn!(peer = %conn.peer, status = err.status(), error = %err, "rejected request");
                push_error_response(&mut conn.out, &err, false);
                conn.flush_out().await;
                break;
            }
        };
        // A draining node answers what it has read, then closes the connection.
        head.keep_alive &= !shard.node.is_draining();
        let in_flight = InFlight::new(&shard.stats);
        conn.lend_buffers(&shard.buffers);
        // Boxed: the request's future is large (the whole pipeline), and an idle keep-alive
        // connection should not carry its space while it waits for the next request.
        let keep_alive =
            Box::pin(pipeline::handle(&shard, &snapshot, &mut conn, &head, &body)).await;
        conn.return_buffers(&shard.buffers);
        drop(in_flight);
        if !keep_alive || !head.keep_alive {
            break;
        }
        conn.consume(used);
    }
    conn.stream.shutdown().await;
}
