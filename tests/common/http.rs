//! A tiny blocking HTTP/1.1 client over `std::net::TcpStream`: requests as raw bytes (so a
//! test can send exactly what it means to), and responses read with Content-Length, chunked
//! or read-to-EOF framing (a body cut short is reported, not hidden).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Response headers in arrival order, names as sent.
pub type Headers = Vec<(String, String)>;

/// A parsed response. `complete` is false when the connection ended before the
/// framing said the body was over (truncated Content-Length or chunked body).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub complete: bool,
}

impl Response {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}: {}",
                self.status,
                self.text()
            )
        })
    }
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Build a request head (+ body). Adds Host, and Content-Length when a body
/// is given; `close` adds `Connection: close`.
pub fn build_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    close: bool,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            out.push_str("Content-Type: application/json\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if let Some(body) = body {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// One client connection; responses are read in order, so several requests
/// can share it (keep-alive).
pub struct HttpConn {
    reader: BufReader<TcpStream>,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<HttpConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            reader: BufReader::new(stream),
        })
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream().set_read_timeout(Some(timeout))
    }

    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(raw)?;
        stream.flush()
    }

    /// Status line and headers (skipping any 1xx interim responses).
    pub fn read_head(&mut self) -> io::Result<(u16, Headers)> {
        loop {
            let line = self.head_line("before status line")?;
            let mut parts = line.trim_end().splitn(3, ' ');
            let version = parts.next().unwrap_or_default();
            if !version.starts_with("HTTP/1.") {
                return Err(invalid(format!("bad status line {line:?}")));
            }
            let status: u16 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid(format!("bad status line {line:?}")))?;
            let mut headers = Vec::new();
            loop {
                let h = self.head_line("inside headers")?;
                let h = h.trim_end_matches(['\r', '\n']);
                if h.is_empty() {
                    break;
                }
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| invalid(format!("bad header line {h:?}")))?;
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            return Ok((status, headers));
        }
    }

    /// The next line of a response head; the connection closing first is an `UnexpectedEof`
    /// saying where (`before status line`, `inside headers`).
    fn head_line(&mut self, at: &str) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed {at}"),
            ));
        }
        Ok(line)
    }

    /// Read whatever body bytes arrive next (up to `max`), without any framing:
    /// for peeking into a stream. Ok(0) means EOF.
    pub fn read_some(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; max];
        let n = self.reader.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Read a body framed by `headers` (for a response to a non-HEAD request).
    /// Returns (body, complete).
    pub fn read_body(
        &mut self,
        status: u16,
        headers: &[(String, String)],
    ) -> io::Result<(Vec<u8>, bool)> {
        if status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok((Vec::new(), true));
        }
        let chunked = header(headers, "transfer-encoding").is_some_and(|te| {
            te.to_ascii_lowercase()
                .split(',')
                .any(|t| t.trim() == "chunked")
        });
        if chunked {
            return self.read_chunked();
        }
        if let Some(len) = header(headers, "content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| invalid(format!("bad content-length {len:?}")))?;
            let mut body = Vec::with_capacity(len.min(1 << 20));
            (&mut self.reader).take(len as u64).read_to_end(&mut body)?;
            let complete = body.len() == len;
            return Ok((body, complete));
        }
        // Neither: the body runs to EOF.
        let mut body = Vec::new();
        match self.reader.read_to_end(&mut body) {
            Ok(_) => Ok((body, true)),
            Err(e) if is_disconnect(&e) => Ok((body, false)),
            Err(e) => Err(e),
        }
    }

    fn read_chunked(&mut self) -> io::Result<(Vec<u8>, bool)> {
        let mut body = Vec::new();
        loop {
            let mut size_line = String::new();
            match self.reader.read_line(&mut size_line) {
                Ok(0) => return Ok((body, false)),
                Ok(_) => {}
                Err(e) if is_disconnect(&e) => return Ok((body, false)),
                Err(e) => return Err(e),
            }
            if !size_line.ends_with('\n') {
                return Ok((body, false));
            }
            let size_str = size_line
                .trim_end()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim();
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| invalid(format!("bad chunk size line {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the final empty line.
                loop {
                    let mut t = String::new();
                    match self.reader.read_line(&mut t) {
                        Ok(0) => return Ok((body, false)),
                        Ok(_) if t.trim_end_matches(['\r', '\n']).is_empty() => {
                            return Ok((body, true))
                        }
                        Ok(_) => {}
                        Err(e) if is_disconnect(&e) => return Ok((body, false)),
                        Err(e) => return Err(e),
                    }
                }
            }
            let start = body.len();
            match (&mut self.reader).take(size as u64).read_to_end(&mut body) {
                Ok(_) if body.len() - start == size => {}
                Ok(_) => return Ok((body, false)),
                Err(e) if is_disconnect(&e) => return Ok((body, false)),
                Err(e) => return Err(e),
            }
            let mut crlf = [0u8; 2];
            match self.reader.read_exact(&mut crlf) {
                Ok(()) if &crlf == b"\r\n" => {}
                Ok(()) => return Err(invalid(format!("chunk not followed by CRLF: {crlf:?}"))),
                Err(e) if is_disconnect(&e) => return Ok((body, false)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Status, headers and the whole body of the next response.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let (status, headers) = self.read_head()?;
        let (body, complete) = self.read_body(status, &headers)?;
        Ok(Response {
            status,
            headers,
            body,
            complete,
        })
    }
}

/// Send `raw` on a new connection and read one response:
/// `(status, headers, body)`. Handles Content-Length, chunked and
/// read-to-EOF bodies; a body cut short by the peer is returned as far as it got.
pub fn http_request(
    addr: SocketAddr,
    raw: &[u8],
    timeout: Duration,
) -> io::Result<(u16, Headers, Vec<u8>)> {
    let mut conn = HttpConn::connect(addr, timeout)?;
    conn.send(raw)?;
    let r = conn.read_response()?;
    Ok((r.status, r.headers, r.body))
}

/// The peer closed or reset the connection.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
