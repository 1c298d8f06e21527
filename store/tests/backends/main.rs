//! Store tests, written once and run against SQLite (a temp file) and
//! PostgreSQL (a throwaway schema per test) via `backend_tests!`, grouped
//! by what they store: [`entities`] (customers, teams, keys, providers),
//! [`usage`] (usage counters, budget resets), [`request_logs`] (request logs
//! and their search), [`cache`] (the response cache's fleet tier) and
//! [`cluster`] (what nodes share: limit leases, config-change notifications).
//! This file holds the harness and the helpers they share.
//!
//! PostgreSQL: `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/test`.
//! If it is unreachable the PostgreSQL tests fail (they never skip): run the suite with
//! `bash scripts/test.sh` (it starts a throwaway PostgreSQL), or set DATABASE_URL
//! (`export DATABASE_URL=$(scripts/ensure-postgres.sh)` finds or starts one).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::FutureExt;
use store::keys::hash_key;
use store::{
    Backend, Budget, Customer, CustomerInput, KeyInput, PgOptions, SecretBox, Store, Team,
    TeamInput, VirtualKey,
};
use vocab::{BudgetPeriod, NanoUsd};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const NEED_POSTGRES: &str = "These tests need PostgreSQL: run `bash scripts/test.sh` (it starts a \
     throwaway PostgreSQL) or set DATABASE_URL (`export DATABASE_URL=$(scripts/ensure-postgres.sh)` \
     from the repository root finds or starts one).";

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
            "PostgreSQL is unreachable at {url}: {e}{}\n{NEED_POSTGRES}",
            std::error::Error::source(&e).map_or(String::new(), |s| format!(" ({s})"))
        ),
        Err(_) => panic!("timed out connecting to PostgreSQL at {url}\n{NEED_POSTGRES}"),
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

/// Another node and its subscription to `db`'s config changes: on PostgreSQL a second store
/// on the same schema, on SQLite this process's own store (it hears its own writes).
async fn other_node_subscription(db: &TestDb) -> (Store, store::ConfigSubscription) {
    let listener = if db.is_pg() {
        db.another(None).await
    } else {
        db.store.clone()
    };
    let sub = listener.subscribe_config_changes().await.unwrap();
    (listener, sub)
}

/// Runs `task` 8 times at once, alternately on `db`'s store and on a second node's; the
/// results in task order. `task` gets its store and its index.
async fn on_two_nodes<T, F, Fut>(db: &TestDb, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Store, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let node_b = db.another(None).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = if i % 2 == 0 {
                db.store.clone()
            } else {
                node_b.clone()
            };
            tokio::spawn(task(s, i))
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
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

// After the macro: modules see only macros defined above them.
mod cache;
mod cluster;
mod config_version;
mod entities;
mod request_log_batches;
mod request_logs;
mod usage;

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
