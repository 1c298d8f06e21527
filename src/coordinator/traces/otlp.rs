//! Spans as an OTLP/HTTP JSON `ExportTraceServiceRequest`: `resourceSpans` → the node's
//! `resource` → one `scopeSpans` (scope `ringgate`) → the spans. The JSON mapping of the
//! protobuf messages: field names in lowerCamelCase, trace and span ids as lowercase hex,
//! 64-bit integers (times in Unix nanoseconds, integer attributes) as decimal strings, enums
//! as numbers.
//!
//! This is also the one place that names what a shard recorded ([`SpanRecord`]) in
//! OpenTelemetry's GenAI semantic conventions: the span is `{gen_ai.operation.name}
//! {gen_ai.request.model}`, of kind CLIENT (the gateway calls a model over HTTP), with the
//! attributes listed in docs/traces.md.

use serde::Serialize;
use shards::dialect::{Inbound, Wire};
use shards::trace::SpanRecord;

/// `SPAN_KIND_CLIENT`.
const KIND_CLIENT: u8 = 3;
/// `STATUS_CODE_ERROR`.
const STATUS_ERROR: u8 = 2;

/// What every span of this node shares: its `resource`.
#[derive(Debug, Clone)]
pub struct Resource {
    pub service_name: String,
    pub host_name: Option<String>,
    /// The node's id in a fleet.
    pub instance_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: Attributes<'a>,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct Attributes<'a> {
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopeSpans<'a> {
    scope: Scope,
    spans: Vec<Span<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Span<'a> {
    trace_id: &'a str,
    span_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<&'a str>,
    /// The W3C trace flags.
    flags: u32,
    name: String,
    kind: u8,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Vec<KeyValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status<'a>>,
}

#[derive(Serialize)]
struct Status<'a> {
    code: u8,
    message: &'a str,
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'static str,
    value: AnyValue<'a>,
}

#[derive(Serialize)]
enum AnyValue<'a> {
    #[serde(rename = "stringValue")]
    Str(&'a str),
    #[serde(rename = "intValue")]
    Int(String),
    #[serde(rename = "boolValue")]
    Bool(bool),
    #[serde(rename = "arrayValue")]
    Array(ArrayValue<'a>),
}

#[derive(Serialize)]
struct ArrayValue<'a> {
    values: Vec<AnyValue<'a>>,
}

fn str_value<'a>(key: &'static str, value: &'a str) -> KeyValue<'a> {
    KeyValue {
        key,
        value: AnyValue::Str(value),
    }
}

fn int_value(key: &'static str, value: u64) -> KeyValue<'static> {
    KeyValue {
        key,
        value: AnyValue::Int(value.to_string()),
    }
}

/// Hex ids are ASCII by construction.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// `gen_ai.operation.name` of the API the client called.
fn operation(endpoint: Inbound) -> &'static str {
    match endpoint {
        Inbound::Chat | Inbound::AnthropicMessages | Inbound::Responses => "chat",
        Inbound::Completions => "text_completion",
        Inbound::Embeddings => "embeddings",
        Inbound::AnthropicCountTokens => "count_tokens",
        Inbound::Direct(api) => api.name(),
    }
}

/// `gen_ai.provider.name` of a provider's API family.
fn provider_name(wire: Wire) -> &'static str {
    match wire {
        Wire::OpenAi => "openai",
        Wire::Azure => "azure.ai.openai",
        Wire::Anthropic => "anthropic",
        Wire::Gemini => "gcp.gemini",
        Wire::Bedrock => "aws.bedrock",
    }
}

/// The request body of one export.
pub fn encode(resource: &Resource, spans: &[SpanRecord]) -> Vec<u8> {
    let mut resource_attributes = vec![
        str_value("service.name", &resource.service_name),
        str_value("service.version", env!("CARGO_PKG_VERSION")),
    ];
    if let Some(host) = &resource.host_name {
        resource_attributes.push(str_value("host.name", host));
    }
    if let Some(id) = &resource.instance_id {
        resource_attributes.push(str_value("service.instance.id", id));
    }
    let request = ExportRequest {
        resource_spans: [ResourceSpans {
            resource: Attributes {
                attributes: resource_attributes,
            },
            scope_spans: [ScopeSpans {
                scope: Scope {
                    name: "ringgate",
                    version: env!("CARGO_PKG_VERSION"),
                },
                spans: spans.iter().map(span).collect(),
            }],
        }],
    };
    serde_json::to_vec(&request).expect("spans serialize")
}

