//! Whether and how long one request's answer is cached: the configuration's rules (per
//! model name, `provider/model` or `provider/*`), the virtual key's `cache_ttl_secs` set
//! through the admin API, and the request's own headers, in this order of strength:
//!
//! 1. a key with `cache_ttl_secs: 0` is never cached (its owner said so);
//! 2. `x-ringgate-cache: no-store` bypasses the cache; `no-cache` skips the lookup but
//!    stores the fresh answer;
//! 3. `x-ringgate-cache-ttl: N` opts the request in for `N` seconds (unless the
//!    configuration turned request opt-in off);
//! 4. the key's own `cache_ttl_secs`;
//! 5. the first configuration rule that names the model as the client wrote it, then its
//!    resolved `provider/model`, then `provider/*`.
//!
//! Every TTL is capped at `max_ttl`.

use std::time::Duration;

use crate::error::GatewayError;
use crate::names::NameMap;

/// Who may be served an answer another request caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheScope {
    /// Only the virtual key that asked (the default: no tenant sees another's answers).
    #[default]
    Key,
    /// Every key of the asking key's team (a key without a team: itself).
    Team,
    /// Everyone on the node or fleet.
    Global,
}

/// The cache settings requests are judged by (part of the configuration snapshot).
#[derive(Debug, Clone)]
pub struct CachePolicy {
    pub scope: CacheScope,
    pub max_ttl: Duration,
    /// `x-ringgate-cache-ttl` may opt a request in.
    pub request_opt_in: bool,
    /// A hit takes a request from the key's request limits (never tokens or budget).
    pub hits_count_requests: bool,
    /// Larger answers are not stored.
    pub max_entry_bytes: usize,
    /// Model name, `provider/model` or `provider/*` → TTL.
    pub rules: NameMap<Duration>,
    /// How long a shard waits for the fleet's shared tier before it calls a miss a miss.
    pub fleet_lookup_timeout: Duration,
    /// The semantic cache, when it is on.
    pub semantic: Option<SemanticPolicy>,
}

/// How a chat request whose exact key missed is matched with a similar one.
#[derive(Debug, Clone, Copy)]
pub struct SemanticPolicy {
    /// Least cosine similarity of the last user turns' embeddings for a hit.
    pub threshold: f32,
    /// How long a request waits for its embedding and the search before it is a miss.
    pub timeout: Duration,
}

/// What the cache does for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The cache plays no part (nothing turned it on); the response still says `bypass`.
    Bypass,
    /// Look up (unless `lookup` is false) and store a fresh answer for `ttl`.
    Use { lookup: bool, ttl: Duration },
}

/// The request's cache headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCacheHeaders {
    /// `x-ringgate-cache-ttl`.
    pub ttl_secs: Option<u64>,
    pub no_cache: bool,
    pub no_store: bool,
}

impl RequestCacheHeaders {
    /// Reads the two headers; a value they cannot hold is a 400 naming it.
    pub fn parse(
        cache: Option<&[u8]>,
        ttl: Option<&[u8]>,
    ) -> Result<RequestCacheHeaders, GatewayError> {
        let mut headers = RequestCacheHeaders::default();
        if let Some(value) = cache {
            for directive in value.split(|b| *b == b',') {
                match directive.trim_ascii() {
                    d if d.eq_ignore_ascii_case(b"no-cache") => headers.no_cache = true,
                    d if d.eq_ignore_ascii_case(b"no-store") => headers.no_store = true,
                    b"" => {}
                    other => {
                        return Err(GatewayError::InvalidRequest(format!(
                            "x-ringgate-cache: `{}` is not `no-cache` or `no-store`",
                            String::from_utf8_lossy(other)
                        )))
                    }
                }
            }
        }
        if let Some(value) = ttl {
            let secs = std::str::from_utf8(value.trim_ascii())
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    GatewayError::InvalidRequest(
                        "x-ringgate-cache-ttl must be a whole number of seconds".to_owned(),
                    )
                })?;
            headers.ttl_secs = Some(secs);
        }
        Ok(headers)
    }
}

/// The names a request's model goes by, for matching rules.
pub struct ModelNames<'a> {
    pub requested: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
}

impl CachePolicy {
    /// Decides for one request. `key_ttl_secs` is its virtual key's `cache_ttl_secs`.
    pub fn decide(
        &self,
        headers: RequestCacheHeaders,
        key_ttl_secs: Option<u64>,
        names: &ModelNames<'_>,
    ) -> Decision {
        if key_ttl_secs == Some(0) || headers.no_store {
            return Decision::Bypass;
        }
        let by_request = headers
            .ttl_secs
            .filter(|_| self.request_opt_in)
            .map(Duration::from_secs);
        let ttl = by_request
            .or(key_ttl_secs.map(Duration::from_secs))
            .or_else(|| self.rule(names));
        match ttl {
            Some(ttl) if !ttl.is_zero() => Decision::Use {
                lookup: !headers.no_cache,
                ttl: ttl.min(self.max_ttl),
            },
            _ => Decision::Bypass,
        }
    }

