//! The models routes, answered by the shard itself: `GET /v1/models`, `/v1/models/{id}`,
//! `/anthropic/v1/models` and `/anthropic/v1/models/{id}`. The caller is authenticated like
//! chat (when governance is on) and sees only the models its key may use. The listing is
//! built from the coordinator's catalog (one `ArcSwap` load) per request: these routes are
//! called once per client start, not per completion, so nothing is cached.

use crate::catalog::render::{self, Shape};
use crate::catalog::{self, Listed};
use crate::clock;
use crate::dialect::Inbound;
use crate::error::GatewayError;
use crate::governance::request;
use crate::path::conn::ClientConn;
use crate::path::context::Scope;

/// A models request: which API's shape, and the one model asked for, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct ModelsRequest {
    pub shape: Shape,
    /// Percent-decoded; may contain `/` (`provider/model`).
    pub id: Option<String>,
}

impl ModelsRequest {
    /// The models request at `path`, if it is one.
    pub fn at(path: &[u8]) -> Option<Self> {
        let (shape, rest) = if let Some(rest) = path.strip_prefix(b"/v1/models") {
            (Shape::OpenAi, rest)
        } else {
            (
                Shape::Anthropic,
                path.strip_prefix(b"/anthropic/v1/models")?,
            )
        };
        let id = match rest {
            [] => None,
            [b'/', id @ ..] if !id.is_empty() => {
                Some(String::from_utf8_lossy(&translate::percent::decode(id)).into_owned())
            }
            _ => return None,
        };
        Some(Self { shape, id })
    }

    /// The client API whose error shape a refusal takes.
    pub fn inbound(&self) -> Inbound {
        match self.shape {
            Shape::OpenAi => Inbound::Chat,
            Shape::Anthropic => Inbound::AnthropicMessages,
        }
    }

    /// The response body: the listing, or the one model (404 when the key may not see it
    /// or no provider offers it).
    pub fn answer(&self, scope: Scope<'_>, conn: &ClientConn) -> Result<Vec<u8>, GatewayError> {
        let key = caller(scope, conn)?;
        let catalog = scope.shard.node.catalog.load();
        let listed = catalog::for_snapshot(&catalog, scope.snapshot, key.as_deref());
        match &self.id {
            None => Ok(render::list(self.shape, &listed)),
            Some(id) => listed
                .iter()
                .find(|m: &&Listed<'_>| &m.id == id)
                .map(|m| render::one(self.shape, m))
                .ok_or_else(|| GatewayError::ModelNotFound(id.clone())),
        }
    }
}

/// The caller's key policy: `None` without governance or without a required key.
fn caller(
    scope: Scope<'_>,
    conn: &ClientConn,
) -> Result<Option<std::sync::Arc<crate::governance::KeyPolicy>>, GatewayError> {
    let Some(gov) = scope.shard.gov.as_deref() else {
        return Ok(None);
    };
    let snapshot = gov.snapshot.load();
    let key = request::authenticate(
        &snapshot,
        request::presented_key(&conn.inbuf, &conn.spans),
        gov.node_credential.as_ref(),
        clock::unix_now(),
    )?;
    // A listing, not the request path: the policy may be held by its `Arc`.
    Ok(key.and_then(|hash| snapshot.keys.get(&hash).cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let at = |p: &str| ModelsRequest::at(p.as_bytes());
        assert_eq!(
            at("/v1/models"),
            Some(ModelsRequest {
                shape: Shape::OpenAi,
                id: None
            })
        );
        assert_eq!(
            at("/v1/models/oa/gpt-4o").and_then(|r| r.id),
            Some("oa/gpt-4o".into())
        );
        assert_eq!(
            at("/anthropic/v1/models/an%2Fclaude%zz").unwrap(),
            ModelsRequest {
                shape: Shape::Anthropic,
                id: Some("an/claude%zz".into())
            }
        );
        assert_eq!(at("/v1/models/"), None);
        assert_eq!(at("/v1/modelsx"), None);
        assert_eq!(at("/v1/chat/completions"), None);
    }
}
