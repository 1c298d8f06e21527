//! Leases: how a limit holds exactly across shards without a lock on the request path.
//!
//! Each limit (requests or tokens per window, or a budget per period) has one [`Lease`] per
//! shard, each on its own cache line. The coordinator grants a shard a slice of what is left
//! of the limit by adding to its lease; the shard admits requests by taking from its lease
//! only. The sum of what was granted never exceeds the limit, so no shard can admit beyond it.
//! When the pool runs dry, the coordinator reclaims unused slices from other shards' leases
//! and hands them to the shard that asked, so the whole limit stays reachable.
//!
//! A lease's state is one `u64`: the window (epoch) it belongs to in the top 24 bits and the
//! units available in the low 40. Units of a past window are void: a take in a new window
//! finds nothing until the coordinator grants units of that window. Every change is a single
//! compare-and-swap, between this shard and the coordinator only.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

const AVAIL_BITS: u32 = 40;
/// Most units one lease can hold (a slice, not the whole limit).
pub const MAX_SLICE: u64 = (1 << AVAIL_BITS) - 1;
const EPOCH_MASK: u32 = (1 << 24) - 1;

fn pack(epoch: u32, avail: u64) -> u64 {
    (u64::from(epoch & EPOCH_MASK) << AVAIL_BITS) | avail.min(MAX_SLICE)
}

fn unpack(state: u64) -> (u32, u64) {
    ((state >> AVAIL_BITS) as u32, state & MAX_SLICE)
}

/// One shard's slice of one limit.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Lease {
    state: AtomicU64,
    /// The shard has asked for more and the coordinator has not answered yet.
    refill_pending: AtomicBool,
    /// Answers the coordinator gave this lease (grants and refusals), counted: a request
    /// waiting for more knows it was answered once this moved, even if another request of
    /// the shard has asked again since (which sets `refill_pending` anew).
    answers: AtomicU32,
}

impl Lease {
    /// Units available in `epoch`.
    pub fn available(&self, epoch: u32) -> u64 {
        let (e, avail) = unpack(self.state.load(Ordering::Acquire));
        if e == epoch & EPOCH_MASK {
            avail
        } else {
            0
        }
    }

    /// Takes `n` units of `epoch` if they are all there.
    pub fn take(&self, epoch: u32, n: u64) -> bool {
        self.update(|e, avail| (e == epoch & EPOCH_MASK && avail >= n).then(|| pack(e, avail - n)))
            .is_some()
    }

    /// Takes up to `n` units of `epoch`; returns how many it got.
    pub fn take_up_to(&self, epoch: u32, n: u64) -> u64 {
        self.update(|e, avail| {
            (e == epoch & EPOCH_MASK && avail > 0 && n > 0).then(|| pack(e, avail - avail.min(n)))
        })
        .map_or(0, |(_, before)| before.min(n))
    }

    /// Gives unused units back to this lease (still in `epoch`).
    pub fn give(&self, epoch: u32, n: u64) {
        self.update(|e, avail| (e == epoch & EPOCH_MASK && n > 0).then(|| pack(e, avail + n)));
    }

    /// Coordinator: adds `n` units of `epoch` (replacing units of an older epoch).
    pub fn grant(&self, epoch: u32, n: u64) {
        self.update(|e, avail| {
            Some(if e == epoch & EPOCH_MASK {
                pack(e, avail + n)
            } else {
                pack(epoch, n)
            })
        });
        self.answered();
    }

    /// Coordinator: takes back every unused unit of `epoch`; returns how many.
    pub fn reclaim(&self, epoch: u32) -> u64 {
        self.update(|e, avail| (e == epoch & EPOCH_MASK && avail > 0).then(|| pack(e, 0)))
            .map_or(0, |(_, before)| before)
    }

    /// Marks a refill as requested; false if one already was.
    pub fn request_refill(&self) -> bool {
        !self.refill_pending.swap(true, Ordering::AcqRel)
    }

    /// Whether a refill was asked for and not answered yet.
    pub fn refill_pending(&self) -> bool {
        self.refill_pending.load(Ordering::Acquire)
    }

    /// The coordinator could not grant anything: the shard may ask again.
    pub fn refill_refused(&self) {
        self.answered();
    }

    /// How many answers the coordinator has given so far (see `answers`).
    pub fn answers(&self) -> u32 {
        self.answers.load(Ordering::Acquire)
    }

    fn answered(&self) {
        self.answers.fetch_add(1, Ordering::Release);
        self.refill_pending.store(false, Ordering::Release);
    }

    /// CAS loop: `f(epoch, avail)` returns the new state or `None` to leave it. Returns the
    /// (epoch, avail) it replaced.
    fn update(&self, f: impl Fn(u32, u64) -> Option<u64>) -> Option<(u32, u64)> {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let (e, avail) = unpack(current);
            let next = f(e, avail)?;
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some((e, avail)),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_give_grant_reclaim() {
        let l = Lease::default();
        assert!(!l.take(5, 1), "nothing granted");
        l.grant(5, 10);
        assert!(l.take(5, 4));
        assert_eq!(l.available(5), 6);
        assert!(!l.take(6, 1), "units of epoch 5 are void in epoch 6");
        assert_eq!(l.take_up_to(5, 100), 6);
        l.give(5, 3);
        assert_eq!(l.reclaim(5), 3);
        assert_eq!(l.available(5), 0);
        l.grant(6, 2);
        assert_eq!(l.available(6), 2);
        assert_eq!(l.available(5), 0);
    }

    #[test]
    fn every_answer_is_counted_even_when_asked_again() {
        let l = Lease::default();
        let before = l.answers();
        assert!(l.request_refill());
        l.refill_refused();
        assert!(l.request_refill(), "another request asks again");
        assert!(l.refill_pending());
        assert_ne!(
            l.answers(),
            before,
            "the first asker was answered all the same"
        );
        let seen = l.answers();
        l.grant(1, 5);
        assert_eq!(l.answers(), seen + 1);
        assert!(!l.refill_pending());
    }

    #[test]
    fn concurrent_takes_never_exceed_grants() {
        let l = std::sync::Arc::new(Lease::default());
        l.grant(1, 1000);
        let taken = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (l, taken) = (l.clone(), taken.clone());
                std::thread::spawn(move || {
                    for _ in 0..600 {
                        if l.take(1, 1) {
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        let reclaimed = l.reclaim(1);
        for t in threads {
            t.join().unwrap();
        }
        let reclaimed = reclaimed + l.reclaim(1);
        assert_eq!(taken.load(Ordering::Relaxed) + reclaimed, 1000);
    }
}
