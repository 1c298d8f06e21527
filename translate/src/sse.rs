//! Server-sent events: an incremental parser that is fed arbitrary byte splits of an
//! `text/event-stream` body and yields complete events, writer helpers that append `data:` /
//! `event:` frames to an output buffer, and `feed_events`, the `feed` loop the SSE stream
//! translators share.
//!
//! Lines end in `\n` or `\r\n` (a lone `\r` is not treated as a line end). `data:` lines of one
//! event are joined with `\n`; `event:` names the event; `id:`, `retry:` and comment lines
//! (starting with `:`) are ignored. An event is dispatched at a blank line when it has data.

use crate::error::{Result, TranslateError};
use serde::Serialize;

/// Largest event (buffered bytes not yet making a complete event) accepted before the stream
/// is declared unreadable.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One complete event, borrowing the parser's buffers until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` name, or `""` when the event had none.
    pub event: &'a str,
    /// The `data:` lines joined with `\n`.
    pub data: &'a [u8],
}

/// Incremental SSE parser. Buffers are reused across events; feeding allocates only when an
/// event is larger than any seen before.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    pos: usize,
    event: String,
    data: Vec<u8>,
    has_data: bool,
    dispatched: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends input. Fails when a single event grows past [`MAX_EVENT_BYTES`].
    pub fn push(&mut self, input: &[u8]) -> Result<()> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() + self.data.len() + input.len() > MAX_EVENT_BYTES {
            return Err(TranslateError::upstream("server-sent event too large"));
        }
        self.buf.extend_from_slice(input);
        Ok(())
    }

    /// The next complete event in what was pushed so far, if any.
    pub fn next_event(&mut self) -> Option<SseEvent<'_>> {
        if self.dispatched {
            self.reset_event();
        }
        while let Some(nl) = memchr::memchr(b'\n', &self.buf[self.pos..]) {
            let start = self.pos;
            let mut end = start + nl;
            self.pos = end + 1;
            if end > start && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            if end == start {
                if self.has_data {
                    self.dispatched = true;
                    return Some(SseEvent {
                        event: &self.event,
                        data: &self.data,
                    });
                }
                self.reset_event();
                continue;
            }
            self.field(start, end);
        }
        None
    }

    /// At end of input: treats an unterminated last line and a pending event (missing its
    /// closing blank line) as complete, and returns that event if it has data.
    pub fn flush(&mut self) -> Option<SseEvent<'_>> {
        if self.dispatched {
            self.reset_event();
        }
        if self.pos < self.buf.len() {
            let start = self.pos;
            let mut end = self.buf.len();
            self.pos = end;
            if self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            if end > start {
                self.field(start, end);
            }
        }
        if self.has_data {
            self.dispatched = true;
            return Some(SseEvent {
                event: &self.event,
                data: &self.data,
            });
        }
        None
    }

    /// True when bytes are buffered that don't yet make a complete event.
    pub fn has_pending(&self) -> bool {
        self.has_data
            || self.buf[self.pos..]
                .iter()
                .any(|b| !b.is_ascii_whitespace())
    }

    fn reset_event(&mut self) {
        self.event.clear();
        self.data.clear();
        self.has_data = false;
        self.dispatched = false;
    }

    fn field(&mut self, start: usize, end: usize) {
        let line = &self.buf[start..end];
        if line[0] == b':' {
            return;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
            }
            _ => {}
        }
    }
}

/// Appends `data: {json}\n\n`.
pub fn write_data<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    out.extend_from_slice(b"data: ");
    // Serializing the crate's own types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// Appends `event: NAME\ndata: {json}\n\n`.
pub fn write_event<T: Serialize + ?Sized>(out: &mut Vec<u8>, event: &str, value: &T) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.push(b'\n');
    write_data(out, value);
}

/// Appends `data: [DONE]\n\n`, OpenAI's end-of-stream marker.
pub fn write_done(out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: [DONE]\n\n");
}

/// The per-dialect half of an SSE stream translator: what to do with one complete event, and
/// whether the stream already stopped (failed or ended) so that later input is ignored.
pub(crate) trait EventHandler {
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()>;
    fn stopped(&self) -> bool;
}

/// The `feed` loop every SSE stream translator shares: pushes `input` into `parser` and hands
/// each complete event to `handler` until the input runs out or the stream stops.
pub(crate) fn feed_events<H: EventHandler>(
    parser: &mut SseParser,
    handler: &mut H,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    if handler.stopped() {
        return Ok(());
    }
    parser.push(input)?;
    while let Some(ev) = parser.next_event() {
        handler.event(ev.data, out)?;
        if handler.stopped() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(parser: &mut SseParser, out: &mut Vec<(String, String)>) {
        while let Some(ev) = parser.next_event() {
            out.push((
                ev.event.to_owned(),
                String::from_utf8(ev.data.to_vec()).unwrap(),
            ));
        }
    }

    const INPUT: &str = ": comment\r\nevent: a\r\ndata: one\r\ndata:two\r\n\r\nid: 7\nretry: 10\n\ndata: {\"x\":1}\n\nevent: b\ndata\n\n";

    fn expected() -> Vec<(String, String)> {
        vec![
            ("a".into(), "one\ntwo".into()),
            ("".into(), "{\"x\":1}".into()),
            ("b".into(), "".into()),
        ]
    }

    #[test]
    fn whole_and_byte_by_byte_agree() {
        let mut p = SseParser::new();
        let mut got = Vec::new();
        p.push(INPUT.as_bytes()).unwrap();
        collect(&mut p, &mut got);
        assert_eq!(got, expected());

        let mut p = SseParser::new();
        let mut got = Vec::new();
        for b in INPUT.as_bytes() {
            p.push(std::slice::from_ref(b)).unwrap();
            collect(&mut p, &mut got);
        }
        assert_eq!(got, expected());
        assert!(!p.has_pending());
    }

    #[test]
    fn flush_returns_unterminated_event() {
        let mut p = SseParser::new();
        p.push(b"data: a\n\ndata: tail").unwrap();
        assert_eq!(p.next_event().unwrap().data, b"a");
        assert!(p.next_event().is_none());
        assert!(p.has_pending());
        assert_eq!(p.flush().unwrap().data, b"tail");
        assert!(p.flush().is_none());
    }

    #[test]
    fn writer_shapes() {
        let mut out = Vec::new();
        write_event(&mut out, "ping", &serde_json::json!({"type": "ping"}));
        write_data(&mut out, &serde_json::json!({"a": 1}));
        write_done(&mut out);
        assert_eq!(
            out,
            b"event: ping\ndata: {\"type\":\"ping\"}\n\ndata: {\"a\":1}\n\ndata: [DONE]\n\n"
        );
    }
}
