//! Attempt step "build" for a relayed API ([`crate::direct`]): the client's request as it
//! came — its method, its path below `/v1` (below the provider's base), its query and its
//! body — with only the model spliced when the target's differs (and a transcription's
//! `response_format=text` asked as `json`, so that its duration can be charged; the relay
//! answers the client with the text). Azure serves audio and
//! images per deployment and files and batches per resource, with its `api-version`.
//! Providers of other API families cannot serve these.

use super::{cannot_serve, Body, Outgoing};
use crate::dialect::Wire;
use crate::direct::DirectApi;
use crate::error::GatewayError;
use crate::path::context::RequestCtx;
use crate::path::direct_fields::{ModelAt, TEXT_FORMAT};
use crate::path::fields::Spliced;
use crate::snapshot::Provider;

/// The upstream request of a relayed API at `model` on `provider`. `target` is the client's
/// request target (path and query), `method` its method.
pub fn request<'b>(
    client_body: &'b [u8],
    target: &[u8],
    method: &'b [u8],
    req: &'b RequestCtx<'_>,
    api: DirectApi,
    provider: &Provider,
    model: &'b str,
) -> Result<Outgoing<'b>, GatewayError> {
    let below_v1 = String::from_utf8_lossy(target.strip_prefix(b"/v1").unwrap_or(target));
    let path = match provider.wire {
        Wire::OpenAi => format!("{}{below_v1}", provider.base_path),
        Wire::Azure => azure_path(api, provider, model, &below_v1)?,
        Wire::Anthropic | Wire::Gemini | Wire::Bedrock => {
            return Err(cannot_serve(
                provider,
                format!(
                    "a {:?} provider does not serve the {} API; only OpenAI-style providers do",
                    provider.wire,
                    api.name()
                ),
            ))
        }
    };
    Ok(Outgoing {
        method,
        path: path.into(),
        extra: Vec::new(),
        body: body(client_body, req, model)?,
    })
}

/// Azure's path for the API: per deployment (`model`) or per resource, with `api-version`.
fn azure_path(
    api: DirectApi,
    provider: &Provider,
    model: &str,
    below_v1: &str,
) -> Result<String, GatewayError> {
    let (bare, query) = match below_v1.split_once('?') {
        Some((bare, query)) => (bare, format!("{query}&")),
        None => (below_v1, String::new()),
    };
    let path = api
        .azure_path(model, bare)
        .ok_or_else(|| cannot_serve(provider, format!("Azure OpenAI has no {} API", api.name())))?;
    let version = provider.api_version.as_deref().unwrap_or_default();
    Ok(format!(
        "{}{path}?{query}api-version={version}",
        provider.base_path
    ))
}

/// The client's body, with `model` spliced where the client's model sits when it differs.
fn body<'b>(
    client_body: &'b [u8],
    req: &'b RequestCtx<'_>,
    model: &'b str,
) -> Result<Body<'b>, GatewayError> {
    let Some(fields) = req.ask.direct.as_deref() else {
        return Ok(Body::Same(client_body));
    };
    let new_model = !model.is_empty() && model != req.ask.requested;
    if let Some(format) = &fields.text_format_span {
        // Two values to replace: the form is written anew.
        let mut edits = vec![(format.clone(), TEXT_FORMAT)];
        if new_model {
            if fields.model_at != ModelAt::Form {
                return Err(unnamed_model(req, model));
            }
            edits.push((fields.model_span.clone(), model));
        }
        return Ok(Body::Translated(replaced(client_body, edits)));
    }
    if !new_model {
        return Ok(Body::Same(client_body));
    }
    let span = fields.model_span.clone();
    Ok(match fields.model_at {
        ModelAt::Json => Body::Spliced(Spliced::new(client_body, span, model, b"")),
        ModelAt::Form => Body::Spliced(Spliced::raw(client_body, span, model)),
        ModelAt::Absent => return Err(unnamed_model(req, model)),
    })
}

/// A request that names no model, served by one whose upstream name differs: the name
/// cannot be spliced where there is none.
fn unnamed_model(req: &RequestCtx<'_>, model: &str) -> GatewayError {
    GatewayError::InvalidRequest(format!(
        "this gateway serves `{}` as `{model}`: name the model in the request",
        req.ask.requested
    ))
}

/// `body` with each span replaced by its text (spans that do not overlap).
fn replaced(body: &[u8], mut edits: Vec<(std::ops::Range<usize>, &str)>) -> Vec<u8> {
    edits.sort_by_key(|(span, _)| span.start);
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut at = 0;
    for (span, text) in edits {
        out.extend_from_slice(&body[at..span.start]);
        out.extend_from_slice(text.as_bytes());
        at = span.end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_replaced_in_order_whatever_their_lengths() {
        let body = b"model=whisper-1&format=text&x";
        let edits = vec![(23..27, "json"), (6..15, "provider-model-name")];
        assert_eq!(
            replaced(body, edits),
            b"model=provider-model-name&format=json&x".to_vec()
        );
    }
}
