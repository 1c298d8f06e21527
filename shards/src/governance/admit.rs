//! Admitting one request against every limit of its key, team and customer, and settling
//! its real usage afterwards. Admission takes from this shard's leases only; a dry lease asks
//! the coordinator for more and waits (up to `lease_wait`) for the answer. Token limits admit
//! on an estimate and are reconciled with the real usage; budgets admit while any budget is
//! left and are charged the real cost — so a budget can be overshot by at most the cost of
//! the requests already in flight when it ran out (the documented bound).
//!
//! [`Admission`] is an RAII ticket: dropped without [`Admission::settle`] (the request failed
//! before using tokens, or its task was dropped), it gives back what it held for tokens and
//! budget; requests stay counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vocab::{LimitKind, NanoUsd, TokenUsage};

use super::{GovEvent, Governance, KeyPolicy, Limit};
use crate::error::GatewayError;

/// How often a waiting request looks at its lease again.
const POLL: Duration = Duration::from_millis(1);

struct Taken<'s> {
    /// Borrowed from the key's policy in the request's snapshot: an `Arc` clone would write
    /// the limit's count, a cache line every shard serving the key shares.
    limit: &'s Arc<Limit>,
    epoch: u32,
    units: u64,
}

pub struct Admission<'s> {
    taken: Vec<Taken<'s>>,
    shard: usize,
    settled: bool,
}

/// Asks the coordinator for `want` more units for this shard, unless an ask is on its way
/// already. True when this call sent one.
fn ask_refill(gov: &Governance, shard: usize, limit: &Arc<Limit>, want: u64) -> bool {
    if !limit.leases[shard].request_refill() {
        return false;
    }
    let refill = GovEvent::Refill {
        limit: limit.clone(),
        shard,
        want,
    };
    if gov.events.try_send(refill).is_err() {
        // The coordinator's queue is full: let the next request ask again.
        limit.leases[shard].refill_refused();
        return false;
    }
    true
}

/// Takes `units` from this shard's lease if it holds them now, asking the coordinator for
/// the next chunk ahead of need when the lease runs low.
fn take_now(gov: &Governance, shard: usize, limit: &Arc<Limit>, epoch: u32, units: u64) -> bool {
    let lease = &limit.leases[shard];
    if !lease.take(epoch, units) {
        return false;
    }
    if lease.available(epoch) < limit.chunk() / 2 {
        ask_refill(gov, shard, limit, limit.chunk());
    }
    true
}

/// How a take that may wait ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Take {
    Taken,
    /// The coordinator answered, and what is left of the limit was not enough.
    Short,
    /// No answer within `lease_wait` (a fleet's database slow to grant the node more, or a
    /// coordinator that could not keep up): not known to be spent.
    NoAnswer,
}

/// Takes `units` from this shard's lease, asking the coordinator and waiting when it is dry.
async fn take_or_wait(
    gov: &Governance,
    shard: usize,
    limit: &Arc<Limit>,
    epoch: u32,
    units: u64,
) -> Take {
    if take_now(gov, shard, limit, epoch, units) {
        return Take::Taken;
    }
    let lease = &limit.leases[shard];
    // Answers are counted, so that other requests asking again cannot hide one from this
    // request. An ask on its way already (another request's, or a top-up ahead of need for a
    // whole slice) is waited for; only a refusal of this request's own ask, for its own
    // units, means the limit is spent.
    let mut asked_at = lease.answers();
    let mut own = ask_refill(gov, shard, limit, units);
    let deadline = Instant::now() + gov.lease_wait;
    while Instant::now() < deadline {
        crate::timer::sleep(POLL).await;
        if lease.take(epoch, units) {
            return Take::Taken;
        }
        if lease.answers() != asked_at {
            if lease.take(epoch, units) {
                return Take::Taken;
            }
            if own {
                return Take::Short;
            }
            asked_at = lease.answers();
            own = ask_refill(gov, shard, limit, units);
        }
    }
    Take::NoAnswer
}

/// The most tokens a request may use, as token limits hold it: a cheap upper bound, taken
/// when what is left of the limit has room for it, and the exact count (prompt counted with
/// its model's tokenizer, plus the output cap), made only when it has not. Both are settled
/// to the real usage afterwards; the bound saves the tokenizer's time and memory on every
/// request that is not near its limit.
pub struct TokenEstimate<'a> {
    pub at_most: u64,
    pub exact: &'a dyn Fn() -> u64,
}

