//! Incremental decoder for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1).
//!
//! Fed whatever bytes arrived, it appends the payload to an output buffer and says how much
//! input it consumed, so a body is decoded as it streams in and never held whole. Chunk
//! extensions are skipped and trailers are read and dropped (monoio-http's decoder rejects
//! the former and lacks the latter). Hot-path cost: one pass over the bytes, no allocation
//! beyond the caller's output buffer.

/// Longest chunk-size line (size, extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;

/// Most hex digits of a chunk size (60 bits: any size fits a `u64`, and `usize` here).
const MAX_SIZE_DIGITS: usize = 15;

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
    /// A chunk had an extension (since [`Self::skim`] began).
    extended: bool,
}

/// Whole chunks found by [`ChunkedDecoder::skim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frames {
    /// Input consumed (up to the body's end at most).
    pub used: usize,
    /// Where the whole chunks end: `used`, or where the last (zero-size) chunk begins when
    /// the body ended in this input (so that its trailers are not passed on).
    pub chunks_end: usize,
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
            extended: false,
        }
    }

    /// True once the terminating zero chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending payload to `out`. Returns bytes of `input` consumed;
    /// stops early only when the body is complete (the rest belongs to the next message).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        self.advance(input, |payload| out.extend_from_slice(payload), |_| {})
    }

    /// Checks `input` as [`Self::decode`] does, copying nothing, when it holds whole chunks
    /// only — each with its size line and CRLF, none with an extension — possibly up to the
    /// body's end: then they can be passed on as they came (`Some`). `None` when not (the
    /// decoder was inside a chunk, the read cut one, an extension): the decoder is left as it
    /// was, for `decode`.
    pub fn skim(&mut self, input: &[u8]) -> Result<Option<Frames>, ChunkedError> {
        if self.state != State::Size || self.size_digits != 0 {
            return Ok(None);
        }
        let mut probe = self.clone();
        probe.extended = false;
        let mut last_chunk_start = 0;
        let used = probe.advance(input, |_| {}, |at| last_chunk_start = at)?;
        let chunks_end = match probe.state {
            State::Done => last_chunk_start,
            State::Size if probe.size_digits == 0 => used,
            _ => return Ok(None),
        };
        if probe.extended {
            return Ok(None);
        }
        *self = probe;
        Ok(Some(Frames { used, chunks_end }))
    }

    /// Walks `input`: each run of payload goes to `payload`, the offset of each chunk's
    /// first byte to `chunk_start`. Returns bytes consumed, as [`Self::decode`].
    fn advance(
        &mut self,
        input: &[u8],
        mut payload: impl FnMut(&[u8]),
        mut chunk_start: impl FnMut(usize),
    ) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                // Payload is taken in one piece, not byte by byte.
                State::Data => {
                    let take = (input.len() - i)
                        .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    payload(&input[i..i + take]);
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::Done => return Ok(i),
                // A size line that arrived whole, read at once; a cut one, one with an
                // extension or a bad one goes byte by byte below (which reports errors).
                State::Size if self.size_digits == 0 => {
                    chunk_start(i);
                    match size_line(&input[i..]) {
                        Some((size, len)) => {
                            self.remaining = size;
                            self.state = if size == 0 {
                                State::TrailerStart
                            } else {
                                State::Data
                            };
                            i += len;
                        }
                        None => {
                            self.step(input[i])?;
                            i += 1;
                        }
                    }
                }
                State::DataCr if input[i..].starts_with(b"\r\n") => {
                    self.state = State::Size;
                    i += 2;
                }
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
            State::Data | State::Done => unreachable!("handled by advance"),
        }
        Ok(())
    }

    /// A byte of a chunk-size line: a hex digit, or what ends the digits.
    fn size_byte(&mut self, b: u8) -> Result<(), ChunkedError> {
        match hex_value(b) {
            Some(v) => {
                if usize::from(self.size_digits) >= MAX_SIZE_DIGITS {
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
                    self.extended = true;
                }
                _ => return Err(ChunkedError::BadSize),
            },
        }
        Ok(())
    }
}

/// The payload of the first chunk of a chunked body, when it arrived whole (a size line
/// without extensions, the payload, CRLF): to be looked at in place, without a decoder.
pub fn first_chunk(body: &[u8]) -> Option<&[u8]> {
    let (size, line) = size_line(body)?;
    let data = body.get(line..)?;
    let size = usize::try_from(size).ok()?;
    (data.get(size..size + 2)? == b"\r\n").then(|| &data[..size])
}

