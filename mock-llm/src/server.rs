//! HTTP server: accept loop, per-connection hyper driver, routing of each
//! API dialect (OpenAI, Azure OpenAI, Anthropic, Gemini, Bedrock), their
//! auth checks and error shapes, and the order in which injected faults
//! apply (the same for every dialect).
//!
//! Routes:
//!
//! | dialect   | paths |
//! |-----------|-------|
//! | OpenAI    | `GET /v1/models`, `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/responses`, `/v1/audio/transcriptions`, `/v1/audio/translations` (multipart), `/v1/audio/speech`, `/v1/images/generations`, `/v1/images/edits` (multipart), `/v1/moderations` |
//! | OpenAI files and batches | `GET, POST /v1/files`, `GET, DELETE /v1/files/{id}`, `GET /v1/files/{id}/content`, `GET, POST /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel` |
//! | Azure     | `POST /openai/deployments/{deployment}/chat/completions`, `/completions`, `/embeddings`, `/audio/transcriptions`, `/audio/translations`, `/audio/speech`, `/images/generations`, `/images/edits`, and the files and batches paths under `/openai/` instead of `/v1/` (`?api-version=` required; no moderations) |
//! | Anthropic | `POST /v1/messages`, `/v1/messages/count_tokens`, also under `/anthropic` (`anthropic-version` header required) |
//! | Gemini    | `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent[?alt=sse]`, `:embedContent`, `:batchEmbedContents` (also under `/v1/models/`) |
//! | Bedrock   | `POST /model/{modelId}/converse`, `/model/{modelId}/converse-stream`, `/model/{modelId}/invoke` (Titan and Cohere embedding models only) (SigV4-shaped `authorization` and `x-amz-date` required, signature not checked) |
//!
//! Files and batches live in one store for the whole process, shared by the OpenAI and Azure
//! paths ([`crate::openai::store`]). A wrong method on a known path is 405 with `Allow`.
//!
//! Every response echoes the W3C trace context the request carried, as `x-mock-traceparent`
//! and `x-mock-tracestate` ([`crate::trace_echo`]), so that tests see what a gateway propagated.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER,
};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

use crate::conn::ConnCtl;
use crate::faults::{self, Defaults, FailMode, Framing, RequestOptions};
use crate::gemini::Method as GeminiMethod;
use crate::openai::audio::{self, Task};
use crate::openai::{images, moderations, Call};
use crate::reply::{next_id, Output, Rejection};
use crate::stream::{self, SseBody, StreamPlan};
use crate::{anthropic, azure, bedrock, gemini, openai};

mod replies;
mod routes;
use replies::{
    aws_error, error, full, injected, json, method_not_allowed, not_found, rejected, streaming,
};
use routes::{list_query, query_param, resolve, Dialect, Endpoint, OpenAiOp};

type Body = Either<Full<Bytes>, SseBody>;

/// Largest request body accepted; the mock only echoes, so this is generous.
const MAX_BODY: usize = 64 << 20;
/// How long `x-mock-fail: hang` keeps a connection open.
const HANG_FOR: Duration = Duration::from_secs(300);

/// Server-wide settings from the command line.
#[derive(Debug)]
pub struct Config {
    pub defaults: Defaults,
    pub fail_rate: f64,
    pub fail_status: u16,
    /// Required API key (`--require-key`): `Authorization: Bearer KEY` for
    /// OpenAI, `api-key` for Azure, `x-api-key` (or bearer) for Anthropic,
    /// `x-goog-api-key`/`?key=` for Gemini, the SigV4 access key id for Bedrock.
    pub key: Option<String>,
    /// Bearer key that is always rate limited (`--rate-limited-key`).
    pub rate_limited_key: Option<String>,
}

