//! Byte-level encoders for streamed bodies: Server-Sent Events in the
//! flavours the dialects use, and AWS event-stream frames (Bedrock's
//! `application/vnd.amazon.eventstream`).
//!
//! Everything here is pure, so the exact bytes put on the wire are unit
//! tested without a server.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// `data: <json>\n\n` (OpenAI).
pub fn sse_data<T: Serialize>(value: &T) -> Bytes {
    sse(None, value, "\n\n")
}

/// `data: <json>\r\n\r\n` (Gemini's `alt=sse`, which uses CRLF line ends).
pub fn sse_data_crlf<T: Serialize>(value: &T) -> Bytes {
    sse(None, value, "\r\n\r\n")
}

/// `event: <name>\ndata: <json>\n\n` (Anthropic names every event).
pub fn sse_named<T: Serialize>(event: &str, value: &T) -> Bytes {
    sse(Some(event), value, "\n\n")
}

fn sse<T: Serialize>(event: Option<&str>, value: &T, end: &str) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    if let Some(event) = event {
        buf.extend_from_slice(b"event: ");
        buf.extend_from_slice(event.as_bytes());
        buf.extend_from_slice(&end.as_bytes()[..end.len() / 2]);
    }
    buf.extend_from_slice(b"data: ");
    // Serializing plain structs and `Value`s into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut buf, value);
    buf.extend_from_slice(end.as_bytes());
    Bytes::from(buf)
}

/// Event-stream header value type 7: a UTF-8 string with a u16 length.
const HEADER_TYPE_STRING: u8 = 7;
/// Prelude (total length, headers length, prelude CRC) plus message CRC.
const FRAME_OVERHEAD: usize = 16;

/// One AWS event-stream message:
///
/// ```text
/// total_len u32 BE | headers_len u32 BE | CRC32(first 8 bytes) u32 BE
/// headers: name_len u8, name, type u8 (7 = string), value_len u16 BE, value
/// payload
/// CRC32(everything above) u32 BE
/// ```
///
/// Header names are at most 255 bytes and values at most 65535; the mock only
/// passes short constants.
pub fn eventstream_frame(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let headers_len: usize = headers
        .iter()
        .map(|(name, value)| 1 + name.len() + 1 + 2 + value.len())
        .sum();
    let total = FRAME_OVERHEAD + headers_len + payload.len();
    let mut buf = BytesMut::with_capacity(total);
    buf.put_u32(total as u32);
    buf.put_u32(headers_len as u32);
    buf.put_u32(crc32fast::hash(&buf[..8]));
    for (name, value) in headers {
        buf.put_u8(name.len() as u8);
        buf.put_slice(name.as_bytes());
        buf.put_u8(HEADER_TYPE_STRING);
        buf.put_u16(value.len() as u16);
        buf.put_slice(value.as_bytes());
    }
    buf.put_slice(payload);
    let crc = crc32fast::hash(&buf);
    buf.put_u32(crc);
    buf.freeze()
}

/// A Bedrock runtime stream event (`:message-type: event`) with a JSON payload.
pub fn bedrock_event(event_type: &str, payload: &[u8]) -> Bytes {
    eventstream_frame(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// The same frame with its message CRC (last 4 bytes) made wrong; the
/// prelude stays valid so a decoder reads the whole frame before noticing.
pub fn corrupt_message_crc(frame: &[u8]) -> Bytes {
    let mut out = frame.to_vec();
    if let Some(last) = out.last_mut() {
        *last ^= 0xff;
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn be32(b: &[u8]) -> u32 {
        u32::from_be_bytes(b.try_into().unwrap())
    }

    #[test]
    fn sse_flavours() {
        let v = json!({"a": 1});
        assert_eq!(sse_data(&v).as_ref(), b"data: {\"a\":1}\n\n");
        assert_eq!(sse_data_crlf(&v).as_ref(), b"data: {\"a\":1}\r\n\r\n");
        assert_eq!(
            sse_named("ping", &json!({"type": "ping"})).as_ref(),
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
    }

    #[test]
    fn empty_frame_matches_aws_test_vector() {
        // "empty_message" from the AWS event-stream test suite.
        assert_eq!(
            eventstream_frame(&[], b"").as_ref(),
            [0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff]
        );
    }

    #[test]
    fn frame_layout_and_crcs() {
        let payload = br#"{"delta":{"text":"hi"},"contentBlockIndex":0}"#;
        let frame = bedrock_event("contentBlockDelta", payload);
        let total = be32(&frame[0..4]) as usize;
        let headers_len = be32(&frame[4..8]) as usize;
        assert_eq!(total, frame.len());
        assert_eq!(be32(&frame[8..12]), crc32fast::hash(&frame[..8]));
        assert_eq!(
            be32(&frame[total - 4..]),
            crc32fast::hash(&frame[..total - 4])
        );
        assert_eq!(&frame[12 + headers_len..total - 4], payload);

        // Decode the headers back.
        let mut headers = Vec::new();
        let mut h = &frame[12..12 + headers_len];
        while !h.is_empty() {
            let name_len = h[0] as usize;
            let name = std::str::from_utf8(&h[1..1 + name_len]).unwrap();
            assert_eq!(h[1 + name_len], HEADER_TYPE_STRING);
            let at = 2 + name_len;
            let value_len = u16::from_be_bytes([h[at], h[at + 1]]) as usize;
            let value = std::str::from_utf8(&h[at + 2..at + 2 + value_len]).unwrap();
            headers.push((name, value));
            h = &h[at + 2 + value_len..];
        }
        assert_eq!(
            headers,
            [
                (":event-type", "contentBlockDelta"),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ]
        );
    }

    #[test]
    fn corrupted_crc_only_breaks_the_message_crc() {
        let frame = bedrock_event("messageStop", br#"{"stopReason":"end_turn"}"#);
        let bad = corrupt_message_crc(&frame);
        let n = bad.len();
        assert_eq!(bad.len(), frame.len());
        assert_eq!(bad[..n - 4], frame[..n - 4]);
        assert_eq!(be32(&bad[8..12]), crc32fast::hash(&bad[..8]));
        assert_ne!(be32(&bad[n - 4..]), crc32fast::hash(&bad[..n - 4]));
    }
}
