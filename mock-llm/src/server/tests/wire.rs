//! The server over a real socket: each test sends raw HTTP/1.1 requests to one connection
//! served by [`serve_connection`], so auth, methods, faults and framing are seen as a
//! client sees them.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::*;

const KEY: &str = "sk-mock";

/// A response as read off the wire, its chunked body decoded.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    /// Sizes of the chunks, for a chunked body.
    chunks: Vec<usize>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Send `head` (request line and headers, without the blank line) and `body` on a fresh
/// connection to a server requiring [`KEY`].
async fn send(head: &str, body: &[u8]) -> Reply {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let config = Config {
            defaults: Defaults {
                latency: Duration::ZERO,
                stream_chunks: 8,
                stream_interval: Duration::ZERO,
                usage: true,
            },
            fail_rate: 0.0,
            fail_status: 500,
            key: Some(KEY.to_owned()),
            rate_limited_key: None,
        };
        serve_connection(tcp, Arc::new(config)).await;
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head}\r\nhost: mock\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    server.await.unwrap();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v == "chunked");
    if !chunked {
        return Reply {
            status,
            headers,
            chunks: Vec::new(),
            body: rest.to_vec(),
        };
    }
    let (mut chunks, mut body) = (Vec::new(), Vec::new());
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = std::str::from_utf8(&rest[..line_end]).unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        chunks.push(size);
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    Reply {
        status,
        headers,
        chunks,
        body,
    }
}

fn bearer(line: &str) -> String {
    format!("{line}\r\nauthorization: Bearer {KEY}")
}

#[tokio::test]
async fn speech_arrives_in_chunks() {
    let body =
        br#"{"model":"tts-1","input":"hello, world! ","voice":"alloy","response_format":"opus"}"#;
    let r = send(
        &bearer("POST /v1/audio/speech HTTP/1.1\r\ncontent-type: application/json"),
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("audio/opus"));
    assert_eq!(r.header("content-length"), None);
    // 14 characters × 64 bytes.
    assert_eq!(r.chunks, [896]);
    assert_eq!(r.body.len(), 896);

    let long = format!(
        r#"{{"model":"tts-1","input":"{}","voice":"alloy"}}"#,
        "ab".repeat(100)
    );
    let r = send(&bearer("POST /v1/audio/speech HTTP/1.1"), long.as_bytes()).await;
    assert_eq!(r.header("content-type"), Some("audio/mpeg"));
    assert_eq!(r.chunks, [4096, 4096, 4096, 512]);
}

#[tokio::test]
async fn auth_and_methods_in_openai_shape() {
    let r = send("POST /v1/moderations HTTP/1.1", br#"{"input":"x"}"#).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");

    let r = send(&bearer("GET /v1/audio/speech HTTP/1.1"), b"").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = send(&bearer("DELETE /v1/batches HTTP/1.1"), b"").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, POST")));

    let r = send(&bearer("GET /v1/files/file-404 HTTP/1.1"), b"").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        serde_json::json!({"error": {"message": "No such File object: file-404",
            "type": "invalid_request_error", "param": "id", "code": null}})
    );

    let r = send(
        &bearer("POST /v1/images/generations HTTP/1.1"),
        br#"{"prompt":"x","n":11}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("n"))
    );

    let r = send(
        &bearer("POST /v1/moderations HTTP/1.1\r\nx-mock-status: 503"),
        br#"{"input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, 503);
}

#[tokio::test]
async fn uploads_and_plain_text_replies() {
    let form = b"--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\r\n\
        {}\n{}\r\n--B\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--B--\r\n";
    let r = send(
        &bearer("POST /v1/files HTTP/1.1\r\ncontent-type: multipart/form-data; boundary=B"),
        form,
    )
    .await;
    assert_eq!(r.status, 200);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = send(
        &bearer(&format!("GET /v1/files/{id}/content HTTP/1.1")),
        b"",
    )
    .await;
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body, b"{}\n{}");

    let torn = &form[..form.len() - 10];
    let r = send(
        &bearer("POST /v1/files HTTP/1.1\r\ncontent-type: multipart/form-data; boundary=B"),
        torn,
    )
    .await;
    assert_eq!(r.status, 400);

    let audio = b"--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n\
        xyz\r\n--B\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
        --B\r\ncontent-disposition: form-data; name=\"response_format\"\r\n\r\ntext\r\n--B--";
    let r = send(
        &bearer("POST /v1/audio/transcriptions HTTP/1.1\r\ncontent-type: multipart/form-data; boundary=B"),
        audio,
    )
    .await;
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body, b"transcribed 3 bytes of a.wav");
}

#[tokio::test]
async fn azure_rules() {
    let r = send(
        &format!("GET /openai/files HTTP/1.1\r\napi-key: {KEY}"),
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "BadRequest");
    let r = send("GET /openai/batches?api-version=2024-10-21 HTTP/1.1", b"").await;
    assert_eq!(r.status, 401);
    let r = send(
        &format!("GET /openai/batches?api-version=2024-10-21&limit=5 HTTP/1.1\r\napi-key: {KEY}"),
        b"",
    )
    .await;
    assert_eq!(
        (r.status, &r.json()["object"]),
        (200, &serde_json::json!("list"))
    );
    let r = send(
        &format!("POST /openai/deployments/d/moderations?api-version=x HTTP/1.1\r\napi-key: {KEY}"),
        br#"{"input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "Resource not found");
    let r = send(
        &format!("POST /openai/deployments/my-dalle/images/generations?api-version=x HTTP/1.1\r\napi-key: {KEY}"),
        br#"{"prompt":"x"}"#,
    )
    .await;
    assert_eq!(r.json()["data"][0]["url"], "https://mock.invalid/img/0.png");
    let r = send(
        &format!("POST /openai/deployments/d/images/generations?api-version=x HTTP/1.1\r\napi-key: {KEY}"),
        br#"{"prompt":"x","size":"1x1"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (400, Some("400"))
    );
}

#[tokio::test]
async fn anthropic_count_tokens() {
    let body = br#"{"model":"claude","messages":[{"role":"user","content":"12345678"}]}"#;
    let head = "POST /v1/messages/count_tokens HTTP/1.1\r\nanthropic-version: 2023-06-01";
    let r = send(head, body).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = send(&format!("{head}\r\nx-api-key: {KEY}"), body).await;
    assert_eq!(
        (r.status, r.json()),
        (200, serde_json::json!({"input_tokens": 2}))
    );
    assert!(r.header("request-id").is_some());
}
