//! What trace context a request carried, echoed in the response so that tests see what a
//! gateway propagated.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// `x-mock-traceparent` and `x-mock-tracestate`: the request's `traceparent` and `tracestate`
/// headers, each name's values in order joined by ", " (so a duplicated `traceparent` shows).
pub fn echo(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    [
        ("traceparent", "x-mock-traceparent"),
        ("tracestate", "x-mock-tracestate"),
    ]
    .into_iter()
    .filter_map(|(name, echo)| {
        let values: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
        if values.is_empty() {
            return None;
        }
        let value = HeaderValue::from_bytes(&values.join(&b", "[..])).ok()?;
        Some((HeaderName::from_static(echo), value))
    })
    .collect()
}
