//! Store tests, written once and run against SQLite (a temp file) and
//! PostgreSQL (a throwaway schema per test) via `backend_tests!`.
//!
//! PostgreSQL: `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/test`.
//! If it is unreachable the PostgreSQL tests fail (they never skip): run
//! `export DATABASE_URL=$(scripts/ensure-postgres.sh)`.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::FutureExt;
use store::keys::{hash_key, verify_key};
use store::{
    Backend, Budget, ConfigChange, ConfigKind, Customer, CustomerInput, Error, KeyInput, Limits,
    PgOptions, ProviderInput, RequestLog, SecretBox, Store, Team, TeamInput, UsageDelta,
    VirtualKey,
};
use vocab::{BudgetPeriod, EntityRef, NanoUsd};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn pg_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

fn secret_box() -> SecretBox {
    SecretBox::new(&[42; 32])
}

fn unique_suffix() -> String {
    hash_key(&store::keys::generate_key())[..16].to_owned()
}

#[derive(Clone)]
enum Place {
    File(PathBuf),
    Schema { url: String, schema: String },
}

/// One test's database: the store under test plus how to open more
/// stores ("other nodes") on the same data and how to clean up.
#[derive(Clone)]
struct TestDb {
    store: Store,
    place: Place,
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let res = tokio::time::timeout(Duration::from_secs(10), connect).await;
    match res {
        Ok(Ok((client, conn))) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            client
        }
        Ok(Err(e)) => panic!(
            "PostgreSQL is unreachable at {url}: {e}{}\n\
             These tests need PostgreSQL. Run `export DATABASE_URL=$(scripts/ensure-postgres.sh)` \
             from the repository root, then rerun.",
            std::error::Error::source(&e).map_or(String::new(), |s| format!(" ({s})"))
        ),
        Err(_) => panic!(
            "timed out connecting to PostgreSQL at {url}\n\
             Run `export DATABASE_URL=$(scripts/ensure-postgres.sh)` and rerun."
        ),
    }
}

impl TestDb {
    async fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!(
            "ringgate-store-test-{}-{}.db",
            std::process::id(),
            unique_suffix()
        ));
        let store = Store::open_sqlite(&path, Some(secret_box())).await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        Self {
            store,
            place: Place::File(path),
        }
    }

    async fn postgres() -> Self {
        let url = pg_url();
        // Fail loudly with instructions if the server is not there.
        drop(admin_client(&url).await);
        let schema = format!("t_{}", unique_suffix());
        let store = Store::connect_postgres(Self::pg_opts(&url, &schema), Some(secret_box()))
            .await
            .unwrap_or_else(|e| panic!("opening PostgreSQL store at {url}: {e}"));
        assert_eq!(store.backend(), Backend::Postgres);
        Self {
            store,
            place: Place::Schema { url, schema },
        }
    }

    fn pg_opts(url: &str, schema: &str) -> PgOptions {
        PgOptions {
            url: url.to_owned(),
            pool_size: 4,
            schema: Some(schema.to_owned()),
        }
    }

    /// Another, independent store on the same database (another node).
    async fn another(&self, secrets: Option<SecretBox>) -> Store {
        match &self.place {
            Place::File(p) => Store::open_sqlite(p, secrets).await.unwrap(),
            Place::Schema { url, schema } => {
                Store::connect_postgres(Self::pg_opts(url, schema), secrets)
                    .await
                    .unwrap()
            }
        }
    }

    fn is_pg(&self) -> bool {
        matches!(self.place, Place::Schema { .. })
    }

    async fn cleanup(self) {
        let TestDb { store, place } = self;
        drop(store);
        match place {
            Place::File(p) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut f = p.clone().into_os_string();
                    f.push(suffix);
                    let _ = std::fs::remove_file(f);
                }
            }
            Place::Schema { url, schema } => {
                admin_client(&url)
                    .await
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .unwrap();
            }
        }
    }
}

/// Runs `body`, then cleans up even if it panicked, then re-raises.
async fn run<F, Fut>(db: TestDb, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let result = AssertUnwindSafe(body(db.clone())).catch_unwind().await;
    db.cleanup().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::run(crate::TestDb::sqlite().await, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::run(crate::TestDb::postgres().await, super::$name).await;
                }
            )*
        }
    };
}

