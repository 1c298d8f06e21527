//! Per-shard backpressure: at most `max_in_flight` requests to a provider at once, at most
//! `max_queue` more waiting (FIFO) up to `queue_timeout`; everything beyond is refused at
//! once. A [`Permit`] is an RAII ticket: dropping it — when the response ends, or when the
//! client leaves mid-stream and the task is dropped — frees the slot and wakes the next
//! waiter. Single-threaded by design (one shard), so `Cell`/`RefCell`, no atomics.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::snapshot::Backpressure;

#[derive(Debug, Default)]
struct State {
    in_flight: Cell<usize>,
    /// Waiters in arrival order, with their waker once they have been polled.
    waiters: RefCell<VecDeque<(u64, Option<Waker>)>>,
    next_ticket: Cell<u64>,
    /// Tickets that were handed a freed slot and have not picked it up yet.
    handed: RefCell<Vec<u64>>,
}

#[derive(Debug, Default, Clone)]
pub struct Gate {
    state: Rc<State>,
}

/// A slot in flight; freed on drop.
#[derive(Debug)]
pub struct Permit {
    state: Option<Rc<State>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Queue full: refused without waiting.
    QueueFull,
    /// Waited `queue_timeout` without getting a slot.
    TimedOut,
}

impl Gate {
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.state.in_flight.get()
    }

    pub fn waiting(&self) -> usize {
        self.state.waiters.borrow().len()
    }

    /// Takes a slot, waiting in line if allowed: what the request path does in two steps
    /// (`try_target`, which reads the clock again only after a wait).
    #[cfg(test)]
    async fn acquire(&self, policy: &Backpressure) -> Result<Permit, Refused> {
        match self.try_acquire(policy) {
            Some(permit) => Ok(permit),
            None => self.wait_for_slot(policy).await,
        }
    }

    /// Takes a slot if one is free and nobody waits for it; `None` when the caller must wait
    /// ([`Gate::wait_for_slot`]).
    pub fn try_acquire(&self, policy: &Backpressure) -> Option<Permit> {
        if policy.max_in_flight == 0 {
            return Some(Permit { state: None });
        }
        let state = &self.state;
        if state.in_flight.get() < policy.max_in_flight && state.waiters.borrow().is_empty() {
            state.in_flight.set(state.in_flight.get() + 1);
            return Some(self.permit());
        }
        None
    }

    /// Waits in line for a slot, if the line has room, after [`Gate::try_acquire`] found none.
    pub async fn wait_for_slot(&self, policy: &Backpressure) -> Result<Permit, Refused> {
        let state = &self.state;
        if self.waiting() >= policy.max_queue {
            return Err(Refused::QueueFull);
        }
        let ticket = state.next_ticket.get();
        state.next_ticket.set(ticket + 1);
        state.waiters.borrow_mut().push_back((ticket, None));
        let wait = WaitTurn {
            state: state.clone(),
            ticket,
            done: false,
        };
        match crate::timer::timeout(policy.queue_timeout, wait).await {
            Ok(()) => Ok(self.permit()),
            Err(_) => Err(Refused::TimedOut),
        }
    }

    fn permit(&self) -> Permit {
        Permit {
            state: Some(self.state.clone()),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(state) = self.state.take() else {
            return;
        };
        // Hand the slot straight to the first waiter, or free it.
        let next = state.waiters.borrow_mut().pop_front();
        match next {
            Some((ticket, waker)) => {
                state.handed.borrow_mut().push(ticket);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            None => state.in_flight.set(state.in_flight.get() - 1),
        }
    }
}

/// Resolves when this waiter has been handed a slot. Dropped early (timeout), it leaves the
/// line, and if a slot was already handed to it, passes that slot on.
struct WaitTurn {
    state: Rc<State>,
    ticket: u64,
    done: bool,
}

impl Future for WaitTurn {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.take_handed() {
            self.done = true;
            return Poll::Ready(());
        }
        let ticket = self.ticket;
        let mut waiters = self.state.waiters.borrow_mut();
        if let Some(entry) = waiters.iter_mut().find(|(t, _)| *t == ticket) {
            entry.1 = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl WaitTurn {
    fn take_handed(&self) -> bool {
        let mut handed = self.state.handed.borrow_mut();
        match handed.iter().position(|t| *t == self.ticket) {
            Some(i) => {
                handed.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

impl Drop for WaitTurn {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.take_handed() {
            // A slot arrived as we gave up: pass it on as if we had finished.
            drop(Permit {
                state: Some(self.state.clone()),
            });
            return;
        }
        let ticket = self.ticket;
        self.state
            .waiters
            .borrow_mut()
            .retain(|(t, _)| *t != ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(max_in_flight: usize, max_queue: usize, wait_ms: u64) -> Backpressure {
        Backpressure {
            max_in_flight,
            max_queue,
            queue_timeout: Duration::from_millis(wait_ms),
        }
    }

    use crate::timer::run_with_timers as run;

    #[test]
    fn sheds_beyond_queue_and_hands_slots_over_in_order() {
        run(async {
            let gate = Gate::default();
            let p = policy(1, 1, 1000);
            let first = gate.acquire(&p).await.unwrap();
            let g2 = gate.clone();
            let p2 = p.clone();
            let waiter = monoio::spawn(async move { g2.acquire(&p2).await.map(|_permit| ()) });
            crate::timer::sleep(Duration::from_millis(10)).await;
            assert_eq!(gate.waiting(), 1);
            assert_eq!(gate.acquire(&p).await.unwrap_err(), Refused::QueueFull);
            drop(first);
            assert!(waiter.await.is_ok());
            assert_eq!(gate.in_flight(), 0);
        });
    }

    #[test]
    fn waiting_times_out_and_leaves_the_line() {
        run(async {
            let gate = Gate::default();
            let p = policy(1, 4, 20);
            let held = gate.acquire(&p).await.unwrap();
            assert_eq!(gate.acquire(&p).await.unwrap_err(), Refused::TimedOut);
            assert_eq!(gate.waiting(), 0);
            drop(held);
            assert_eq!(gate.in_flight(), 0);
            let _again = gate.acquire(&p).await.unwrap();
            assert_eq!(gate.in_flight(), 1);
        });
    }

    #[test]
    fn unlimited_takes_no_slot() {
        run(async {
            let gate = Gate::default();
            let _p = gate.acquire(&policy(0, 0, 0)).await.unwrap();
            assert_eq!(gate.in_flight(), 0);
        });
    }
}
