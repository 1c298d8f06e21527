//! The lease desk alone and in a fleet (a fake fleet whose answers the tests give).

use super::*;
use std::time::Duration;
use vocab::{BudgetPeriod, EntityRef, Window};

fn limit(value: u64, shards: usize) -> Arc<Limit> {
    Arc::new(Limit::new(
        EntityRef::key("k"),
        LimitKind::Requests(Window::Minute),
        value,
        shards,
    ))
}

#[test]
fn grants_never_exceed_the_limit_and_reclaim_keeps_it_reachable() {
    let now = 1_000_000;
    let desk = Arc::new(LeaseDesk::default());
    let l = limit(10, 2);
    desk.register(&l, 0, 0, now);
    let epoch = l.kind.epoch(now);
    desk.refill(&l, 0, 1, now);
    desk.refill(&l, 1, 1, now);
    let a = l.leases[0].available(epoch);
    let b = l.leases[1].available(epoch);
    assert!(a + b <= 10);
    // Shard 1 uses everything it can, shard 0 holds its slice unused.
    while l.leases[1].take(epoch, 1) {
        if l.leases[1].available(epoch) == 0 {
            desk.refill(&l, 1, 1, now);
        }
    }
    assert_eq!(
        l.leases[0].available(epoch),
        0,
        "shard 0's idle slice was reclaimed"
    );
    assert_eq!(desk.remaining(&l, now), 0);
}

#[test]
fn a_spent_daily_budget_comes_back_at_midnight_utc() {
    let budget = Arc::new(Limit::new(
        EntityRef::key("k"),
        LimitKind::Budget(BudgetPeriod::Daily),
        1_000,
        1,
    ));
    let desk = Arc::new(LeaseDesk::default());
    let evening = 1_709_250_000; // 2024-02-29T23:40Z
    desk.register(&budget, 1_000, 0, evening); // already spent today
    desk.refill(&budget, 0, 1, evening);
    assert_eq!(
        budget.leases[0].available(budget.kind.epoch(evening)),
        0,
        "spent: nothing to grant"
    );
    let morning = 1_709_251_260; // 2024-03-01T00:01Z
    desk.refill(&budget, 0, 1, morning);
    assert!(
        budget.leases[0].available(budget.kind.epoch(morning)) > 0,
        "a new day, a new budget"
    );
    assert_eq!(budget.kind.start(morning), 1_709_251_200);
}

#[test]
fn base_spend_counts_and_a_new_window_starts_fresh() {
    let now = 1_000_000;
    let desk = Arc::new(LeaseDesk::default());
    let l = limit(10, 1);
    desk.register(&l, 8, 0, now);
    desk.refill(&l, 0, 1, now);
    assert_eq!(l.leases[0].available(l.kind.epoch(now)), 2);
    let later = now + 60;
    desk.refill(&l, 0, 1, later);
    assert!(l.leases[0].available(l.kind.epoch(later)) >= 1);
}

#[test]
fn a_refill_for_a_limit_the_desk_no_longer_knows_grants_nothing() {
    let now = 1_000_000;
    let desk = Arc::new(LeaseDesk::default());
    let l = limit(10, 1);
    desk.register(&l, 0, 0, now);
    desk.forget(&l);
    desk.refill(&l, 0, 1, now);
    assert_eq!(l.leases[0].available(l.kind.epoch(now)), 0);
    assert!(!l.leases[0].refill_pending(), "the shard was told at once");
    assert_eq!(desk.remaining(&l, now), 0, "no pool was made anew");
}

/// Uses every unit shard 0 can get from the desk, one refill at a time.
fn drain(desk: &Arc<LeaseDesk>, l: &Arc<Limit>, now: i64) -> u64 {
    let epoch = l.kind.epoch(now);
    let mut used = 0;
    loop {
        if l.leases[0].take(epoch, 1) {
            used += 1;
            continue;
        }
        desk.refill(l, 0, 1, now);
        if l.leases[0].available(epoch) == 0 {
            return used;
        }
    }
}

#[test]
fn a_changed_limit_keeps_what_its_window_used() {
    let now = 1_000_000;
    let desk = Arc::new(LeaseDesk::default());
    let old = limit(10, 2);
    desk.register(&old, 0, 0, now);
    assert_eq!(drain(&desk, &old, now), 10);
    // Lowered to 6 after 10 were used: nothing more this window, under the old object or
    // the new one — and no window's worth is handed out again.
    let lowered = limit(6, 2);
    desk.register(&lowered, 0, 0, now);
    desk.forget(&old);
    assert_eq!(drain(&desk, &lowered, now), 0);
    assert_eq!(drain(&desk, &old, now), 0);
    // Raised to 15: only the difference is left.
    let raised = limit(15, 2);
    desk.register(&raised, 0, 0, now);
    desk.forget(&lowered);
    assert_eq!(drain(&desk, &raised, now), 5);
}