/// Serve until SIGTERM or SIGINT.
pub async fn run(listen: &str, ready_file: Option<&Path>, config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "mock-llm listening on {addr}")?;
        out.flush()?;
    }
    if let Some(path) = ready_file {
        write_ready_file(path, addr)?;
    }
    let config = Arc::new(config);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    tokio::spawn(serve_connection(tcp, config.clone()));
                }
                Err(e) => {
                    // Typically EMFILE under load: back off instead of spinning.
                    eprintln!("mock-llm: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    Ok(())
}

/// `{"listen":"IP:PORT","pid":N}`, written beside `path` and renamed into place so that a
/// reader finds either no file or a whole one.
fn write_ready_file(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let contents = serde_json::json!({"listen": addr.to_string(), "pid": std::process::id()});
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{contents}\n"))?;
    std::fs::rename(&tmp, path)
}

async fn serve_connection(tcp: TcpStream, config: Arc<Config>) {
    let _ = tcp.set_nodelay(true);
    // Keep a duplicate descriptor so handlers can reset or take over the
    // connection even though hyper owns the stream.
    let raw = match SockRef::from(&tcp).try_clone() {
        Ok(sock) => std::net::TcpStream::from(sock),
        Err(e) => {
            eprintln!("mock-llm: dup failed: {e}");
            return;
        }
    };
    let ctl = Arc::new(ConnCtl::new(raw));
    let svc_ctl = ctl.clone();
    let service = service_fn(move |req| handle(req, config.clone(), svc_ctl.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), service);
    tokio::select! {
        _ = conn => {}
        // Dropping `conn` closes hyper's descriptor; `release` closes ours.
        _ = ctl.killed() => {}
    }
    ctl.release();
}

async fn handle(
    req: Request<Incoming>,
    config: Arc<Config>,
    ctl: Arc<ConnCtl>,
) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == "/health" {
        return Ok(match *req.method() {
            Method::GET | Method::HEAD => {
                json(StatusCode::OK, Bytes::from_static(openai::HEALTH_BODY))
            }
            _ => method_not_allowed(Dialect::OpenAi, &req, "GET"),
        });
    }
    if let Some(res) = crate::catalog::serve(&req, config.key.as_deref()) {
        return Ok(res.map(Either::Left));
    }
    let echo = crate::trace_echo::echo(req.headers());
    let endpoint = resolve(req.uri());
    let dialect = match &endpoint {
        Ok(e) => e.dialect(),
        Err(d) => *d,
    };
    let mut res = match endpoint {
        Ok(endpoint) => route(req, endpoint, &config, &ctl).await,
        Err(dialect) => not_found(dialect, &req),
    };
    let request_id = match dialect {
        Dialect::Anthropic => Some(("request-id", format!("req_mock_{}", next_id()))),
        Dialect::Bedrock => Some(("x-amzn-requestid", format!("mock-{}", next_id()))),
        _ => None,
    };
    if let Some((name, value)) = request_id {
        if let Ok(value) = HeaderValue::from_str(&value) {
            res.headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    res.headers_mut().extend(echo);
    Ok(res)
}

async fn route(
    req: Request<Incoming>,
    endpoint: Endpoint,
    config: &Config,
    ctl: &Arc<ConnCtl>,
) -> Response<Body> {
    let dialect = endpoint.dialect();
    if let Some(res) = admit(dialect, req.headers(), req.uri(), config) {
        return res;
    }
    let allowed = endpoint.allowed();
    if !allowed.split(", ").any(|m| m == req.method().as_str()) {
        return method_not_allowed(dialect, &req, allowed);
    }
    let opts = match RequestOptions::from_headers(req.headers(), &config.defaults) {
        Ok(opts) => opts,
        Err(msg) => return error(dialect, StatusCode::BAD_REQUEST, &msg),
    };
    let (head, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return error(
                dialect,
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable",
            )
        }
    };

    match opts.fail {
        FailMode::Reset => {
            ctl.reset();
            return std::future::pending().await;
        }
        FailMode::Hang => {
            // If the peer closes first, hyper notices the EOF and drops this
            // future along with the connection.
            tokio::time::sleep(HANG_FOR).await;
            ctl.close();
            return std::future::pending().await;
        }
        _ => {}
    }
    if !opts.latency.is_zero() {
        tokio::time::sleep(opts.latency).await;
    }
    if let Some(status) = opts.status {
        return injected(dialect, status);
    }
    if faults::roll(config.fail_rate) {
        return injected(dialect, config.fail_status);
    }

    let chunks = opts.stream_chunks;
    let forced_tool = opts.tool_call.as_deref();
    let call = Call {
        body: &body,
        content_type: head.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        deployment: None,
    };
    let output = match &endpoint {
        Endpoint::OpenAi(op) => openai_op(*op, &call, chunks, opts.usage),
        Endpoint::Azure { op, deployment } => {
            let deployment = Some(deployment.as_str());
            openai_op(*op, &Call { deployment, ..call }, chunks, opts.usage)
        }
        Endpoint::Store { path, .. } => {
            openai::store::serve(path, &head.method, &call, &list_query(&head.uri))
        }
        Endpoint::Anthropic => {
            anthropic::messages(&body, chunks, forced_tool).map_err(Rejection::from)
        }
        Endpoint::AnthropicCountTokens => anthropic::count_tokens(&body).map_err(Rejection::from),
        Endpoint::Gemini { model, method } => match method {
            GeminiMethod::Generate | GeminiMethod::Stream { .. } => {
                gemini::generate(&body, model, *method, chunks, forced_tool)
            }
            GeminiMethod::Embed | GeminiMethod::BatchEmbed => gemini::embed(&body, *method),
        }
        .map_err(Rejection::from),
        Endpoint::Bedrock { stream } => {
            bedrock::converse(&body, *stream, chunks, forced_tool).map_err(Rejection::from)
        }
        Endpoint::BedrockInvoke { model } => bedrock::invoke(&body, model).map_err(Rejection::from),
    };
    match output {
        Err(rejection) => rejected(dialect, &rejection),
        Ok(Output::Json(body)) => json(StatusCode::OK, body),
        Ok(Output::Raw { content_type, body }) => full(StatusCode::OK, content_type, body),
        Ok(Output::Stream(out)) => {
            let plan = StreamPlan::new(out, opts.stream_interval, opts.fail);
            if opts.framing != Framing::Chunked {
                if let Some(raw) = ctl.take_raw() {
                    stream::write_raw(raw, plan, opts.framing, ctl).await;
                    // The driver drops the connection; hyper must not answer.
                    return std::future::pending().await;
                }
            }
            streaming(plan.content_type, SseBody::new(plan, ctl.clone()))
        }
    }
}

fn openai_op(
    op: OpenAiOp,
    call: &Call<'_>,
    chunks: usize,
    reports_usage: bool,
) -> Result<Output, Rejection> {
    let Call {
        body, deployment, ..
    } = *call;
    let chat_style = match op {
        OpenAiOp::Models => Ok(Output::Json(Bytes::from_static(openai::MODELS_BODY))),
        OpenAiOp::Chat => openai::chat_completions(body, chunks, deployment, reports_usage),
        OpenAiOp::Completions => openai::completions(body, chunks, deployment, reports_usage),
        OpenAiOp::Embeddings => openai::embeddings(body, deployment),
        OpenAiOp::Responses => openai::responses(body),
        OpenAiOp::Transcriptions => return audio::transcription(call, Task::Transcribe),
        OpenAiOp::Translations => return audio::transcription(call, Task::Translate),
        OpenAiOp::Speech => return audio::speech(call),
        OpenAiOp::ImageGenerations => return images::generations(call),
        OpenAiOp::ImageEdits => return images::edits(call),
        OpenAiOp::Moderations => return moderations::moderations(call),
    };
    chat_style.map_err(Rejection::from)
}

/// Credentials and mandatory headers/parameters, checked the way each
/// provider does before it looks at the body; `Some` is the rejection.
fn admit(
    dialect: Dialect,
    headers: &HeaderMap,
    uri: &Uri,
    config: &Config,
) -> Option<Response<Body>> {
    let key = config.key.as_deref();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = || header(AUTHORIZATION.as_str()).and_then(|v| v.strip_prefix("Bearer "));
    match dialect {
        Dialect::OpenAi if bearer().is_some() && bearer() == config.rate_limited_key.as_deref() => {
            let mut resp = json(
                StatusCode::TOO_MANY_REQUESTS,
                openai::error_body(
                    "Rate limit reached for this key",
                    "rate_limit_error",
                    Some("rate_limit_exceeded"),
                ),
            );
            resp.headers_mut()
                .insert("retry-after", hyper::header::HeaderValue::from_static("30"));
            Some(resp)
        }
        Dialect::OpenAi => match key {
            Some(key) if bearer() != Some(key) => Some(json(
                StatusCode::UNAUTHORIZED,
                openai::error_body(
                    "Incorrect API key provided",
                    "authentication_error",
                    Some("invalid_api_key"),
                ),
            )),
            _ => None,
        },
        Dialect::Azure => {
            if query_param(uri, "api-version").is_none_or(|v| v.is_empty()) {
                return Some(json(
                    StatusCode::BAD_REQUEST,
                    azure::error_body("BadRequest", azure::MISSING_API_VERSION),
                ));
            }
            match key {
                // Entra ID clients send a bearer token instead of api-key.
                Some(key) if header("api-key") != Some(key) && bearer() != Some(key) => Some(json(
                    StatusCode::UNAUTHORIZED,
                    azure::error_body("401", azure::ACCESS_DENIED),
                )),
                _ => None,
            }
        }
        Dialect::Anthropic => {
            if let Some(key) = key {
                let reject = |msg| error(Dialect::Anthropic, StatusCode::UNAUTHORIZED, msg);
                // Current SDKs send the key as a bearer token instead.
                match header("x-api-key").or_else(bearer) {
                    None => return Some(reject("x-api-key header is required")),
                    Some(k) if k != key => return Some(reject("invalid x-api-key")),
                    Some(_) => {}
                }
            }
            if header("anthropic-version").is_none() {
                return Some(error(
                    Dialect::Anthropic,
                    StatusCode::BAD_REQUEST,
                    "anthropic-version: header is required",
                ));
            }
            None
        }
        Dialect::Gemini => {
            // No key required (None): admit.
            let key = key?;
            let given = header("x-goog-api-key")
                .map(str::to_owned)
                .or_else(|| query_param(uri, "key"));
            match given {
                None => Some(error(
                    Dialect::Gemini,
                    StatusCode::FORBIDDEN,
                    "Method doesn't allow unregistered callers (callers without established \
                     identity). Please use API Key or other form of API consumer identity to \
                     call this API.",
                )),
                Some(k) if k != key => Some(error(
                    Dialect::Gemini,
                    StatusCode::BAD_REQUEST,
                    "API key not valid. Please pass a valid API key.",
                )),
                Some(_) => None,
            }
        }
        Dialect::Bedrock => {
            let reject = |kind, msg| Some(aws_error(StatusCode::FORBIDDEN, kind, msg));
            let Some(auth) = header(AUTHORIZATION.as_str()) else {
                return reject(
                    "MissingAuthenticationTokenException",
                    "Missing Authentication Token",
                );
            };
            let Some(credential) = auth.strip_prefix("AWS4-HMAC-SHA256 Credential=") else {
                return reject(
                    "IncompleteSignatureException",
                    "Authorization header requires 'Credential' parameter and an \
                     AWS4-HMAC-SHA256 signature.",
                );
            };
            if header("x-amz-date").is_none() {
                return reject(
                    "IncompleteSignatureException",
                    "Authorization header requires existence of either a 'X-Amz-Date' or a \
                     'Date' header.",
                );
            }
            // The signature is not verified; `--require-key` names the
            // access key id (the first element of the credential scope).
            let access_key = credential.split('/').next().unwrap_or_default();
            match key {
                Some(key) if access_key != key => reject(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                ),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests;
