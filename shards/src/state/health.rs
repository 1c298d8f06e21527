//! Per-shard health of each provider: an EWMA of latency and error rate, and a circuit
//! breaker (closed → open after N consecutive failures or a high error ratio → half-open
//! probes after a pause → closed on success). Each shard learns on its own from its own
//! traffic, so nothing is shared; a provider that fails is cut off on every shard within a
//! few requests. Cost per request: a few float operations in a `Cell`.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::snapshot::BreakerPolicy;

/// Weight of the newest sample in the moving averages.
const EWMA_ALPHA: f64 = 0.2;
/// Size of the window the error ratio is counted over (in requests).
const RATIO_WINDOW: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen { probes_left: u32 },
}

impl BreakerState {
    /// 0 closed, 1 open, 2 half-open: the value exported as a metric.
    pub fn as_gauge(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open { .. } => 1,
            Self::HalfOpen { .. } => 2,
        }
    }
}

#[derive(Debug)]
pub struct Health {
    state: Cell<BreakerState>,
    consecutive_failures: Cell<u32>,
    window_requests: Cell<u32>,
    window_failures: Cell<u32>,
    ewma_latency_us: Cell<f64>,
    ewma_error: Cell<f64>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: Cell::new(BreakerState::Closed),
            consecutive_failures: Cell::new(0),
            window_requests: Cell::new(0),
            window_failures: Cell::new(0),
            ewma_latency_us: Cell::new(0.0),
            ewma_error: Cell::new(0.0),
        }
    }
}

impl Health {
    pub fn state(&self) -> BreakerState {
        self.state.get()
    }

    /// Whether a request may go to this provider now. While half-open this takes a probe.
    pub fn admit(&self, now: Instant, policy: &BreakerPolicy) -> bool {
        match self.state.get() {
            BreakerState::Closed => true,
            BreakerState::Open { until } if now >= until => {
                self.state.set(BreakerState::HalfOpen {
                    probes_left: policy.half_open_probes.saturating_sub(1),
                });
                true
            }
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { probes_left: 0 } => false,
            BreakerState::HalfOpen { probes_left } => {
                self.state.set(BreakerState::HalfOpen {
                    probes_left: probes_left - 1,
                });
                true
            }
        }
    }

    pub fn record_success(&self, latency: Duration) {
        self.sample(latency, false);
        self.consecutive_failures.set(0);
        if matches!(self.state.get(), BreakerState::HalfOpen { .. }) {
            self.state.set(BreakerState::Closed);
            self.window_requests.set(0);
            self.window_failures.set(0);
        }
    }

    /// Records a failure; returns true when it opened the circuit.
    pub fn record_failure(&self, latency: Duration, now: Instant, policy: &BreakerPolicy) -> bool {
        self.sample(latency, true);
        let consecutive = self.consecutive_failures.get() + 1;
        self.consecutive_failures.set(consecutive);
        let requests = self.window_requests.get();
        let ratio = f64::from(self.window_failures.get()) / f64::from(requests.max(1));
        let trip = match self.state.get() {
            BreakerState::HalfOpen { .. } => true,
            BreakerState::Open { .. } => false,
            BreakerState::Closed => {
                consecutive >= policy.consecutive_failures
                    || (requests >= policy.min_requests && ratio >= policy.error_ratio)
            }
        };
        if trip {
            self.state.set(BreakerState::Open {
                until: now + policy.open_for,
            });
            self.consecutive_failures.set(0);
            self.window_requests.set(0);
            self.window_failures.set(0);
        }
        trip
    }

    fn sample(&self, latency: Duration, failed: bool) {
        let us = latency.as_secs_f64() * 1e6;
        let lat = self.ewma_latency_us.get();
        self.ewma_latency_us.set(if lat == 0.0 {
            us
        } else {
            lat + EWMA_ALPHA * (us - lat)
        });
        let err = self.ewma_error.get();
        self.ewma_error
            .set(err + EWMA_ALPHA * (f64::from(u8::from(failed)) - err));
        // A tumbling window: halve the counts when full so old traffic fades.
        if self.window_requests.get() >= RATIO_WINDOW {
            self.window_requests.set(self.window_requests.get() / 2);
            self.window_failures.set(self.window_failures.get() / 2);
        }
        self.window_requests.set(self.window_requests.get() + 1);
        self.window_failures
            .set(self.window_failures.get() + u32::from(failed));
    }

    pub fn ewma_latency_us(&self) -> f64 {
        self.ewma_latency_us.get()
    }

    pub fn ewma_error_rate(&self) -> f64 {
        self.ewma_error.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            error_ratio: 0.5,
            min_requests: 10,
            open_for: Duration::from_secs(1),
            half_open_probes: 1,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_recovers_through_a_probe() {
        let h = Health::default();
        let p = policy();
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        assert!(!h.record_failure(ms, t0, &p));
        assert!(!h.record_failure(ms, t0, &p));
        assert!(h.record_failure(ms, t0, &p));
        assert!(!h.admit(t0, &p), "open");
        let later = t0 + Duration::from_secs(2);
        assert!(h.admit(later, &p), "first probe");
        assert!(!h.admit(later, &p), "only one probe");
        h.record_success(ms);
        assert_eq!(h.state(), BreakerState::Closed);
        assert!(h.admit(later, &p));
    }

    #[test]
    fn failed_probe_reopens() {
        let h = Health::default();
        let p = policy();
        let t0 = Instant::now();
        for _ in 0..3 {
            h.record_failure(Duration::ZERO, t0, &p);
        }
        let later = t0 + Duration::from_secs(2);
        assert!(h.admit(later, &p));
        assert!(h.record_failure(Duration::ZERO, later, &p));
        assert!(matches!(h.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn opens_on_error_ratio() {
        let h = Health::default();
        let p = policy();
        let t0 = Instant::now();
        let mut opened = false;
        for i in 0..20 {
            if i % 2 == 0 {
                h.record_success(Duration::ZERO);
            } else {
                opened |= h.record_failure(Duration::ZERO, t0, &p);
            }
        }
        assert!(opened, "50% errors over >= 10 requests opens the circuit");
        assert!(h.ewma_error_rate() > 0.2);
    }
}