/// The size of a chunk whose size line starts `input` whole — hex digits, no extension, CRLF —
/// and the line's length. `None` for anything else: a line cut by the read, an extension, a
/// malformed line (which the byte-wise walk then rejects with its error).
fn size_line(input: &[u8]) -> Option<(u64, usize)> {
    let mut size = 0u64;
    for (at, &b) in input.iter().enumerate().take(MAX_SIZE_DIGITS + 1) {
        match hex_value(b) {
            Some(v) if at < MAX_SIZE_DIGITS => size = size * 16 + u64::from(v),
            None if at > 0 && b == b'\r' => {
                return (input.get(at + 1) == Some(&b'\n')).then_some((size, at + 2));
            }
            _ => return None,
        }
    }
    None
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

    /// Whole size lines are read at once, cut or unusual ones byte by byte: both walks must
    /// agree on every body, however the reads cut it (payload, bytes used, errors).
    #[test]
    fn whole_lines_and_bytes_agree() {
        let bodies: [&[u8]; 8] = [
            b"1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
            b"000000000000003\r\nabc\r\n0\r\n\r\n",
            b"0000000000000003\r\nabc\r\n0\r\n\r\n",
            b"3 ;a\r\nabc\r\n0\r\nt: 1\r\n\r\n",
            b"3x\r\nabc\r\n",
            b"3\r\nabc\n\r\n",
            b"3\rxabc\r\n",
            b"\r\n",
        ];
        for body in bodies {
            let bytewise = decode_all(body, 1);
            for cut in 0..=body.len() {
                let mut d = ChunkedDecoder::new();
                let mut out = Vec::new();
                let mut used = 0;
                let mut result = Ok(0);
                for piece in [&body[..cut], &body[cut..]] {
                    if d.is_done() {
                        break;
                    }
                    match d.decode(piece, &mut out) {
                        Ok(n) => used += n,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                let split = (result.map(|_| used), out, d.is_done());
                assert_eq!(
                    split,
                    bytewise,
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        assert_eq!(first_chunk(b"3\r\nabc\r\n0\r\n"), Some(b"abc".as_slice()));
        assert_eq!(first_chunk(b"3\r\nabc"), None);
        assert_eq!(first_chunk(b"3;x\r\nabc\r\n"), None);
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

    /// Skims `body` read in pieces of `step` bytes, as the relay does: whole chunks are kept
    /// as they came, the rest decoded and framed again. Returns what the client gets.
    fn relay_chunks(body: &[u8], step: usize) -> (Vec<u8>, usize) {
        let mut d = ChunkedDecoder::new();
        let (mut client, mut passed) = (Vec::new(), 0);
        for piece in body.chunks(step) {
            if d.is_done() {
                break;
            }
            match d.skim(piece).unwrap() {
                Some(f) => {
                    client.extend_from_slice(&piece[..f.chunks_end]);
                    passed += 1;
                }
                None => {
                    let mut payload = Vec::new();
                    d.decode(piece, &mut payload).unwrap();
                    push_chunk_frame(&mut client, &payload);
                }
            }
        }
        assert!(d.is_done());
        client.extend_from_slice(LAST_CHUNK);
        (client, passed)
    }

    #[test]
    fn whole_chunks_pass_as_they_came() {
        let body = b"5\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        // One read with every chunk: passed whole, the trailer (and what follows) not.
        let mut d = ChunkedDecoder::new();
        let f = d.skim(body).unwrap().unwrap();
        assert_eq!(f.used, body.len() - 4);
        assert_eq!(&body[..f.chunks_end], b"5\r\nhello\r\n7\r\n, world\r\n");
        assert!(d.is_done());
        // Reads that cut chunks anywhere: the client still gets the same payload, framed.
        for step in [1, 2, 3, 6, 10, 12, 22, body.len()] {
            let (client, _) = relay_chunks(body, step);
            let (r, decoded, done) = decode_all(&client, 4);
            assert!(r.is_ok() && done, "step {step}");
            assert_eq!(decoded, b"hello, world", "step {step}");
        }
        // Reads that end on chunk boundaries pass every chunk as it came.
        let (client, passed) = relay_chunks(b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", 8);
        assert_eq!(passed, 3);
        assert_eq!(client, b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n");
    }

    #[test]
    fn skim_leaves_what_it_cannot_pass_to_decode() {
        let mut d = ChunkedDecoder::new();
        // A chunk cut by the read: nothing taken.
        assert_eq!(d.skim(b"5\r\nhel").unwrap(), None);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"5\r\nhel", &mut out).unwrap(), 6);
        // Inside a chunk: decode's.
        assert_eq!(d.skim(b"lo\r\n").unwrap(), None);
        d.decode(b"lo\r\n", &mut out).unwrap();
        assert_eq!(out, b"hello");
        // An extension is not passed on.
        assert_eq!(d.skim(b"1;x=y\r\na\r\n").unwrap(), None);
        // Garbage is an error, as for decode.
        assert_eq!(d.skim(b"zz\r\n"), Err(ChunkedError::BadSize));
        assert_eq!(d.skim(b"1\r\nab\r\n"), Err(ChunkedError::BadDelimiter));
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
