//! The OpenAI APIs ringgate relays without converting them: audio (transcriptions,
//! translations, speech), images (generations, edits), moderations, files and batches. Only
//! providers that speak OpenAI's wire (OpenAI-compatible and Azure) serve them; a target of
//! another API family is refused with a 400 naming its provider (the next target may serve).
//! Each is governed like chat — authenticated, checked against the key's models, limited,
//! charged, logged — but charged by its own units ([`Metered`]).

use crate::http::request::Method;

/// One of the relayed OpenAI APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectApi {
    /// `POST /v1/audio/transcriptions` (multipart).
    Transcriptions,
    /// `POST /v1/audio/translations` (multipart).
    Translations,
    /// `POST /v1/audio/speech`: binary audio back, relayed as it arrives.
    Speech,
    /// `POST /v1/images/generations`.
    ImageGenerations,
    /// `POST /v1/images/edits` (multipart).
    ImageEdits,
    /// `POST /v1/moderations`.
    Moderations,
    /// `/v1/files` (upload, list), `/v1/files/{id}` (retrieve, delete),
    /// `/v1/files/{id}/content`.
    Files,
    /// `/v1/batches` (create, list), `/v1/batches/{id}`, `/v1/batches/{id}/cancel`.
    Batches,
}

/// How a request of a relayed API carries its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Multipart,
    /// GET and DELETE.
    Empty,
}

/// What a relayed API is charged by, besides any tokens its response reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metered {
    /// Nothing (moderations, files, batches).
    Free,
    /// The characters of the request's `input` (speech).
    Characters,
    /// Audio seconds or images, read from the response body.
    Response,
}

/// Why a path of a relayed API is not served.
#[derive(Debug, PartialEq, Eq)]
pub struct WrongMethod;

impl DirectApi {
    /// The relayed API at `path` for `method`: `None` when the path is none of theirs.
    pub fn route(method: Method, path: &[u8]) -> Option<Result<Self, WrongMethod>> {
        let post_only = |api| {
            Some(if method == Method::Post {
                Ok(api)
            } else {
                Err(WrongMethod)
            })
        };
        match path {
            b"/v1/audio/transcriptions" => return post_only(Self::Transcriptions),
            b"/v1/audio/translations" => return post_only(Self::Translations),
            b"/v1/audio/speech" => return post_only(Self::Speech),
            b"/v1/images/generations" => return post_only(Self::ImageGenerations),
            b"/v1/images/edits" => return post_only(Self::ImageEdits),
            b"/v1/moderations" => return post_only(Self::Moderations),
            _ => {}
        }
        let (api, rest) = if let Some(rest) = path.strip_prefix(b"/v1/files") {
            (Self::Files, rest)
        } else {
            (Self::Batches, path.strip_prefix(b"/v1/batches")?)
        };
        let allowed: &[Method] = match split_id(rest)? {
            (false, b"") => &[Method::Get, Method::Post],
            (true, b"") if api == Self::Files => &[Method::Get, Method::Delete],
            (true, b"") => &[Method::Get],
            (true, b"/content") if api == Self::Files => &[Method::Get],
            (true, b"/cancel") if api == Self::Batches => &[Method::Post],
            _ => return None,
        };
        Some(if allowed.contains(&method) {
            Ok(api)
        } else {
            Err(WrongMethod)
        })
    }

    /// How the request's body is read.
    pub fn body(self, method: Method) -> BodyKind {
        match (self, method) {
            (Self::Files | Self::Batches, Method::Get | Method::Delete) => BodyKind::Empty,
            (Self::Transcriptions | Self::Translations | Self::ImageEdits | Self::Files, _) => {
                BodyKind::Multipart
            }
            _ => BodyKind::Json,
        }
    }

    /// Whether the request names a model (files and batches do not: they go to a provider).
    pub fn names_model(self) -> bool {
        !matches!(self, Self::Files | Self::Batches)
    }

