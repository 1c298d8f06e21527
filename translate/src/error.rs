//! The one error type of the translation layer: whose fault a failed translation is.

/// Why a translation failed. The variant says whose fault it is, and so which HTTP status the
/// gateway answers with (see [`TranslateError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The client's request can't be expressed for this provider (or is malformed): HTTP 400.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The provider sent something we can't read (bad JSON, bad CRC, truncated stream): HTTP 502.
    #[error("unreadable upstream payload: {0}")]
    UpstreamPayload(String),
}

impl TranslateError {
    /// The HTTP status the gateway should answer with: 400 or 502.
    pub fn status(&self) -> u16 {
        match self {
            TranslateError::InvalidRequest(_) => 400,
            TranslateError::UpstreamPayload(_) => 502,
        }
    }

    /// The message alone, without the variant prefix.
    pub fn message(&self) -> &str {
        match self {
            TranslateError::InvalidRequest(m) | TranslateError::UpstreamPayload(m) => m,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        TranslateError::InvalidRequest(msg.into())
    }

    pub(crate) fn upstream(msg: impl Into<String>) -> Self {
        TranslateError::UpstreamPayload(msg.into())
    }

    /// What a stream translator's `finish` returns after the upstream sent an error event.
    pub(crate) fn upstream_error_event(msg: &str) -> Self {
        TranslateError::upstream(format!("upstream error event: {msg}"))
    }

    /// What a stream translator's `finish` returns when the upstream body ended before the
    /// stream's proper end.
    pub(crate) fn stream_ended_early() -> Self {
        TranslateError::upstream("stream ended early")
    }
}

/// Shorthand used across the crate.
pub type Result<T> = std::result::Result<T, TranslateError>;
