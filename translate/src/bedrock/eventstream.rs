//! Incremental decoder of `application/vnd.amazon.eventstream` frames (Bedrock's streaming
//! transport): prelude (total length, headers length, prelude CRC32), headers, payload,
//! message CRC32. Both CRCs are checked; input may be split anywhere.

use crate::error::{Result, TranslateError};

/// Largest frame accepted (Bedrock's chunks are far smaller).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// One header value. Only strings are kept; other types are validated and skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    String(&'a str),
    Bytes(&'a [u8]),
    Other,
}

/// One decoded frame, borrowing the decoder's buffer until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    headers: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Iterates `(name, value)` headers (validated when the frame was decoded).
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.headers }
    }

    /// The string value of header `name`.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.headers().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s),
            _ => None,
        })
    }
}

/// Iterator over a frame's headers.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, HeaderValue<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        let (item, used) = parse_header(self.rest).ok()??;
        self.rest = &self.rest[used..];
        Some(item)
    }
}

/// Parses one header at the start of `b`: Ok(None) at end, Err on malformed.
#[allow(clippy::type_complexity)]
fn parse_header(b: &[u8]) -> std::result::Result<Option<((&str, HeaderValue<'_>), usize)>, ()> {
    if b.is_empty() {
        return Ok(None);
    }
    let name_len = b[0] as usize;
    let name = b.get(1..1 + name_len).ok_or(())?;
    let name = std::str::from_utf8(name).map_err(|_| ())?;
    let mut i = 1 + name_len;
    let ty = *b.get(i).ok_or(())?;
    i += 1;
    let fixed = |n: usize| -> std::result::Result<usize, ()> {
        if b.len() >= i + n {
            Ok(n)
        } else {
            Err(())
        }
    };
    let (value, len) = match ty {
        0 | 1 => (HeaderValue::Other, 0),
        2 => (HeaderValue::Other, fixed(1)?),
        3 => (HeaderValue::Other, fixed(2)?),
        4 => (HeaderValue::Other, fixed(4)?),
        5 | 8 => (HeaderValue::Other, fixed(8)?),
        9 => (HeaderValue::Other, fixed(16)?),
        6 | 7 => {
            let l = b.get(i..i + 2).ok_or(())?;
            let l = u16::from_be_bytes([l[0], l[1]]) as usize;
            let v = b.get(i + 2..i + 2 + l).ok_or(())?;
            let value = if ty == 7 {
                HeaderValue::String(std::str::from_utf8(v).map_err(|_| ())?)
            } else {
                HeaderValue::Bytes(v)
            };
            (value, 2 + l)
        }
        _ => return Err(()),
    };
    Ok(Some(((name, value), i + len)))
}

/// Incremental frame decoder.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends input.
    pub fn push(&mut self, input: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(input);
    }

    /// True when bytes of an incomplete frame are buffered.
    pub fn has_pending(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more input is needed, `Err` on a bad CRC,
    /// impossible lengths or malformed headers.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>> {
        let b = &self.buf[self.pos..];
        if b.len() < 12 {
            return Ok(None);
        }
        let total = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let hlen = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        let prelude_crc = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        if crc32fast::hash(&b[..8]) != prelude_crc {
            return Err(TranslateError::upstream("eventstream prelude CRC mismatch"));
        }
        if !(16..=MAX_FRAME_BYTES).contains(&total) || hlen > total - 16 {
            return Err(TranslateError::upstream(
                "eventstream frame has impossible lengths",
            ));
        }
        if b.len() < total {
            return Ok(None);
        }
        let msg_crc = u32::from_be_bytes([b[total - 4], b[total - 3], b[total - 2], b[total - 1]]);
        if crc32fast::hash(&b[..total - 4]) != msg_crc {
            return Err(TranslateError::upstream("eventstream message CRC mismatch"));
        }
        let headers = &b[12..12 + hlen];
        let mut rest = headers;
        loop {
            match parse_header(rest) {
                Ok(None) => break,
                Ok(Some((_, used))) => rest = &rest[used..],
                Err(()) => {
                    return Err(TranslateError::upstream(
                        "eventstream frame has malformed headers",
                    ))
                }
            }
        }
        let start = self.pos;
        self.pos += total;
        let b = &self.buf[start..start + total];
        Ok(Some(Frame {
            headers: &b[12..12 + hlen],
            payload: &b[12 + hlen..total - 4],
        }))
    }
}

/// Encodes a frame with string headers (for tests, benches and mocks).
pub fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (n, v) in headers {
        h.push(n.len() as u8);
        h.extend_from_slice(n.as_bytes());
        h.push(7);
        h.extend_from_slice(&(v.len() as u16).to_be_bytes());
        h.extend_from_slice(v.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let pc = crc32fast::hash(&out);
    out.extend_from_slice(&pc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let mc = crc32fast::hash(&out);
    out.extend_from_slice(&mc.to_be_bytes());
    out
}
