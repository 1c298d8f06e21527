//! The governance steps of one request: find the presented virtual key, check that it may be
//! used and may use the model, and estimate the tokens it will spend.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{GovSnapshot, KeyPolicy};
use crate::error::GatewayError;
use crate::http::request::{find_header, HeaderSpan};

/// The virtual key a request presents: `x-ringgate-key: <vk>`, `Authorization: Bearer <vk>`,
/// or `x-api-key: <vk>` (what Anthropic clients send).
pub fn presented_key<'b>(buf: &'b [u8], spans: &[HeaderSpan]) -> Option<&'b [u8]> {
    let header = |name: &str| find_header(buf, spans, name).map(<[u8]>::trim_ascii);
    header("x-ringgate-key")
        .or_else(|| {
            header("authorization").and_then(|v| {
                (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
                    .then(|| v[7..].trim_ascii())
            })
        })
        .or_else(|| header("x-api-key"))
        .filter(|k| !k.is_empty())
}

/// Finds the key's policy. Keys are stored and looked up only as SHA-256 hashes, so the
/// secret is never compared directly; the final hash comparison is constant-time.
/// SHA-256 of a presented credential, as keys are found by.
pub fn credential_hash(presented: &[u8]) -> [u8; 32] {
    Sha256::digest(presented).into()
}

/// Returns the accepted key's hash (its policy is `snapshot.keys[hash]`), or `None` for a
/// caller without a key.
pub fn authenticate(
    snapshot: &GovSnapshot,
    presented: Option<&[u8]>,
    node_credential: Option<&[u8; 32]>,
    now: u64,
) -> Result<Option<[u8; 32]>, GatewayError> {
    let Some(presented) = presented else {
        return if snapshot.require_key {
            Err(GatewayError::MissingKey)
        } else {
            Ok(None)
        };
    };
    let hash = credential_hash(presented);
    if node_credential.is_some_and(|own| digests_equal(own, &hash)) {
        return Ok(None);
    }
    let (stored, policy) = snapshot
        .keys
        .get_key_value(&hash)
        .ok_or(GatewayError::InvalidKey)?;
    if !digests_equal(stored, &hash) {
        return Err(GatewayError::InvalidKey);
    }
    if !policy.active {
        return Err(GatewayError::KeyNotUsable("inactive"));
    }
    if policy.expires_at.is_some_and(|t| now >= t) {
        return Err(GatewayError::KeyNotUsable("expired"));
    }
    Ok(Some(hash))
}

/// Compares two digests in constant time, a word at a time: `subtle`'s comparison of byte
/// arrays hides each of the 32 bytes from the optimiser (a volatile read each), which cost
/// as much as the key lookup itself; one hidden word does the same job.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let words = |d: &'_ [u8; 32]| {
        let mut w = [0u64; 4];
        for (word, bytes) in w.iter_mut().zip(d.chunks_exact(8)) {
            *word = u64::from_ne_bytes(bytes.try_into().unwrap_or_default());
        }
        w
    };
    let diff = words(a)
        .iter()
        .zip(words(b).iter())
        .fold(0u64, |acc, (x, y)| acc | (x ^ y));
    bool::from(diff.ct_eq(&0))
}

/// Whether the key may reach `model` at `provider` (asked for as `requested`).
pub fn allows(key: &KeyPolicy, provider: &str, model: &str, requested: &str) -> bool {
    let provider_ok = allows_provider(key, provider);
    let model_ok = key.allowed_models.is_empty()
        || key.allowed_models.iter().any(|m| {
            m == requested
                || m == model
                || m.strip_prefix(provider)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|rest| rest == model)
        });
    provider_ok && model_ok
}

