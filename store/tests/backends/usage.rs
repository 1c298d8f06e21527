//! Usage counters per budget period and budget resets.

use store::{Error, UsageDelta};
use vocab::{BudgetPeriod, EntityRef, NanoUsd};

use crate::{budget, new_customer, new_key, new_team, TestDb, NOW};

backend_tests!(
    usage_adds_up_per_period,
    reset_budget_is_recorded,
    spend_admitted_before_a_reset_is_not_counted_after_it,
    concurrent_resets_leave_the_last_generation,
    resets_in_two_periods_at_once_count_each_other,
    concurrent_usage_from_two_nodes,
);

fn delta(entity: &EntityRef, ps: i64, spent: u64, req: u64) -> UsageDelta {
    UsageDelta {
        entity: entity.clone(),
        period_start: ps,
        spent_nanos: NanoUsd::from_nanos(spent),
        requests: req,
        prompt_tokens: 10 * req,
        completion_tokens: 20 * req,
        budget_generation: None,
    }
}

/// `delta`, for requests admitted under budget generation `generation`.
fn admitted_under(generation: u64, d: UsageDelta) -> UsageDelta {
    UsageDelta {
        budget_generation: Some(generation),
        ..d
    }
}

async fn usage_adds_up_per_period(db: TestDb) {
    let s = &db.store;
    let c = new_customer(s, "acme", budget(BudgetPeriod::Monthly, 10_000)).await;
    let t = new_team(s, "no budget").await;
    let ce = EntityRef::customer(&c.id);
    let te = EntityRef::team(&t.id);
    let month = BudgetPeriod::Monthly.start(NOW);
    assert_eq!(s.current_period_start(&ce, NOW).await.unwrap(), month);
    assert_eq!(s.current_period_start(&te, NOW).await.unwrap(), 0);
    assert_eq!(s.budget_spent(&ce, NOW).await.unwrap().nanos(), 0);

    s.add_usage(&[
        delta(&ce, month, 100, 1),
        delta(&te, 0, 100, 1),
        delta(&ce, month, 250, 2),
    ])
    .await
    .unwrap();
    s.add_usage(&[delta(&ce, month, 1, 1)]).await.unwrap();
    s.add_usage(&[]).await.unwrap();
    assert_eq!(s.budget_spent(&ce, NOW).await.unwrap().nanos(), 351);
    assert_eq!(s.budget_spent(&te, NOW).await.unwrap().nanos(), 100);
    let u = s.usage(&ce, month).await.unwrap().unwrap();
    assert_eq!(
        (u.requests, u.prompt_tokens, u.completion_tokens, u.reset_at),
        (4, 40, 80, None)
    );

    // Next month starts from zero; the history keeps both periods.
    let next_month = NOW + 31 * 86_400;
    assert_eq!(s.budget_spent(&ce, next_month).await.unwrap().nanos(), 0);
    let ps2 = BudgetPeriod::Monthly.start(next_month);
    s.add_usage(&[delta(&ce, ps2, 5, 1)]).await.unwrap();
    assert_eq!(s.budget_spent(&ce, next_month).await.unwrap().nanos(), 5);
    let hist = s.usage_history(&ce).await.unwrap();
    assert_eq!(
        hist.iter().map(|u| u.period_start).collect::<Vec<_>>(),
        vec![ps2, month]
    );

    assert!(matches!(
        s.budget_spent(&EntityRef::key("ghost"), NOW).await,
        Err(Error::NotFound { .. })
    ));
}

async fn reset_budget_is_recorded(db: TestDb) {
    let s = &db.store;
    let k = new_key(s, "k", budget(BudgetPeriod::Daily, 1_000)).await;
    let e = EntityRef::key(&k.id);
    let day = BudgetPeriod::Daily.start(NOW);
    s.add_usage(&[delta(&e, day, 700, 3)]).await.unwrap();
    assert_eq!(s.reset_budget(&e, NOW).await.unwrap().nanos(), 700);
    assert_eq!(s.budget_spent(&e, NOW).await.unwrap().nanos(), 0);
    let u = s.usage(&e, day).await.unwrap().unwrap();
    assert_eq!((u.requests, u.reset_at), (3, Some(NOW)));
    s.add_usage(&[delta(&e, day, 50, 1)]).await.unwrap();
    assert_eq!(s.budget_spent(&e, NOW).await.unwrap().nanos(), 50);
    // Resetting a period without usage records a zero reset.
    assert_eq!(s.reset_budget(&e, NOW + 86_400).await.unwrap().nanos(), 0);
    assert_eq!(s.budget_reset_count(&e).await.unwrap(), 2);
    assert_eq!(s.budget_reset_counts().await.unwrap().get(&e), Some(&2));
    assert_eq!(s.budget_spent(&e, NOW).await.unwrap().nanos(), 50);
}

