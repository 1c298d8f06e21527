//! The wall clock, read where the request path needs it: usage timestamps, admission (which
//! window a limit is in: `vocab::LimitKind`), key expiry and `created` fields. Calendar
//! arithmetic lives in `vocab::calendar`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
