//! OpenTelemetry traces end to end: the gateway reads a client's `traceparent`, samples,
//! propagates its own span upstream (which mock-llm echoes back as `x-mock-traceparent`), and
//! exports sampled spans as OTLP/HTTP JSON to a collector — here a tiny one inside the test
//! that records every span it is sent.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Map, Value};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// What the collector was sent: each export's headers and its spans, with the resource.
#[derive(Default)]
struct Received {
    /// Lowercased header names and their values, per export.
    headers: Vec<Vec<(String, String)>>,
    spans: Vec<Value>,
    resources: Vec<Value>,
}

/// An OTLP/HTTP collector on 127.0.0.1 that answers every POST with 200 and keeps what it
/// decoded. Its thread lives as long as the test process.
struct Collector {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the collector");
        let addr = listener.local_addr().expect("collector address");
        let received = Arc::new(Mutex::new(Received::default()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = receive(stream, &sink);
            }
        });
        Collector { addr, received }
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// Waits for the span with `span_id`.
    fn span(&self, span_id: &str) -> Value {
        self.await_span(|s| s["spanId"] == span_id)
            .unwrap_or_else(|| panic!("no span {span_id}; got {:?}", self.spans()))
    }

    fn await_span(&self, pick: impl Fn(&Value) -> bool) -> Option<Value> {
        poll_until(Duration::from_secs(10), || {
            self.spans().into_iter().find(|s| pick(s))
        })
    }

    fn spans(&self) -> Vec<Value> {
        self.received.lock().unwrap().spans.clone()
    }
}

/// Reads one HTTP/1.1 POST, keeps its headers and spans, answers 200 and closes.
fn receive(stream: std::net::TcpStream, sink: &Mutex<Received>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    assert!(line.starts_with("POST /v1/traces "), "{line:?}");
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .expect("an export has a content-length");
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let export: Value = serde_json::from_slice(&body).expect("an export is JSON");
    {
        let mut got = sink.lock().unwrap();
        for rs in export["resourceSpans"].as_array().expect("resourceSpans") {
            for ss in rs["scopeSpans"].as_array().expect("scopeSpans") {
                assert_eq!(ss["scope"]["name"], "ringgate");
                for span in ss["spans"].as_array().expect("spans") {
                    got.spans.push(span.clone());
                    got.resources.push(rs["resource"].clone());
                }
            }
        }
        got.headers.push(headers);
    }
    let mut stream = reader.into_inner();
    stream.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    )
}

/// A gateway in front of a fresh mock, exporting to `endpoint` every 20 ms.
fn gateway(mock: &MockLlm, endpoint: &str, sample_ratio: f64) -> Gateway {
    Gateway::start(merged(
        basic_config(&mock.base_url()),
        json!({"observability": {"traces": {
            "endpoint": endpoint,
            "sample_ratio": sample_ratio,
            "service_name": "ringgate-test",
            "export_interval_ms": 20,
            "headers": {"x-collector-token": "t0ken"},
        }}}),
    ))
}

fn chat(gw: &Gateway, stream: bool, headers: &[(&str, &str)]) -> Response {
    let body = serde_json::json!({
        "model": "mock/gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": stream,
        "max_tokens": 50,
    });
    gw.post_json("/v1/chat/completions", &body.to_string(), headers)
}

fn traceparent(flags: &str) -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-{flags}")
}

