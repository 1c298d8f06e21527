//! The mock's own responses: JSON and streamed bodies, and errors in each dialect's shape.

use super::*;

pub(super) fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    full(status, "application/json", body)
}

/// A whole body of `content_type`.
pub(super) fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut res = Response::new(Either::Left(Full::new(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

pub(super) fn streaming(content_type: &'static str, body: SseBody) -> Response<Body> {
    let mut res = Response::new(Either::Right(body));
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// An error in the dialect's own shape; 429s carry `retry-after: 1`.
pub(super) fn error(dialect: Dialect, status: StatusCode, message: &str) -> Response<Body> {
    let code = status.as_u16();
    let mut res = match dialect {
        Dialect::OpenAi => json(
            status,
            openai::error_body(message, faults::error_type(code), None),
        ),
        Dialect::Azure => json(status, azure::error_body(status.as_str(), message)),
        Dialect::Anthropic => json(status, anthropic::error_body(code, message)),
        Dialect::Gemini => json(status, gemini::error_body(code, message)),
        Dialect::Bedrock => aws_error(status, bedrock::error_type(code), message),
    };
    if status == StatusCode::TOO_MANY_REQUESTS {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

/// A handler's refusal; only OpenAI's shape names the error type and parameter.
pub(super) fn rejected(dialect: Dialect, rejection: &Rejection) -> Response<Body> {
    let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::BAD_REQUEST);
    match dialect {
        Dialect::OpenAi => json(
            status,
            openai::error_body_about(&rejection.message, rejection.kind, rejection.param, None),
        ),
        _ => error(dialect, status, &rejection.message),
    }
}

/// AWS JSON-protocol error: `{"message":..}` plus `x-amzn-errortype`.
pub(super) fn aws_error(status: StatusCode, kind: &'static str, message: &str) -> Response<Body> {
    let mut res = json(status, bedrock::error_body(message));
    res.headers_mut().insert(
        HeaderName::from_static("x-amzn-errortype"),
        HeaderValue::from_static(kind),
    );
    res
}

pub(super) fn injected(dialect: Dialect, status: u16) -> Response<Body> {
    // Statuses are validated to 400-599 when parsed.
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match (dialect, status.as_u16()) {
        (Dialect::Anthropic, 529) => "Overloaded".to_owned(),
        (_, code) => format!("mock injected {code}"),
    };
    error(dialect, status, &message)
}

pub(super) fn not_found(dialect: Dialect, req: &Request<Incoming>) -> Response<Body> {
    let msg = format!("Invalid URL ({} {})", req.method(), req.uri().path());
    match dialect {
        // OpenAI reports unknown URLs as invalid requests, not missing objects.
        Dialect::OpenAi => json(
            StatusCode::NOT_FOUND,
            openai::error_body(&msg, "invalid_request_error", None),
        ),
        Dialect::Azure => json(
            StatusCode::NOT_FOUND,
            azure::error_body("404", "Resource not found"),
        ),
        Dialect::Bedrock => aws_error(StatusCode::NOT_FOUND, "UnknownOperationException", &msg),
        _ => error(dialect, StatusCode::NOT_FOUND, &msg),
    }
}

pub(super) fn method_not_allowed(
    dialect: Dialect,
    req: &Request<Incoming>,
    allowed: &'static str,
) -> Response<Body> {
    let msg = format!("Method not allowed ({} {})", req.method(), req.uri().path());
    let mut res = error(dialect, StatusCode::METHOD_NOT_ALLOWED, &msg);
    res.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    res
}
