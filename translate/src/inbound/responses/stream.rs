//! OpenAI chat chunk SSE → Responses API typed stream events: the per-dialect
//! [`ChatStreamState`] behind [`StreamFromChat`].

use super::response::{call_item, core_id, message_item, response_object, status_for};
use crate::error::{Result, TranslateError};
use crate::inbound::{ChatStreamState, FromChatStream};
use crate::openai::{ToolCallIn, Usage};
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    delta: &'a str,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct ArgsDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: u32,
    delta: &'a str,
}

#[derive(Debug)]
enum Item {
    None,
    Message {
        id: String,
        text: String,
    },
    Call {
        chat_index: u32,
        call_id: String,
        name: String,
        args: String,
    },
}

#[derive(Debug)]
struct RState {
    model: String,
    created: u64,
    id: String,
    seq: u64,
    open: Item,
    output_index: u32,
    done_items: Vec<Value>,
}

/// OpenAI chat chunk SSE → Responses API stream events, as the official `openai` SDK's
/// `responses.create(stream=True)` / `responses.stream()` parse them: `response.created`,
/// `response.in_progress`, per output item `response.output_item.added`, for messages
/// `response.content_part.added` / `response.output_text.delta`* / `response.output_text.done`
/// / `response.content_part.done`, for function calls
/// `response.function_call_arguments.delta`* / `response.function_call_arguments.done`, then
/// `response.output_item.done`; last `response.completed` (or `response.incomplete` when the
/// finish reason was `length` / `content_filter`).
///
/// `finish` succeeds once `[DONE]` or a finish reason was seen; an upstream `{"error":...}`
/// chunk becomes an `error` event followed by `response.failed`, and `finish` then errs.
#[derive(Debug)]
pub struct StreamFromChat(FromChatStream<RState>);

impl StreamFromChat {
    /// `model`: the name to report; `created`: `created_at` of the response.
    pub fn new(model: String, created: u64) -> Self {
        StreamFromChat(FromChatStream::new(RState {
            model,
            created,
            id: String::new(),
            seq: 0,
            open: Item::None,
            output_index: 0,
            done_items: Vec::new(),
        }))
    }
}

driver_feed_finish!(StreamFromChat);

impl ChatStreamState for RState {
    fn start(&mut self, chat_id: &str, out: &mut Vec<u8>) {
        self.id = format!("resp_{}", core_id(chat_id));
        for kind in ["response.created", "response.in_progress"] {
            self.lifecycle(out, kind, "in_progress", Value::Null, Vec::new(), None);
        }
    }

    fn error(&mut self, err: &Value, message: &str, started: bool, out: &mut Vec<u8>) {
        let code = err.get("code").cloned().unwrap_or(Value::Null);
        if !started {
            self.start("", out);
        }
        self.emit(
            out,
            "error",
            json!({"code": code, "message": message, "param": null}),
        );
        let mut r = response_object(
            &self.id,
            self.created,
            &self.model,
            "failed",
            Value::Null,
            Vec::new(),
            None,
        );
        r["error"] = json!({"code": "server_error", "message": message});
        self.emit(out, "response.failed", json!({"response": r}));
    }

    fn text(&mut self, t: &str, out: &mut Vec<u8>) {
        if t.is_empty() {
            return;
        }
        if !matches!(self.open, Item::Message { .. }) {
            self.close(out);
            let id = format!("msg_{}", self.id.trim_start_matches("resp_"));
            let id = if self.output_index > 0 {
                format!("{id}_{}", self.output_index)
            } else {
                id
            };
            let oi = self.output_index;
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": oi, "item": message_item(&id, "", "in_progress")}),
            );
            self.emit(out, "response.content_part.added", json!({"item_id": id, "output_index": oi, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}));
            self.open = Item::Message {
                id,
                text: String::new(),
            };
        }
        if let Item::Message { id, text } = &mut self.open {
            text.push_str(t);
            crate::sse::write_event(
                out,
                "response.output_text.delta",
                &TextDelta {
                    kind: "response.output_text.delta",
                    sequence_number: self.seq,
                    item_id: id,
                    output_index: self.output_index,
                    content_index: 0,
                    delta: t,
                    logprobs: [],
                },
            );
            self.seq += 1;
        }
    }

    fn tool_call(&mut self, tc: &ToolCallIn<'_>, is_new: bool, out: &mut Vec<u8>) -> Result<()> {
        let f = tc.function.as_ref();
        if is_new {
            self.close(out);
            let call_id = tc.id.as_deref().unwrap_or("").to_owned();
            let name = f.and_then(|f| f.name.as_deref()).unwrap_or("").to_owned();
            let oi = self.output_index;
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": oi, "item": call_item(&call_id, &name, "", "in_progress")}),
            );
            self.open = Item::Call {
                chat_index: tc.index,
                call_id,
                name,
                args: String::new(),
            };
        } else if !matches!(&self.open, Item::Call { chat_index, .. } if *chat_index == tc.index) {
            return Err(TranslateError::upstream(
                "interleaved tool call deltas are not supported",
            ));
        }
        let frag = f.and_then(|f| f.arguments.as_deref()).unwrap_or("");
        if let (false, Item::Call { call_id, args, .. }) = (frag.is_empty(), &mut self.open) {
            args.push_str(frag);
            let item_id = format!("fc_{call_id}");
            crate::sse::write_event(
                out,
                "response.function_call_arguments.delta",
                &ArgsDelta {
                    kind: "response.function_call_arguments.delta",
                    sequence_number: self.seq,
                    item_id: &item_id,
                    output_index: self.output_index,
                    delta: frag,
                },
            );
            self.seq += 1;
        }
        Ok(())
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let oi = self.output_index;
        match std::mem::replace(&mut self.open, Item::None) {
            Item::None => return,
            Item::Message { id, text } => {
                self.emit(out, "response.output_text.done", json!({"item_id": id, "output_index": oi, "content_index": 0, "text": text, "logprobs": []}));
                self.emit(out, "response.content_part.done", json!({"item_id": id, "output_index": oi, "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}));
                let item = message_item(&id, &text, "completed");
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": oi, "item": item}),
                );
                self.done_items.push(item);
            }
            Item::Call {
                call_id,
                name,
                args,
                ..
            } => {
                let item_id = format!("fc_{call_id}");
                self.emit(out, "response.function_call_arguments.done", json!({"item_id": item_id, "output_index": oi, "name": name, "arguments": args}));
                let item = call_item(&call_id, &name, &args, "completed");
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": oi, "item": item}),
                );
                self.done_items.push(item);
            }
        }
        self.output_index += 1;
    }

    fn end(&mut self, usage: Option<Usage>, finish_reason: Option<&str>, out: &mut Vec<u8>) {
        let (status, incomplete) = status_for(finish_reason);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let items = std::mem::take(&mut self.done_items);
        self.lifecycle(out, kind, status, incomplete, items, usage.as_ref());
    }
}

impl RState {
    /// Writes `event: TYPE\ndata: {..., "type": TYPE, "sequence_number": n}\n\n`.
    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut v: Value) {
        v["type"] = kind.into();
        v["sequence_number"] = self.seq.into();
        self.seq += 1;
        crate::sse::write_event(out, kind, &v);
    }

    fn lifecycle(
        &mut self,
        out: &mut Vec<u8>,
        kind: &str,
        status: &str,
        incomplete: Value,
        output: Vec<Value>,
        usage: Option<&Usage>,
    ) {
        let r = response_object(
            &self.id,
            self.created,
            &self.model,
            status,
            incomplete,
            output,
            usage,
        );
        self.emit(out, kind, json!({"response": r}));
    }
}