impl TokenEstimate<'_> {
    /// For keys without a token limit: nothing to count.
    pub const NONE: TokenEstimate<'static> = TokenEstimate {
        at_most: 0,
        exact: &|| 0,
    };
}

/// What an admission takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// A request of every request limit, its token estimate, a budget slot.
    Everything,
    /// Only a request of every request limit (an answer from the response cache, which
    /// uses no tokens and costs nothing).
    RequestsOnly,
}

/// Admits a request for `key` at time `now` (unix seconds), holding `tokens` of every token
/// limit (unless `charge` is requests only).
pub async fn admit<'s>(
    gov: &Governance,
    shard: usize,
    key: &'s KeyPolicy,
    tokens: TokenEstimate<'_>,
    now: u64,
    charge: Charge,
) -> Result<Admission<'s>, GatewayError> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mut admission = Admission {
        taken: Vec::with_capacity(key.limits.len()),
        shard,
        settled: false,
    };
    for limit in &key.limits {
        if charge == Charge::RequestsOnly && !matches!(limit.kind, LimitKind::Requests(_)) {
            continue;
        }
        let epoch = limit.kind.epoch(now);
        let mut units = match limit.kind {
            LimitKind::Requests(_) | LimitKind::Budget(_) => 1,
            LimitKind::Tokens(_) => tokens.at_most.max(1),
        };
        let mut took = take_or_wait(gov, shard, limit, epoch, units).await;
        if took == Take::Short && matches!(limit.kind, LimitKind::Tokens(_)) {
            let exact = (tokens.exact)().max(1);
            if exact < units {
                units = exact;
                took = take_or_wait(gov, shard, limit, epoch, units).await;
            }
        }
        if took != Take::Taken {
            // `admission` drops here and gives back what it took.
            let entity = limit.entity.kind.as_str();
            return Err(match (took, limit.kind) {
                // Not known to be spent: "retry shortly", not "over the limit".
                (Take::NoAnswer, LimitKind::Budget(_)) => GatewayError::LimitsUnavailable {
                    limit: "budget",
                    entity,
                },
                (Take::NoAnswer, kind) => GatewayError::LimitsUnavailable {
                    limit: kind.name(),
                    entity,
                },
                (_, LimitKind::Budget(_)) => GatewayError::BudgetExceeded { entity },
                (_, kind) => GatewayError::RateLimited {
                    limit: kind.name(),
                    value: limit.value,
                    entity,
                    resets_in: kind
                        .resets_at(now)
                        .map_or(1, |t| t.saturating_sub(now).max(1).unsigned_abs()),
                },
            });
        }
        admission.taken.push(Taken {
            limit,
            epoch,
            units,
        });
    }
    Ok(admission)
}

impl Admission<'_> {
    /// Charges what the request really used: tokens against token limits (the estimate is
    /// returned or topped up), `cost` against budgets. Usage beyond what the shard's lease
    /// held is a debt for the coordinator, sent through `outbox` (which keeps it while the
    /// queue is full: a debt is never dropped).
    pub fn settle(
        mut self,
        usage: TokenUsage,
        cost: NanoUsd,
        gov: &Governance,
        outbox: &super::batcher::UsageBatcher,
    ) {
        for t in &self.taken {
            let used = match t.limit.kind {
                LimitKind::Requests(_) => continue,
                LimitKind::Tokens(_) => usage.prompt + usage.completion,
                LimitKind::Budget(_) => cost.nanos(),
            };
            let lease = &t.limit.leases[self.shard];
            if used <= t.units {
                lease.give(t.epoch, t.units - used);
            } else {
                let extra = used - t.units;
                let got = lease.take_up_to(t.epoch, extra);
                if got < extra {
                    outbox.send_debt(t.limit, extra - got, gov);
                }
            }
        }
        self.settled = true;
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        for t in &self.taken {
            if !matches!(t.limit.kind, LimitKind::Requests(_)) {
                t.limit.leases[self.shard].give(t.epoch, t.units);
            }
        }
    }
}
