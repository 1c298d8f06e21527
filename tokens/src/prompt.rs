//! The prompt tokens of a request body, for when the provider reports no usage.
//!
//! Reads OpenAI chat completions (`messages`, `tools`, `functions`), legacy completions
//! (`prompt`), embeddings (`input`) and, leniently, the Responses API (`input` items,
//! `instructions`) and Anthropic Messages (`system`, content blocks) — see [`prompt_tokens`].
//!
//! Cost: one JSON parse of the body (strings borrowed, not copied) and one count of every
//! text in it — dominated by the count: a chat request with 4 KB of text takes ≈ 65 µs
//! (`benches/count.rs`).

use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::json::Json;
use crate::vocab::Vocab;
use crate::Family;

/// Tokens OpenAI adds around every chat message (`<|start|>{role}<|message|>…<|end|>`), as in
/// the cookbook's `num_tokens_from_messages`.
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens OpenAI adds for a message's `name`, as in the cookbook.
pub const TOKENS_PER_NAME: u64 = 1;
/// Tokens that prime the reply (`<|start|>assistant<|message|>`), as in the cookbook.
pub const REPLY_PRIMING: u64 = 3;
/// An image part with `detail: "low"`: OpenAI's fixed cost of a low-detail image.
pub const IMAGE_LOW_DETAIL_TOKENS: u64 = 85;
/// Any other image part (`high`, `auto` or no detail): the image's size is not read, so
/// it is counted as OpenAI counts a 1024×1024 image in high detail (85 + 4 tiles × 170).
pub const IMAGE_TOKENS: u64 = 765;

/// The prompt tokens of `body`, a request to `/v1/chat/completions`, `/v1/completions`,
/// `/v1/embeddings` (or, leniently, `/v1/responses` and Anthropic's `/v1/messages`).
///
/// - Chat: every message costs [`TOKENS_PER_MESSAGE`] plus the tokens of each of its string
///   fields (`role`, `content`, `name` (+[`TOKENS_PER_NAME`]), `tool_call_id`, …), its
///   content parts' text, and each tool call's function name and arguments (each call
///   also costs [`TOKENS_PER_MESSAGE`]); the reply priming adds [`REPLY_PRIMING`]. This is
///   OpenAI's cookbook formula (`num_tokens_from_messages`), exact for text-only messages.
/// - Tool definitions (`tools`, legacy `functions`): the cookbook's `num_tokens_for_tools`
///   formula (names, descriptions, top-level parameters, enums, plus fixed overheads);
///   nested parameter schemas are counted as their JSON text. Rough: within a few tokens
///   per tool of what OpenAI bills.
/// - Images: [`IMAGE_LOW_DETAIL_TOKENS`] or [`IMAGE_TOKENS`] each. Audio and file parts
///   count 0 (their length is not known without decoding them).
/// - Completions: `prompt` as a string, an array of strings, or token arrays (one token
///   per element). Embeddings: `input` likewise. No per-item overhead.
///
/// A body that is not JSON at all is counted as plain text (an upper bound for the prompt
/// it may hold); a field of an unexpected type counts 0. Never panics.
pub fn prompt_tokens(family: Family, body: &[u8]) -> u64 {
    let vocab = family.vocab();
    let Some(root) = Json::parse(body) else {
        return vocab.count(&String::from_utf8_lossy(body));
    };
    let c = Counter { vocab, family };
    if let Some(messages) = root.get("messages") {
        let mut total = REPLY_PRIMING;
        if let Some(system) = root.get("system") {
            total += TOKENS_PER_MESSAGE + c.content(system);
        }
        for message in messages.items() {
            total += c.message(message);
        }
        total + c.tools(&root)
    } else if let Some(prompt) = root.get("prompt") {
        c.texts(prompt)
    } else if let Some(input) = root.get("input") {
        let mut total = c.responses_input(input);
        if let Some(instructions) = root.str_at("instructions") {
            total += TOKENS_PER_MESSAGE + c.text(instructions);
        }
        total + c.tools(&root)
    } else {
        0
    }
}