backend_tests!(
    migrations_are_idempotent,
    customer_crud,
    team_crud_and_references,
    key_crud_and_lookup,
    duplicate_key_hash_conflicts,
    provider_secrets_are_encrypted,
    usage_adds_up_per_period,
    reset_budget_is_recorded,
    concurrent_usage_from_two_nodes,
    request_logs_batch_and_recent,
    leases_never_exceed_limit_under_concurrency,
    lease_return_and_edge_cases,
    config_changes_are_notified,
);

const NOW: i64 = 1_718_000_000; // 2024-06-10 (a Monday) 06:13:20 UTC

fn budget(period: BudgetPeriod, limit_nanos: u64) -> Option<Budget> {
    Some(Budget {
        limit_nanos: NanoUsd::from_nanos(limit_nanos),
        period,
    })
}

/// Creates a customer named `name` with `budget` and no limits.
async fn new_customer(s: &Store, name: &str, budget: Option<Budget>) -> Customer {
    let input = CustomerInput {
        name: name.into(),
        budget,
        ..Default::default()
    };
    s.create_customer(&input).await.unwrap()
}

/// Creates a team named `name` without customer, budget or limits.
async fn new_team(s: &Store, name: &str) -> Team {
    let input = TeamInput {
        name: name.into(),
        ..Default::default()
    };
    s.create_team(&input).await.unwrap()
}

/// Creates a key named `name` with `budget` and otherwise default fields.
async fn new_key(s: &Store, name: &str, budget: Option<Budget>) -> VirtualKey {
    let input = KeyInput {
        name: name.into(),
        budget,
        ..Default::default()
    };
    s.create_key(&input).await.unwrap().key
}

async fn migrations_are_idempotent(db: TestDb) {
    // Opening again re-runs the migrator, which must find nothing to do.
    let again = db.another(None).await;
    let c = new_customer(&again, "acme", None).await;
    assert_eq!(
        db.store.get_customer(&c.id).await.unwrap().unwrap().name,
        "acme"
    );
    drop(again);
    let third = db.another(None).await;
    assert_eq!(third.list_customers().await.unwrap().len(), 1);
}

async fn customer_crud(db: TestDb) {
    let s = &db.store;
    let limits = Limits {
        rpm: Some(60),
        tpd: Some(u64::from(u32::MAX) * 4),
        ..Default::default()
    };
    let c = s
        .create_customer(&CustomerInput {
            name: "acme".into(),
            budget: budget(BudgetPeriod::Monthly, 5_000_000_000),
            limits,
        })
        .await
        .unwrap();
    assert_eq!(c.id.len(), 36);
    assert_eq!(c.limits, limits);
    assert_eq!(c.budget, budget(BudgetPeriod::Monthly, 5_000_000_000));
    assert_eq!(s.get_customer(&c.id).await.unwrap(), Some(c.clone()));

    let c2 = new_customer(s, "globex", None).await;
    let all = s.list_customers().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&c) && all.contains(&c2));

    let updated = s
        .update_customer(
            &c.id,
            &CustomerInput {
                name: "acme corp".into(),
                budget: None,
                limits: Limits::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "acme corp");
    assert_eq!(updated.budget, None);
    assert_eq!(updated.created_at, c.created_at);
    assert_eq!(s.get_customer(&c.id).await.unwrap(), Some(updated));

    s.delete_customer(&c.id).await.unwrap();
    assert_eq!(s.get_customer(&c.id).await.unwrap(), None);
    assert!(matches!(
        s.delete_customer(&c.id).await,
        Err(Error::NotFound {
            kind: "customer",
            ..
        })
    ));
    assert!(matches!(
        s.update_customer("nope", &CustomerInput::default()).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.create_customer(&CustomerInput {
            name: "x".into(),
            budget: budget(BudgetPeriod::Daily, u64::MAX),
            limits: Limits::default(),
        })
        .await,
        Err(Error::OutOfRange(_))
    ));
}

