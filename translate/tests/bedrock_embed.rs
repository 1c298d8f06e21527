//! Bedrock embeddings: golden tests for OpenAI embeddings ↔ `InvokeModel` on Amazon Titan Text
//! Embeddings v2 and Cohere Embed v3, built from the Bedrock model-parameter docs.

use serde_json::{json, Value};
use translate::bedrock::{self, embed};
use translate::TranslateError;

fn body(r: &translate::ProviderRequest) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn parse(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap()
}

fn invalid_message(r: Result<(translate::ProviderRequest, bool), TranslateError>) -> String {
    match r {
        Err(TranslateError::InvalidRequest(m)) => m,
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

#[test]
fn titan_request() {
    let (r, b64) = bedrock::embed_request(
        br#"{"model":"br/titan","input":"hello world","dimensions":256}"#,
        "amazon.titan-embed-text-v2:0",
    )
    .unwrap();
    assert!(!b64);
    assert_eq!(r.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert!(r
        .headers
        .contains(&("content-type".into(), "application/json".into())));
    assert_eq!(
        body(&r),
        json!({"inputText": "hello world", "dimensions": 256, "normalize": true})
    );

    // A one-element array is one input; base64 is remembered for the response side.
    let (r, b64) = bedrock::embed_request(
        br#"{"input":["only"],"encoding_format":"base64"}"#,
        "amazon.titan-embed-text-v2:0",
    )
    .unwrap();
    assert!(b64);
    assert_eq!(body(&r), json!({"inputText": "only", "normalize": true}));

    // Titan v1 takes inputText only.
    let (r, _) = bedrock::embed_request(br#"{"input":"x"}"#, "amazon.titan-embed-text-v1").unwrap();
    assert_eq!(body(&r), json!({"inputText": "x"}));
    assert!(bedrock::embed_request(
        br#"{"input":"x","dimensions":256}"#,
        "amazon.titan-embed-text-v1"
    )
    .is_err());

    // Foundation-model ARNs keep the family recognisable.
    let arn = "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0";
    let (r, _) = bedrock::embed_request(br#"{"input":"x"}"#, arn).unwrap();
    assert_eq!(
        r.path,
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Famazon.titan-embed-text-v2%3A0/invoke"
    );
}

#[test]
fn titan_rejects_several_inputs() {
    let m = invalid_message(bedrock::embed_request(
        br#"{"input":["a","b"]}"#,
        "amazon.titan-embed-text-v2:0",
    ));
    assert_eq!(m, embed::TITAN_ONE_INPUT);
    assert_eq!(
        m,
        "Titan embeds one input per request; send inputs separately or use a Cohere model"
    );
}

#[test]
fn cohere_request() {
    let (r, b64) = bedrock::embed_request(
        br#"{"model":"br/cohere","input":["alpha","beta"],"encoding_format":"float","user":"u"}"#,
        "cohere.embed-english-v3",
    )
    .unwrap();
    assert!(!b64);
    assert_eq!(r.path, "/model/cohere.embed-english-v3/invoke");
    assert_eq!(
        body(&r),
        json!({"texts": ["alpha", "beta"], "input_type": "search_document", "truncate": "NONE"})
    );
    let (r, _) =
        bedrock::embed_request(br#"{"input":"solo"}"#, "cohere.embed-multilingual-v3").unwrap();
    assert_eq!(body(&r)["texts"], json!(["solo"]));
    assert!(bedrock::embed_request(
        br#"{"input":"x","dimensions":8}"#,
        "cohere.embed-english-v3"
    )
    .is_err());
}

#[test]
fn request_errors() {
    for (bad, model) in [
        (&br#"{"input":[1,2,3]}"#[..], "cohere.embed-english-v3"),
        (br#"{"input":[[1,2],[3]]}"#, "cohere.embed-english-v3"),
        (br#"{"input":[]}"#, "cohere.embed-english-v3"),
        (br#"{}"#, "amazon.titan-embed-text-v2:0"),
        (
            br#"{"input":"x","encoding_format":"int8"}"#,
            "amazon.titan-embed-text-v2:0",
        ),
        (
            br#"{"input":"x"}"#,
            "anthropic.claude-3-haiku-20240307-v1:0",
        ),
        (b"not json", "cohere.embed-english-v3"),
    ] {
        assert!(
            matches!(
                bedrock::embed_request(bad, model),
                Err(TranslateError::InvalidRequest(_))
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn titan_response() {
    let resp = br#"{"embedding": [0.5, -1.0, 0.25], "inputTextTokenCount": 3}"#;
    let v =
        parse(&bedrock::embed_response(resp, "br/amazon.titan-embed-text-v2:0", false).unwrap());
    assert_eq!(
        v,
        json!({"object": "list", "model": "br/amazon.titan-embed-text-v2:0",
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0, 0.25]}]})
    );
    let v = parse(&bedrock::embed_response(resp, "t", true).unwrap());
    // 0.5f32 = 00 00 00 3f, -1.0 = 00 00 80 bf, 0.25 = 00 00 80 3e
    assert_eq!(v["data"][0]["embedding"], "AAAAPwAAgL8AAIA+");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
}

#[test]
fn cohere_response() {
    let resp = br#"{
        "embeddings": [[0.5, -1.0, 0.25], [1, 2, 3]],
        "id": "6f1c4b0e-3c56-4b6c-9a5e-3d5c2a1b0f9e",
        "response_type": "embeddings_floats",
        "texts": ["alpha", "hello world"]
    }"#;
    let v = parse(&bedrock::embed_response(resp, "br/cohere.embed-english-v3", false).unwrap());
    // prompt_tokens is estimated: ceil(5/4) + ceil(11/4) = 2 + 3.
    assert_eq!(
        v,
        json!({"object": "list", "model": "br/cohere.embed-english-v3",
        "usage": {"prompt_tokens": 5, "total_tokens": 5},
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0, 0.25]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 2.0, 3.0]}
        ]})
    );
    let v = parse(&bedrock::embed_response(resp, "c", true).unwrap());
    assert_eq!(v["data"][0]["embedding"], "AAAAPwAAgL8AAIA+");
    // 1.0 = 00 00 80 3f, 2.0 = 00 00 00 40, 3.0 = 00 00 40 40
    assert_eq!(v["data"][1]["embedding"], "AACAPwAAAEAAAEBA");

    // embedding_types responses nest the floats by type; no texts means no estimate.
    let by_type =
        br#"{"embeddings": {"float": [[1.0]]}, "id": "x", "response_type": "embeddings_by_type"}"#;
    let v = parse(&bedrock::embed_response(by_type, "c", false).unwrap());
    assert_eq!(v["data"][0]["embedding"], json!([1.0]));
    assert_eq!(v["usage"]["prompt_tokens"], 0);
}

#[test]
fn bad_responses() {
    for bad in [&b"{}"[..], b"[]", b"not json", br#"{"embeddings": "x"}"#] {
        assert!(
            matches!(
                bedrock::embed_response(bad, "m", false),
                Err(TranslateError::UpstreamPayload(_))
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}
