//! Incremental decoder for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1).
//!
//! Fed whatever bytes arrived, it appends the payload to an output buffer and says how much
//! input it consumed, so a body is decoded as it streams in and never held whole. Chunk
//! extensions are skipped and trailers are read and dropped (monoio-http's decoder rejects
//! the former and lacks the latter). Hot-path cost: one pass over the bytes, no allocation
//! beyond the caller's output buffer.

/// Longest chunk-size line (size, extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size,
    /// After the size: skipping `;ext` up to CRLF.
    Extension,
    /// Expecting LF after CR of the size line.
    SizeLf,
    /// Copying `remaining` payload bytes.
    Data,
    /// Expecting CRLF after a chunk's payload.
    DataCr,
    DataLf,
    /// After the zero chunk: reading trailer lines until an empty one.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("invalid chunk size line")]
    BadSize,
    #[error("chunk size or trailer line too long")]
    LineTooLong,
    #[error("missing CRLF after chunk data")]
    BadDelimiter,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    remaining: u64,
    size_digits: u8,
    line_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self {
            state: State::Size,
            remaining: 0,
            size_digits: 0,
            line_len: 0,
        }
    }

    /// True once the terminating zero chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending payload to `out`. Returns bytes of `input` consumed;
    /// stops early only when the body is complete (the rest belongs to the next message).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                // Payload is copied in one piece, not byte by byte.
                State::Data => {
                    let take = (input.len() - i)
                        .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::Done => return Ok(i),
                _ => {
                    self.step(input[i])?;
                    i += 1;
                    if self.state == State::Done {
                        return Ok(i);
                    }
                }
            }
        }
        Ok(i)
    }

    /// One byte of framing (size lines, delimiters, trailers).
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        match self.state {
            State::Size => self.size_byte(b)?,
            State::Extension | State::TrailerLine => {
                self.line_len += 1;
                if self.line_len > MAX_LINE {
                    return Err(ChunkedError::LineTooLong);
                }
                if b == b'\r' {
                    self.state = if self.state == State::Extension {
                        State::SizeLf
                    } else {
                        State::TrailerLf
                    };
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ChunkedError::BadSize);
                }
                self.size_digits = 0;
                self.state = if self.remaining == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                };
            }
            State::TrailerStart if b == b'\r' => self.state = State::FinalLf,
            State::TrailerStart => {
                self.state = State::TrailerLine;
                self.line_len = 1;
            }
            State::DataCr | State::DataLf | State::TrailerLf | State::FinalLf => {
                let (want, next) = match self.state {
                    State::DataCr => (b'\r', State::DataLf),
                    State::DataLf => (b'\n', State::Size),
                    State::TrailerLf => (b'\n', State::TrailerStart),
                    _ => (b'\n', State::Done),
                };
                if b != want {
                    return Err(ChunkedError::BadDelimiter);
                }
                self.state = next;
            }
            State::Data | State::Done => unreachable!("handled by decode"),
        }
        Ok(())
    }

    /// A byte of a chunk-size line: a hex digit, or what ends the digits.
    fn size_byte(&mut self, b: u8) -> Result<(), ChunkedError> {
        match hex_value(b) {
            Some(v) => {
                if self.size_digits >= 15 {
                    return Err(ChunkedError::BadSize);
                }
                self.remaining = self.remaining * 16 + u64::from(v);
                self.size_digits += 1;
            }
            None if self.size_digits == 0 => return Err(ChunkedError::BadSize),
            None => match b {
                b'\r' => self.state = State::SizeLf,
                b';' | b' ' | b'\t' => {
                    self.state = State::Extension;
                    self.line_len = 0;
                }
                _ => return Err(ChunkedError::BadSize),
            },
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `payload` to `out` as one chunk frame (`{size:x}\r\n{payload}\r\n`).
pub fn push_chunk_frame(out: &mut Vec<u8>, payload: &[u8]) {
    if payload.is_empty() {
        return; // an empty frame would end the body
    }
    let mut digits = [0u8; 16];
    let mut n = payload.len();
    let mut len = 0;
    while n > 0 {
        digits[15 - len] = b"0123456789abcdef"[n & 15];
        len += 1;
        n >>= 4;
    }
    out.extend_from_slice(&digits[16 - len..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// The frame that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> (Result<usize, ChunkedError>, Vec<u8>, bool) {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for piece in input.chunks(step) {
            match d.decode(piece, &mut out) {
                Ok(n) => consumed += n,
                Err(e) => return (Err(e), out, false),
            }
            if d.is_done() {
                break;
            }
        }
        (Ok(consumed), out, d.is_done())
    }

    #[test]
    fn decodes_byte_by_byte_and_whole() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for step in [1, 2, 3, 7, body.len()] {
            let (r, out, done) = decode_all(body, step);
            assert_eq!(r.unwrap(), body.len(), "step {step}");
            assert_eq!(out, b"hello, world");
            assert!(done);
        }
    }

    #[test]
    fn stops_at_end_of_body() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let n = d.decode(b"1\r\na\r\n0\r\n\r\nNEXT", &mut out).unwrap();
        assert_eq!(n, 11);
        assert!(d.is_done());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode_all(b"zz\r\n", 1).0, Err(ChunkedError::BadSize));
        assert_eq!(
            decode_all(b"1\r\nab\r\n", 1).0,
            Err(ChunkedError::BadDelimiter)
        );
        assert_eq!(
            decode_all(b"ffffffffffffffffff\r\n", 100).0,
            Err(ChunkedError::BadSize)
        );
    }

    #[test]
    fn truncated_body_is_not_done() {
        let (r, out, done) = decode_all(b"5\r\nhel", 100);
        assert!(r.is_ok());
        assert_eq!(out, b"hel");
        assert!(!done);
    }

    #[test]
    fn chunk_frames_round_trip() {
        let mut out = Vec::new();
        push_chunk_frame(&mut out, &[b'x'; 26]);
        push_chunk_frame(&mut out, b"");
        assert_eq!(&out[..4], b"1a\r\n");
        out.extend_from_slice(LAST_CHUNK);
        let (r, decoded, done) = decode_all(&out, 5);
        assert!(r.is_ok() && done);
        assert_eq!(decoded.len(), 26);
    }
}