async fn team_crud_and_references(db: TestDb) {
    let s = &db.store;
    let missing = s
        .create_team(&TeamInput {
            name: "orphan".into(),
            customer_id: Some("no-such-customer".into()),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(missing, Err(Error::InvalidReference(_))),
        "{missing:?}"
    );

    let c = new_customer(s, "acme", None).await;
    let t = s
        .create_team(&TeamInput {
            name: "research".into(),
            customer_id: Some(c.id.clone()),
            budget: budget(BudgetPeriod::Weekly, 42),
            limits: Limits {
                rph: Some(1000),
                ..Default::default()
            },
        })
        .await
        .unwrap();
    assert_eq!(s.get_team(&t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(s.list_teams().await.unwrap(), vec![t.clone()]);

    // A customer with teams cannot be deleted.
    assert!(matches!(
        s.delete_customer(&c.id).await,
        Err(Error::InUse {
            kind: "customer",
            ..
        })
    ));

    let moved = s
        .update_team(
            &t.id,
            &TeamInput {
                name: "research".into(),
                customer_id: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.customer_id, None);
    assert!(matches!(
        s.update_team(
            &t.id,
            &TeamInput {
                name: "r".into(),
                customer_id: Some("ghost".into()),
                ..Default::default()
            }
        )
        .await,
        Err(Error::InvalidReference(_))
    ));
    s.delete_customer(&c.id).await.unwrap();
    s.delete_team(&t.id).await.unwrap();
    assert!(s.list_teams().await.unwrap().is_empty());
}

async fn key_crud_and_lookup(db: TestDb) {
    let s = &db.store;
    let team = new_team(s, "eng").await;
    let input = KeyInput {
        name: "ci".into(),
        team_id: Some(team.id.clone()),
        allowed_providers: vec!["openai".into(), "anthropic".into()],
        allowed_models: vec!["gpt-4o".into()],
        budget: budget(BudgetPeriod::Daily, 1_000_000),
        limits: Limits {
            rpm: Some(10),
            tpm: Some(10_000),
            ..Default::default()
        },
        expires_at: Some(NOW + 3600),
        active: true,
    };
    let created = s.create_key(&input).await.unwrap();
    let k = &created.key;
    assert!(created.secret.starts_with("rg-"));
    assert!(!format!("{created:?}").contains(&created.secret));
    assert_eq!(k.key_prefix, &created.secret[..8]);
    assert!(verify_key(&created.secret, &k.key_hash));
    assert_eq!(k.allowed_providers, input.allowed_providers);
    assert_eq!(k.allowed_models, input.allowed_models);
    assert_eq!(k.expires_at, Some(NOW + 3600));
    assert!(k.is_usable(NOW) && !k.is_usable(NOW + 3600));

    let found = s
        .find_key_by_hash(&hash_key(&created.secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&found, k);
    assert_eq!(s.get_key(&k.id).await.unwrap().as_ref(), Some(k));
    assert_eq!(
        s.find_key_by_hash(&hash_key("rg-wrong")).await.unwrap(),
        None
    );

    // A team with keys cannot be deleted.
    assert!(matches!(
        s.delete_team(&team.id).await,
        Err(Error::InUse { kind: "team", .. })
    ));
    assert!(matches!(
        s.create_key(&KeyInput {
            name: "bad".into(),
            team_id: Some("ghost".into()),
            ..Default::default()
        })
        .await,
        Err(Error::InvalidReference(_))
    ));

    let upd = s
        .update_key(
            &k.id,
            &KeyInput {
                name: "ci-disabled".into(),
                active: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!upd.active && upd.allowed_models.is_empty() && upd.team_id.is_none());
    assert_eq!(upd.key_hash, k.key_hash, "update keeps the secret");
    assert!(!upd.is_usable(NOW));
    assert_eq!(s.list_keys().await.unwrap(), vec![upd.clone()]);

    s.delete_key(&k.id).await.unwrap();
    assert_eq!(s.get_key(&k.id).await.unwrap(), None);
    s.delete_team(&team.id).await.unwrap();
}

async fn duplicate_key_hash_conflicts(db: TestDb) {
    let s = &db.store;
    let input = KeyInput {
        name: "imported".into(),
        ..Default::default()
    };
    s.create_key_with_secret(&input, "rg-imported-secret")
        .await
        .unwrap();
    let dup = s.create_key_with_secret(&input, "rg-imported-secret").await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
    assert_eq!(s.list_keys().await.unwrap().len(), 1);
}

async fn provider_secrets_are_encrypted(db: TestDb) {
    let s = &db.store;
    let input = ProviderInput {
        kind: "openai".into(),
        base_url: "https://api.example.test/v1".into(),
        config_json: r#"{"timeout_ms":30000}"#.into(),
        secret: Some("sk-test-0123456789abcd".into()),
    };
    let p = s.create_provider("openai-main", &input).await.unwrap();
    assert_eq!(p.secret.as_deref(), Some("sk-test-0123456789abcd"));
    assert!(!format!("{p:?}").contains("0123456789"));
    let got = s.get_provider("openai-main").await.unwrap().unwrap();
    assert_eq!(got, p);
    assert!(matches!(
        s.create_provider("openai-main", &input).await,
        Err(Error::Conflict(_))
    ));

    // The stored form is ciphertext: other keys (or none) cannot read it.
    let wrong = db.another(Some(SecretBox::new(&[7; 32]))).await;
    assert!(matches!(
        wrong.get_provider("openai-main").await,
        Err(Error::Secret(store::SecretError::Decrypt))
    ));
    let keyless = db.another(None).await;
    assert!(matches!(
        keyless.get_provider("openai-main").await,
        Err(Error::NoSecretKey)
    ));
    assert!(matches!(
        keyless.create_provider("x", &input).await,
        Err(Error::NoSecretKey)
    ));
    // A provider without a secret needs no key.
    let plain = ProviderInput {
        secret: None,
        ..input.clone()
    };
    keyless.create_provider("local", &plain).await.unwrap();

    let upd = s
        .update_provider(
            "openai-main",
            &ProviderInput {
                base_url: "https://other.example.test".into(),
                secret: Some("sk-rotated-zzzzzzzz9999".into()),
                ..input.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(upd.secret.as_deref(), Some("sk-rotated-zzzzzzzz9999"));
    let names: Vec<String> = s
        .list_providers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["local", "openai-main"]);
    s.delete_provider("openai-main").await.unwrap();
    assert!(matches!(
        s.update_provider("openai-main", &input).await,
        Err(Error::NotFound { .. })
    ));
}

fn delta(entity: &EntityRef, ps: i64, spent: u64, req: u64) -> UsageDelta {
    UsageDelta {
        entity: entity.clone(),
        period_start: ps,
        spent_nanos: NanoUsd::from_nanos(spent),
        requests: req,
        prompt_tokens: 10 * req,
        completion_tokens: 20 * req,
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
    assert_eq!(s.budget_spent(&e, NOW).await.unwrap().nanos(), 50);
}

async fn concurrent_usage_from_two_nodes(db: TestDb) {
    let node_b = db.another(None).await;
    let e = EntityRef::team("shared-team");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 {
            db.store.clone()
        } else {
            node_b.clone()
        };
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                s.add_usage(&[delta(&e, 0, 3, 1), delta(&EntityRef::key("k"), 0, 1, 1)])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
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

fn log(i: u32) -> RequestLog {
    RequestLog {
        id: format!("req-{i:04}"),
        ts_ms: 1_718_000_000_000 + i64::from(i),
        key_id: Some("key-1".into()),
        team_id: (i % 2 == 0).then(|| "team-1".to_owned()),
        customer_id: None,
        provider: "openai".into(),
        model: "gpt-4o".into(),
        status: if i % 10 == 0 { 502 } else { 200 },
        prompt_tokens: u64::from(i),
        completion_tokens: 2 * u64::from(i),
        cost_nanos: NanoUsd::from_nanos(1_000 * u64::from(i)),
        latency_us: 1_500,
        overhead_us: 40,
        stream: i % 3 == 0,
        error_code: (i % 10 == 0).then(|| "upstream_error".to_owned()),
    }
}

async fn request_logs_batch_and_recent(db: TestDb) {
    let s = &db.store;
    let logs: Vec<RequestLog> = (0..150).map(log).collect();
    s.insert_request_logs(&logs).await.unwrap();
    s.insert_request_logs(&[]).await.unwrap();
    let recent = s.recent_request_logs(10).await.unwrap();
    assert_eq!(recent.len(), 10);
    assert_eq!(recent[0], logs[149]);
    assert_eq!(recent[9], logs[140]);
    let all = s.recent_request_logs(1000).await.unwrap();
    assert_eq!(all.len(), 150);
    assert_eq!(all[149], logs[0]);

    // A batch with a duplicate id is rejected whole.
    let batch = vec![log(500), log(3)];
    assert!(matches!(
        s.insert_request_logs(&batch).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(s.recent_request_logs(1000).await.unwrap().len(), 150);

    assert_eq!(
        s.purge_request_logs(1_718_000_000_000 + 100).await.unwrap(),
        100
    );
    assert_eq!(s.recent_request_logs(1000).await.unwrap().len(), 50);
}

async fn leases_never_exceed_limit_under_concurrency(db: TestDb) {
    let node_b = db.another(None).await;
    let e = EntityRef::key("hot-key");
    let window = 1_718_000_040;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 {
            db.store.clone()
        } else {
            node_b.clone()
        };
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            let mut total = 0;
            loop {
                let g = s.acquire_lease(&e, "rpm", window, 50, 7).await.unwrap();
                assert!(g <= 7);
                total += g;
                if g == 0 {
                    return total;
                }
            }
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += t.await.unwrap();
    }
    assert_eq!(granted, 50);
    let c = db
        .store
        .lease_counter(&e, "rpm", window)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.used, c.limit_value), (50, 50));
    // Other windows and limits are independent.
    assert_eq!(
        db.store
            .acquire_lease(&e, "rpm", window + 60, 50, 7)
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        db.store
            .acquire_lease(&e, "tpm", window, 50, 70)
            .await
            .unwrap(),
        50
    );
}

async fn lease_return_and_edge_cases(db: TestDb) {
    let s = &db.store;
    let e = EntityRef::team("t");
    assert_eq!(s.acquire_lease(&e, "rpd", 0, 50, 0).await.unwrap(), 0);
    assert_eq!(s.acquire_lease(&e, "rpd", 0, 50, 30).await.unwrap(), 30);
    s.return_lease(&e, "rpd", 0, 10).await.unwrap();
    assert_eq!(
        s.lease_counter(&e, "rpd", 0).await.unwrap().unwrap().used,
        20
    );
    assert_eq!(s.acquire_lease(&e, "rpd", 0, 50, 100).await.unwrap(), 30);
    s.return_lease(&e, "rpd", 0, 1_000).await.unwrap();
    assert_eq!(
        s.lease_counter(&e, "rpd", 0).await.unwrap().unwrap().used,
        0
    );
    // Lowering the limit below what is used grants nothing and keeps `used`.
    assert_eq!(s.acquire_lease(&e, "rpd", 0, 50, 20).await.unwrap(), 20);
    assert_eq!(s.acquire_lease(&e, "rpd", 0, 10, 5).await.unwrap(), 0);
    let c = s.lease_counter(&e, "rpd", 0).await.unwrap().unwrap();
    assert_eq!((c.used, c.limit_value), (20, 10));
    // Limit 0 grants nothing; returning to a missing counter is a no-op.
    assert_eq!(s.acquire_lease(&e, "tpd", 0, 0, 5).await.unwrap(), 0);
    s.return_lease(&e, "nope", 0, 5).await.unwrap();
    assert_eq!(s.lease_counter(&e, "nope", 0).await.unwrap(), None);
    assert_eq!(s.purge_limit_counters(1).await.unwrap(), 2);
}

async fn next_change(sub: &mut store::ConfigSubscription, id: &str) -> ConfigChange {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        // Other tests share the PostgreSQL channel: skip their ids.
        let got = tokio::time::timeout_at(deadline, sub.recv())
            .await
            .unwrap_or_else(|_| panic!("no config change for {id} within 1 s"))
            .expect("subscription ended");
        if got.id == id {
            return got;
        }
    }
}

async fn config_changes_are_notified(db: TestDb) {
    // PostgreSQL: another node's writes arrive. SQLite: this process's.
    let listener = if db.is_pg() {
        db.another(None).await
    } else {
        db.store.clone()
    };
    let mut sub = listener.subscribe_config_changes().await.unwrap();
    let s = &db.store;
    let c = new_customer(s, "acme", None).await;
    assert_eq!(
        next_change(&mut sub, &c.id).await,
        ConfigChange {
            kind: ConfigKind::Customer,
            id: c.id.clone()
        }
    );
    s.update_customer(
        &c.id,
        &CustomerInput {
            name: "acme 2".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    next_change(&mut sub, &c.id).await;
    s.delete_customer(&c.id).await.unwrap();
    next_change(&mut sub, &c.id).await;

    let provider = format!("prov-{}", unique_suffix());
    s.notify_config_changed(ConfigKind::Provider, &provider)
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut sub, &provider).await.kind,
        ConfigKind::Provider
    );
    let k = new_key(s, "k", None).await;
    assert_eq!(next_change(&mut sub, &k.id).await.kind, ConfigKind::Key);
}