/// An upper bound of [`prompt_tokens`] for any tokenizer family, read without a vocabulary:
/// the body's length in bytes (every token of a byte-level BPE covers at least one byte, and
/// the JSON around each message, tool or number is longer than the tokens the formulas add
/// for it), plus the reply priming, plus [`IMAGE_TOKENS`] for every `image` in the body (an
/// image part costs more than its short URL's bytes). Costs one scan of the body: admission
/// holds this bound when it fits and counts exactly only when it does not
/// (`shards/src/path/admit.rs`).
pub fn prompt_tokens_at_most(body: &[u8]) -> u64 {
    // The searcher is built once: `memmem::find_iter` builds one per call, which cost more
    // than a chat body's scan (32.5 → 16.3 ns for 353 bytes, `governance/prompt_bound`).
    static IMAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"image"));
    let images = IMAGE.find_iter(body).count() as u64;
    (body.len() as u64)
        .saturating_add(REPLY_PRIMING)
        .saturating_add(images.saturating_mul(IMAGE_TOKENS))
}

struct Counter {
    vocab: Vocab,
    family: Family,
}

/// The cookbook's fixed costs of tool definitions, which differ between gpt-4o and gpt-4.
struct ToolCosts {
    per_function: u64,
    per_parameters: u64,
    per_property: u64,
    /// Negative in the cookbook (−3): applied as a subtraction.
    enum_discount: u64,
    per_enum_item: u64,
    once: u64,
}

impl Counter {
    fn text(&self, s: &str) -> u64 {
        self.vocab.count(s)
    }

    /// One chat message: the cookbook's formula plus content parts and tool calls.
    fn message(&self, message: &Json) -> u64 {
        let mut total = TOKENS_PER_MESSAGE;
        for (key, value) in message.fields() {
            total += match (key.as_ref(), value) {
                ("name", Json::Str(s)) => self.text(s) + TOKENS_PER_NAME,
                (_, Json::Str(s)) => self.text(s),
                ("content", parts) => self.content(parts),
                ("tool_calls", calls) => calls
                    .items()
                    .iter()
                    .map(|call| {
                        TOKENS_PER_MESSAGE
                            + self.function_call(call.get("function").unwrap_or(call))
                    })
                    .sum(),
                ("function_call", call) => self.function_call(call),
                _ => 0,
            };
        }
        total
    }

    /// A function call's name and arguments (a JSON string in OpenAI's shapes).
    fn function_call(&self, call: &Json) -> u64 {
        let name = call.str_at("name").map_or(0, |s| self.text(s));
        let arguments = match call.get("arguments").or_else(|| call.get("input")) {
            Some(Json::Str(s)) => self.text(s),
            Some(other) => self.json(other),
            None => 0,
        };
        name + arguments
    }

    /// `content` as a string or an array of parts (OpenAI's, the Responses API's or
    /// Anthropic's blocks).
    fn content(&self, content: &Json) -> u64 {
        match content {
            Json::Str(s) => self.text(s),
            Json::Array(parts) => parts.iter().map(|part| self.part(part)).sum(),
            _ => 0,
        }
    }

    fn part(&self, part: &Json) -> u64 {
        match part.str_at("type").unwrap_or("") {
            "image_url" | "input_image" | "image" => {
                let detail = part
                    .get("image_url")
                    .and_then(|i| i.str_at("detail"))
                    .or_else(|| part.str_at("detail"));
                if detail == Some("low") {
                    IMAGE_LOW_DETAIL_TOKENS
                } else {
                    IMAGE_TOKENS
                }
            }
            "input_audio" | "file" | "input_file" | "document" => 0,
            "refusal" => part.str_at("refusal").map_or(0, |s| self.text(s)),
            "tool_use" | "function_call" => self.function_call(part),
            "tool_result" => part.get("content").map_or(0, |c| self.content(c)),
            _ => match part {
                Json::Str(s) => self.text(s),
                _ => part.str_at("text").map_or(0, |s| self.text(s)),
            },
        }
    }

