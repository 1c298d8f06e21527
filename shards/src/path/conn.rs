//! One client connection's stream and buffers, which every phase of the request path works
//! in: the client's bytes, the upstream's bytes and the output, reused across the requests
//! the connection carries.
//!
//! Hot-path cost: an idle keep-alive connection holds no buffer once it has been silent for
//! a moment ([`crate::path::keepalive`]); the working buffers are lent from the shard's
//! [`BufferPool`] for one request at a time.

use std::net::SocketAddr;
use std::ops::Range;

use crate::http::request::{find_header, HeaderSpan};
use crate::io::Stream;
use crate::path::keepalive::IdleWait;
use crate::path::tracker::{RequestId, Tracker};
use crate::state::buffers::BufferPool;

/// Buffers and stream of one client connection.
pub struct ClientConn {
    pub stream: Stream,
    pub peer: SocketAddr,
    /// Bytes read from the client: the current request's head and (unless chunked) body.
    /// Freed while the connection is idle ([`crate::path::keepalive`]).
    pub inbuf: Vec<u8>,
    /// How the connection waits for its next request.
    pub idle: IdleWait,
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
    /// The request in progress: its id and timings.
    pub tracker: Tracker,
    /// The connection's running time, when it is one of the sampled ([`crate::path::busy`]).
    pub busy: Option<std::rc::Rc<crate::path::busy::BusyMeter>>,
}

/// Where the current request's body is.
#[derive(Debug, Clone)]
pub enum BodyLocation {
    InBuf(Range<usize>),
    Decoded,
}

impl ClientConn {
    /// Buffers start empty and grow to what the connection's requests need, so an idle
    /// keep-alive connection holds little more than its pending read's buffer.
    pub fn new(stream: Stream, peer: SocketAddr) -> Self {
        Self {
            stream,
            peer,
            inbuf: Vec::new(),
            idle: IdleWait::default(),
            spans: Vec::new(),
            decoded_body: Vec::new(),
            out: Vec::new(),
            upbuf: Vec::new(),
            spans_up: Vec::new(),
            payload: Vec::new(),
            tracker: Tracker::new(RequestId::default(), crate::poll_clock::now()),
            busy: None,
        }
    }

    /// The value of a header of the client's current request.
    pub fn request_header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.inbuf, &self.spans, name)
    }

    /// The value of a header of the upstream response whose head is in `upbuf`.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        find_header(&self.upbuf, &self.spans_up, name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn body<'a>(&'a self, loc: &BodyLocation) -> &'a [u8] {
        match loc {
            BodyLocation::InBuf(r) => &self.inbuf[r.clone()],
            BodyLocation::Decoded => &self.decoded_body,
        }
    }

    /// Writes `self.out` to the client and clears it. False when the client is gone.
    pub async fn flush_out(&mut self) -> bool {
        self.tracker
            .first_write
            .get_or_insert_with(crate::poll_clock::now);
        let out = std::mem::take(&mut self.out);
        let (res, mut out) = self.stream.write_all(out).await;
        out.clear();
        self.out = out;
        res.is_ok()
    }

    /// Takes working buffers from the shard for one request. Between requests a keep-alive
    /// connection holds only its read buffer (lent to the kernel while it waits).
    pub fn lend_buffers(&mut self, buffers: &BufferPool) {
        self.out = buffers.take();
        self.upbuf = buffers.take();
        self.payload = buffers.take();
    }

    pub fn return_buffers(&mut self, buffers: &BufferPool) {
        buffers.put(std::mem::take(&mut self.out));
        buffers.put(std::mem::take(&mut self.upbuf));
        buffers.put(std::mem::take(&mut self.payload));
        buffers.put(std::mem::take(&mut self.decoded_body));
    }

    /// Drops the bytes of the request just served, keeping any pipelined next request.
    pub fn consume(&mut self, n: usize) {
        if n >= self.inbuf.len() {
            self.inbuf.clear();
        } else {
            self.inbuf.drain(..n);
        }
    }
}
