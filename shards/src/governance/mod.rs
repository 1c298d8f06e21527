//! Governance on the request path: who is calling (virtual keys), what they may use, and
//! whether their limits and budgets — and their team's and customer's — admit one more
//! request. The coordinator builds the [`GovSnapshot`] from the store and publishes it through
//! an `ArcSwap`; shards read it per request without a lock. Limits are enforced with per-shard
//! leases ([`lease`]); usage goes back to the coordinator as events on a bounded channel.
//!
//! Hot-path cost when enabled: one SHA-256 of the presented key, one hash lookup, and one
//! compare-and-swap per limit on this shard's own cache line.

pub mod admit;
pub mod lease;
pub mod prices;
pub mod request;
pub mod usage;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock::{civil_from_days, days_from_civil};
use lease::Lease;
pub use prices::{Price, Prices};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Minute,
    Hour,
    Day,
}

impl Window {
    pub fn seconds(self) -> u64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Requests(Window),
    Tokens(Window),
    /// Nano-dollars per period.
    Budget(Period),
}

impl LimitKind {
    /// The window or period `now` falls in, as a lease epoch.
    pub fn epoch(self, now: u64) -> u32 {
        let days = (now / 86_400) as i64;
        let value = match self {
            Self::Requests(w) | Self::Tokens(w) => now / w.seconds(),
            Self::Budget(Period::Daily) => days as u64,
            // 1970-01-01 was a Thursday; weeks start on Monday.
            Self::Budget(Period::Weekly) => ((days + 3) / 7) as u64,
            Self::Budget(Period::Monthly) => {
                let (y, m, _) = civil_from_days(days);
                (y * 12 + i64::from(m)) as u64
            }
            Self::Budget(Period::Never) => 0,
        };
        (value & 0xFF_FFFF) as u32
    }

    /// Unix time at which the current window or period ends (`None`: never).
    pub fn resets_at(self, now: u64) -> Option<u64> {
        let days = (now / 86_400) as i64;
        Some(match self {
            Self::Requests(w) | Self::Tokens(w) => (now / w.seconds() + 1) * w.seconds(),
            Self::Budget(Period::Daily) => (days as u64 + 1) * 86_400,
            Self::Budget(Period::Weekly) => {
                let monday = days - (days + 3).rem_euclid(7);
                (monday as u64 + 7) * 86_400
            }
            Self::Budget(Period::Monthly) => {
                let (y, m, _) = civil_from_days(days);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(ny, nm) as u64 * 86_400
            }
            Self::Budget(Period::Never) => return None,
        })
    }

    /// The name used in errors, headers and metrics: rpm, rph, rpd, tpm, tph, tpd, budget.
    pub fn name(self) -> &'static str {
        match self {
            Self::Requests(Window::Minute) => "rpm",
            Self::Requests(Window::Hour) => "rph",
            Self::Requests(Window::Day) => "rpd",
            Self::Tokens(Window::Minute) => "tpm",
            Self::Tokens(Window::Hour) => "tph",
            Self::Tokens(Window::Day) => "tpd",
            Self::Budget(_) => "budget",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    Key,
    Team,
    Customer,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Team => "team",
            Self::Customer => "customer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entity {
    pub kind: EntityKind,
    pub id: String,
}

/// One limit of one entity, with every shard's lease on it.
#[derive(Debug)]
pub struct Limit {
    pub entity: Entity,
    pub kind: LimitKind,
    pub value: u64,
    /// Indexed by shard.
    pub leases: Box<[Lease]>,
}

impl Limit {
    pub fn new(entity: Entity, kind: LimitKind, value: u64, shards: usize) -> Self {
        Self {
            entity,
            kind,
            value,
            leases: (0..shards).map(|_| Lease::default()).collect(),
        }
    }

    /// The slice the coordinator grants at a time: a quarter of a fair share.
    pub fn chunk(&self) -> u64 {
        (self.value / (4 * self.leases.len() as u64).max(1)).clamp(1, lease::MAX_SLICE)
    }
}

/// A virtual key as the shards see it.
#[derive(Debug)]
pub struct KeyPolicy {
    pub id: String,
    pub team_id: Option<String>,
    pub customer_id: Option<String>,
    /// Empty: all.
    pub allowed_providers: Vec<String>,
    /// Empty: all. Entries are `provider/model` or bare model names.
    pub allowed_models: Vec<String>,
    pub expires_at: Option<u64>,
    pub active: bool,
    /// The key's own limits, then its team's, then its customer's.
    pub limits: Vec<Arc<Limit>>,
}

/// What the coordinator publishes for the shards.
#[derive(Debug, Default)]
pub struct GovSnapshot {
    /// Requests without a virtual key are refused.
    pub require_key: bool,
    /// SHA-256 of the key → its policy.
    pub keys: HashMap<[u8; 32], Arc<KeyPolicy>>,
    pub prices: Prices,
}

/// What a shard sends the coordinator.
#[derive(Debug)]
pub enum GovEvent {
    /// This shard's lease on `limit` is running low; it needs at least `want` units.
    Refill {
        limit: Arc<Limit>,
        shard: usize,
        want: u64,
    },
    /// Units used beyond what the lease held (usage larger than estimated).
    Debt {
        limit: Arc<Limit>,
        epoch: u32,
        units: u64,
    },
    /// Usage of requests, batched per shard (see [`usage::UsageBatcher`]).
    Usage(Vec<usage::UsageRecord>),
}

/// Node-wide governance state shared by the coordinator and the shards.
#[derive(Debug)]
pub struct Governance {
    pub snapshot: ArcSwap<GovSnapshot>,
    pub events: crossbeam_channel::Sender<GovEvent>,
    /// Longest a request waits for the coordinator to refill a dry lease.
    pub lease_wait: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_and_resets() {
        // 2024-02-29T12:34:56Z, a Thursday.
        let now = 1_709_210_096;
        let rpm = LimitKind::Requests(Window::Minute);
        assert_eq!(rpm.resets_at(now), Some(1_709_210_100));
        assert_ne!(rpm.epoch(now), rpm.epoch(now + 4));
        let daily = LimitKind::Budget(Period::Daily);
        assert_eq!(daily.resets_at(now), Some(1_709_251_200)); // 2024-03-01
        let weekly = LimitKind::Budget(Period::Weekly);
        assert_eq!(weekly.resets_at(now), Some(1_709_510_400)); // Monday 2024-03-04
        let monthly = LimitKind::Budget(Period::Monthly);
        assert_eq!(monthly.resets_at(now), Some(1_709_251_200));
        assert_eq!(monthly.epoch(now), monthly.epoch(1_706_745_600)); // 2024-02-01
        assert_ne!(monthly.epoch(now), monthly.epoch(1_709_251_200));
        assert_eq!(LimitKind::Budget(Period::Never).resets_at(now), None);
    }
}