    /// `prompt` or embeddings `input`: a string, a token array, or an array of either.
    fn texts(&self, value: &Json) -> u64 {
        match value {
            Json::Str(s) => self.text(s),
            Json::Number(_) => 1,
            Json::Array(items) => items.iter().map(|item| self.texts(item)).sum(),
            _ => 0,
        }
    }

    /// `/v1/embeddings` `input` or `/v1/responses` `input`: strings and token arrays are
    /// counted as text; message items and function calls like chat messages.
    fn responses_input(&self, input: &Json) -> u64 {
        let Json::Array(items) = input else {
            return self.texts(input);
        };
        let mut total = 0;
        let mut messages = false;
        for item in items {
            if !matches!(item, Json::Object(_)) {
                total += self.texts(item);
                continue;
            }
            messages = true;
            total += match item.str_at("type") {
                Some("function_call") => TOKENS_PER_MESSAGE + self.function_call(item),
                Some("function_call_output") => {
                    TOKENS_PER_MESSAGE + item.get("output").map_or(0, |o| self.content(o))
                }
                _ => self.message(item),
            };
        }
        if messages {
            total += REPLY_PRIMING;
        }
        total
    }

    fn tool_costs(&self) -> ToolCosts {
        ToolCosts {
            per_function: if self.family == Family::O200k { 7 } else { 10 },
            per_parameters: 3,
            per_property: 3,
            enum_discount: 3,
            per_enum_item: 3,
            once: 12,
        }
    }

    /// Tool definitions, by the cookbook's `num_tokens_for_tools`.
    fn tools(&self, root: &Json) -> u64 {
        let tools = root.items_at("tools");
        let functions = root.items_at("functions");
        if tools.is_empty() && functions.is_empty() {
            return 0;
        }
        let costs = self.tool_costs();
        let mut total = costs.once;
        for tool in tools.iter().chain(functions) {
            let def = tool.get("function").unwrap_or(tool);
            let name = def
                .str_at("name")
                .or_else(|| def.str_at("type"))
                .unwrap_or("");
            let description = def.str_at("description").unwrap_or("");
            let description = description.strip_suffix('.').unwrap_or(description);
            total += costs.per_function + self.text(&format!("{name}:{description}"));
            let parameters = def.get("parameters").or_else(|| def.get("input_schema"));
            if let Some(properties) = parameters.and_then(|p| p.get("properties")) {
                total += self.properties(properties, &costs);
            }
        }
        total
    }

    fn properties(&self, properties: &Json, costs: &ToolCosts) -> u64 {
        let fields = properties.fields();
        if fields.is_empty() {
            return 0;
        }
        let mut total = costs.per_parameters;
        for (name, schema) in fields {
            total += costs.per_property;
            let kind = match schema.get("type") {
                Some(Json::Str(s)) => s.to_string(),
                Some(Json::Array(kinds)) => kinds
                    .iter()
                    .filter_map(Json::as_str)
                    .collect::<Vec<_>>()
                    .join(" | "),
                _ => String::new(),
            };
            let description = schema.str_at("description").unwrap_or("");
            let description = description.strip_suffix('.').unwrap_or(description);
            total += self.text(&format!("{name}:{kind}:{description}"));
            if let Some(Json::Array(items)) = schema.get("enum") {
                total = total.saturating_sub(costs.enum_discount);
                for item in items {
                    total += costs.per_enum_item + self.texts(item);
                }
            }
            // Nested schemas: the cookbook stops at the top level; count their JSON text.
            for nested in ["properties", "items", "anyOf", "oneOf"] {
                if let Some(value) = schema.get(nested) {
                    total += self.json(value);
                }
            }
        }
        total
    }