/// `(trace id, parent span id, flags)` of the one `traceparent` the mock received.
fn propagated(resp: &Response) -> (String, String, String) {
    let value = resp
        .header("x-mock-traceparent")
        .unwrap_or_else(|| panic!("no traceparent reached the provider: {:?}", resp.headers));
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "one traceparent, well formed: {value}");
    assert_eq!(parts[0], "00");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn attributes(span: &Value) -> Map<String, Value> {
    span["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .map(|kv| (kv["key"].as_str().unwrap().to_owned(), kv["value"].clone()))
        .collect()
}

fn int(attrs: &Map<String, Value>, key: &str) -> u64 {
    attrs[key]["intValue"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} is no intValue: {attrs:?}"))
}

#[test]
fn a_sampled_request_is_exported_with_genai_attributes_and_its_span_propagated() {
    let collector = Collector::start();
    let mock = MockLlm::start(&[]);
    let gw = gateway(&mock, &collector.endpoint(), 1.0);

    // (a) The client's sampled context: the span joins its trace, under its span.
    let resp = chat(
        &gw,
        false,
        &[
            ("traceparent", &traceparent("01")),
            ("tracestate", "vendor=x"),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    // (b) The provider got the gateway's span as parent, the client's flags and tracestate.
    let (trace, parent, flags) = propagated(&resp);
    assert_eq!((trace.as_str(), flags.as_str()), (CLIENT_TRACE, "01"));
    assert_ne!(
        parent, CLIENT_SPAN,
        "the gateway's own span is the provider's parent"
    );
    assert_eq!(resp.header("x-mock-tracestate"), Some("vendor=x"));

    let span = collector.span(&parent);
    assert_eq!(span["traceId"], CLIENT_TRACE);
    assert_eq!(span["parentSpanId"], CLIENT_SPAN);
    assert_eq!(span["name"], "chat gpt-4o-mini");
    assert_eq!(span["kind"], 3);
    assert!(span.get("status").is_none(), "{span}");
    let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(
        start > 1_600_000_000_000_000_000 && start <= end,
        "{start} {end}"
    );
    let a = attributes(&span);
    assert_eq!(a["gen_ai.operation.name"], json!({"stringValue": "chat"}));
    assert_eq!(a["gen_ai.provider.name"], json!({"stringValue": "openai"}));
    assert_eq!(a["gen_ai.system"], json!({"stringValue": "openai"}));
    assert_eq!(
        a["gen_ai.request.model"],
        json!({"stringValue": "gpt-4o-mini"})
    );
    assert_eq!(
        a["gen_ai.response.model"],
        json!({"stringValue": "gpt-4o-mini"})
    );
    assert_eq!(int(&a, "gen_ai.request.max_tokens"), 50);
    assert!(int(&a, "gen_ai.usage.input_tokens") > 0, "{a:?}");
    assert!(int(&a, "gen_ai.usage.output_tokens") > 0, "{a:?}");
    assert_eq!(
        a["gen_ai.response.finish_reasons"],
        json!({"arrayValue": {"values": [{"stringValue": "stop"}]}})
    );
    assert_eq!(int(&a, "http.response.status_code"), 200);
    assert_eq!(a["server.address"], json!({"stringValue": "127.0.0.1"}));
    assert_eq!(int(&a, "server.port"), u64::from(mock.addr.port()));
    assert_eq!(
        a["ringgate.request_id"]["stringValue"].as_str(),
        resp.header("x-request-id")
    );
    assert_eq!(a["ringgate.provider"], json!({"stringValue": "mock"}));
    assert_eq!(a["ringgate.stream"], json!({"boolValue": false}));
    assert!(a.contains_key("ringgate.overhead_us") && !a.contains_key("error.type"));
    {
        let got = collector.received.lock().unwrap();
        let resource = &got.resources[0]["attributes"];
        assert_eq!(
            resource[0],
            json!({"key": "service.name", "value": {"stringValue": "ringgate-test"}})
        );
        let export = &got.headers[0];
        assert_eq!(header(export, "content-type"), Some("application/json"));
        assert_eq!(header(export, "x-collector-token"), Some("t0ken"));
    }

    // Without a client context, sample_ratio 1 traces it under the request's own id.
    let own = chat(&gw, false, &[]);
    let request_id = own.header("x-request-id").unwrap();
    let (trace, span_id, flags) = propagated(&own);
    assert_eq!((trace.as_str(), flags.as_str()), (request_id, "01"));
    let span = collector.span(&span_id);
    assert_eq!(span["traceId"], request_id);
    assert!(span.get("parentSpanId").is_none(), "{span}");

    // A stream reports its tokens too, and the usage chunk asked for it stays the gateway's.
    let streamed = chat(&gw, true, &[("traceparent", &traceparent("01"))]);
    assert_eq!(streamed.status, 200);
    assert!(
        !streamed.text().contains("\"usage\""),
        "{}",
        streamed.text()
    );
    let span = collector.span(&propagated(&streamed).1);
    let a = attributes(&span);
    assert_eq!(a["ringgate.stream"], json!({"boolValue": true}));
    assert!(int(&a, "gen_ai.usage.input_tokens") > 0, "{a:?}");
    assert!(int(&a, "gen_ai.usage.output_tokens") > 0, "{a:?}");
    assert_eq!(
        a["gen_ai.response.finish_reasons"],
        json!({"arrayValue": {"values": [{"stringValue": "stop"}]}})
    );

    // (e) A provider's 500 is an error span.
    let failed = chat(
        &gw,
        false,
        &[
            ("traceparent", &traceparent("01")),
            ("x-mock-status", "500"),
        ],
    );
    assert_eq!(failed.status, 500);
    let span = collector.span(&propagated(&failed).1);
    assert_eq!(span["status"]["code"], 2, "{span}");
    let a = attributes(&span);
    assert_eq!(int(&a, "http.response.status_code"), 500);
    assert_eq!(a["error.type"], json!({"stringValue": "provider_error"}));

    let exported = poll_until(Duration::from_secs(5), || {
        let n = gw.metric_sum("ringgate_traces_spans_exported_total");
        (n >= 4).then_some(n)
    });
    assert!(exported.is_some(), "{}", gw.metrics());
    assert_eq!(gw.metric_sum("ringgate_traces_exports_failed_total"), 0);
}

#[test]
fn unsampled_requests_export_nothing_and_a_client_context_still_propagates() {
    let collector = Collector::start();
    let mock = MockLlm::start(&[]);
    let gw = gateway(&mock, &collector.endpoint(), 0.0);

    // (c) No client context and sample_ratio 0: not traced, nothing propagated.
    let plain = chat(&gw, false, &[]);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("x-mock-traceparent"), None);
    // A malformed traceparent counts as none: neither it nor its tracestate goes upstream.
    let malformed = chat(
        &gw,
        false,
        &[
            ("traceparent", "00-not-a-trace-01"),
            ("tracestate", "vendor=x"),
        ],
    );
    assert_eq!(malformed.status, 200);
    assert_eq!(malformed.header("x-mock-traceparent"), None);
    assert_eq!(malformed.header("x-mock-tracestate"), None);
    // (d) The client's unsampled context: not recorded, but propagated with its flags.
    let unsampled = chat(&gw, false, &[("traceparent", &traceparent("00"))]);
    assert_eq!(unsampled.status, 200);
    let (trace, parent, flags) = propagated(&unsampled);
    assert_eq!((trace.as_str(), flags.as_str()), (CLIENT_TRACE, "00"));
    assert_ne!(parent, CLIENT_SPAN);

    // A sampled request afterwards is the only span the collector ever gets: spans leave in
    // the order they were queued, so any of the requests above would have come first.
    let sampled = chat(&gw, false, &[("traceparent", &traceparent("01"))]);
    collector.span(&propagated(&sampled).1);
    let spans = collector.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
}

#[test]
fn a_collector_that_is_down_costs_spans_not_requests() {
    let down = RefusedPort::new();
    let mock = MockLlm::start(&[]);
    let gw = gateway(
        &mock,
        &format!("http://127.0.0.1:{}/v1/traces", down.port()),
        1.0,
    );
    for _ in 0..3 {
        let resp = chat(&gw, false, &[]);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let failed = poll_until(Duration::from_secs(10), || {
        let n = gw.metric_sum("ringgate_traces_exports_failed_total");
        (n >= 1).then_some(n)
    });
    assert!(failed.is_some(), "{}", gw.metrics());
    let m = gw.metrics();
    assert!(
        m.lines()
            .filter_map(|l| l
                .strip_prefix(r#"ringgate_traces_spans_dropped_total{reason="export_failed"} "#))
            .any(|n| n.parse::<u64>().is_ok_and(|n| n >= 1)),
        "{m}"
    );
    assert_eq!(gw.metric_sum("ringgate_traces_spans_exported_total"), 0);
    // Still serving.
    assert_eq!(chat(&gw, false, &[]).status, 200);
}