#[test]
fn a_replaced_limit_gives_back_what_its_leases_held() {
    let now = 1_000_000;
    let desk = Arc::new(LeaseDesk::default());
    let old = limit(8, 1);
    desk.register(&old, 0, 0, now);
    desk.refill(&old, 0, 1, now);
    let held = old.leases[0].available(old.kind.epoch(now));
    assert!(held > 0);
    let same = limit(8, 1);
    desk.register(&same, 0, 0, now);
    assert_eq!(old.leases[0].available(old.kind.epoch(now)), 0);
    assert_eq!(
        drain(&desk, &same, now),
        8,
        "all of the limit stays reachable"
    );
}

#[test]
fn a_clock_stepped_back_does_not_reopen_a_window() {
    let now = 1_000_020;
    let desk = Arc::new(LeaseDesk::default());
    let l = limit(3, 1);
    desk.register(&l, 0, 0, now);
    assert_eq!(drain(&desk, &l, now), 3);
    let earlier = now - 60;
    desk.refill(&l, 0, 1, earlier);
    assert_eq!(l.leases[0].available(l.kind.epoch(earlier)), 0);
    assert_eq!(drain(&desk, &l, now), 0);
}

#[test]
fn usage_settled_after_its_window_counts_in_the_current_one() {
    let now = 1_000_020;
    let desk = Arc::new(LeaseDesk::default());
    let l = limit(10, 1);
    desk.register(&l, 0, 0, now);
    let next = now + 60;
    desk.debt(&l, 4, next);
    assert_eq!(drain(&desk, &l, next), 6);
}

#[test]
fn re_registering_a_spent_budget_grants_nothing_more() {
    let now = 1_709_250_000;
    let desk = Arc::new(LeaseDesk::default());
    let budget = || {
        Arc::new(Limit::new(
            EntityRef::key("k"),
            LimitKind::Budget(BudgetPeriod::Daily),
            1_000,
            1,
        ))
    };
    let first = budget();
    desk.register(&first, 0, 0, now);
    desk.debt(&first, 1_000, now); // spent, not yet flushed to the store
    for _ in 0..20 {
        // A reload storm: each reload builds a new object; the store still says 0 spent.
        let again = budget();
        desk.register(&again, 0, 0, now);
        desk.refill(&again, 0, 1, now);
        assert_eq!(again.leases[0].available(again.kind.epoch(now)), 0);
    }
}

/// A fleet whose share requests wait for the test to answer them.
#[derive(Default)]
struct FakeFleet {
    asks: Mutex<Vec<(ShareRequest, ShareAnswer)>>,
    fail_open: bool,
}

impl ClusterLeases for Arc<FakeFleet> {
    fn acquire(&self, ask: ShareRequest, done: ShareAnswer) {
        self.asks.lock().unwrap().push((ask, done));
    }
    fn fail_open(&self) -> bool {
        self.fail_open
    }
    fn nodes(&self) -> u64 {
        1
    }
}

impl FakeFleet {
    /// Answers the oldest open request with `answer`; returns what it asked for (need, want).
    fn answer(&self, answer: Option<u64>) -> (u64, u64) {
        self.answer_nth(0, answer)
    }

    /// Answers the `nth` oldest open request (the database may answer out of order).
    fn answer_nth(&self, nth: usize, answer: Option<u64>) -> (u64, u64) {
        let (ask, done) = self.asks.lock().unwrap().remove(nth);
        done(answer);
        (ask.need, ask.want)
    }

    fn open(&self) -> usize {
        self.asks.lock().unwrap().len()
    }
}

fn fleet_desk(fail_open: bool) -> (Arc<LeaseDesk>, Arc<FakeFleet>) {
    let fleet = Arc::new(FakeFleet {
        fail_open,
        ..FakeFleet::default()
    });
    (
        Arc::new(LeaseDesk::clustered(Box::new(fleet.clone()))),
        fleet,
    )
}

