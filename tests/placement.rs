//! Where a node's threads run when shards are pinned: shard *i* on the *i*-th CPU of the
//! process's mask, and the coordinator's threads (coordinator, lease desk, the blocking pool
//! that writes to the store) on the CPUs the shards leave, so that store writes never
//! preempt a shard. Read from `/proc/PID/task/*/status` of the real binary.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use common::*;
use serde_json::json;

/// `Cpus_allowed_list` ("0", "1-3", "0,2-3") as CPU numbers.
fn cpu_list(text: &str) -> Vec<usize> {
    text.split(',')
        .flat_map(|range| {
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            low.trim().parse().unwrap()..=high.trim().parse().unwrap()
        })
        .collect()
}

/// Each thread's name and the CPUs it may run on. Thread names repeat (the blocking pool),
/// so each name maps to every mask seen under it.
fn thread_masks(pid: u32) -> BTreeMap<String, Vec<Vec<usize>>> {
    let mut masks: BTreeMap<String, Vec<Vec<usize>>> = BTreeMap::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let (Ok(name), Ok(status)) = (
            fs::read_to_string(task.path().join("comm")),
            fs::read_to_string(task.path().join("status")),
        ) else {
            continue; // the thread ended while we looked
        };
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap();
        masks
            .entry(name.trim().to_owned())
            .or_default()
            .push(cpu_list(list));
    }
    masks
}

#[test]
fn pinned_shards_leave_their_cores_to_no_one_else() {
    let allowed = shards::cpus::allowed_cpus();
    let mock = MockLlm::start(&[]);
    let dir = TempDir::new("ringgate-placement");
    let gw = Gateway::start(merged(
        basic_config(&mock.base_url()),
        json!({
            "shards": 1,
            "pin_cores": true,
            "governance": {"database": format!("sqlite://{}", dir.path().join("g.db").display())},
        }),
    ));
    // A request makes the coordinator write (usage, a request log) through its blocking pool.
    let resp = gw.post_json(
        "/v1/chat/completions",
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
        &[],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let masks = poll_until(Duration::from_secs(10), || {
        let masks = thread_masks(gw.pid());
        masks.contains_key("lease-desk").then_some(masks)
    })
    .expect("the lease desk runs");

    assert_eq!(masks["shard-0"], vec![vec![allowed[0]]], "{masks:?}");
    let coordinator: Vec<usize> = match shards::cpus::coordinator_cpus(&allowed, 1) {
        Some(spare) => spare,
        None => allowed.clone(), // one CPU: nothing to keep apart
    };
    for name in ["coordinator", "lease-desk"] {
        assert_eq!(masks[name], vec![coordinator.clone()], "{name}: {masks:?}");
    }
    for (name, lists) in &masks {
        // The main thread only waits for a signal to drain.
        if name.starts_with("shard-") || name == "ringgate" {
            continue;
        }
        for list in lists {
            if allowed.len() > 1 {
                assert!(
                    !list.contains(&allowed[0]),
                    "{name} may run on the shard's core: {masks:?}"
                );
            }
        }
    }
}
