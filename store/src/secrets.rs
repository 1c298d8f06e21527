//! Provider secrets at rest: AES-256-GCM with a key from the environment.
//!
//! Stored format: `v1:` + base64(nonce(12) || ciphertext || tag(16)), with a
//! fresh random nonce per encryption. Decryption with the wrong key or of a
//! tampered value fails with an error; it never yields garbage.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

const VERSION_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Errors from [`SecretBox`].
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable holding the key is not set.
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The key is not base64 or not 32 bytes.
    #[error("secret key must be 32 bytes, base64-encoded: {0}")]
    BadKey(String),
    /// The stored value is not in the `v1:` format.
    #[error("malformed encrypted secret")]
    Malformed,
    /// Authentication failed: wrong key or tampered ciphertext.
    #[error("secret could not be decrypted (wrong key or tampered data)")]
    Decrypt,
    /// The decrypted bytes are not UTF-8.
    #[error("decrypted secret is not UTF-8")]
    NotUtf8,
    /// Encryption failed or no randomness was available for the nonce.
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

/// Encrypts and decrypts provider secrets with one AES-256-GCM key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box using the given 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// A box from key bytes of any slice; fails unless exactly 32 bytes.
    pub fn from_slice(key: &[u8]) -> Result<Self, SecretError> {
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| SecretError::BadKey(format!("got {} bytes", key.len())))?;
        Ok(Self::new(key))
    }

    /// A box from a base64-encoded 32-byte key.
    pub fn from_base64(encoded: &str) -> Result<Self, SecretError> {
        let bytes = B64
            .decode(encoded.trim())
            .map_err(|e| SecretError::BadKey(e.to_string()))?;
        Self::from_slice(&bytes)
    }

    /// A box from the base64 key in environment variable `var`
    /// (conventionally `RINGGATE_SECRET_KEY`).
    pub fn from_env(var: &str) -> Result<Self, SecretError> {
        let value = std::env::var(var).map_err(|_| SecretError::MissingEnv(var.to_owned()))?;
        Self::from_base64(&value)
    }

    /// A random key, base64-encoded, suitable for `RINGGATE_SECRET_KEY`.
    pub fn generate_key_base64() -> Result<String, SecretError> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(|e| SecretError::Encrypt(e.to_string()))?;
        Ok(B64.encode(key))
    }

    /// Encrypts `plaintext` into the `v1:` stored format.
    pub fn encrypt(&self, plaintext: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| SecretError::Encrypt(e.to_string()))?;
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .map_err(|e| SecretError::Encrypt(e.to_string()))?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        Ok(format!("{VERSION_PREFIX}{}", B64.encode(blob)))
    }

    /// Decrypts a value produced by [`SecretBox::encrypt`].
    pub fn decrypt(&self, stored: &str) -> Result<String, SecretError> {
        let encoded = stored
            .strip_prefix(VERSION_PREFIX)
            .ok_or(SecretError::Malformed)?;
        let blob = B64.decode(encoded).map_err(|_| SecretError::Malformed)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(pt).map_err(|_| SecretError::NotUtf8)
    }
}

/// A display form of a secret for admin API responses: only the last 4
/// characters, after a short non-secret scheme prefix such as `sk-` when
/// present (`sk-…abcd`). Secrets shorter than 12 characters show nothing.
pub fn redact(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "…".to_owned();
    }
    let scheme: String = match chars.iter().position(|&c| c == '-') {
        Some(i) if i > 0 && i <= 3 && chars[..i].iter().all(|c| c.is_ascii_alphanumeric()) => {
            chars[..=i].iter().collect()
        }
        _ => String::new(),
    };
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{scheme}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(byte: u8) -> SecretBox {
        SecretBox::new(&[byte; 32])
    }

    #[test]
    fn roundtrip_with_random_nonces() {
        let b = sb(7);
        let a1 = b.encrypt("sk-live-secret").unwrap();
        let a2 = b.encrypt("sk-live-secret").unwrap();
        assert!(a1.starts_with("v1:"));
        assert_ne!(a1, a2, "nonce must differ per encryption");
        assert_eq!(b.decrypt(&a1).unwrap(), "sk-live-secret");
        assert_eq!(b.decrypt(&a2).unwrap(), "sk-live-secret");
        assert_eq!(b.decrypt(&b.encrypt("").unwrap()).unwrap(), "");
    }

    #[test]
    fn wrong_key_is_an_error() {
        let ct = sb(1).encrypt("hello").unwrap();
        assert!(matches!(sb(2).decrypt(&ct), Err(SecretError::Decrypt)));
    }

    #[test]
    fn tampering_is_detected() {
        let b = sb(3);
        let ct = b.encrypt("top secret value").unwrap();
        let mut blob = B64.decode(&ct[3..]).unwrap();
        for i in [0, NONCE_LEN, blob.len() - 1] {
            blob[i] ^= 1;
            let bad = format!("v1:{}", B64.encode(&blob));
            assert!(
                matches!(b.decrypt(&bad), Err(SecretError::Decrypt)),
                "byte {i}"
            );
            blob[i] ^= 1;
        }
        // Truncation and format errors.
        let short = format!("v1:{}", B64.encode(&blob[..NONCE_LEN + 3]));
        assert!(matches!(b.decrypt(&short), Err(SecretError::Malformed)));
        assert!(matches!(b.decrypt("plain"), Err(SecretError::Malformed)));
        assert!(matches!(b.decrypt("v1:!!!"), Err(SecretError::Malformed)));
    }

    #[test]
    fn key_parsing() {
        let k = SecretBox::generate_key_base64().unwrap();
        assert!(SecretBox::from_base64(&k).is_ok());
        assert!(matches!(
            SecretBox::from_base64("c2hvcnQ="),
            Err(SecretError::BadKey(_))
        ));
        assert!(matches!(
            SecretBox::from_base64("not base64!"),
            Err(SecretError::BadKey(_))
        ));
        assert!(matches!(
            SecretBox::from_env("RINGGATE_TEST_SURELY_UNSET_VAR"),
            Err(SecretError::MissingEnv(_))
        ));
        assert_eq!(format!("{:?}", sb(1)), "SecretBox(..)");
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("sk-abcdefghijklmnopWXYZ"), "sk-…WXYZ");
        assert_eq!(redact("abcdefghijklmnop1234"), "…1234");
        assert_eq!(redact("short"), "…");
        assert_eq!(redact("sk-ant-api03-zzzzzz9876"), "sk-…9876");
        assert_eq!(redact("verylongprefix-abcdefgh"), "…efgh");
    }
}
