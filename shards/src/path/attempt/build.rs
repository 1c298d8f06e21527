//! Attempt step "build": the request one attempt sends, written into `conn.out`. For a
//! provider that speaks the client's API, the client's bytes go out as they came, with only
//! the model name spliced in when it changes (and, for a governed stream, a request for the
//! usage chunk). Otherwise the request is converted (through OpenAI chat) into the
//! provider's API, its path and headers are the provider's, and Bedrock requests are signed.
//! Either way it carries the request's trace context (`path/trace.rs`).
//! Reads `head`, `body`, `endpoint`, `ask`, the tracker's trace context.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::dialect::{Inbound, Wire};
use crate::error::GatewayError;
use crate::http::upstream::{push_upstream_request_head, UpstreamHead};
use crate::path::conn::{BodyLocation, ClientConn};
use crate::path::context::RequestCtx;
use crate::path::fields::{extract_fields, Spliced};
use crate::snapshot::Provider;

mod direct;

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
        Inbound::Completions => "/completions",
        Inbound::Embeddings => "/embeddings",
        Inbound::Responses => "/responses",
        // Everything else reaching an OpenAI-style provider as chat (relayed APIs are built
        // in `direct`).
        _ => "/chat/completions",
    }
}

/// This provider cannot express the request; another target may.
pub(super) fn cannot_serve(provider: &Provider, detail: String) -> GatewayError {
    GatewayError::ProviderCannotServe {
        provider: provider.name.clone(),
        detail,
    }
}

/// An upstream request before it is written: method, path, extra headers and body.
pub(super) struct Outgoing<'b> {
    pub method: &'b [u8],
    pub path: UpPath<'b>,
    pub extra: Vec<(String, String)>,
    pub body: Body<'b>,
}

/// An upstream request's path and query: pieces written one after the other (an OpenAI-style
/// provider's base path, the API's suffix, the client's query: nothing allocated per request)
/// or a path built whole.
pub(super) enum UpPath<'b> {
    Pieces([&'b [u8]; 3]),
    Built(String),
}

impl From<String> for UpPath<'_> {
    fn from(path: String) -> Self {
        Self::Built(path)
    }
}

pub(super) enum Body<'b> {
    /// The client's bytes (or their chat form), as they are.
    Same(&'b [u8]),
    /// Those bytes with the model name (and maybe a usage request) spliced in.
    Spliced(Spliced<'b>),
    /// A request translated into the provider's API.
    Translated(Vec<u8>),
}

impl Body<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Same(b) => b.len(),
            Self::Spliced(s) => s.len(),
            Self::Translated(b) => b.len(),
        }
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Self::Same(b) => out.extend_from_slice(b),
            Self::Spliced(s) => s.write_to(out),
            Self::Translated(b) => out.extend_from_slice(b),
        }
    }
}

/// Writes the request for one attempt at `model` on `provider` into `conn.out`.
pub fn build(
    conn: &mut ClientConn,
    req: &RequestCtx<'_>,
    provider: &Provider,
    key_line: Option<&[u8]>,
    model: &str,
) -> Result<Built, GatewayError> {
    // Borrowed field by field: the request is read from the client's buffers while it is
    // written into the output buffer.
    let ClientConn {
        inbuf,
        spans,
        decoded_body,
        out,
        tracker,
        ..
    } = conn;
    let client_body = match &req.body {
        BodyLocation::InBuf(r) => &inbuf[r.clone()],
        BodyLocation::Decoded => &decoded_body[..],
    };
    let mut built = Built::default();
    let target = &inbuf[req.head.target.clone()];
    let outgoing = match (req.endpoint, provider.wire) {
        (Inbound::Direct(api), _) => {
            // A transcription asked as `json` for the client's `text` is answered converted.
            built.passthrough = !req.ask.transcript_as_text();
            let method = &inbuf[req.head.method_text.clone()];
            direct::request(client_body, target, method, req, api, provider, model)?
        }
        (Inbound::AnthropicCountTokens, _) => {
            built.passthrough = true;
            count_tokens_request(client_body, req, provider, model)?
        }
        (_, Wire::OpenAi | Wire::Azure) => {
            openai_request(client_body, target, req, provider, model, &mut built)?
        }
        (_, Wire::Anthropic | Wire::Gemini | Wire::Bedrock) => {
            translated_request(client_body, req, provider, model, &mut built)?
        }
    };
    let propagation = tracker.trace.propagation();
    let upstream_head = UpstreamHead {
        host: &provider.host_header,
        fixed_headers: &provider.fixed_headers,
        key_line: key_line.unwrap_or_default(),
        extra: &outgoing.extra,
        trace: propagation.as_ref().map(|p| p.headers()),
    };
    out.clear();
    // GET and DELETE carry no body, so no length either.
    let body_len = (outgoing.method == b"POST").then(|| outgoing.body.len());
    let whole;
    let path: &[&[u8]] = match &outgoing.path {
        UpPath::Pieces(pieces) => pieces,
        UpPath::Built(path) => {
            whole = [path.as_bytes()];
            &whole
        }
    };
    push_upstream_request_head(
        out,
        outgoing.method,
        path,
        &upstream_head,
        inbuf,
        spans,
        body_len,
    );
    outgoing.body.write_to(out);
    Ok(built)
}

