//! Choosing an API key: weighted random among a provider's keys that may serve the model
//! and are not cooling down. A key that answered 429 or 401 cools down on this shard
//! (for `Retry-After` when given) and the request moves to another key. State is per shard:
//! each shard learns of a bad key from its own traffic, at the cost of at most one failed
//! attempt per shard per cooldown. Also the shard's small, fast PRNG.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use crate::snapshot::ApiKey;

/// Cooldown after a 401 (or 403): long, since a revoked key does not come back by itself.
pub const AUTH_FAILURE_COOLDOWN: Duration = Duration::from_secs(60);
/// Cooldown after a 429 without `Retry-After`.
pub const RATE_LIMIT_COOLDOWN: Duration = Duration::from_secs(5);

/// xorshift64*: good enough for load balancing and jitter, one multiply per draw.
#[derive(Debug)]
pub struct Rng(Cell<u64>);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(Cell::new(seed | 1))
    }

    pub fn next_u64(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Every key of a provider that may serve the model was tried already for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoUsableKey;

/// Per-shard cooldowns of one provider's keys.
/// Sized on demand: a provider's key list can change when its configuration is reloaded.
#[derive(Debug, Default)]
pub struct KeyStates {
    cooldown_until: RefCell<Vec<Option<Instant>>>,
}

impl KeyStates {
    pub fn new(keys: usize) -> Self {
        Self {
            cooldown_until: RefCell::new(vec![None; keys]),
        }
    }

    pub fn cool_down(&self, key: usize, until: Instant) {
        let mut all = self.cooldown_until.borrow_mut();
        if all.len() <= key {
            all.resize(key + 1, None);
        }
        all[key] = Some(until);
    }

    fn cooling_until(&self, key: usize) -> Option<Instant> {
        self.cooldown_until.borrow().get(key).copied().flatten()
    }

    fn available(&self, key: usize, now: Instant) -> bool {
        self.cooling_until(key).is_none_or(|until| now >= until)
    }

    /// Picks a key for `model` by weight among the keys not tried yet for this request:
    /// those not cooling down first; when every one is cooling down, the one whose cooldown
    /// ends soonest (cooldowns steer traffic, they never refuse it on their own).
    /// `Ok(None)`: the provider has no keys at all (none are sent).
    /// `Err(NoUsableKey)`: every key that may serve the model was tried already.
    pub fn pick(
        &self,
        keys: &[ApiKey],
        model: &str,
        tried: u64,
        now: Instant,
        rng: &Rng,
    ) -> Result<Option<usize>, NoUsableKey> {
        if keys.is_empty() {
            return Ok(None);
        }
        let candidate = |i: usize, k: &ApiKey| {
            tried & (1 << (i % 64)) == 0
                && (k.models.is_empty() || k.models.iter().any(|m| m == model))
        };
        let total: u64 = keys
            .iter()
            .enumerate()
            .filter(|(i, k)| candidate(*i, k) && self.available(*i, now))
            .map(|(_, k)| u64::from(k.weight))
            .sum();
        if total == 0 {
            // Everything left is cooling down: the one that recovers first.
            return keys
                .iter()
                .enumerate()
                .filter(|(i, k)| candidate(*i, k))
                .min_by_key(|(i, _)| self.cooling_until(*i))
                .map(|(i, _)| Some(i))
                .ok_or(NoUsableKey);
        }
        let mut point = rng.below(total);
        for (i, k) in keys.iter().enumerate() {
            if !candidate(i, k) || !self.available(i, now) {
                continue;
            }
            let w = u64::from(k.weight);
            if point < w {
                return Ok(Some(i));
            }
            point -= w;
        }
        Err(NoUsableKey)
    }
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, initial * 2^attempt)]`.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, rng: &Rng) -> Duration {
    let cap = initial
        .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .min(max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.below(nanos + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(weight: u32, models: &[&str]) -> ApiKey {
        ApiKey {
            header_line: Vec::new(),
            weight,
            models: models.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    #[test]
    fn weights_are_respected() {
        let keys = [key(3, &[]), key(1, &[])];
        let states = KeyStates::new(2);
        let rng = Rng::new(7);
        let now = Instant::now();
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[states.pick(&keys, "m", 0, now, &rng).unwrap().unwrap()] += 1;
        }
        let share = f64::from(counts[0]) / 40_000.0;
        assert!((0.72..0.78).contains(&share), "{counts:?}");
    }

    #[test]
    fn cooling_keys_come_last_tried_and_model_restricted_keys_never() {
        let keys = [key(1, &[]), key(1, &["only-this"]), key(1, &[])];
        let states = KeyStates::new(3);
        let rng = Rng::new(1);
        let now = Instant::now();
        states.cool_down(0, now + Duration::from_secs(5));
        for _ in 0..100 {
            assert_eq!(states.pick(&keys, "m", 0, now, &rng), Ok(Some(2)));
        }
        // Key 2 tried, key 0 cooling: the cooling key is still used rather than refusing.
        assert_eq!(states.pick(&keys, "m", 1 << 2, now, &rng), Ok(Some(0)));
        assert_eq!(
            states.pick(&keys, "m", 1 | 1 << 2, now, &rng),
            Err(NoUsableKey)
        );
        assert_eq!(
            states.pick(&keys, "only-this", 1 << 2, now, &rng),
            Ok(Some(1))
        );
        assert_eq!(states.pick(&[], "m", 0, now, &rng), Ok(None));
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let rng = Rng::new(3);
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 0..40 {
            let d = backoff(attempt, initial, max, &rng);
            assert!(d <= max);
            assert!(d <= initial * 2u32.pow(attempt.min(10)));
        }
        assert_eq!(backoff(3, Duration::ZERO, max, &rng), Duration::ZERO);
    }
}
