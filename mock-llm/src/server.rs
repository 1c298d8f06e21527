//! HTTP server: accept loop, per-connection hyper driver, routing, auth and
//! the order in which injected faults apply.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
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
use crate::openai::{self, Output};
use crate::stream::{self, SseBody, StreamPlan};

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
    /// Expected `Authorization` header value (`Bearer KEY`), if required.
    pub auth: Option<String>,
}

/// Serve until SIGTERM or SIGINT.
pub async fn run(listen: &str, config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "mock-llm listening on {addr}")?;
        out.flush()?;
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
    Ok(route(req, &config, &ctl).await)
}

#[derive(Clone, Copy)]
enum Endpoint {
    Models,
    Chat,
    Completions,
    Embeddings,
}

async fn route(req: Request<Incoming>, config: &Config, ctl: &Arc<ConnCtl>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/health" {
        return match *req.method() {
            Method::GET | Method::HEAD => {
                json(StatusCode::OK, Bytes::from_static(openai::HEALTH_BODY))
            }
            _ => method_not_allowed(&req, "GET"),
        };
    }
    if !path.starts_with("/v1/") {
        return not_found(&req);
    }
    if let Some(expected) = &config.auth {
        let ok = req
            .headers()
            .get(AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == expected.as_bytes());
        if !ok {
            return error(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided",
                Some("invalid_api_key"),
            );
        }
    }
    let (endpoint, allowed) = match path.trim_end_matches('/') {
        "/v1/models" => (Endpoint::Models, "GET"),
        "/v1/chat/completions" => (Endpoint::Chat, "POST"),
        "/v1/completions" => (Endpoint::Completions, "POST"),
        "/v1/embeddings" => (Endpoint::Embeddings, "POST"),
        _ => return not_found(&req),
    };
    if req.method().as_str() != allowed {
        return method_not_allowed(&req, allowed);
    }
    let opts = match RequestOptions::from_headers(req.headers(), &config.defaults) {
        Ok(opts) => opts,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg, None),
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable",
                None,
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
        return injected(status);
    }
    if faults::roll(config.fail_rate) {
        return injected(config.fail_status);
    }

    let output = match endpoint {
        Endpoint::Models => Ok(Output::Json(Bytes::from_static(openai::MODELS_BODY))),
        Endpoint::Chat => openai::chat_completions(&body, opts.stream_chunks),
        Endpoint::Completions => openai::completions(&body, opts.stream_chunks),
        Endpoint::Embeddings => openai::embeddings(&body),
    };
    match output {
        Err(msg) => error(StatusCode::BAD_REQUEST, &msg, None),
        Ok(Output::Json(body)) => json(StatusCode::OK, body),
        Ok(Output::Stream {
            events,
            content_events,
        }) => {
            let plan = StreamPlan::new(events, content_events, opts.stream_interval, opts.fail);
            if opts.framing == Framing::Close {
                if let Some(raw) = ctl.take_raw() {
                    stream::write_close_delimited(raw, plan, ctl).await;
                    // The driver drops the connection; hyper must not answer.
                    return std::future::pending().await;
                }
            }
            sse(SseBody::new(plan, ctl.clone()))
        }
    }
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut res = Response::new(Either::Left(Full::new(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn sse(body: SseBody) -> Response<Body> {
    let mut res = Response::new(Either::Right(body));
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

fn error(status: StatusCode, message: &str, code: Option<&str>) -> Response<Body> {
    let kind = faults::error_type(status.as_u16());
    let mut res = json(status, openai::error_body(message, kind, code));
    if status == StatusCode::TOO_MANY_REQUESTS {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

fn injected(status: u16) -> Response<Body> {
    // Statuses are validated to 400-599 when parsed.
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, &format!("mock injected {}", status.as_u16()), None)
}

fn not_found(req: &Request<Incoming>) -> Response<Body> {
    let msg = format!("Invalid URL ({} {})", req.method(), req.uri().path());
    // OpenAI reports unknown URLs as invalid requests, not missing objects.
    json(
        StatusCode::NOT_FOUND,
        openai::error_body(&msg, "invalid_request_error", None),
    )
}

fn method_not_allowed(req: &Request<Incoming>, allowed: &'static str) -> Response<Body> {
    let msg = format!("Method not allowed ({} {})", req.method(), req.uri().path());
    let mut res = error(StatusCode::METHOD_NOT_ALLOWED, &msg, None);
    res.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    res
}
