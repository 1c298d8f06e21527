//! `multipart/form-data` (RFC 7578) read in place: where each part's name, file name and
//! value sit in the body, so that a relayed upload's fields (its `model`, an image's `size`,
//! a batch file's lines) can be read and the model spliced without copying the body.

use std::ops::Range;

use memchr::memmem;

/// One part of a form: byte ranges into the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The `name` of its `Content-Disposition`.
    pub name: Range<usize>,
    /// Its `filename`, for a file.
    pub filename: Option<Range<usize>>,
    pub value: Range<usize>,
}

/// A form read from a body.
#[derive(Debug)]
pub struct Form {
    pub parts: Vec<Part>,
}

impl Form {
    /// The first part named `name`.
    pub fn field<'b>(&self, body: &'b [u8], name: &str) -> Option<(&Part, &'b [u8])> {
        self.parts
            .iter()
            .find(|p| &body[p.name.clone()] == name.as_bytes())
            .map(|p| (p, &body[p.value.clone()]))
    }

    /// The first part named `name`, as text.
    pub fn text<'b>(&self, body: &'b [u8], name: &str) -> Option<&'b str> {
        self.field(body, name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &[u8]) -> Option<&[u8]> {
    let text = std::str::from_utf8(content_type).ok()?;
    let mut params = text.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').as_bytes())
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

/// Reads the parts of `body` delimited by `boundary`.
pub fn parse(body: &[u8], boundary: &[u8]) -> Result<Form, &'static str> {
    let mut delimiter = Vec::with_capacity(boundary.len() + 4);
    delimiter.extend_from_slice(b"\r\n--");
    delimiter.extend_from_slice(boundary);
    let next_delimiter = memmem::Finder::new(&delimiter);
    // The first delimiter may open the body (no CRLF before it) or follow a preamble.
    let mut at = if body.starts_with(&delimiter[2..]) {
        delimiter.len() - 2
    } else {
        next_delimiter
            .find(body)
            .ok_or("the multipart body has no boundary delimiter")?
            + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(Form { parts });
        }
        let rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("a multipart delimiter must end its line")?;
        let head_start = body.len() - rest.len();
        let head_len =
            memmem::find(rest, b"\r\n\r\n").ok_or("a multipart part has no end of headers")?;
        let value_start = head_start + head_len + 4;
        let value_len = next_delimiter
            .find(&body[value_start..])
            .ok_or("the multipart body ends without its closing delimiter")?;
        let (name, filename) = disposition(body, head_start..head_start + head_len)
            .ok_or("a multipart part has no form-data name")?;
        parts.push(Part {
            name,
            filename,
            value: value_start..value_start + value_len,
        });
        at = value_start + value_len + delimiter.len();
    }
}

/// The `name` and `filename` of a part's `Content-Disposition: form-data` header.
fn disposition(body: &[u8], head: Range<usize>) -> Option<(Range<usize>, Option<Range<usize>>)> {
    let offset = head.start;
    let lines = body[head].split(|b| *b == b'\n');
    let mut line_start = offset;
    for line in lines {
        let start = line_start;
        line_start += line.len() + 1;
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"content-disposition") {
            continue;
        }
        let value_at = start + colon + 1;
        let name = param(body, value_at..start + line.len(), b"name")?;
        return Some((name, param(body, value_at..start + line.len(), b"filename")));
    }
    None
}

/// The quoted value of parameter `key` within `body[range]` (`; key="value"`).
fn param(body: &[u8], range: Range<usize>, key: &[u8]) -> Option<Range<usize>> {
    let text = &body[range.clone()];
    let mut from = 0;
    while let Some(i) = memmem::find(&text[from..], key) {
        let at = from + i;
        from = at + key.len();
        let before = text[..at].trim_ascii_end();
        let starts_param = before.ends_with(b";");
        let rest = &text[from..];
        if starts_param && rest.starts_with(b"=\"") {
            let value_start = from + 2;
            let len = memchr::memchr(b'"', &text[value_start..])?;
            let start = range.start + value_start;
            return Some(start..start + len);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nopenai/whisper-1\r\n--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--X\x00\r\n--XyZ--\r\n";

    #[test]
    fn reads_fields_and_files() {
        let form = parse(FORM, b"XyZ").unwrap();
        assert_eq!(form.parts.len(), 2);
        assert_eq!(form.text(FORM, "model"), Some("openai/whisper-1"));
        let (file, bytes) = form.field(FORM, "file").unwrap();
        assert_eq!(bytes, b"RIFF\r\n--X\x00");
        assert_eq!(&FORM[file.filename.clone().unwrap()], b"a.wav");
        assert!(form.field(FORM, "filename").is_none());
    }

    #[test]
    fn boundaries() {
        assert_eq!(
            boundary(b"multipart/form-data; boundary=abc"),
            Some(&b"abc"[..])
        );
        assert_eq!(
            boundary(b"Multipart/Form-Data;charset=utf-8; boundary=\"a b\""),
            Some(&b"a b"[..])
        );
        assert_eq!(boundary(b"application/json"), None);
        assert_eq!(boundary(b"multipart/form-data"), None);
    }

    #[test]
    fn malformed_forms_are_errors() {
        assert!(parse(b"no delimiter", b"XyZ").is_err());
        assert!(parse(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue",
            b"XyZ"
        )
        .is_err());
        assert!(parse(b"--XyZ\r\nX: y\r\n\r\nv\r\n--XyZ--", b"XyZ").is_err());
        assert_eq!(parse(b"--XyZ--\r\n", b"XyZ").unwrap().parts.len(), 0);
    }
}