/// A request for an OpenAI-style provider: the client's own bytes when it speaks an OpenAI
/// API the provider serves (pass-through), else the chat form; the model spliced in.
fn openai_request<'b>(
    client_body: &'b [u8],
    target: &'b [u8],
    req: &'b RequestCtx<'_>,
    provider: &'b Provider,
    model: &'b str,
    built: &mut Built,
) -> Result<Outgoing<'b>, GatewayError> {
    let ask = &req.ask;
    let native = matches!(
        req.endpoint,
        Inbound::Chat | Inbound::Completions | Inbound::Embeddings
    ) || (req.endpoint == Inbound::Responses && provider.responses_passthrough);
    built.passthrough = native;
    let suffix = if native {
        openai_suffix(req.endpoint)
    } else {
        "/chat/completions"
    };
    let path = match (&provider.api_version, provider.wire) {
        (Some(version), Wire::Azure) => format!(
            "{}/openai/deployments/{model}{suffix}?api-version={version}",
            provider.base_path
        )
        .into(),
        _ => {
            let query = memchr::memchr(b'?', target)
                .filter(|_| native)
                .map_or(&b""[..], |q| &target[q..]);
            UpPath::Pieces([provider.base_path.as_bytes(), suffix.as_bytes(), query])
        }
    };
    // The body and where its model string sits; `current` is that model when known.
    let (source, span, current) = if native {
        (client_body, ask.model_span.clone(), Some(ask.requested))
    } else {
        let chat = ask.chat_body.as_deref().unwrap_or(client_body);
        (chat, extract_fields(chat)?.model_span, None)
    };
    // Governed streams whose client did not ask for usage: ask the provider for it (the
    // usage chunk is kept out of the client's stream on the way back).
    let inject = ask.inject_usage && native;
    let body = if current != Some(model) || inject {
        let insert: &[u8] = if inject { INCLUDE_USAGE } else { b"" };
        Body::Spliced(Spliced::new(source, span, model, insert))
    } else {
        Body::Same(source)
    };
    Ok(Outgoing {
        method: b"POST",
        path,
        extra: Vec::new(),
        body,
    })
}

/// Anthropic's token count, relayed as it is (model spliced) to an Anthropic provider.
fn count_tokens_request<'b>(
    client_body: &'b [u8],
    req: &'b RequestCtx<'_>,
    provider: &Provider,
    model: &'b str,
) -> Result<Outgoing<'b>, GatewayError> {
    if provider.wire != Wire::Anthropic {
        return Err(cannot_serve(
            provider,
            format!(
                "a {:?} provider does not count tokens; only Anthropic providers do",
                provider.wire
            ),
        ));
    }
    let body = if req.ask.requested == model {
        Body::Same(client_body)
    } else {
        Body::Spliced(Spliced::new(
            client_body,
            req.ask.model_span.clone(),
            model,
            b"",
        ))
    };
    Ok(Outgoing {
        method: b"POST",
        path: format!("{}/messages/count_tokens", provider.base_path).into(),
        extra: vec![(
            "anthropic-version".into(),
            translate::anthropic::API_VERSION.into(),
        )],
        body,
    })
}

/// A request translated into Anthropic's, Gemini's or Bedrock's API (Bedrock's signed).
fn translated_request<'b>(
    client_body: &'b [u8],
    req: &'b RequestCtx<'_>,
    provider: &Provider,
    model: &str,
    built: &mut Built,
) -> Result<Outgoing<'b>, GatewayError> {
    // The OpenAI chat form of the request: the client's own body, or its conversion.
    let chat_body = req.ask.chat_body.as_deref().unwrap_or(client_body);
    let stream = req.ask.stream;
    let translation = |e: translate::TranslateError| cannot_serve(provider, e.message().to_owned());
    let request = match (provider.wire, req.endpoint) {
        (_, Inbound::Completions) | (Wire::Anthropic, Inbound::Embeddings) => {
            return Err(cannot_serve(
                provider,
                format!(
                    "a {:?} provider does not support the {:?} API",
                    provider.wire, req.endpoint
                ),
            ))
        }
        (Wire::Bedrock, Inbound::Embeddings) => {
            let (request, base64) =
                translate::bedrock::embed_request(client_body, model).map_err(translation)?;
            built.embed_base64 = base64;
            request
        }
        (Wire::Gemini, Inbound::Embeddings) => {
            let (request, base64) =
                translate::gemini::embed_request(client_body, model).map_err(translation)?;
            built.embed_base64 = base64;
            request
        }
        (Wire::Anthropic, _) => {
            translate::anthropic::chat_request(chat_body, model).map_err(translation)?
        }
        (Wire::Gemini, _) => {
            translate::gemini::chat_request(chat_body, model, stream).map_err(translation)?
        }
        _ => translate::bedrock::chat_request(chat_body, model, stream).map_err(translation)?,
    };
    let path = format!("{}{}", provider.base_path, request.path);
    let mut extra = request.headers;
    if let Some(aws) = &provider.aws {
        let (bare, query) = path.split_once('?').unwrap_or((&path, ""));
        let signed = translate::bedrock::sigv4::sign(&translate::bedrock::sigv4::SigningParams {
            method: "POST",
            host: &provider.host_header,
            path: bare,
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
    Ok(Outgoing {
        method: b"POST",
        path: path.into(),
        extra,
        body: Body::Translated(request.body),
    })
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
