//! AWS Signature Version 4 request signing (header-based), pure: the caller passes the
//! timestamp. Used for Bedrock (`service = "bedrock"`).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::percent;

type HmacSha256 = Hmac<Sha256>;

/// Everything needed to sign one request.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The `Host` header value (e.g. `bedrock-runtime.us-east-1.amazonaws.com`).
    pub host: &'a str,
    /// The path as sent on the wire (already percent-encoded; it is encoded once more for the
    /// canonical request, as SigV4 does for every service but S3).
    pub path: &'a str,
    /// The query string without `?`, as sent on the wire (may be empty).
    pub query: &'a str,
    /// Other headers to sign (e.g. `content-type`), any case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, e.g. `20150830T123600Z`.
    pub amz_date: &'a str,
    /// Whether `x-amz-content-sha256` is one of the signed headers (it is returned either way).
    /// `true` for Bedrock; the AWS test-suite vectors are computed without it.
    pub sign_content_sha256: bool,
}

/// Signs a request and returns the headers to add: `authorization`, `x-amz-date`,
/// `x-amz-content-sha256` and, with a session token, `x-amz-security-token`.
pub fn sign(p: &SigningParams<'_>) -> Vec<(String, String)> {
    let payload_hash = hex::encode(Sha256::digest(p.body));
    let mut headers: Vec<(String, String)> = p
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), normalize_value(v)))
        .filter(|(k, _)| k != "host" && k != "x-amz-date" && k != "authorization")
        .collect();
    headers.push(("host".into(), p.host.to_owned()));
    headers.push(("x-amz-date".into(), p.amz_date.to_owned()));
    if p.sign_content_sha256 {
        headers.retain(|(k, _)| k != "x-amz-content-sha256");
        headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
    }
    if let Some(t) = p.session_token {
        headers.retain(|(k, _)| k != "x-amz-security-token");
        headers.push(("x-amz-security-token".into(), t.to_owned()));
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    // Duplicate names: values joined with ',' in order.
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (k, v) in headers {
        match merged.last_mut() {
            Some((lk, lv)) if *lk == k => {
                lv.push(',');
                lv.push_str(&v);
            }
            _ => merged.push((k, v)),
        }
    }
    let signed_headers = merged
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut canonical = String::new();
    canonical.push_str(p.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(p.path));
    canonical.push('\n');
    canonical.push_str(&canonical_query(p.query));
    canonical.push('\n');
    for (k, v) in &merged {
        canonical.push_str(k);
        canonical.push(':');
        canonical.push_str(v);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers);
    canonical.push('\n');
    canonical.push_str(&payload_hash);

    let date = p.amz_date.get(..8).unwrap_or(p.amz_date);
    let scope = format!("{date}/{}/{}/aws4_request", p.region, p.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        p.amz_date,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(p.secret_key, date, p.region, p.service);
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    let mut out = vec![
        (
            "authorization".to_owned(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                p.access_key
            ),
        ),
        ("x-amz-date".to_owned(), p.amz_date.to_owned()),
        ("x-amz-content-sha256".to_owned(), payload_hash),
    ];
    if let Some(t) = p.session_token {
        out.push(("x-amz-security-token".to_owned(), t.to_owned()));
    }
    out
}

/// The derived signing key: HMAC chain over date, region, service, `aws4_request`.
pub fn signing_key(secret_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn normalize_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// RFC 3986 encoding of everything but unreserved characters.
pub fn uri_encode(s: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out = String::with_capacity(path.len() + 8);
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        uri_encode(seg.as_bytes(), &mut out);
    }
    out
}

fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let mut ek = String::new();
            uri_encode(&percent::decode(k.as_bytes()), &mut ek);
            let mut ev = String::new();
            uri_encode(&percent::decode(v.as_bytes()), &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(
            canonical_uri("/model/a.b-v1%3A0/converse"),
            "/model/a.b-v1%253A0/converse"
        );
        assert_eq!(canonical_query("b=2&a=x%20y&a=1"), "a=1&a=x%20y&b=2");
        assert_eq!(percent::decode(b"%4"), b"%4");
    }
}