#[test]
fn in_a_fleet_shards_wait_for_the_share_and_one_request_serves_them_all() {
    let now = 1_000_000;
    let (desk, fleet) = fleet_desk(false);
    let l = limit(80, 2);
    desk.register(&l, 0, 0, now);
    let epoch = l.kind.epoch(now);
    assert!(l.leases[0].request_refill());
    desk.refill(&l, 0, 1, now);
    assert!(l.leases[1].request_refill());
    desk.refill(&l, 1, 1, now);
    assert_eq!(
        fleet.open(),
        1,
        "one request to the database for both shards"
    );
    assert!(l.leases[0].refill_pending() && l.leases[1].refill_pending());
    // The node's share: 2 shards × a slice of 80 / (4 × 2) = 20; asked when the first shard
    // needed 1, it serves both.
    assert_eq!(fleet.answer(Some(20)), (1, 20));
    assert_eq!(l.leases[0].available(epoch), 10);
    assert_eq!(l.leases[1].available(epoch), 10);
    assert!(!l.leases[0].refill_pending() && !l.leases[1].refill_pending());
}

/// A budget of 100 on one shard (slices of 25) whose node holds a share of 50 and has
/// handed 25 of it to the shard, used up; requests then cost 30 beyond that slice (a debt).
fn a_debt_beyond_the_share(desk: &Arc<LeaseDesk>, fleet: &FakeFleet, now: i64) -> Arc<Limit> {
    let budget = Arc::new(Limit::new(
        EntityRef::key("k"),
        LimitKind::Budget(BudgetPeriod::Daily),
        100,
        1,
    ));
    desk.register(&budget, 0, 0, now);
    let epoch = budget.kind.epoch(now);
    desk.refill(&budget, 0, 1, now);
    assert_eq!(fleet.answer(Some(50)), (1, 25));
    assert!(budget.leases[0].take(epoch, 25));
    desk.debt(&budget, 30, now);
    assert_eq!(fleet.open(), 1, "the debt is asked of the counter");
    budget
}

#[test]
fn a_shard_waits_for_a_debts_share_that_an_empty_top_up_overtook() {
    let now = 1_000_000;
    let (desk, fleet) = fleet_desk(false);
    let budget = a_debt_beyond_the_share(&desk, &fleet, now);
    let epoch = budget.kind.epoch(now);
    // The share (50) minus the slice (25) minus the debt (30) reads short by 5 until the
    // debt's share comes: a shard asking now waits, and a top-up is asked for it.
    assert!(budget.leases[0].request_refill());
    desk.refill(&budget, 0, 1, now);
    assert_eq!(fleet.open(), 2);
    // The counter served the debt first (all that was left: 30) and the top-up found it
    // empty, but the top-up's answer arrives first: the shard is not refused yet.
    assert_eq!(fleet.answer_nth(1, Some(0)), (1, 25));
    assert!(budget.leases[0].refill_pending(), "still waiting");
    fleet.answer(Some(30));
    assert_eq!(
        budget.leases[0].available(epoch),
        25,
        "served: 80 − 25 − 30"
    );
    assert!(!budget.leases[0].refill_pending());
}

#[test]
fn a_shard_is_refused_once_the_debts_share_leaves_nothing() {
    let now = 1_000_000;
    let (desk, fleet) = fleet_desk(false);
    let budget = a_debt_beyond_the_share(&desk, &fleet, now);
    assert!(budget.leases[0].request_refill());
    desk.refill(&budget, 0, 1, now);
    fleet.answer_nth(1, Some(0));
    fleet.answer(Some(5)); // the counter had only 5 left for the debt: the budget is spent
    assert_eq!(budget.leases[0].available(budget.kind.epoch(now)), 0);
    assert!(!budget.leases[0].refill_pending(), "refused");
}

#[test]
fn an_unreachable_database_fails_closed_unless_rate_limits_fail_open() {
    let now = 1_000_000;
    for fail_open in [false, true] {
        let (desk, fleet) = fleet_desk(fail_open);
        let l = limit(80, 1);
        desk.register(&l, 0, 0, now);
        desk.refill(&l, 0, 1, now);
        fleet.answer(None);
        let got = l.leases[0].available(l.kind.epoch(now));
        assert_eq!(got > 0, fail_open, "fail_open {fail_open}: {got}");
        assert!(!l.leases[0].refill_pending(), "the shard was answered");
        // Units admitted on the node's word are never given back to the fleet's counter.
        assert!(desk.collect_unused(Duration::ZERO, now).is_empty());
    }
    // Budgets always fail closed.
    let (desk, fleet) = fleet_desk(true);
    let budget = Arc::new(Limit::new(
        EntityRef::key("k"),
        LimitKind::Budget(BudgetPeriod::Monthly),
        1_000,
        1,
    ));
    desk.register(&budget, 0, 0, now);
    desk.refill(&budget, 0, 1, now);
    fleet.answer(None);
    assert_eq!(budget.leases[0].available(budget.kind.epoch(now)), 0);
}

