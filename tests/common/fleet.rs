//! Fleets for the cluster tests: several ringgate nodes on one PostgreSQL schema of their own
//! (so that tests never hear each other's notifications or counters), one mock provider, and
//! the admin calls the tests make on any node. The schema is dropped when the fleet drops.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::{build_request, http_request, merged, poll_until, Gateway, MockLlm};

pub const ADMIN_TOKEN: &str = "fleet-test-admin-token";

/// The PostgreSQL of the tests: `DATABASE_URL`, else the machine's default server. When
/// nothing answers there the test fails (never skips) and says how to get one.
pub fn postgres_url() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let authority = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = if host.contains(':') && !host.ends_with(']') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let answers = host
        .to_socket_addrs()
        .into_iter()
        .flatten()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok());
    assert!(
        answers,
        "no PostgreSQL answers at {url}, and these tests need one: run `bash scripts/test.sh` \
         (it starts a throwaway PostgreSQL) or set DATABASE_URL"
    );
    url
}

/// A schema name no other test (or earlier run) uses.
pub fn unique_schema(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `sql` with `psql` against `url`; its unaligned output.
pub fn psql(url: &str, sql: &str) -> String {
    stdout_of(
        Command::new("psql").args([
            url,
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]),
        &format!("psql {sql}"),
    )
}

/// scripts/ensure-postgres.sh with `args` for the throwaway cluster in `dir` (`--own`:
/// start it, print its URL; `--stop`: stop it).
pub fn own_postgres(dir: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-postgres.sh");
    stdout_of(
        Command::new("bash")
            .arg(script)
            .args(args)
            .env("RINGGATE_PG_DIR", dir),
        &format!("ensure-postgres.sh {args:?}"),
    )
}

/// Runs `command`; its trimmed stdout. Panics with its stderr when it fails.
fn stdout_of(command: &mut Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what} does not run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An admin API call on `gw`; (status, JSON body or null).
pub fn admin(gw: &Gateway, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let req = build_request(
        method,
        path,
        &[("authorization", &auth)],
        body.map(str::as_bytes),
        true,
    );
    let (status, _, body) = http_request(gw.control, &req, Duration::from_secs(10)).unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Creates an entity in `collection` (`keys`, `teams`, `customers`) through `gw`'s admin API;
/// the answer.
pub fn create(gw: &Gateway, collection: &str, body: &str) -> Value {
    let (status, v) = admin(gw, "POST", &format!("/admin/{collection}"), Some(body));
    assert_eq!(status, 201, "{v}");
    v
}

/// Replaces the entity at `path` (`/admin/teams/ID`, …) through `gw`'s admin API.
pub fn put(gw: &Gateway, path: &str, body: &str) {
    let (status, v) = admin(gw, "PUT", path, Some(body));
    assert_eq!(status, 200, "{v}");
}

/// Creates a key through `gw`'s admin API; (id, secret).
pub fn create_key(gw: &Gateway, body: &str) -> (String, String) {
    let v = create(gw, "keys", body);
    (
        v["key"]["id"].as_str().unwrap().to_owned(),
        v["secret"].as_str().unwrap().to_owned(),
    )
}

/// The status `gw` answers a key with, on a route that uses none of its limits.
pub fn key_status(gw: &Gateway, secret: &str) -> u16 {
    let auth = format!("Bearer {secret}");
    gw.request(&build_request(
        "GET",
        "/v1/models",
        &[("authorization", &auth)],
        None,
        true,
    ))
    .status
}

/// One small chat request with `secret`; its status.
pub fn chat(gw: &Gateway, secret: &str) -> u16 {
    let auth = format!("Bearer {secret}");
    gw.post_json(
        "/v1/chat/completions",
        r#"{"model":"mock/gpt-4o-mini","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
        &[("authorization", &auth)],
    )
    .status
}

/// Nodes on one schema of one PostgreSQL, with one mock provider.
pub struct Fleet {
    pub nodes: Vec<Option<Gateway>>,
    pub mock: MockLlm,
    pub url: String,
    pub schema: String,
    patch: Value,
}

impl Fleet {
    /// `n` nodes of two shards each; `patch` is laid over every node's config.
    pub fn start(n: usize, patch: Value) -> Fleet {
        Fleet::start_on(postgres_url(), n, patch)
    }

    /// [`Fleet::start`] on the PostgreSQL at `url`.
    pub fn start_on(url: String, n: usize, patch: Value) -> Fleet {
        std::env::set_var("RG_FLEET_ADMIN_TOKEN", ADMIN_TOKEN);
        let mut fleet = Fleet {
            nodes: Vec::new(),
            mock: MockLlm::start(&[]),
            url,
            schema: unique_schema("fleet"),
            patch,
        };
        for _ in 0..n {
            fleet.add_node();
        }
        fleet
    }

    /// The config every node of this fleet runs.
    pub fn config(&self) -> Value {
        merged(
            json!({
                "shards": 2,
                "governance": {
                    "database": self.url,
                    "database_schema": self.schema,
                    "require_virtual_key": true,
                    "admin_token": "env.RG_FLEET_ADMIN_TOKEN",
                    "flush_interval_ms": 100,
                    "prices": {"gpt-4o-mini": {"input": "1000", "output": "1000"}},
                    "cluster": {"node_ttl_ms": 2000, "heartbeat_ms": 200, "share_idle_ms": 500},
                },
                "providers": {"mock": {"base_url": self.mock.base_url()}},
            }),
            self.patch.clone(),
        )
    }

    /// Starts one more node; its index.
    pub fn add_node(&mut self) -> usize {
        self.nodes.push(Some(Gateway::start(self.config())));
        self.nodes.len() - 1
    }

    /// Node `i`, which must be running.
    pub fn node(&self, i: usize) -> &Gateway {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// The running nodes.
    pub fn live(&self) -> impl Iterator<Item = &Gateway> {
        self.nodes.iter().flatten()
    }

    /// Waits until every running node accepts `secret` (or, with `known == false`, refuses it).
    pub fn wait_everywhere(&self, secret: &str, known: bool, timeout: Duration) {
        for gw in self.live() {
            poll_until(timeout, || {
                ((key_status(gw, secret) != 401) == known).then_some(())
            })
            .unwrap_or_else(|| panic!("a node did not learn the key's state (known: {known})"));
        }
    }

    /// Runs `sql` in this fleet's schema.
    pub fn sql(&self, sql: &str) -> String {
        psql(
            &self.url,
            &format!("SET search_path TO {}; {sql}", self.schema),
        )
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = Command::new("psql")
            .args([
                &self.url,
                "-X",
                "-q",
                "-c",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
            ])
            .output();
    }
}
