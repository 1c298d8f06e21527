//! `multipart/form-data` (RFC 7578) as OpenAI's upload endpoints take it: the boundary from
//! the content type, then each part's name, file name and bytes, borrowed from the body.
//! A body that stops before its closing delimiter is refused rather than read as far as it
//! goes, so that a client (or gateway) that tore an upload is caught by the tests.

use crate::reply::Rejection;

/// One part of the form.
#[derive(Debug, PartialEq, Eq)]
pub struct Part<'a> {
    pub name: String,
    /// Present for file parts; a part without one is a plain field.
    pub filename: Option<String>,
    pub data: &'a [u8],
}

/// The parts of a form, in body order.
#[derive(Debug)]
pub struct Form<'a> {
    parts: Vec<Part<'a>>,
}

impl<'a> Form<'a> {
    /// Parse `body` as the form its `content_type` header announces.
    pub fn parse(content_type: Option<&str>, body: &'a [u8]) -> Result<Self, Rejection> {
        let boundary = boundary(content_type).map_err(|m| Rejection::invalid("file", m))?;
        parts(&boundary, body)
            .map(|parts| Self { parts })
            .map_err(|m| Rejection::invalid("file", m))
    }

    /// The text of the first field called `name`; a required text field refused otherwise.
    pub fn text(&self, name: &'static str) -> Result<Option<&'a str>, Rejection> {
        let Some(part) = self.parts.iter().find(|p| p.name == name) else {
            return Ok(None);
        };
        std::str::from_utf8(part.data)
            .map(Some)
            .map_err(|_| Rejection::invalid(name, format!("{name} must be UTF-8 text")))
    }

    /// Every file part called `name` (or `name[]`, as SDKs send repeated files); a part by
    /// that name without a file name is refused, since it cannot be the upload.
    pub fn files(&self, name: &'static str) -> Result<Vec<&Part<'a>>, Rejection> {
        let named =
            |p: &&Part<'a>| p.name == name || p.name.strip_suffix("[]").is_some_and(|n| n == name);
        self.parts
            .iter()
            .filter(named)
            .map(|p| match p.filename {
                Some(_) => Ok(p),
                None => Err(Rejection::invalid(
                    name,
                    format!("{name} must be a file upload (a part with a filename)"),
                )),
            })
            .collect()
    }

    /// The one file part called `name`, required.
    pub fn file(&self, name: &'static str) -> Result<&Part<'a>, Rejection> {
        self.files(name)?
            .into_iter()
            .next()
            .ok_or_else(|| Rejection::invalid(name, format!("{name}: a file is required")))
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type, unquoted.
fn boundary(content_type: Option<&str>) -> Result<String, String> {
    let content_type = content_type.unwrap_or_default();
    let kind = content_type.split(';').next().unwrap_or_default().trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(format!(
            "Expected a multipart/form-data body, got content type {content_type:?}"
        ));
    }
    let boundary = params(content_type)
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map_or("", |(_, v)| v);
    if boundary.is_empty() {
        return Err("The multipart/form-data content type has no boundary".to_owned());
    }
    Ok(boundary.to_owned())
}

/// The parts between the first delimiter and the closing one.
fn parts<'a>(boundary: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, String> {
    let torn = || "The multipart body ends before its closing boundary".to_owned();
    let delimiter = format!("\r\n--{boundary}");
    // The first delimiter may open the body without the CRLF before it.
    let start = if body.starts_with(&delimiter.as_bytes()[2..]) {
        delimiter.len() - 2
    } else {
        find(body, delimiter.as_bytes()).ok_or_else(torn)? + delimiter.len()
    };
    let mut rest = &body[start..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding (spaces, tabs) may follow a delimiter before its CRLF.
        let after_pad = rest.iter().position(|b| *b != b' ' && *b != b'\t');
        rest = after_pad
            .map(|i| &rest[i..])
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or_else(torn)?;
        let head_end = find(rest, b"\r\n\r\n").ok_or_else(torn)?;
        let head = std::str::from_utf8(&rest[..head_end])
            .map_err(|_| "A multipart part has headers that are not UTF-8".to_owned())?;
        let data_start = head_end + 4;
        let data_len = find(&rest[data_start..], delimiter.as_bytes()).ok_or_else(torn)?;
        let (name, filename) = disposition(head)?;
        parts.push(Part {
            name,
            filename,
            data: &rest[data_start..data_start + data_len],
        });
        rest = &rest[data_start + data_len + delimiter.len()..];
    }
}

/// `name` and `filename` of a part's `Content-Disposition: form-data` header.
fn disposition(head: &str) -> Result<(String, Option<String>), String> {
    let value = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
        .map(|(_, v)| v)
        .ok_or("A multipart part has no Content-Disposition header")?;
    let param = |key: &str| {
        params(value)
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.to_owned())
    };
    let name = param("name").ok_or("A multipart part has no name")?;
    Ok((name, param("filename")))
}

/// `key=value` parameters after a header value's type (`form-data`, `multipart/form-data`);
/// quoted values may hold `;`.
fn params(value: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = value;
    std::iter::from_fn(move || loop {
        let at = rest.find(';')?;
        rest = rest[at + 1..].trim_start();
        let (key, after) = rest.split_once('=')?;
        let value = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                rest = &quoted[end + 1..];
                &quoted[..end]
            }
            None => {
                let end = after.find(';').unwrap_or(after.len());
                rest = &after[end..];
                after[..end].trim()
            }
        };
        if !key.trim().is_empty() {
            return Some((key.trim(), value));
        }
    })
}

