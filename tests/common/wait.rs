//! Waiting for a condition (a port, a file, a metric, a row) instead of sleeping.

use std::thread;
use std::time::{Duration, Instant};

/// Calls `probe` every 10 ms until it returns `Some`, for at most `timeout`: the one way
/// these tests wait for a condition (a port, a file, a metric, a row) instead of sleeping.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}