/// A node's flush that lands after a reset carries spend admitted before it: the fresh budget
/// does not pay for it (the requests and tokens still count); spend admitted under the new
/// generation, or under none known, does.
async fn spend_admitted_before_a_reset_is_not_counted_after_it(db: TestDb) {
    let s = &db.store;
    let k = new_key(s, "k", budget(BudgetPeriod::Daily, 1_000)).await;
    let e = EntityRef::key(&k.id);
    let day = BudgetPeriod::Daily.start(NOW);
    s.add_usage(&[admitted_under(0, delta(&e, day, 600, 2))])
        .await
        .unwrap();
    assert_eq!(s.reset_budget(&e, NOW).await.unwrap().nanos(), 600);
    assert_eq!(s.budget_reset_count(&e).await.unwrap(), 1);
    // Late: generation 0's spend, in one batch with the new generation's.
    assert_eq!(spent_after_late_and_current(s, &e, NOW, 1).await, 30);
    s.add_usage(&[delta(&e, day, 5, 1)]).await.unwrap();
    let u = s.usage(&e, day).await.unwrap().unwrap();
    assert_eq!((u.spent_nanos.nanos(), u.requests), (35, 5));
    // A second reset: generation 1's spend is late now; the next period starts afresh.
    assert_eq!(s.reset_budget(&e, NOW).await.unwrap().nanos(), 35);
    let next = day + 86_400;
    s.add_usage(&[
        admitted_under(1, delta(&e, day, 7, 1)),
        admitted_under(1, delta(&e, next, 9, 1)),
    ])
    .await
    .unwrap();
    assert_eq!(s.budget_spent(&e, NOW).await.unwrap().nanos(), 0);
    assert_eq!(s.budget_spent(&e, next).await.unwrap().nanos(), 9);
}

/// Resets of one budget at once, from two nodes (eight tasks, three resets each): the row's
/// generation is the number of resets, so spend admitted before the last of them is late and
/// spend admitted after it counts. (Each reset counted the resets before it while another one
/// was not yet committed, and two could write the same generation.)
async fn concurrent_resets_leave_the_last_generation(db: TestDb) {
    let k = new_key(&db.store, "k", budget(BudgetPeriod::Daily, 1_000)).await;
    let e = EntityRef::key(&k.id);
    crate::on_two_nodes(&db, |s, _| {
        let e = e.clone();
        async move {
            for _ in 0..3 {
                s.reset_budget(&e, NOW).await.unwrap();
            }
        }
    })
    .await;
    let s = &db.store;
    assert_eq!(s.budget_reset_count(&e).await.unwrap(), 24);
    assert_eq!(spent_after_late_and_current(s, &e, NOW, 24).await, 30);
}

/// Two resets of one budget at once in two periods, from two nodes, as at a period's turn
/// when the nodes' clocks put them on either side of it (ten rounds): the reset that commits
/// second counts the first, whichever period's row each wrote, so only the period reset last
/// holds the last generation. (Locking only the period's row, both counted the same resets.)
async fn resets_in_two_periods_at_once_count_each_other(db: TestDb) {
    const DAY: i64 = 86_400;
    let k = new_key(&db.store, "k", budget(BudgetPeriod::Daily, 1_000)).await;
    let e = EntityRef::key(&k.id);
    let (a, b) = (&db.store, &db.another(None).await);
    for round in 1..=10 {
        let (today, tomorrow) =
            tokio::join!(a.reset_budget(&e, NOW), b.reset_budget(&e, NOW + DAY));
        today.unwrap();
        tomorrow.unwrap();
        // Generation 2·round − 1's spend is late in the period reset last and counts in the other.
        let mut spent = [
            spent_after_late_and_current(a, &e, NOW, 2 * round).await,
            spent_after_late_and_current(b, &e, NOW + DAY, 2 * round).await,
        ];
        spent.sort_unstable();
        assert_eq!(spent, [30, 430], "round {round}");
    }
}

/// Adds, in one batch to the daily budget's period at `now`, 400 nano-dollars admitted under
/// the generation before `generation` (late) and 30 admitted under `generation`; returns
/// the period's spend then.
async fn spent_after_late_and_current(
    s: &store::Store,
    e: &EntityRef,
    now: i64,
    generation: u64,
) -> u64 {
    let day = BudgetPeriod::Daily.start(now);
    s.add_usage(&[
        admitted_under(generation - 1, delta(e, day, 400, 1)),
        admitted_under(generation, delta(e, day, 30, 1)),
    ])
    .await
    .unwrap();
    s.budget_spent(e, now).await.unwrap().nanos()
}

async fn concurrent_usage_from_two_nodes(db: TestDb) {
    let e = EntityRef::team("shared-team");
    crate::on_two_nodes(&db, |s, _| {
        let e = e.clone();
        async move {
            for _ in 0..25 {
                s.add_usage(&[delta(&e, 0, 3, 1), delta(&EntityRef::key("k"), 0, 1, 1)])
                    .await
                    .unwrap();
            }
        }
    })
    .await;
    let u = db.store.usage(&e, 0).await.unwrap().unwrap();
    assert_eq!(
        (u.spent_nanos.nanos(), u.requests, u.prompt_tokens),
        (600, 200, 2000)
    );
    let k = db
        .store
        .usage(&EntityRef::key("k"), 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(k.spent_nanos.nanos(), 200);
}