/// First index of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{form_body, FORM_TYPE};
    use super::*;

    #[test]
    fn fields_and_files() {
        let body = form_body(&[
            ("model", None, b"whisper-1"),
            ("file", Some("a b.wav"), b"RIFF\r\n--Xy not a delimiter"),
            ("image[]", Some("1.png"), b"one"),
            ("image", Some("2.png"), b"two"),
        ]);
        let form = Form::parse(Some(FORM_TYPE), &body).unwrap();
        assert_eq!(form.text("model").unwrap(), Some("whisper-1"));
        assert_eq!(form.text("language").unwrap(), None);
        let file = form.file("file").unwrap();
        assert_eq!(file.filename.as_deref(), Some("a b.wav"));
        assert_eq!(file.data, b"RIFF\r\n--Xy not a delimiter");
        let images: Vec<&[u8]> = form
            .files("image")
            .unwrap()
            .iter()
            .map(|p| p.data)
            .collect();
        assert_eq!(images, [b"one", b"two"]);
        assert!(form.files("mask").unwrap().is_empty());
    }

    #[test]
    fn quoted_boundary_preamble_and_padding() {
        let body = b"preamble\r\n--a;b \t\r\ncontent-disposition: form-data; name=\"x;y\"; filename=\"f\"\r\n\
              Content-Type: text/plain\r\n\r\nhi\r\n--a;b--";
        let form = Form::parse(
            Some("Multipart/Form-Data; charset=utf-8; boundary=\"a;b\""),
            body,
        )
        .unwrap();
        assert_eq!(form.file("x;y").unwrap().data, b"hi");
    }

    #[test]
    fn part_without_filename_is_not_a_file() {
        let body = form_body(&[("file", None, b"just text")]);
        let form = Form::parse(Some(FORM_TYPE), &body).unwrap();
        assert_eq!(form.text("file").unwrap(), Some("just text"));
        let err = form.file("file").unwrap_err();
        assert_eq!((err.status, err.param), (400, Some("file")));
        assert!(err.message.contains("filename"), "{}", err.message);
        assert_eq!(form.file("other").unwrap_err().param, Some("other"));
    }

    #[test]
    fn refused_bodies() {
        let body = form_body(&[("file", Some("a.wav"), b"abc")]);
        for content_type in [
            None,
            Some("application/json"),
            Some("multipart/form-data"),
            Some("multipart/form-data; boundary=\"\""),
        ] {
            let err = Form::parse(content_type, &body).unwrap_err();
            assert_eq!(err.status, 400, "{content_type:?}");
        }
        // Torn anywhere: in the head, in the data, before the closing delimiter.
        for cut in [10, 60, body.len() - 8] {
            let err = Form::parse(Some(FORM_TYPE), &body[..cut]).unwrap_err();
            assert!(err.message.contains("closing boundary"), "{cut}: {err:?}");
        }
        assert!(Form::parse(Some(FORM_TYPE), b"").is_err());
        let nameless = b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--";
        assert!(Form::parse(Some(FORM_TYPE), nameless).is_err());
        let headless = b"--XyZ\r\n\r\nx\r\n--XyZ--";
        assert!(Form::parse(Some(FORM_TYPE), headless).is_err());
    }

    #[test]
    fn non_utf8_field_is_refused() {
        let body = form_body(&[("model", None, &[0xff, 0xfe])]);
        let form = Form::parse(Some(FORM_TYPE), &body).unwrap();
        assert_eq!(form.text("model").unwrap_err().param, Some("model"));
    }
}