    /// The model OpenAI uses when the request names none.
    pub fn default_model(self) -> Option<&'static str> {
        match self {
            Self::Moderations => Some("omni-moderation-latest"),
            Self::ImageGenerations | Self::ImageEdits => Some("dall-e-2"),
            _ => None,
        }
    }

    pub fn metered(self) -> Metered {
        match self {
            Self::Speech => Metered::Characters,
            Self::Transcriptions
            | Self::Translations
            | Self::ImageGenerations
            | Self::ImageEdits => Metered::Response,
            Self::Moderations | Self::Files | Self::Batches => Metered::Free,
        }
    }

    /// Where Azure serves it, below the resource: per deployment (audio, images) or for the
    /// resource (files, batches). `None`: Azure has no such API (moderations: Azure filters
    /// content itself).
    pub fn azure_path(self, deployment: &str, openai_path: &str) -> Option<String> {
        match self {
            Self::Moderations => None,
            Self::Files | Self::Batches => Some(format!("/openai{openai_path}")),
            _ => Some(format!("/openai/deployments/{deployment}{openai_path}")),
        }
    }

    /// The API's name in errors, logs and spans: its path below `/v1`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Transcriptions => "audio/transcriptions",
            Self::Translations => "audio/translations",
            Self::Speech => "audio/speech",
            Self::ImageGenerations => "images/generations",
            Self::ImageEdits => "images/edits",
            Self::Moderations => "moderations",
            Self::Files => "files",
            Self::Batches => "batches",
        }
    }
}

/// `rest` after a collection's path: `(false, "")` for the collection itself, `(true, tail)`
/// for `/{id}{tail}`; `None` when it is no such path.
fn split_id(rest: &[u8]) -> Option<(bool, &[u8])> {
    if rest.is_empty() {
        return Some((false, rest));
    }
    let rest = rest.strip_prefix(b"/")?;
    let end = memchr::memchr(b'/', rest).unwrap_or(rest.len());
    (end > 0).then(|| (true, &rest[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_path_and_method() {
        let route = DirectApi::route;
        assert_eq!(
            route(Method::Post, b"/v1/audio/speech"),
            Some(Ok(DirectApi::Speech))
        );
        assert_eq!(
            route(Method::Get, b"/v1/audio/speech"),
            Some(Err(WrongMethod))
        );
        assert_eq!(route(Method::Get, b"/v1/files"), Some(Ok(DirectApi::Files)));
        assert_eq!(
            route(Method::Delete, b"/v1/files/file-1"),
            Some(Ok(DirectApi::Files))
        );
        assert_eq!(
            route(Method::Get, b"/v1/files/file-1/content"),
            Some(Ok(DirectApi::Files))
        );
        assert_eq!(
            route(Method::Post, b"/v1/files/file-1"),
            Some(Err(WrongMethod))
        );
        assert_eq!(
            route(Method::Post, b"/v1/batches/b_1/cancel"),
            Some(Ok(DirectApi::Batches))
        );
        assert_eq!(
            route(Method::Delete, b"/v1/batches/b_1"),
            Some(Err(WrongMethod))
        );
        assert_eq!(route(Method::Get, b"/v1/batches/b_1/content"), None);
        assert_eq!(route(Method::Get, b"/v1/files//content"), None);
        assert_eq!(route(Method::Get, b"/v1/filesx"), None);
        assert_eq!(route(Method::Post, b"/v1/chat/completions"), None);
    }

    #[test]
    fn bodies_and_meters() {
        assert_eq!(DirectApi::Files.body(Method::Post), BodyKind::Multipart);
        assert_eq!(DirectApi::Files.body(Method::Get), BodyKind::Empty);
        assert_eq!(DirectApi::Batches.body(Method::Post), BodyKind::Json);
        assert_eq!(
            DirectApi::Transcriptions.body(Method::Post),
            BodyKind::Multipart
        );
        assert!(!DirectApi::Batches.names_model());
        assert_eq!(DirectApi::Speech.metered(), Metered::Characters);
        assert_eq!(
            DirectApi::Speech
                .azure_path("tts", "/audio/speech")
                .as_deref(),
            Some("/openai/deployments/tts/audio/speech")
        );
        assert_eq!(
            DirectApi::Files.azure_path("x", "/files/f-1").as_deref(),
            Some("/openai/files/f-1")
        );
        assert_eq!(DirectApi::Moderations.azure_path("m", "/moderations"), None);
    }
}
