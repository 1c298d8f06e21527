//! Phase 5, extract: what the request asks for, read without building a JSON tree — `model`
//! (and where its literal sits, for splicing), `stream`, `stream_options`, the output cap —
//! plus the `x-ringgate-fallbacks` and `x-ringgate-timeout-ms` headers. A client that speaks
//! the Anthropic Messages or Responses API has its request converted to OpenAI chat here,
//! once, for every attempt to start from. A relayed API's request (audio, images, files…)
//! is read by [`direct_fields`] instead, and files and batches name their provider with
//! `x-ringgate-provider`. Malformed JSON or a malformed form is a 400. Adds `ask`.

use crate::dialect::Inbound;
use crate::direct::DirectApi;
use crate::error::GatewayError;
use crate::path::conn::ClientConn;
use crate::path::context::{ModelNames, Phase, RequestCtx};
use crate::path::direct_fields;
use crate::path::fields::extract_fields;
use crate::path::outcome::Stop;

pub fn extract<'s>(conn: &ClientConn, req: &mut RequestCtx<'s>) -> Result<(), Stop> {
    req.times.enter(Phase::Extract);
    req.ask.timeout_ms = conn
        .request_header("x-ringgate-timeout-ms")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let header = |name| {
        conn.request_header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let body = conn.body(&req.body);
    if let Inbound::Direct(api) = req.endpoint {
        let content_type = conn.request_header("content-type");
        let mut fields = direct_fields::read(api, api.body(req.head.method), body, content_type)?;
        let restricted = req
            .caller
            .key()
            .is_some_and(|key| !key.allowed_models.is_empty());
        if api == DirectApi::Files && restricted {
            fields.batch_models = direct_fields::batch_file_models(body, content_type)?;
        }
        req.set_names(ModelNames {
            requested: fields.model.take().unwrap_or_default(),
            listed_fallbacks: header("x-ringgate-fallbacks"),
            provider: header("x-ringgate-provider"),
        });
        req.ask.direct = Some(Box::new(fields));
        return Ok(());
    }
    let fields = extract_fields(body)?;
    req.set_names(ModelNames {
        requested: fields.model.into_owned(),
        listed_fallbacks: header("x-ringgate-fallbacks"),
        provider: None,
    });
    let ask = &mut req.ask;
    ask.model_span = fields.model_span.clone();
    ask.stream = fields.stream;
    ask.has_stream_options = fields.has_stream_options;
    ask.max_tokens = fields.max_tokens;
    // A client that does not speak OpenAI chat is served through its chat form.
    let converted = match req.endpoint {
        Inbound::AnthropicMessages => Some(translate::inbound::anthropic::request_to_chat(body)),
        Inbound::Responses => Some(translate::inbound::responses::request_to_chat(body)),
        _ => None,
    }
    .transpose()
    .map_err(|e| GatewayError::InvalidRequest(e.message().to_owned()))?;
    if let Some((chat, stream, _)) = converted {
        ask.stream = stream;
        ask.chat_body = Some(chat);
    }
    // Only a body that sets `stream_options` (or a converted one) needs a second look.
    ask.include_usage = (ask.has_stream_options || ask.chat_body.is_some())
        && translate::openai::peek_request(ask.chat_body.as_deref().unwrap_or(body))
            .is_ok_and(|info| info.include_usage);
    // Governed and traced streams need the provider's usage (the span reports its tokens).
    ask.inject_usage = (req.caller.snapshot.is_some() || conn.tracker.trace.sampled())
        && ask.stream
        && !ask.include_usage
        && !ask.has_stream_options
        && matches!(req.endpoint, Inbound::Chat | Inbound::Completions);
    Ok(())
}
