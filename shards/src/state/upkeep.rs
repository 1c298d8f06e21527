//! A shard's background tasks: closing idle upstream connections, adopting the node's latest
//! configuration snapshot, sending batched usage records to the coordinator, and giving
//! freed memory back once the shard has gone quiet. Each waits for its period's ticks
//! ([`crate::timer::tick`]): the periods divide one another, so an idle shard wakes once per
//! shortest period for all of them.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::snapshot::SNAPSHOT_POLL;
use crate::state::Shard;

/// How often idle upstream connections past their timeout are closed.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// How often a shard sends its pending usage records to the coordinator.
const USAGE_INTERVAL: Duration = Duration::from_millis(50);

/// How often a shard looks whether it has gone quiet.
const QUIET_CHECK: Duration = Duration::from_millis(500);

/// Starts the shard's background tasks on its runtime.
pub fn spawn(shard: &Rc<Shard>) {
    monoio::spawn(sweep_pool(shard.clone()));
    monoio::spawn(follow_snapshot(shard.clone()));
    if shard.gov.is_some() {
        monoio::spawn(send_usage(shard.clone()));
    }
    if let Some(release) = shard.release_memory {
        monoio::spawn(release_when_quiet(shard.clone(), release));
    }
}

/// Sends pending usage to the coordinator every `USAGE_INTERVAL`.
async fn send_usage(shard: Rc<Shard>) {
    let Some(gov) = shard.gov.clone() else {
        return;
    };
    loop {
        crate::timer::tick(USAGE_INTERVAL).await;
        let dropped = shard.usage.flush(&gov);
        shard.stats.usage_dropped.add(dropped as u64);
    }
}

/// Adopts the node's latest configuration snapshot. Requests already running keep the one
/// they started with.
async fn follow_snapshot(shard: Rc<Shard>) {
    loop {
        crate::timer::tick(SNAPSHOT_POLL).await;
        let latest = shard.node.snapshot.load_full();
        let changed = !Arc::ptr_eq(&**shard.current.borrow(), &latest);
        if changed {
            *shard.current.borrow_mut() = Rc::new(latest);
        }
    }
}

async fn sweep_pool(shard: Rc<Shard>) {
    loop {
        crate::timer::tick(POOL_SWEEP_INTERVAL).await;
        let snapshot = shard.snapshot();
        shard.pool.sweep(&snapshot.providers);
    }
}

/// Gives the thread's freed memory back once the shard has gone quiet after work: a whole
/// [`QUIET_CHECK`] without a response or a connection opened or closed. The allocator hands
/// freed pages back only as later allocations and frees on the same thread come by, so a
/// shard that falls silent after a burst (or after its clients' connections went idle and
/// gave their buffers back, `path::keepalive`) kept that memory resident for good. Once per
/// quiet spell, never under load (a collection walks the thread's heap).
async fn release_when_quiet(shard: Rc<Shard>, release: fn()) {
    let activity = |s: &Shard| {
        let st = &s.stats;
        (
            st.responses_2xx.get() + st.responses_4xx.get() + st.responses_5xx.get(),
            st.connections.get(),
        )
    };
    let mut watch = crate::quiet::QuietWatch::new(activity(&shard));
    loop {
        crate::timer::tick(QUIET_CHECK).await;
        if watch.tick(activity(&shard)) {
            release();
        }
    }
}
