//! The routing table: which endpoint (and dialect) a URL names, and the path and query
//! decoding it needs. Methods are checked by the server against [`Endpoint::allowed`].

use http::Uri;

use crate::gemini::Method as GeminiMethod;
use crate::openai::store::{ListQuery, StorePath};

/// The provider API a request speaks, which decides auth and error shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
}

/// OpenAI-shaped operations (those of [`OpenAiOp::per_model`] also served under Azure
/// deployments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpenAiOp {
    Models,
    Chat,
    Completions,
    Embeddings,
    /// OpenAI's Responses API (non-streaming), as OpenAI itself serves it.
    Responses,
    Transcriptions,
    Translations,
    Speech,
    ImageGenerations,
    ImageEdits,
    /// OpenAI only: Azure has no moderations endpoint.
    Moderations,
}

impl OpenAiOp {
    /// The operations under `/v1/` that Azure also serves under a deployment, by the rest of
    /// the path.
    fn per_model(rest: &str) -> Option<Self> {
        Some(match rest {
            "chat/completions" => OpenAiOp::Chat,
            "completions" => OpenAiOp::Completions,
            "embeddings" => OpenAiOp::Embeddings,
            "audio/transcriptions" => OpenAiOp::Transcriptions,
            "audio/translations" => OpenAiOp::Translations,
            "audio/speech" => OpenAiOp::Speech,
            "images/generations" => OpenAiOp::ImageGenerations,
            "images/edits" => OpenAiOp::ImageEdits,
            _ => return None,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    OpenAi(OpenAiOp),
    Azure {
        op: OpenAiOp,
        deployment: String,
    },
    Anthropic,
    /// `POST /v1/messages/count_tokens`.
    AnthropicCountTokens,
    /// Files and batches, per OpenAI account or per Azure resource.
    Store {
        dialect: Dialect,
        path: StorePath,
    },
    Gemini {
        model: String,
        method: GeminiMethod,
    },
    Bedrock {
        stream: bool,
    },
    /// `InvokeModel` on an embedding model; `model` is percent-decoded.
    BedrockInvoke {
        model: String,
    },
}

impl Endpoint {
    pub(super) fn dialect(&self) -> Dialect {
        match self {
            Endpoint::OpenAi(_) => Dialect::OpenAi,
            Endpoint::Azure { .. } => Dialect::Azure,
            Endpoint::Anthropic | Endpoint::AnthropicCountTokens => Dialect::Anthropic,
            Endpoint::Store { dialect, .. } => *dialect,
            Endpoint::Gemini { .. } => Dialect::Gemini,
            Endpoint::Bedrock { .. } | Endpoint::BedrockInvoke { .. } => Dialect::Bedrock,
        }
    }

    /// The methods served, as the `Allow` header lists them.
    pub(super) fn allowed(&self) -> &'static str {
        match self {
            Endpoint::OpenAi(OpenAiOp::Models) => "GET",
            Endpoint::Store { path, .. } => path.allowed(),
            _ => "POST",
        }
    }
}

/// Map a URL to its endpoint; an unknown URL gives the dialect whose 404
/// shape to answer with.
pub(super) fn resolve(uri: &Uri) -> Result<Endpoint, Dialect> {
    let path = uri.path();
    let trimmed = path.trim_end_matches('/');
    let anthropic = trimmed.strip_prefix("/anthropic").unwrap_or(trimmed);
    match anthropic {
        "/v1/messages" => return Ok(Endpoint::Anthropic),
        "/v1/messages/count_tokens" => return Ok(Endpoint::AnthropicCountTokens),
        _ => {}
    }
    if path.starts_with("/anthropic/") {
        return Err(Dialect::Anthropic);
    }
    // Gemini: /v1beta/models/{model}:{method} (also /v1/models/...:method).
    let gemini_rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/").filter(|r| r.contains(':')));
    if let Some(rest) = gemini_rest {
        let (model, method) = rest.rsplit_once(':').ok_or(Dialect::Gemini)?;
        let sse = query_param(uri, "alt").as_deref() == Some("sse");
        let method = GeminiMethod::parse(method, sse).ok_or(Dialect::Gemini)?;
        let model = path_name(model, Dialect::Gemini)?;
        return Ok(Endpoint::Gemini { model, method });
    }
    if path.starts_with("/v1beta/") {
        return Err(Dialect::Gemini);
    }
    if let Some(rest) = path.strip_prefix("/model/") {
        let (model, op) = rest.rsplit_once('/').ok_or(Dialect::Bedrock)?;
        if model.is_empty() {
            return Err(Dialect::Bedrock);
        }
        let stream = match op {
            "converse" => false,
            "converse-stream" => true,
            "invoke" => {
                return Ok(Endpoint::BedrockInvoke {
                    model: percent_decode(model),
                })
            }
            _ => return Err(Dialect::Bedrock),
        };
        return Ok(Endpoint::Bedrock { stream });
    }
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, op) = rest.split_once('/').ok_or(Dialect::Azure)?;
        let op = OpenAiOp::per_model(op.trim_end_matches('/')).ok_or(Dialect::Azure)?;
        let deployment = path_name(deployment, Dialect::Azure)?;
        return Ok(Endpoint::Azure { op, deployment });
    }
    if let Some(rest) = trimmed.strip_prefix("/openai/") {
        let path = StorePath::parse(rest).ok_or(Dialect::Azure)?;
        return Ok(Endpoint::Store {
            dialect: Dialect::Azure,
            path,
        });
    }
    let rest = trimmed.strip_prefix("/v1/").ok_or(Dialect::OpenAi)?;
    let op = match rest {
        "models" => OpenAiOp::Models,
        "responses" => OpenAiOp::Responses,
        "moderations" => OpenAiOp::Moderations,
        _ => match OpenAiOp::per_model(rest) {
            Some(op) => op,
            None => {
                let path = StorePath::parse(rest).ok_or(Dialect::OpenAi)?;
                return Ok(Endpoint::Store {
                    dialect: Dialect::OpenAi,
                    path,
                });
            }
        },
    };
    Ok(Endpoint::OpenAi(op))
}

/// The paging and filtering parameters of a files or batches list; values that do not
/// parse are ignored, as they change nothing the mock has to get right.
pub(super) fn list_query(uri: &Uri) -> ListQuery {
    ListQuery {
        purpose: query_param(uri, "purpose"),
        limit: query_param(uri, "limit").and_then(|l| l.parse().ok()),
        after: query_param(uri, "after"),
        newest_first: query_param(uri, "order").as_deref() == Some("desc"),
    }
}

/// Value of a query parameter, percent-decoded (`+` as space).
pub(super) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(&v.replace('+', " ")))
    })
}

/// A model or deployment name from the path, percent-decoded; an empty one is an unknown URL
/// of `dialect`.
fn path_name(raw: &str, dialect: Dialect) -> Result<String, Dialect> {
    let name = percent_decode(raw);
    if name.is_empty() {
        return Err(dialect);
    }
    Ok(name)
}

/// Decode `%XX` escapes; invalid escapes and non-UTF-8 results are kept as
/// they are (lossily), which is enough to echo names back.
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
