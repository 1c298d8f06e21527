//! Anthropic's `POST /anthropic/v1/messages/count_tokens` for a model whose provider has no
//! such endpoint (every kind but Anthropic): the prompt is counted here, in its chat form,
//! with the target model's tokenizer — exact for OpenAI's families, cl100k for the others
//! (the `tokens` crate, docs/governance.md) — so that a client such as Claude Code can count
//! before it sends, whatever model it is pointed at. An Anthropic target is asked instead
//! (`attempt/build.rs`). Runs after admission: the call is authenticated, model-checked,
//! counted against `rpm` and logged like any other; it costs nothing.

use serde_json::{Map, Value};

use crate::dialect::{Inbound, Wire};
use crate::error::GatewayError;
use crate::governance::usage::Tally;
use crate::http::response::push_json_response;
use crate::path::conn::ClientConn;
use crate::path::context::{RequestCtx, Scope, Served};
use crate::path::outcome::Stop;

/// The count, answered by the gateway, when the request is a token count whose first
/// target is not an Anthropic provider: written to `conn.out` for the caller to send; `None`
/// for every other request.
pub fn answer_locally(
    scope: Scope<'_>,
    conn: &mut ClientConn,
    req: &RequestCtx<'_>,
) -> Result<Option<Served>, Stop> {
    let target = match (req.endpoint, req.targets.first()) {
        (Inbound::AnthropicCountTokens, Some(target)) => target,
        _ => return Ok(None),
    };
    if scope.snapshot.providers[target.provider].wire == Wire::Anthropic {
        return Ok(None);
    }
    let chat = chat_form(conn.body(&req.body))?;
    let count = tokens::prompt_tokens(tokens::Family::of_model(target.model), &chat);
    let body = format!(r#"{{"input_tokens":{count}}}"#);
    let keep_alive = req.head.keep_alive;
    conn.out.clear();
    let lines = conn.tracker.head_lines();
    push_json_response(&mut conn.out, 200, body.as_bytes(), keep_alive, &lines);
    scope.shard.stats.record_status(200);
    Ok(Some(Served {
        keep_alive,
        status: 200,
        target: Some(0),
        tally: Tally::default(),
        answer: None,
    }))
}

/// The OpenAI chat form of a token-count request. A count has no `max_tokens` (it generates
/// nothing) where a Messages request must: one is supplied for the conversion, which reads
/// the prompt only.
fn chat_form(body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let mut request: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    // As Anthropic's endpoint: there is nothing to count without a message.
    if request
        .get("messages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return Err(GatewayError::InvalidRequest(
            "`messages` must hold at least one message".into(),
        ));
    }
    request.entry("max_tokens").or_insert(Value::from(1));
    let body =
        serde_json::to_vec(&request).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    translate::inbound::anthropic::request_to_chat(&body)
        .map(|(chat, _, _)| chat)
        .map_err(|e| GatewayError::InvalidRequest(e.message().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_read_in_its_chat_form() {
        let chat = chat_form(
            br#"{"model":"m","system":"be brief","messages":[{"role":"user","content":"count these words"}]}"#,
        )
        .unwrap();
        let chat: Value = serde_json::from_slice(&chat).unwrap();
        let messages = chat["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{chat}");
        assert!(matches!(
            chat_form(b"[1]"),
            Err(GatewayError::MalformedJson(_))
        ));
        for no_message in [&br#"{"model":"m"}"#[..], br#"{"model":"m","messages":[]}"#] {
            assert!(matches!(
                chat_form(no_message),
                Err(GatewayError::InvalidRequest(_))
            ));
        }
    }
}
