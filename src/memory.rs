//! The process's allocator (mimalloc) and how it holds memory: in 4 KiB pages, and given back
//! to the kernel soon after it is freed.

use libmimalloc_sys::{mi_collect, mi_option_set, mi_option_t};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (the crate names no constant for
/// it); the test below checks that it is the option whose default is v3's purge delay.
const PURGE_DELAY: mi_option_t = 15;

/// How long freed memory stays committed before mimalloc gives it back, ms. mimalloc v3 waits
/// a second; a governed node frees a usage batch's records and request-log rows several times
/// a second, so a second's worth stayed resident. Measured at saturation (`perf/ab.sh`,
/// governed, docs/perf.md): peak RSS 41 MiB with 1 s, 35 with 100 ms at the same CPU per
/// request. 10 ms first cost ~5 % more CPU (a batch's 40,000 statement parameters were freed
/// and faulted in again by the next batch); since request logs are segments
/// (`store/src/logs/segment.rs`) a batch frees a few large buffers, and 10 ms took peak RSS
/// from 32.9 to 29.9 MiB at the same CPU per request. `MIMALLOC_PURGE_DELAY` overrides it.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Gives the calling thread's freed memory back to the system now. mimalloc returns freed
/// pages only as later allocations and frees on the thread come by; a shard that has gone
/// quiet calls this (`ShardPlan::release_memory`), else a burst's memory stayed resident.
pub fn release_thread_memory() {
    // SAFETY: collects the calling thread's heap; no pointer is passed.
    unsafe { mi_collect(false) };
}

/// Sets up how this process holds memory; call first thing in `main`.
pub fn configure() {
    no_huge_pages();
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

/// Keeps this process's memory in 4 KiB pages. mimalloc asks for transparent huge pages on
/// its arenas (`MADV_HUGEPAGE`), so each thread's heap starts on a 2 MiB page of its own: a
/// governed node's dozen threads held ~20 MB that way for a few KiB of data each, and at
/// saturation its peak RSS was 64 MiB instead of 45, for no CPU gained per request
/// (docs/perf.md). Set before anything but the runtime's first allocations.
fn no_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and changes only this
    // process's paging policy.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        eprintln!(
            "ringgate: could not turn transparent huge pages off: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge_delay_ms() -> std::ffi::c_long {
        // SAFETY: reads one integer option.
        unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
    }

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // Unset, the option reads mimalloc v3's default purge delay (1 s): the index names
        // that option, not a neighbour (a mimalloc upgrade that moved it fails here).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay_ms(), 1000);
        }
        configure();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
        }
    }
}
