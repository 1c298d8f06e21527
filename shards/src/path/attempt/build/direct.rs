//! Attempt step "build" for a relayed API ([`crate::direct`]): the client's request as it
//! came — its method, its path below `/v1` (below the provider's base), its query and its
//! body — with only the model spliced when the target's differs. Azure serves audio and
//! images per deployment and files and batches per resource, with its `api-version`.
//! Providers of other API families cannot serve these.

use super::{cannot_serve, Body, Outgoing};
use crate::dialect::Wire;
use crate::direct::DirectApi;
use crate::error::GatewayError;
use crate::path::context::RequestCtx;
use crate::path::direct_fields::ModelAt;
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
    model: &str,
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
        path,
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
    model: &str,
) -> Result<Body<'b>, GatewayError> {
    let Some(fields) = req.ask.direct.as_deref() else {
        return Ok(Body::Same(client_body));
    };
    if model.is_empty() || model == req.ask.requested {
        return Ok(Body::Same(client_body));
    }
    let span = fields.model_span.clone();
    Ok(match fields.model_at {
        ModelAt::Json => Body::Spliced(Spliced::new(client_body, span, model, b"")),
        ModelAt::Form => Body::Spliced(Spliced::raw(client_body, span, model)),
        ModelAt::Absent => {
            return Err(GatewayError::InvalidRequest(format!(
                "this gateway serves `{}` as `{model}`: name the model in the request",
                req.ask.requested
            )))
        }
    })
}