    fn rule(&self, names: &ModelNames<'_>) -> Option<Duration> {
        if self.rules.is_empty() {
            return None;
        }
        // The name as written first: the common case allocates nothing.
        if let Some(ttl) = self.rules.get(names.requested) {
            return Some(*ttl);
        }
        let exact = format!("{}/{}", names.provider, names.model);
        let any = format!("{}/*", names.provider);
        let found = [exact, any]
            .into_iter()
            .find_map(|name| self.rules.get(&name).copied());
        found
    }

    /// The scope's part of the key for a caller (`None`: no virtual key, one scope for all).
    pub fn scope_of(&self, key_id: Option<&str>, team_id: Option<&str>) -> String {
        match (self.scope, key_id) {
            (CacheScope::Global, _) | (_, None) => "global".to_owned(),
            (CacheScope::Team, Some(key)) => match team_id {
                Some(team) => format!("team:{team}"),
                None => format!("key:{key}"),
            },
            (CacheScope::Key, Some(key)) => format!("key:{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &[(&str, u64)]) -> CachePolicy {
        CachePolicy {
            scope: CacheScope::Key,
            max_ttl: Duration::from_secs(3600),
            request_opt_in: true,
            hits_count_requests: true,
            max_entry_bytes: 1 << 20,
            rules: rules
                .iter()
                .map(|(n, s)| ((*n).to_owned(), Duration::from_secs(*s)))
                .collect(),
            fleet_lookup_timeout: Duration::from_millis(50),
            semantic: None,
        }
    }

    const NAMES: ModelNames<'static> = ModelNames {
        requested: "fast",
        provider: "openai",
        model: "gpt-4o-mini",
    };

    fn secs(s: u64) -> Decision {
        Decision::Use {
            lookup: true,
            ttl: Duration::from_secs(s),
        }
    }

    #[test]
    fn rules_match_the_requested_name_then_provider_model_then_provider() {
        let none = RequestCacheHeaders::default();
        assert_eq!(policy(&[]).decide(none, None, &NAMES), Decision::Bypass);
        let p = policy(&[("openai/*", 30), ("openai/gpt-4o-mini", 20), ("fast", 10)]);
        assert_eq!(p.decide(none, None, &NAMES), secs(10));
        let p = policy(&[("openai/*", 30), ("openai/gpt-4o-mini", 20)]);
        assert_eq!(p.decide(none, None, &NAMES), secs(20));
        let p = policy(&[("openai/*", 30)]);
        assert_eq!(p.decide(none, None, &NAMES), secs(30));
    }

    #[test]
    fn headers_and_keys_override_rules_within_the_cap() {
        let p = policy(&[("fast", 10)]);
        let opt_in = RequestCacheHeaders {
            ttl_secs: Some(99_999),
            ..Default::default()
        };
        assert_eq!(p.decide(opt_in, None, &NAMES), secs(3600));
        assert_eq!(
            p.decide(RequestCacheHeaders::default(), Some(5), &NAMES),
            secs(5)
        );
        assert_eq!(p.decide(opt_in, Some(0), &NAMES), Decision::Bypass);
        let no_store = RequestCacheHeaders {
            no_store: true,
            ..Default::default()
        };
        assert_eq!(p.decide(no_store, None, &NAMES), Decision::Bypass);
        let no_cache = RequestCacheHeaders {
            no_cache: true,
            ..Default::default()
        };
        assert_eq!(
            p.decide(no_cache, None, &NAMES),
            Decision::Use {
                lookup: false,
                ttl: Duration::from_secs(10)
            }
        );
        let mut closed = policy(&[]);
        closed.request_opt_in = false;
        assert_eq!(closed.decide(opt_in, None, &NAMES), Decision::Bypass);
    }

    #[test]
    fn headers_are_read_strictly() {
        let h = RequestCacheHeaders::parse(Some(b" No-Cache "), Some(b"30")).unwrap();
        assert!(h.no_cache && !h.no_store);
        assert_eq!(h.ttl_secs, Some(30));
        assert!(RequestCacheHeaders::parse(Some(b"maybe"), None).is_err());
        assert!(RequestCacheHeaders::parse(None, Some(b"-1")).is_err());
        assert!(RequestCacheHeaders::parse(None, Some(b"1.5")).is_err());
    }

    #[test]
    fn scopes_keep_tenants_apart() {
        let mut p = policy(&[]);
        assert_eq!(p.scope_of(Some("k"), Some("t")), "key:k");
        assert_eq!(p.scope_of(None, None), "global");
        p.scope = CacheScope::Team;
        assert_eq!(p.scope_of(Some("k"), Some("t")), "team:t");
        assert_eq!(p.scope_of(Some("k"), None), "key:k");
        p.scope = CacheScope::Global;
        assert_eq!(p.scope_of(Some("k"), Some("t")), "global");
    }
}