    /// A rough count of a JSON value's text as it would be serialized: strings and keys by
    /// their tokens plus their quotes, one token per number, literal and bracket.
    fn json(&self, value: &Json) -> u64 {
        match value {
            Json::Atom | Json::Number(_) => 1,
            Json::Str(s) => self.text(s) + 1,
            Json::Array(items) => 1 + items.iter().map(|i| self.json(i)).sum::<u64>(),
            Json::Object(fields) => {
                1 + fields
                    .iter()
                    .map(|(k, v)| self.text(k) + 2 + self.json(v))
                    .sum::<u64>()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(body: &str) -> u64 {
        prompt_tokens(Family::O200k, body.as_bytes())
    }

    #[test]
    fn two_messages_follow_the_cookbook() {
        // Python tiktoken 0.14, o200k_base: "system" 1, "You are a helpful assistant." 6,
        // "user" 1, "Hello, world!" 4, "example_user" 2 (+1 for the name).
        let body = r#"{"model":"gpt-4o","messages":[
            {"role":"system","content":"You are a helpful assistant."},
            {"role":"user","name":"example_user","content":"Hello, world!"}]}"#;
        assert_eq!(o(body), 3 + (1 + 6) + 3 + (1 + 4 + 2 + 1) + 3);
    }

    #[test]
    fn text_parts_count_like_strings() {
        let plain = r#"{"messages":[{"role":"user","content":"Hello, world! hello world"}]}"#;
        let parts = r#"{"messages":[{"role":"user","content":[
            {"type":"text","text":"Hello, world!"},{"type":"text","text":" hello world"}]}]}"#;
        assert_eq!(o(plain), o(parts));
    }

    #[test]
    fn images_have_fixed_costs_and_audio_counts_nothing() {
        let base = o(r#"{"messages":[{"role":"user","content":[]}]}"#);
        let low = r#"{"messages":[{"role":"user","content":[
            {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}}]}]}"#;
        let auto = r#"{"messages":[{"role":"user","content":[
            {"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}"#;
        let audio = r#"{"messages":[{"role":"user","content":[
            {"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}]}"#;
        assert_eq!(o(low), base + IMAGE_LOW_DETAIL_TOKENS);
        assert_eq!(o(auto), base + IMAGE_TOKENS);
        assert_eq!(o(audio), base);
    }

    #[test]
    fn tool_calls_and_results_are_counted() {
        let args = r#"{\"city\":\"Paris\",\"unit\":\"celsius\"}"#;
        let body = format!(
            r#"{{"messages":[{{"role":"assistant","content":null,"tool_calls":[
                {{"id":"call_1","type":"function","function":{{"name":"get_weather","arguments":"{args}"}}}}]}},
                {{"role":"tool","tool_call_id":"call_1","content":"18C and sunny"}}]}}"#
        );
        let v = Vocab::O200k;
        let call = TOKENS_PER_MESSAGE
            + v.count("get_weather")
            + v.count(r#"{"city":"Paris","unit":"celsius"}"#);
        let want = REPLY_PRIMING
            + (TOKENS_PER_MESSAGE + v.count("assistant") + call)
            + (TOKENS_PER_MESSAGE + v.count("tool") + v.count("call_1") + v.count("18C and sunny"));
        assert_eq!(o(&body), want);
    }

    #[test]
    fn tool_definitions_follow_the_cookbook() {
        let body = r#"{"messages":[],"tools":[{"type":"function","function":{
            "name":"get_weather","description":"Get the weather.",
            "parameters":{"type":"object","properties":{
                "city":{"type":"string","description":"The city."},
                "unit":{"type":"string","enum":["celsius","fahrenheit"]}}}}}]}"#;
        // func_init is 7 for gpt-4o, 10 for gpt-4; the rest is shared.
        for (family, v, func_init) in [
            (Family::O200k, Vocab::O200k, 7),
            (Family::Cl100k, Vocab::Cl100k, 10),
        ] {
            let want = REPLY_PRIMING
                + 12
                + func_init
                + v.count("get_weather:Get the weather")
                + 3
                + (3 + v.count("city:string:The city"))
                + (3 + v.count("unit:string:") - 3
                    + (3 + v.count("celsius"))
                    + (3 + v.count("fahrenheit")));
            assert_eq!(prompt_tokens(family, body.as_bytes()), want, "{family:?}");
        }
    }

    #[test]
    fn completions_and_embeddings() {
        let v = Vocab::O200k;
        assert_eq!(o(r#"{"prompt":"hello world"}"#), 2);
        assert_eq!(o(r#"{"prompt":["hello world","Hello, world!"]}"#), 2 + 4);
        assert_eq!(o(r#"{"prompt":[15339,1917,0]}"#), 3);
        assert_eq!(o(r#"{"input":"hello world"}"#), 2);
        assert_eq!(o(r#"{"input":["hello world",[1,2,3]]}"#), 2 + 3);
        let responses = r#"{"instructions":"Be brief.","input":[{"role":"user","content":[{"type":"input_text","text":"hello world"}]}]}"#;
        assert_eq!(
            o(responses),
            (TOKENS_PER_MESSAGE + v.count("Be brief."))
                + (TOKENS_PER_MESSAGE + v.count("user") + 2)
                + REPLY_PRIMING
        );
    }

    #[test]
    fn anthropic_messages_are_read_leniently() {
        let v = Vocab::Cl100k;
        let body = r#"{"system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"hello world"}]}]}"#;
        assert_eq!(
            prompt_tokens(Family::Approx, body.as_bytes()),
            REPLY_PRIMING
                + (TOKENS_PER_MESSAGE + v.count("Be brief."))
                + (TOKENS_PER_MESSAGE + v.count("user") + 2)
        );
    }

    #[test]
    fn the_bound_holds_for_every_shape_and_family() {
        let args = r#"{\"city\":\"Paris\"}"#;
        let tool_call = format!(
            r#"{{"messages":[{{"role":"assistant","content":null,"tool_calls":[{{"id":"c","type":"function","function":{{"name":"get_weather","arguments":"{args}"}}}}]}}]}}"#
        );
        let bodies = [
            r#"{"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","name":"u","content":"Hello, world!"}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://e.com/a.png"}},{"type":"input_image","image_url":"x"}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"u"}}]}],"system":"s"}"#,
            r#"{"messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string","enum":["x","y"]}}}}}]}"#,
            r#"{"prompt":[1,2,3,4,5,6,7,8,9]}"#,
            r#"{"input":["a",[1,2]],"instructions":"b"}"#,
            r#"{"messages":42}"#,
            r#"{"messages":[42,null,{"role":7,"content":{"x":1}}]}"#,
            "hello world, plain text",
            "日本語のテキストと emoji 🎉🎉🎉",
            tool_call.as_str(),
        ];
        for body in bodies {
            for family in [Family::O200k, Family::Cl100k, Family::Approx] {
                let exact = prompt_tokens(family, body.as_bytes());
                let bound = prompt_tokens_at_most(body.as_bytes());
                assert!(bound >= exact, "{family:?} {body}: {bound} < {exact}");
            }
        }
    }

    #[test]
    fn malformed_bodies_never_panic() {
        assert_eq!(o(""), 0);
        assert_eq!(o("hello world"), 2, "not JSON: counted as text");
        assert_eq!(o(r#"{"messages":"#), Vocab::O200k.count(r#"{"messages":"#));
        assert_eq!(o(r#"{"messages":42}"#), REPLY_PRIMING);
        assert_eq!(
            o(r#"{"messages":[42,null,{"role":7,"content":{"x":1}}]}"#),
            REPLY_PRIMING + 3 * TOKENS_PER_MESSAGE
        );
        assert_eq!(o(r#"{"model":"gpt-4o"}"#), 0);
        assert_eq!(o("[]"), 0);
        let _ = prompt_tokens(Family::O200k, b"\xff\xfe{\"prompt\":\"\xff\"}");
        let _ = o(
            r#"{"tools":[{"function":{"parameters":{"properties":{"a":{"type":[1],"enum":[{}]}}}}}],"messages":[]}"#,
        );
    }
}
