//! Unit tests of `server.rs`, kept apart so that the module reads as what it serves.

use super::routes::percent_decode;
use super::*;
use crate::openai::store::{ListQuery, StorePath};

mod wire;

fn at(uri: &str) -> Result<Endpoint, Dialect> {
    resolve(&uri.parse::<Uri>().unwrap())
}

#[test]
fn routes() {
    assert_eq!(
        at("/v1/chat/completions"),
        Ok(Endpoint::OpenAi(OpenAiOp::Chat))
    );
    assert_eq!(at("/v1/models/"), Ok(Endpoint::OpenAi(OpenAiOp::Models)));
    assert_eq!(at("/v1/nope"), Err(Dialect::OpenAi));
    assert_eq!(at("/v1/messages"), Ok(Endpoint::Anthropic));
    assert_eq!(at("/anthropic/v1/messages"), Ok(Endpoint::Anthropic));
    assert_eq!(at("/anthropic/v1/complete"), Err(Dialect::Anthropic));
    assert_eq!(
        at("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key=k"),
        Ok(Endpoint::Gemini {
            model: "gemini-2.0-flash".into(),
            method: GeminiMethod::Stream { sse: true }
        })
    );
    assert_eq!(
        at("/v1/models/g:streamGenerateContent"),
        Ok(Endpoint::Gemini {
            model: "g".into(),
            method: GeminiMethod::Stream { sse: false }
        })
    );
    assert_eq!(
        at("/v1beta/models/e:batchEmbedContents"),
        Ok(Endpoint::Gemini {
            model: "e".into(),
            method: GeminiMethod::BatchEmbed
        })
    );
    assert_eq!(at("/v1beta/models/g:countTokens"), Err(Dialect::Gemini));
    assert_eq!(at("/v1beta/models/g"), Err(Dialect::Gemini));
    assert_eq!(
        at("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"),
        Ok(Endpoint::Bedrock { stream: true })
    );
    assert_eq!(
        at("/model/m/converse"),
        Ok(Endpoint::Bedrock { stream: false })
    );
    assert_eq!(
        at("/model/amazon.titan-embed-text-v2%3A0/invoke"),
        Ok(Endpoint::BedrockInvoke {
            model: "amazon.titan-embed-text-v2:0".into()
        })
    );
    assert_eq!(at("/model//invoke"), Err(Dialect::Bedrock));
    assert_eq!(
        at("/model/m/invoke-with-response-stream"),
        Err(Dialect::Bedrock)
    );
    assert_eq!(
        at("/openai/deployments/my%20gpt/chat/completions?api-version=2024-10-21"),
        Ok(Endpoint::Azure {
            op: OpenAiOp::Chat,
            deployment: "my gpt".into()
        })
    );
    assert_eq!(
        at("/openai/deployments/d/embeddings"),
        Ok(Endpoint::Azure {
            op: OpenAiOp::Embeddings,
            deployment: "d".into()
        })
    );
    assert_eq!(at("/openai/deployments/d/images"), Err(Dialect::Azure));
}

#[test]
fn relayed_api_routes() {
    let openai = |op| Ok(Endpoint::OpenAi(op));
    assert_eq!(at("/v1/audio/speech"), openai(OpenAiOp::Speech));
    assert_eq!(
        at("/v1/audio/translations/"),
        openai(OpenAiOp::Translations)
    );
    assert_eq!(at("/v1/images/edits"), openai(OpenAiOp::ImageEdits));
    assert_eq!(at("/v1/moderations"), openai(OpenAiOp::Moderations));
    assert_eq!(at("/v1/images"), Err(Dialect::OpenAi));
    assert_eq!(
        at("/openai/deployments/whisper/audio/transcriptions?api-version=x"),
        Ok(Endpoint::Azure {
            op: OpenAiOp::Transcriptions,
            deployment: "whisper".into()
        })
    );
    // Azure has no moderations.
    assert_eq!(at("/openai/deployments/d/moderations"), Err(Dialect::Azure));
    let store = |dialect, path| Ok(Endpoint::Store { dialect, path });
    assert_eq!(
        at("/v1/files/file-1/content"),
        store(Dialect::OpenAi, StorePath::FileContent("file-1".into()))
    );
    assert_eq!(
        at("/openai/batches/batch_2/cancel?api-version=x"),
        store(Dialect::Azure, StorePath::BatchCancel("batch_2".into()))
    );
    assert_eq!(
        at("/openai/files/"),
        store(Dialect::Azure, StorePath::Files)
    );
    assert_eq!(at("/openai/uploads"), Err(Dialect::Azure));
    assert_eq!(at("/v1/files/a/b"), Err(Dialect::OpenAi));
    assert_eq!(
        at("/v1/messages/count_tokens"),
        Ok(Endpoint::AnthropicCountTokens)
    );
    assert_eq!(
        at("/anthropic/v1/messages/count_tokens/"),
        Ok(Endpoint::AnthropicCountTokens)
    );
    assert_eq!(at("/v1/batches").map(|e| e.allowed()), Ok("GET, POST"));
}

#[test]
fn list_queries() {
    let uri: Uri = "/v1/files?purpose=batch&limit=2&after=file-1&order=desc"
        .parse()
        .unwrap();
    assert_eq!(
        list_query(&uri),
        ListQuery {
            purpose: Some("batch".into()),
            limit: Some(2),
            after: Some("file-1".into()),
            newest_first: true,
        }
    );
    let ignored: Uri = "/v1/batches?limit=many&order=asc".parse().unwrap();
    assert_eq!(list_query(&ignored), ListQuery::default());
}

#[test]
fn query_and_decoding() {
    let uri: Uri = "/x?alt=sse&key=a%2Bb+c&empty".parse().unwrap();
    assert_eq!(query_param(&uri, "key").as_deref(), Some("a+b c"));
    assert_eq!(query_param(&uri, "empty").as_deref(), Some(""));
    assert_eq!(query_param(&uri, "missing"), None);
    assert_eq!(percent_decode("a%3A0%zz%"), "a:0%zz%");
}

#[test]
fn echoes_the_trace_context_it_received() {
    let mut headers = HeaderMap::new();
    assert!(crate::trace_echo::echo(&headers).is_empty());
    headers.append("traceparent", HeaderValue::from_static("00-a-b-01"));
    headers.append("traceparent", HeaderValue::from_static("00-c-d-00"));
    headers.append("tracestate", HeaderValue::from_static("k=v"));
    let echo: Vec<(String, String)> = crate::trace_echo::echo(&headers)
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        echo,
        [
            (
                "x-mock-traceparent".to_owned(),
                "00-a-b-01, 00-c-d-00".to_owned()
            ),
            ("x-mock-tracestate".to_owned(), "k=v".to_owned()),
        ]
    );
}
