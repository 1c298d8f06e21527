//! Virtual-key helpers: generation, hashing and constant-time verification.
//!
//! Only the SHA-256 hex digest of a key is ever stored; the secret itself is
//! shown once at creation.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every generated key.
pub const KEY_PREFIX: &str = "rg-";
/// Number of random characters after [`KEY_PREFIX`].
pub const KEY_RANDOM_CHARS: usize = 40;
/// Length of the displayable prefix stored with a key.
pub const DISPLAY_PREFIX_CHARS: usize = 8;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A new random key: `rg-` followed by 40 URL-safe characters (240 bits).
///
/// # Panics
/// If the operating system's random source fails (it does not on Linux
/// once booted).
pub fn generate_key() -> String {
    let mut bytes = [0u8; KEY_RANDOM_CHARS];
    getrandom::getrandom(&mut bytes).expect("OS random source unavailable");
    let mut key = String::with_capacity(KEY_PREFIX.len() + KEY_RANDOM_CHARS);
    key.push_str(KEY_PREFIX);
    // 64 symbols: masking with 63 keeps the distribution uniform.
    key.extend(bytes.iter().map(|b| ALPHABET[usize::from(b & 63)] as char));
    key
}

/// Lower-case hex SHA-256 of a key.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    out
}

/// The first 8 characters of a key, safe to display.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_CHARS).collect()
}

/// Whether `presented` hashes to `stored_hash`, compared in constant time.
pub fn verify_key(presented: &str, stored_hash: &str) -> bool {
    let computed = hash_key(presented);
    let stored = stored_hash.to_ascii_lowercase();
    computed.as_bytes().ct_eq(stored.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_unique() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.starts_with("rg-"));
        assert!(a[3..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(key_prefix(&a), &a[..8]);
    }

    #[test]
    fn hash_matches_known_vector() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn verify_accepts_only_the_right_key() {
        let key = generate_key();
        let h = hash_key(&key);
        assert!(verify_key(&key, &h));
        assert!(verify_key(&key, &h.to_uppercase()));
        assert!(!verify_key(&generate_key(), &h));
        assert!(!verify_key(&key, ""));
        assert!(!verify_key(&key, &h[..63]));
    }
}
