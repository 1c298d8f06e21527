//! What the gateway measures of the request in progress, and what it says about it in every
//! response head: `x-request-id` (the client's own when it sent a usable one, else the
//! gateway's id) and, when the client asks with `x-ringgate-overhead: 1`,
//! `x-ringgate-overhead-us`.
//!
//! Overhead is the time spent inside ringgate: from the request being read whole to now,
//! minus the time spent waiting on the provider (connecting, the response head, every read
//! of its body). Waiting for a slow client to send its body is not counted; writing the
//! response to the client is. In a response head it is the overhead so far (everything
//! before the head: parsing, routing, governance, building and sending the upstream request,
//! reading the provider's head); the request log and the histograms have the whole request's.
//!
//! Hot-path cost: a few clock reads and a 32-character id formatted on the stack; an
//! allocation only when the client sends its own `x-request-id`.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::cache::CacheStatus;
use crate::http::response::decimal;
use crate::path::trace::Tracing;

/// A request id: 128 bits as 32 lowercase hex characters (the shape of a W3C trace id).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; 32]);

/// The id of no request yet (a connection before its first request is read).
impl Default for RequestId {
    fn default() -> Self {
        Self([b'0'; 32])
    }
}

impl RequestId {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits")
    }

    /// The id's hex digits, which are also a W3C trace id.
    pub fn digits(&self) -> [u8; 32] {
        self.0
    }

    fn from_parts(high: u64, low: u64) -> Self {
        Self(crate::trace::hex(
            (u128::from(high) << 64) | u128::from(low),
        ))
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One shard's request ids: 64 random bits drawn when the shard starts, then a sequence.
/// Unique across shards, nodes and restarts (two shards drawing the same 64 bits is a one in
/// 2^64 chance), with no coordination.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: Cell<u64>,
}

impl RequestIds {
    pub fn new(shard: usize) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(shard);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        Self {
            prefix: h.finish(),
            next: Cell::new(0),
        }
    }

    pub fn next(&self) -> RequestId {
        let seq = self.next.get();
        self.next.set(seq.wrapping_add(1));
        RequestId::from_parts(self.prefix, seq)
    }
}

/// The longest client `x-request-id` kept; a longer or non-printable one is replaced by the
/// gateway's id.
pub const MAX_CLIENT_ID: usize = 128;

/// The client's `x-request-id`, when it is usable as a header value and a log field.
pub fn client_id(value: Option<&[u8]>) -> Option<String> {
    let v = value?;
    let usable =
        !v.is_empty() && v.len() <= MAX_CLIENT_ID && v.iter().all(|b| b.is_ascii_graphic());
    usable.then(|| String::from_utf8_lossy(v).into_owned())
}

/// The request in progress on a connection.
#[derive(Debug)]
pub struct Tracker {
    pub id: RequestId,
    /// The client's own `x-request-id`, echoed instead of `id`.
    pub client_id: Option<String>,
    /// The client asked for `x-ringgate-overhead-us`.
    pub report_overhead: bool,
    /// When the request had been read whole.
    pub read_done: Instant,
    /// Time spent waiting on the provider so far.
    pub upstream_wait: Duration,
    /// On a sampled connection ([`crate::path::busy`]): its task's running time when the
    /// request had been read whole.
    pub busy_at_read: Option<Duration>,
    /// When the first response byte was written to the client.
    pub first_write: Option<Instant>,
    /// The request's trace context, when traces are on.
    pub trace: Tracing,
    /// What the response cache did, said in `x-ringgate-cache` (`None`: the node has no
    /// cache, or the API is not one it keeps).
    pub cache: Option<CacheStatus>,
}

impl Tracker {
    pub fn new(id: RequestId, read_done: Instant) -> Self {
        Self {
            id,
            client_id: None,
            report_overhead: false,
            read_done,
            upstream_wait: Duration::ZERO,
            busy_at_read: None,
            first_write: None,
            trace: Tracing::Off,
            cache: None,
        }
    }

    /// The id the client sees (and can search the request log by).
    pub fn echoed_id(&self) -> &str {
        self.client_id.as_deref().unwrap_or(self.id.as_str())
    }

    /// Time inside the gateway from the request's end to `now` (see the module doc).
    pub fn overhead(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.read_done)
            .saturating_sub(self.upstream_wait)
    }

    /// Counts `since..now` as waiting on the provider.
    pub fn waited_upstream(&mut self, since: Instant) {
        self.upstream_wait += crate::poll_clock::now_exact().saturating_duration_since(since);
    }

    /// The header lines every response head of this request carries.
    pub fn head_lines(&self) -> HeadLines {
        let mut lines = HeadLines::default();
        lines.push(b"x-request-id: ");
        lines.push(self.echoed_id().as_bytes());
        lines.push(b"\r\n");
        if self.report_overhead {
            lines.push(b"x-ringgate-overhead-us: ");
            lines.push_decimal(self.overhead(crate::poll_clock::now()).as_micros() as u64);
            lines.push(b"\r\n");
        }
        if let Some(status) = self.cache {
            lines.push(b"x-ringgate-cache: ");
            lines.push(status.as_str().as_bytes());
            lines.push(b"\r\n");
            if let CacheStatus::SemanticHit { similarity } = status {
                let mut text = [0u8; 16];
                let mut cursor = std::io::Cursor::new(&mut text[..]);
                let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{similarity:.4}"));
                let len = cursor.position() as usize;
                lines.push(b"x-ringgate-cache-similarity: ");
                lines.push(&text[..len]);
                lines.push(b"\r\n");
            }
        }
        lines
    }
}

/// Header lines rendered on the stack (room for the longest client id and every line).
pub struct HeadLines {
    buf: [u8; 384],
    len: usize,
}

impl Default for HeadLines {
    fn default() -> Self {
        Self {
            buf: [0; 384],
            len: 0,
        }
    }
}

impl HeadLines {
    fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }

    fn push_decimal(&mut self, n: u64) {
        self.push(decimal(n, &mut [0; 20]));
    }
}

impl std::ops::Deref for HeadLines {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_distinct() {
        let ids = RequestIds::new(0);
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(RequestIds::new(1).next(), RequestIds::new(1).next());
    }

    #[test]
    fn client_ids_are_kept_only_when_usable() {
        assert_eq!(client_id(Some(b"abc-123")), Some("abc-123".into()));
        assert_eq!(client_id(Some(b"has space")), None);
        assert_eq!(client_id(Some(b"")), None);
        assert_eq!(client_id(Some(&[b'a'; MAX_CLIENT_ID + 1])), None);
        assert_eq!(client_id(None), None);
    }

    #[test]
    fn head_lines_echo_the_client_id_and_the_overhead_when_asked() {
        let mut t = Tracker::new(RequestIds::new(0).next(), Instant::now());
        let own = format!("x-request-id: {}\r\n", t.id);
        assert_eq!(&*t.head_lines(), own.as_bytes());
        t.client_id = Some("mine".into());
        t.report_overhead = true;
        let text = String::from_utf8(t.head_lines().to_vec()).unwrap();
        assert!(
            text.starts_with("x-request-id: mine\r\nx-ringgate-overhead-us: "),
            "{text}"
        );
    }
}
