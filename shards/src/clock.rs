//! The wall clock, read where the request path needs it: usage timestamps, admission (which
//! window a limit is in: `vocab::LimitKind`), key expiry and `created` fields, span times.
//! Calendar arithmetic lives in `vocab::calendar`.
//!
//! The clock never goes back within a process: a system clock stepped backwards (NTP, an
//! operator) reads as the latest time already seen, so that a limit's window or a budget's
//! period that has ended cannot open again. Cost: one load of a value that changes once a
//! second (shared by every shard, so it stays in each core's cache), and one atomic
//! `fetch_max` per shard per second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The latest second any thread of this process has read.
static LATEST: AtomicU64 = AtomicU64::new(0);

/// Seconds since the Unix epoch, now, never less than a value returned before.
pub fn unix_now() -> u64 {
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    monotonic(system, &LATEST)
}

/// Milliseconds since the Unix epoch, as the system clock says (cache entries' expiry, which
/// is shared with a fleet's other nodes through their database).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Nanoseconds since the Unix epoch at `at`, an instant already read: the wall clock now less
/// how long ago `at` was. For span times, which (unlike limits' windows) just follow the
/// system clock.
pub fn unix_nanos_at(at: Instant) -> u64 {
    let (wall, now) = (SystemTime::now(), Instant::now());
    let wall = wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    wall.saturating_sub(now.saturating_duration_since(at).as_nanos() as u64)
}

fn monotonic(system: u64, latest: &AtomicU64) -> u64 {
    let seen = latest.load(Ordering::Relaxed);
    if system > seen {
        latest.fetch_max(system, Ordering::Relaxed).max(system)
    } else {
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_stepped_back_reads_as_the_latest_time_seen() {
        let latest = AtomicU64::new(0);
        assert_eq!(monotonic(1_000, &latest), 1_000);
        assert_eq!(monotonic(940, &latest), 1_000, "stepped back a minute");
        assert_eq!(monotonic(1_001, &latest), 1_001);
    }
}
