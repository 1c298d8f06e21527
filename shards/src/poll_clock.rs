//! The monotonic clock as a connection's task sees it: read at most once per poll.
//!
//! A proxied request read the clock ~11 times (its phases, the breaker, the key cooldowns, the
//! pool, the idle timer, the overhead tracker), 0.3–0.7 µs per request on a VM whose vDSO
//! clock costs ~32 ns a read, against nginx's ~0.02 µs: nginx reads the time once per turn
//! of its event loop and every handler uses that (docs/perf.md). Here the time is read the
//! first time a poll of a connection's task asks for it and kept until the poll returns, so
//! the reads in one poll — a request's arrival, its tracker, the target's admission; or a
//! response's end, the provider's health, the pool, the request's observation, the next idle
//! timer — cost one. A poll is a few microseconds of CPU: a time taken from it is at most that
//! early, which no timeout and no metric here resolves (timeouts are whole milliseconds;
//! latency histograms have 12.5 % buckets).
//!
//! Where that would not hold: [`now_exact`] reads the clock (and keeps the reading for the
//! rest of the poll) at the points a provider wait starts and ends, so that a poll that
//! translated a large body before its upstream write completed in place (the epoll driver
//! writes without a new poll) does not count that work as waiting; [`crate::path::busy`]
//! times polls with its own reads; and loops that wait for a time without awaiting between
//! checks must not use this clock (it would not move).
//!
//! Outside a connection's task (the accept loop, upkeep tasks) every call reads the clock.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
enum PollNow {
    /// Not in a poll of a connection's task: every call reads the clock.
    Outside,
    /// In one; the clock has not been read yet.
    Unread,
    Read(Instant),
}

thread_local! {
    static POLL_NOW: Cell<PollNow> = const { Cell::new(PollNow::Outside) };
}

/// Now: the time this poll first asked for (read then).
pub fn now() -> Instant {
    POLL_NOW.with(|cell| match cell.get() {
        PollNow::Read(now) => now,
        PollNow::Unread => {
            let now = Instant::now();
            cell.set(PollNow::Read(now));
            now
        }
        PollNow::Outside => Instant::now(),
    })
}

/// The time since `since`, by [`now`].
pub fn elapsed(since: Instant) -> Duration {
    now().saturating_duration_since(since)
}

/// Now, read from the clock; the rest of the poll sees this reading.
pub fn now_exact() -> Instant {
    let now = Instant::now();
    POLL_NOW.with(|cell| {
        if !matches!(cell.get(), PollNow::Outside) {
            cell.set(PollNow::Read(now));
        }
    });
    now
}

pin_project_lite::pin_project! {
    /// A connection's task, whose polls each read the clock at most once ([`now`]).
    pub struct ClockedPolls<F> {
        #[pin]
        task: F,
    }
}

impl<F> ClockedPolls<F> {
    pub fn new(task: F) -> Self {
        Self { task }
    }
}

impl<F: Future> Future for ClockedPolls<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        POLL_NOW.with(|cell| cell.set(PollNow::Unread));
        let poll = self.project().task.poll(cx);
        POLL_NOW.with(|cell| cell.set(PollNow::Outside));
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timer::run_with_timers as run;

    /// `now` keeps a poll's first reading, moves between polls, and reads each time outside.
    #[test]
    fn one_reading_per_poll() {
        let (in_one_poll, across_polls) = run(ClockedPolls::new(async {
            let first = now();
            std::thread::sleep(Duration::from_millis(2));
            let same_poll = now();
            monoio::time::sleep(Duration::from_millis(2)).await;
            (same_poll == first, now() > first)
        }));
        assert!(in_one_poll, "a second reading in the same poll");
        assert!(across_polls, "the next poll kept the old reading");
        let outside = now();
        std::thread::sleep(Duration::from_millis(1));
        assert!(
            now() > outside,
            "outside a task's poll the clock is read each time"
        );
    }

    /// `now_exact` reads the clock, and the rest of the poll sees its reading.
    #[test]
    fn an_exact_reading_is_kept_for_the_rest_of_the_poll() {
        let (early, exact, after) = run(ClockedPolls::new(async {
            let early = now();
            std::thread::sleep(Duration::from_millis(2));
            let exact = now_exact();
            (early, exact, now())
        }));
        assert!(exact >= early + Duration::from_millis(2));
        assert_eq!(after, exact);
    }
}
