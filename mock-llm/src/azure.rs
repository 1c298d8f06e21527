//! Azure OpenAI dialect (`/openai/deployments/{deployment}/...`): the
//! request and response bodies are the OpenAI mode's (see [`crate::openai`])
//! with the deployment as the model; only the gateway-level errors (key,
//! `api-version`) have Azure's own `{"error":{"code","message"}}` shape.

use bytes::Bytes;
use serde_json::json;

use crate::reply::to_bytes;

pub const ACCESS_DENIED: &str = "Access denied due to invalid subscription key or wrong API \
     endpoint. Make sure to provide a valid key for an active subscription and use a correct \
     regional API endpoint for your resource.";

pub const MISSING_API_VERSION: &str = "Missing required query parameter: api-version";

/// `{"error":{"code":..,"message":..}}`.
pub fn error_body(code: &str, message: &str) -> Bytes {
    to_bytes(&json!({"error": {"code": code, "message": message}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shape() {
        let v: serde_json::Value = serde_json::from_slice(&error_body("401", "no")).unwrap();
        assert_eq!(v, json!({"error": {"code": "401", "message": "no"}}));
    }
}
