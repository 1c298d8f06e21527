//! Admin replies: `(status, JSON)` pairs, and [`ApiError`] — every failure rendered once in
//! OpenAI's error shape, with the store's errors mapped to their statuses.

use hyper::StatusCode;
use serde_json::{json, Value};

use super::MAX_BODY_BYTES;

pub(super) type Reply = (StatusCode, Value);

pub(super) fn ok(v: impl serde::Serialize) -> Result<Reply, ApiError> {
    Ok((StatusCode::OK, to_json(v)?))
}

pub(super) fn created(v: impl serde::Serialize) -> Result<Reply, ApiError> {
    Ok((StatusCode::CREATED, to_json(v)?))
}

pub(super) fn to_json(v: impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| {
        tracing::error!(error = %e, "admin: serializing a response failed");
        ApiError::internal()
    })
}

pub(super) fn list_of<T: serde::Serialize>(items: Vec<T>) -> Result<Reply, ApiError> {
    ok(json!({ "object": "list", "data": to_json(items)? }))
}

/// An error answered in OpenAI's shape.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
    param: Option<String>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
        }
    }

    pub(super) fn invalid(
        message: impl Into<String>,
        param: Option<String>,
        code: &'static str,
    ) -> Self {
        Self {
            param,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                message,
            )
        }
    }

    pub(super) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_admin_token",
            "missing or invalid admin token (send Authorization: Bearer <admin token>)",
        )
    }

    pub(super) fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("request body exceeds {MAX_BODY_BYTES} bytes"),
        )
    }

    pub(super) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            "internal error (see the gateway's log)",
        )
    }

    /// Names `param` on an invalid-reference error (the store cannot tell which field).
    pub(super) fn reference_param(mut self, param: &str) -> Self {
        if self.code == "invalid_reference" {
            self.param = Some(param.to_owned());
        }
        self
    }

    pub(super) fn reply(self) -> Reply {
        (
            self.status,
            json!({ "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }}),
        )
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        use store::Error as E;
        match e {
            E::NotFound { .. } => Self::new(
                StatusCode::NOT_FOUND,
                "not_found_error",
                "not_found",
                e.to_string(),
            ),
            E::Conflict(_) => Self::new(
                StatusCode::CONFLICT,
                "conflict_error",
                "conflict",
                e.to_string(),
            ),
            E::InUse { .. } => Self::new(
                StatusCode::CONFLICT,
                "conflict_error",
                "in_use",
                format!("{e}: delete or detach its children first"),
            ),
            E::InvalidReference(_) => Self::invalid(e.to_string(), None, "invalid_reference"),
            E::OutOfRange(field) => Self::invalid(
                format!("{field} is too large (at most {})", i64::MAX),
                Some(field.to_owned()),
                "invalid_value",
            ),
            E::NoSecretKey => {
                tracing::error!(error = %e, "admin: provider secret needs a secret key");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "secret_key_missing",
                    e.to_string(),
                )
            }
            unavailable if unavailable.is_unavailable() => {
                tracing::warn!(error = %unavailable, "admin: the store cannot be reached");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "store_unavailable",
                    "the store cannot be reached; nothing was changed: retry once it is back"
                        .to_owned(),
                )
            }
            other => {
                tracing::error!(error = %other, "admin: store error");
                Self::internal()
            }
        }
    }
}
