//! The gateway's own time on a request: how long the shard ran the request's connection task
//! (the sum of its polls) between reading the request whole and the response's end. The
//! overhead ([`crate::path::tracker`]) is wall time minus the waits on the provider, so it
//! also holds what is not ringgate's code: the kernel sending the bytes on the shard's ring,
//! the turns of other requests, a shard off its CPU. This is the code alone (user time; the
//! system calls run outside the task's polls, in the ring's submission).
//!
//! Measured on one connection in [`SAMPLE`] (two clock reads per poll of a sampled
//! connection, none otherwise), so the other connections pay nothing.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// One connection in this many is measured.
pub const SAMPLE: u64 = 8;

/// The time a connection's task has run so far.
#[derive(Debug, Default)]
pub struct BusyMeter {
    total: Cell<Duration>,
    /// When the poll in progress began.
    polling_since: Cell<Option<Instant>>,
}

impl BusyMeter {
    /// The task's running time up to now, the poll in progress included.
    pub fn now(&self) -> Duration {
        self.total.get()
            + self
                .polling_since
                .get()
                .map_or(Duration::ZERO, |t| t.elapsed())
    }
}

/// A task whose polls are timed into its [`BusyMeter`].
pub struct Busy<F> {
    task: Pin<Box<F>>,
    meter: Rc<BusyMeter>,
}

impl<F: Future> Busy<F> {
    pub fn new(task: F, meter: Rc<BusyMeter>) -> Self {
        Self {
            task: Box::pin(task),
            meter,
        }
    }
}

impl<F: Future> Future for Busy<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Also this poll's reading of the clock (crate::poll_clock): one read less.
        let start = crate::poll_clock::now_exact();
        self.meter.polling_since.set(Some(start));
        let poll = self.task.as_mut().poll(cx);
        let meter = &self.meter;
        meter.polling_since.set(None);
        meter.total.set(meter.total.get() + start.elapsed());
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_polls_count() {
        let meter = Rc::new(BusyMeter::default());
        let inner = meter.clone();
        let task = Busy::new(
            async move {
                let at_start = inner.now();
                std::thread::sleep(Duration::from_millis(5)); // running: counted
                assert!(inner.now() - at_start >= Duration::from_millis(5));
                monoio::time::sleep(Duration::from_millis(30)).await; // waiting: not counted
                inner.now() - at_start
            },
            meter.clone(),
        );
        let ran = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(task);
        assert!(ran >= Duration::from_millis(5), "{ran:?}");
        assert!(
            ran < Duration::from_millis(30),
            "{ran:?}: the wait was counted"
        );
        assert_eq!(meter.now(), meter.total.get(), "no poll in progress");
    }
}