fn span(record: &SpanRecord) -> Span<'_> {
    let context = &record.context;
    let operation = operation(record.endpoint);
    let model = &record.request_model;
    let mut attributes = vec![str_value("gen_ai.operation.name", operation)];
    // A request refused before its body was read names no model.
    if !model.is_empty() {
        attributes.push(str_value("gen_ai.request.model", model));
    }
    if let Some(wire) = record.wire {
        // `gen_ai.system` is the name before semantic conventions 1.37; both are sent.
        attributes.push(str_value("gen_ai.provider.name", provider_name(wire)));
        attributes.push(str_value("gen_ai.system", provider_name(wire)));
    }
    if let Some(model) = &record.response_model {
        attributes.push(str_value("gen_ai.response.model", model));
    }
    if let Some(max) = record.max_tokens {
        attributes.push(int_value("gen_ai.request.max_tokens", max));
    }
    let output_tokens = match record.usage {
        Some(usage) => {
            attributes.push(int_value("gen_ai.usage.input_tokens", usage.prompt));
            Some(usage.completion)
        }
        None => (record.counted_output_tokens > 0).then_some(record.counted_output_tokens),
    };
    if let Some(n) = output_tokens {
        attributes.push(int_value("gen_ai.usage.output_tokens", n));
    }
    if let Some(reason) = record.finish_reason {
        attributes.push(KeyValue {
            key: "gen_ai.response.finish_reasons",
            value: AnyValue::Array(ArrayValue {
                values: vec![AnyValue::Str(reason.as_str())],
            }),
        });
    }
    if record.status > 0 {
        attributes.push(int_value(
            "http.response.status_code",
            u64::from(record.status),
        ));
    }
    if let Some(code) = record.error_code {
        attributes.push(str_value("error.type", code));
    }
    if let Some((host, port)) = &record.server {
        attributes.push(str_value("server.address", host));
        attributes.push(int_value("server.port", u64::from(*port)));
    }
    attributes.push(str_value("ringgate.request_id", &record.request_id));
    if let Some(provider) = &record.provider {
        attributes.push(str_value("ringgate.provider", provider));
    }
    attributes.push(int_value("ringgate.overhead_us", record.overhead_us));
    attributes.push(KeyValue {
        key: "ringgate.stream",
        value: AnyValue::Bool(record.stream),
    });
    Span {
        trace_id: ascii(&context.trace_id),
        span_id: ascii(&context.span_id),
        parent_span_id: context.parent.as_ref().map(|p| ascii(p)),
        flags: u32::from_str_radix(ascii(&context.flags), 16).unwrap_or_default(),
        name: if model.is_empty() {
            operation.to_owned()
        } else {
            format!("{operation} {model}")
        },
        kind: KIND_CLIENT,
        start_time_unix_nano: record.start_unix_nanos.to_string(),
        end_time_unix_nano: record.end_unix_nanos.to_string(),
        attributes,
        status: record.error_code.map(|code| Status {
            code: STATUS_ERROR,
            message: code,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use shards::governance::usage::FinishReason;
    use shards::trace::TraceContext;
    use vocab::TokenUsage;

    fn record() -> SpanRecord {
        SpanRecord {
            context: TraceContext {
                trace_id: *b"4bf92f3577b34da6a3ce929d0e0e4736",
                parent: Some(*b"00f067aa0ba902b7"),
                span_id: *b"53995c3f42cd8ad8",
                flags: *b"01",
            },
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_250_000_000,
            endpoint: Inbound::Chat,
            wire: Some(Wire::Anthropic),
            provider: Some("claude".into()),
            server: Some(("api.anthropic.com".into(), 443)),
            request_model: "claude-3-5-haiku".into(),
            response_model: None,
            max_tokens: Some(64),
            usage: Some(TokenUsage {
                prompt: 12,
                completion: 5,
                cached: 0,
            }),
            counted_output_tokens: 0,
            finish_reason: Some(FinishReason::Stop),
            status: 200,
            error_code: None,
            request_id: "req-1".into(),
            overhead_us: 42,
            stream: true,
        }
    }

    fn attributes(span: &Value) -> serde_json::Map<String, Value> {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| (kv["key"].as_str().unwrap().to_owned(), kv["value"].clone()))
            .collect()
    }

    #[test]
    fn encodes_an_export_request_in_otlp_json() {
        let resource = Resource {
            service_name: "gw".into(),
            host_name: Some("host-1".into()),
            instance_id: None,
        };
        let body: Value = serde_json::from_slice(&encode(&resource, &[record()])).unwrap();
        let rs = &body["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "gw"}})
        );
        assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "ringgate");
        let span = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], "53995c3f42cd8ad8");
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["flags"], 1);
        assert_eq!(span["name"], "chat claude-3-5-haiku");
        assert_eq!(span["kind"], 3);
        assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(span["endTimeUnixNano"], "1700000000250000000");
        assert!(span.get("status").is_none());
        let a = attributes(span);
        assert_eq!(a["gen_ai.operation.name"], json!({"stringValue": "chat"}));
        assert_eq!(
            a["gen_ai.provider.name"],
            json!({"stringValue": "anthropic"})
        );
        assert_eq!(a["gen_ai.system"], json!({"stringValue": "anthropic"}));
        assert_eq!(a["gen_ai.request.max_tokens"], json!({"intValue": "64"}));
        assert_eq!(a["gen_ai.usage.input_tokens"], json!({"intValue": "12"}));
        assert_eq!(a["gen_ai.usage.output_tokens"], json!({"intValue": "5"}));
        assert_eq!(
            a["gen_ai.response.finish_reasons"],
            json!({"arrayValue": {"values": [{"stringValue": "stop"}]}})
        );
        assert_eq!(a["http.response.status_code"], json!({"intValue": "200"}));
        assert_eq!(
            a["server.address"],
            json!({"stringValue": "api.anthropic.com"})
        );
        assert_eq!(a["server.port"], json!({"intValue": "443"}));
        assert_eq!(a["ringgate.stream"], json!({"boolValue": true}));
        assert_eq!(a["ringgate.overhead_us"], json!({"intValue": "42"}));
        assert!(!a.contains_key("error.type") && !a.contains_key("gen_ai.response.model"));
    }

    #[test]
    fn a_failure_is_an_error_span() {
        let failed = SpanRecord {
            context: TraceContext {
                parent: None,
                ..record().context
            },
            endpoint: Inbound::Embeddings,
            wire: None,
            provider: None,
            server: None,
            usage: None,
            counted_output_tokens: 0,
            finish_reason: None,
            status: 502,
            error_code: Some("upstream_connect_failed"),
            ..record()
        };
        let unnamed = SpanRecord {
            request_model: String::new(),
            status: 401,
            error_code: Some("invalid_api_key"),
            ..record()
        };
        let resource = Resource {
            service_name: "gw".into(),
            host_name: None,
            instance_id: Some("node-a".into()),
        };
        let body: Value = serde_json::from_slice(&encode(&resource, &[failed, unnamed])).unwrap();
        let rs = &body["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][2],
            json!({"key": "service.instance.id", "value": {"stringValue": "node-a"}})
        );
        let span = &rs["scopeSpans"][0]["spans"][0];
        assert!(span.get("parentSpanId").is_none());
        assert_eq!(span["name"], "embeddings claude-3-5-haiku");
        assert_eq!(
            span["status"],
            json!({"code": 2, "message": "upstream_connect_failed"})
        );
        let a = attributes(span);
        assert_eq!(
            a["error.type"],
            json!({"stringValue": "upstream_connect_failed"})
        );
        assert_eq!(a["http.response.status_code"], json!({"intValue": "502"}));
        for absent in [
            "gen_ai.provider.name",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "server.address",
            "ringgate.provider",
        ] {
            assert!(!a.contains_key(absent), "{absent}");
        }
        let unnamed = &rs["scopeSpans"][0]["spans"][1];
        assert_eq!(unnamed["name"], "chat");
        assert!(!attributes(unnamed).contains_key("gen_ai.request.model"));
    }
}
