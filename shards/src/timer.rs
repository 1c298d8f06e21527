//! Timers for the shard's futures: monoio's, boxed.
//!
//! A `monoio::time::Sleep` is 640 bytes aligned to 128 (its waker sits in a cache-padded
//! cell, a layout made for tokio's multi-threaded timer wheel). Every async fn that holds
//! one across an await grows by that much and takes its alignment, and so does every future
//! that awaits that one: the request's future was 5,248 bytes, and each level of it is
//! built on the stack and copied into its parent (~3 % of a plain request's CPU was those
//! copies, docs/perf.md). Here a timer is a pointer in the future, allocated only when a
//! wait really begins: a read that is already done never arms one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::time::Sleep;

/// A [`timeout`] ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// `fut`'s output, unless `limit` passes first (counted from the first time `fut` is not
/// ready, which is when this is first awaited: `fut` is polled before any timer is armed;
/// from that poll's clock reading, [`crate::poll_clock`]).
pub fn timeout<F: Future>(limit: Duration, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        limit,
        timer: None,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`timeout`]: `fut` in place (an async fn would keep its argument and
    /// its pinned copy apart, twice the size) and a timer armed at its first wait.
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        limit: Duration,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.fut.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let limit = *this.limit;
        let timer = this.timer.get_or_insert_with(|| {
            Box::pin(monoio::time::sleep_until(
                (crate::poll_clock::now() + limit).into(),
            ))
        });
        timer.as_mut().poll(cx).map(|()| Err(Elapsed))
    }
}

/// Waits until `deadline`.
pub async fn sleep_until(deadline: Instant) {
    Box::pin(monoio::time::sleep_until(deadline.into())).await
}

/// Waits for `duration`.
pub async fn sleep(duration: Duration) {
    sleep_until(crate::poll_clock::now() + duration).await
}

/// Waits until the next multiple of `period` counted from one instant shared by the whole
/// process (its first tick). A shard's periodic tasks (snapshot, drain flag, usage, quiet
/// check, pool sweep) wait this way, so that those whose periods divide one another expire
/// together and wake an idle shard once rather than once each: a wake-up of an idle thread
/// costs ~40 µs on a VM, and independent timers woke an idle shard 74 (93 governed) times a
/// second; on the grid it wakes 55 times (docs/perf.md). The wake-ups off the grid come
/// ~64 ms apart, the span of the lowest level of monoio's timer wheel (a timer whose wait
/// crosses it is moved down a level there); waiting in steps of the grid did not remove them.
pub async fn tick(period: Duration) {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let now = crate::poll_clock::now();
    sleep_until(next_tick(*EPOCH.get_or_init(|| now), now, period)).await
}

/// The first multiple of `period` after `epoch` that is later than `now`.
fn next_tick(epoch: Instant, now: Instant, period: Duration) -> Instant {
    let period_ns = period.as_nanos().max(1);
    let ticks = now.saturating_duration_since(epoch).as_nanos() / period_ns + 1;
    epoch + Duration::from_nanos(u64::try_from(ticks * period_ns).unwrap_or(u64::MAX))
}

/// Runs `fut` to its end on a runtime with timers (the epoll driver: no ring needed), for
/// unit tests.
#[cfg(test)]
pub(crate) fn run_with_timers<F: Future>(fut: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(fut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use run_with_timers as run;

    #[test]
    fn ticks_of_periods_that_divide_one_another_coincide() {
        let epoch = Instant::now();
        let at = |ms| epoch + Duration::from_millis(ms);
        let (fast, slow) = (Duration::from_millis(25), Duration::from_millis(50));
        assert_eq!(next_tick(epoch, at(0), fast), at(25));
        assert_eq!(next_tick(epoch, at(30), fast), at(50));
        assert_eq!(next_tick(epoch, at(30), slow), at(50));
        // On a tick: the next one, never a wait of zero.
        assert_eq!(next_tick(epoch, at(50), slow), at(100));
        assert_eq!(
            next_tick(epoch, at(999), Duration::from_millis(500)),
            at(1000)
        );
    }

    #[test]
    fn a_ready_future_needs_no_timer() {
        assert_eq!(run(timeout(Duration::ZERO, async { 7 })), Ok(7));
    }

    #[test]
    fn a_pending_future_times_out() {
        let started = Instant::now();
        let out = run(timeout(
            Duration::from_millis(20),
            std::future::pending::<()>(),
        ));
        assert_eq!(out, Err(Elapsed));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn a_future_done_before_the_limit_wins() {
        let out = run(timeout(Duration::from_secs(5), async {
            sleep(Duration::from_millis(5)).await;
            "done"
        }));
        assert_eq!(out, Ok("done"));
    }

    #[test]
    fn sleeps_last_their_time() {
        let started = Instant::now();
        run(sleep_until(started + Duration::from_millis(15)));
        assert!(started.elapsed() >= Duration::from_millis(15));
    }

    #[test]
    fn the_boxed_timer_keeps_futures_small() {
        let fut = timeout(Duration::from_secs(1), std::future::ready(()));
        assert!(std::mem::size_of_val(&fut) < 128);
        assert!(std::mem::align_of_val(&fut) <= 16);
    }
}
