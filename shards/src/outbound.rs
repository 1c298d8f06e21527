//! Stage 4 of the request path: the request one attempt sends. For a provider that speaks the
//! client's API, the client's bytes go out as they came, with only the model name spliced in
//! when it changes. Otherwise the request is converted (through OpenAI chat) into the
//! provider's API, its path and headers are the provider's, and Bedrock requests are signed.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::conn::{BodyLocation, ClientConn};
use crate::dialect::{Inbound, Wire};
use crate::error::GatewayError;
use crate::extract::{extract_fields, Spliced};
use crate::failover::Ask;
use crate::http::upstream::{push_upstream_request_head, UpstreamHead};
use crate::snapshot::Provider;

/// Spliced right after a body's opening brace to ask for stream usage.
const INCLUDE_USAGE: &[u8] = br#""stream_options":{"include_usage":true},"#;

/// What building the request learned that the response side needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Built {
    /// The provider answers in the client's own API.
    pub passthrough: bool,
    /// Gemini and Bedrock embeddings: the client wants base64 vectors back.
    pub embed_base64: bool,
}

/// The path below an OpenAI-style base URL for each client API.
fn openai_suffix(inbound: Inbound) -> &'static str {
    match inbound {
        Inbound::Chat | Inbound::AnthropicMessages => "/chat/completions",
        Inbound::Completions => "/completions",
        Inbound::Embeddings => "/embeddings",
        Inbound::Responses => "/responses",
    }
}

fn unsupported(provider: &Provider, inbound: Inbound) -> GatewayError {
    GatewayError::InvalidRequest(format!(
        "provider `{}` ({:?}) does not support the {:?} API",
        provider.name, provider.wire, inbound
    ))
}

fn translation(e: translate::TranslateError) -> GatewayError {
    GatewayError::InvalidRequest(e.message().to_owned())
}

/// Writes the request for one attempt into `conn.out`.
pub fn build(
    conn: &mut ClientConn,
    ask: &Ask<'_>,
    provider: &Provider,
    key_line: Option<&[u8]>,
    model: &str,
) -> Result<Built, GatewayError> {
    let client_body = match ask.body {
        BodyLocation::InBuf(r) => &conn.inbuf[r.clone()],
        BodyLocation::Decoded => &conn.decoded_body[..],
    };
    // The OpenAI chat form of the request: the client's own body, or its conversion.
    let chat_body = ask.chat_body.as_deref().unwrap_or(client_body);
    let native = matches!(
        ask.inbound,
        Inbound::Chat | Inbound::Completions | Inbound::Embeddings
    ) || (ask.inbound == Inbound::Responses && provider.responses_passthrough);
    let mut built = Built::default();
    let mut upstream_path = String::new();
    let translated: Vec<u8>;
    let mut extra: Vec<(String, String)> = Vec::new();
    // The body: the client's bytes as they are, spliced, or a translated request.
    let mut spliced: Option<Spliced<'_>> = None;
    let body: &[u8] = match provider.wire {
        Wire::OpenAi | Wire::Azure => {
            built.passthrough = native;
            let suffix = if native {
                openai_suffix(ask.inbound)
            } else {
                "/chat/completions"
            };
            match (&provider.api_version, provider.wire) {
                (Some(version), Wire::Azure) => {
                    upstream_path = format!(
                        "{}/openai/deployments/{model}{suffix}?api-version={version}",
                        provider.base_path
                    );
                }
                _ => {
                    upstream_path.push_str(&provider.base_path);
                    upstream_path.push_str(suffix);
                    let target = &conn.inbuf[ask.head.target.clone()];
                    if native {
                        if let Some(q) = memchr::memchr(b'?', target) {
                            upstream_path.push_str(&String::from_utf8_lossy(&target[q..]));
                        }
                    }
                }
            }
            // The body and where its model string sits; `current` is that model when known.
            let (source, span, current) = if native {
                (client_body, ask.model_span.clone(), Some(ask.requested))
            } else {
                (chat_body, extract_fields(chat_body)?.model_span, None)
            };
            // Governed streams whose client did not ask for usage: ask the provider for it
            // (the usage chunk is kept out of the client's stream on the way back).
            let inject = ask.inject_usage && native;
            if current != Some(model) || inject {
                let insert: &[u8] = if inject { INCLUDE_USAGE } else { b"" };
                spliced = Some(Spliced::new(source, span, model, insert));
            }
            source
        }
        Wire::Anthropic | Wire::Gemini | Wire::Bedrock => {
            let request = match (provider.wire, ask.inbound) {
                (_, Inbound::Completions) | (Wire::Anthropic, Inbound::Embeddings) => {
                    return Err(unsupported(provider, ask.inbound))
                }
                (Wire::Bedrock, Inbound::Embeddings) => {
                    let (request, base64) = translate::bedrock::embed_request(client_body, model)
                        .map_err(translation)?;
                    built.embed_base64 = base64;
                    request
                }
                (Wire::Gemini, Inbound::Embeddings) => {
                    let (request, base64) = translate::gemini::embed_request(client_body, model)
                        .map_err(translation)?;
                    built.embed_base64 = base64;
                    request
                }
                (Wire::Anthropic, _) => {
                    translate::anthropic::chat_request(chat_body, model).map_err(translation)?
                }
                (Wire::Gemini, _) => translate::gemini::chat_request(chat_body, model, ask.stream)
                    .map_err(translation)?,
                _ => translate::bedrock::chat_request(chat_body, model, ask.stream)
                    .map_err(translation)?,
            };
            upstream_path.push_str(&provider.base_path);
            upstream_path.push_str(&request.path);
            extra = request.headers;
            if let Some(aws) = &provider.aws {
                let (path, query) = upstream_path
                    .split_once('?')
                    .unwrap_or((&upstream_path, ""));
                let signed =
                    translate::bedrock::sigv4::sign(&translate::bedrock::sigv4::SigningParams {
                        method: "POST",
                        host: &provider.host_header,
                        path,
                        query,
                        headers: &extra,
                        body: &request.body,
                        access_key: &aws.access_key,
                        secret_key: &aws.secret_key,
                        session_token: aws.session_token.as_deref(),
                        region: &aws.region,
                        service: "bedrock",
                        amz_date: &amz_date(SystemTime::now()),
                        sign_content_sha256: true,
                    });
                extra.extend(signed);
            }
            translated = request.body;
            &translated
        }
    };
    let upstream_head = UpstreamHead {
        host: &provider.host_header,
        fixed_headers: &provider.fixed_headers,
        key_line: key_line.unwrap_or_default(),
        extra: &extra,
    };
    let out = &mut conn.out;
    out.clear();
    push_upstream_request_head(
        out,
        b"POST",
        &[upstream_path.as_bytes()],
        &upstream_head,
        &conn.inbuf,
        &conn.spans,
        Some(spliced.as_ref().map_or(body.len(), Spliced::len)),
    );
    match &spliced {
        Some(spliced) => spliced.write_to(out),
        None => out.extend_from_slice(body),
    }
    Ok(built)
}

/// `YYYYMMDDTHHMMSSZ` in UTC, as SigV4 wants it.
pub fn amz_date(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = vocab::calendar::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn amz_dates() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        // AWS's SigV4 example timestamp.
        let t = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(t), "20150830T123600Z");
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_208_000); // 2024-02-29T12:00:00Z
        assert_eq!(amz_date(leap), "20240229T120000Z");
    }
}
