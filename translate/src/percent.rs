//! URL percent-encoding, decoded: shared by request signing (Bedrock's canonical query) and
//! the gateway's own routes (model ids in paths, where the SDKs escape the `/` of
//! `provider/model`).

/// `raw` with every `%XX` escape decoded; a `%` not followed by two hex digits is kept as
/// written.
pub fn decode(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let escaped = (raw[i] == b'%')
            .then(|| Some(hex(*raw.get(i + 1)?)? * 16 + hex(*raw.get(i + 2)?)?))
            .flatten();
        match escaped.and_then(|v| u8::try_from(v).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(raw[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn escapes_decoded_malformed_kept() {
        assert_eq!(decode(b"oa%2Fgpt-4o"), b"oa/gpt-4o");
        assert_eq!(decode(b"a%20b%zz%4"), b"a b%zz%4");
        // A multi-byte character after `%` is kept, not split.
        assert_eq!(decode("%é".as_bytes()), "%é".as_bytes());
    }
}