/// Whether the key may reach `provider` at all.
pub fn allows_provider(key: &KeyPolicy, provider: &str) -> bool {
    key.allowed_providers.is_empty() || key.allowed_providers.iter().any(|p| p == provider)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::KeyTable;
    use crate::http::request::parse_request_head;
    use std::sync::Arc;

    fn policy(models: &[&str]) -> KeyPolicy {
        KeyPolicy {
            id: "k".into(),
            team_id: None,
            customer_id: None,
            allowed_providers: Vec::new(),
            allowed_models: models.iter().map(|m| (*m).to_owned()).collect(),
            expires_at: Some(100),
            active: true,
            limits: Vec::new(),
            cache_ttl_secs: None,
        }
    }

    #[test]
    fn digests_differing_in_any_bit_are_not_equal() {
        let a = credential_hash(b"rg-secret");
        assert!(digests_equal(&a, &a.clone()));
        for byte in 0..32 {
            for bit in 0..8 {
                let mut b = a;
                b[byte] ^= 1 << bit;
                assert!(!digests_equal(&a, &b), "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn authenticates_by_hash() {
        let mut keys = KeyTable::default();
        keys.insert(Sha256::digest(b"rg-secret").into(), Arc::new(policy(&[])));
        let snap = GovSnapshot {
            require_key: true,
            keys,
            ..Default::default()
        };
        assert!(authenticate(&snap, Some(b"rg-secret"), None, 50)
            .unwrap()
            .is_some());
        assert!(matches!(
            authenticate(&snap, Some(b"rg-other"), None, 50),
            Err(GatewayError::InvalidKey)
        ));
        assert!(matches!(
            authenticate(&snap, None, None, 50),
            Err(GatewayError::MissingKey)
        ));
        assert!(matches!(
            authenticate(&snap, Some(b"rg-secret"), None, 100),
            Err(GatewayError::KeyNotUsable("expired"))
        ));
        // The node's own credential passes as a caller without a key; nobody else's does.
        let own: [u8; 32] = Sha256::digest(b"rg-node").into();
        assert!(authenticate(&snap, Some(b"rg-node"), Some(&own), 50)
            .unwrap()
            .is_none());
        assert!(authenticate(&snap, Some(b"rg-node"), None, 50).is_err());
    }

    #[test]
    fn model_lists() {
        let k = policy(&["openai/gpt-4o-mini", "fast"]);
        assert!(allows(&k, "openai", "gpt-4o-mini", "openai/gpt-4o-mini"));
        assert!(allows(&k, "openai", "gpt-4o-mini", "fast"));
        assert!(!allows(&k, "openai", "gpt-4o", "openai/gpt-4o"));
        assert!(allows(&policy(&[]), "any", "thing", "any/thing"));
    }

    #[test]
    fn finds_keys_in_any_header() {
        let buf = b"Authorization: Bearer rg-abc";
        let spans = [HeaderSpan {
            name: 0..13,
            value: 15..28,
        }];
        assert_eq!(presented_key(buf, &spans), Some(&b"rg-abc"[..]));
    }

    /// `x-ringgate-key` first, then a bearer `Authorization`, then `x-api-key`, whatever
    /// their order; the first of a repeated name; an empty own key is no key.
    #[test]
    fn keys_are_taken_by_precedence() {
        let key = |headers: &[(&str, &str)]| {
            let mut head = String::from("POST / HTTP/1.1\r\nhost: x\r\n");
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let mut spans = Vec::new();
            parse_request_head(head.as_bytes(), 8192, &mut spans).unwrap();
            presented_key(head.as_bytes(), &spans).map(|k| String::from_utf8(k.to_vec()).unwrap())
        };
        let all = [
            ("X-Api-Key", "api"),
            ("authorization", "Bearer bear"),
            ("X-RINGGATE-KEY", " own "),
        ];
        assert_eq!(key(&all).as_deref(), Some("own"));
        assert_eq!(key(&all[..2]).as_deref(), Some("bear"));
        assert_eq!(
            key(&[all[0], ("authorization", "Basic x")]).as_deref(),
            Some("api")
        );
        assert_eq!(
            key(&[("x-api-key", "first"), ("x-api-key", "second")]).as_deref(),
            Some("first")
        );
        assert_eq!(key(&[("x-ringgate-key", ""), all[0]]), None);
        assert_eq!(
            key(&[("content-type", "x"), ("authorization", "Bearer ")]),
            None
        );
    }
}