#[test]
fn unused_units_go_back_when_idle_and_all_of_them_when_the_node_leaves() {
    let now = 1_000_000;
    let (desk, fleet) = fleet_desk(false);
    let l = limit(80, 2);
    desk.register(&l, 0, 0, now);
    desk.refill(&l, 0, 1, now);
    fleet.answer(Some(20));
    assert!(l.leases[0].take(l.kind.epoch(now), 3));
    // Just used: not idle yet.
    assert!(desk
        .collect_unused(Duration::from_secs(3600), now)
        .is_empty());
    let back = desk.collect_unused(Duration::ZERO, now);
    let units: u64 = back.iter().map(|u| u.units).sum();
    assert_eq!(units, 17, "20 leased, 3 used");
    assert_eq!(
        l.leases[0].available(l.kind.epoch(now)),
        0,
        "the shard's slice came back too"
    );
    assert!(
        desk.collect_unused(Duration::ZERO, now).is_empty(),
        "given back once"
    );
}

#[test]
fn a_changed_limit_gives_its_share_back_and_late_answers_for_it_are_not_used() {
    let now = 1_000_000;
    let (desk, fleet) = fleet_desk(false);
    let old = limit(80, 1);
    desk.register(&old, 0, 0, now);
    desk.refill(&old, 0, 1, now);
    fleet.answer(Some(20));
    // A top-up is on its way when the limit is lowered.
    assert!(old.leases[0].take(old.kind.epoch(now), 15));
    assert!(old.leases[0].request_refill());
    desk.refill(&old, 0, 10, now);
    assert_eq!(fleet.open(), 1);
    let lowered = limit(8, 1);
    let unused = desk
        .register(&lowered, 0, 0, now)
        .expect("the old share goes back");
    assert_eq!(unused.units, 5, "20 leased, 15 used");
    fleet.answer(Some(20));
    assert_eq!(lowered.leases[0].available(lowered.kind.epoch(now)), 0);
    // The shard that waited is not refused on the old limit's account: its units are asked
    // for anew under the lowered one, which has none left (15 used of 8).
    assert!(old.leases[0].refill_pending(), "still waiting");
    assert_eq!(fleet.answer(Some(0)), (10, 10));
    assert!(
        !old.leases[0].refill_pending(),
        "refused under the limit in force"
    );
    assert_eq!(old.leases[0].available(old.kind.epoch(now)), 0);
    // What arrived for the replaced limit goes back at the next heartbeat, unused.
    let stale: u64 = desk
        .collect_unused(Duration::from_secs(3600), now)
        .iter()
        .map(|u| u.units)
        .sum();
    assert_eq!(stale, 20);
}

#[test]
fn a_shard_waiting_when_its_limit_is_raised_is_served_under_the_new_value() {
    let now = 1_000_000;
    let (desk, fleet) = fleet_desk(false);
    let old = limit(8, 1);
    desk.register(&old, 0, 0, now);
    desk.refill(&old, 0, 1, now);
    fleet.answer(Some(2)); // a slice of 8 / 4
    assert!(old.leases[0].take(old.kind.epoch(now), 2));
    assert!(old.leases[0].request_refill());
    desk.refill(&old, 0, 1, now);
    let raised = limit(80, 1);
    desk.register(&raised, 0, 0, now);
    fleet.answer(Some(0)); // the counter had nothing left under the old value
    assert!(old.leases[0].refill_pending(), "asked anew, not refused");
    let (need, _) = fleet.answer(Some(20));
    assert_eq!(need, 1);
    assert!(old.leases[0].available(old.kind.epoch(now)) >= 1, "served");
}

#[test]
fn a_node_taken_for_dead_forfeits_what_it_held() {
    let now = 1_000_000;
    let (desk, fleet) = fleet_desk(false);
    let l = limit(80, 1);
    desk.register(&l, 0, 0, now);
    desk.refill(&l, 0, 1, now);
    fleet.answer(Some(20));
    desk.forfeit_all(now);
    assert_eq!(l.leases[0].available(l.kind.epoch(now)), 0);
    assert!(
        desk.collect_unused(Duration::ZERO, now).is_empty(),
        "nothing is its own"
    );
    desk.refill(&l, 0, 1, now);
    assert_eq!(fleet.open(), 1, "it asks the fleet afresh");
}
