//! The plans the node runs from: the shards' [`ShardPlan`] (listener, TLS, runtime driver)
//! and the coordinator's [`GovernancePlan`] (store, secrets, intervals, prices).

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use shards::runtime::{DriverChoice, ShardPlan};

use super::{
    env_reference, invalid, literal_or_env, ms, ClusterConfig, Config, ConfigError, DriverName,
    GovernanceConfig, RequestLogs, StoreUnavailable,
};

/// Governance as the node runs it.
pub struct GovernancePlan {
    pub database: store::DatabaseConfig,
    pub require_key: bool,
    pub admin_token: Option<String>,
    pub secrets: Option<store::SecretBox>,
    pub flush_interval: Duration,
    pub lease_wait: Duration,
    pub prices: shards::governance::Prices,
    pub request_logs: RequestLogs,
    /// Set with a PostgreSQL store: every limit and budget is fleet-wide.
    pub cluster: Option<ClusterPlan>,
    pub spool_dir: std::path::PathBuf,
    pub request_log_retention: Option<Duration>,
}

/// How this node runs in its fleet (docs/cluster.md).
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    pub node_id: String,
    pub advertise_address: Option<String>,
    pub region: String,
    pub node_ttl: Duration,
    pub heartbeat: Duration,
    pub share_idle: Duration,
    pub lease_timeout: Duration,
    pub fail_open: bool,
}

impl ClusterConfig {
    fn plan(&self) -> Result<ClusterPlan, ConfigError> {
        for (field, value) in [
            ("governance.cluster.node_ttl_ms", self.node_ttl_ms),
            ("governance.cluster.heartbeat_ms", self.heartbeat_ms),
            ("governance.cluster.share_idle_ms", self.share_idle_ms),
            ("governance.cluster.lease_timeout_ms", self.lease_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        if self.heartbeat_ms * 2 > self.node_ttl_ms {
            return Err(invalid(
                "governance.cluster.heartbeat_ms",
                "must be at most half of node_ttl_ms, or a live node could be taken for dead",
            ));
        }
        let node_id = match &self.node_id {
            Some(id) if id.is_empty() || id.len() > 128 => {
                return Err(invalid(
                    "governance.cluster.node_id",
                    "must be 1 to 128 characters",
                ))
            }
            Some(id) => id.clone(),
            None => default_node_id(),
        };
        Ok(ClusterPlan {
            node_id,
            advertise_address: self.advertise_address.clone(),
            region: self.region.clone(),
            node_ttl: ms(self.node_ttl_ms),
            heartbeat: ms(self.heartbeat_ms),
            share_idle: ms(self.share_idle_ms),
            lease_timeout: ms(self.lease_timeout_ms),
            fail_open: self.on_store_unavailable == StoreUnavailable::FailOpen,
        })
    }
}

/// The machine's host name (a pod's name on Kubernetes), when the kernel tells it.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
}

/// The host name and a random suffix: a restarted node is a new member, so nothing of its
/// previous life is mistaken for its own.
fn default_node_id() -> String {
    let host = host_name().unwrap_or_else(|| "node".into());
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    seed.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    seed.write_u32(std::process::id());
    format!("{host}-{:08x}", seed.finish() as u32)
}

impl GovernanceConfig {
    pub fn plan(&self) -> Result<GovernancePlan, ConfigError> {
        let admin_token = match &self.admin_token {
            Some(v) => Some(env_reference("governance.admin_token", v)?),
            None => None,
        };
        if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(invalid(
                "governance.admin_token",
                "must be at least 16 characters",
            ));
        }
        let secrets = match &self.secret_key {
            Some(v) => Some(
                store::SecretBox::from_base64(&env_reference("governance.secret_key", v)?)
                    .map_err(|e| invalid("governance.secret_key", e.to_string()))?,
            ),
            None => None,
        };
        let database = literal_or_env("governance.database", &self.database)?;
        if self.cluster_leases.is_some() {
            return Err(invalid(
                "governance.cluster_leases",
                "was removed: with a postgres:// database every limit and budget is fleet-wide \
                 (a single node is a fleet of one), and SQLite is single-node; delete the line",
            ));
        }
        let mut database = store::DatabaseConfig::from_url(&database);
        let cluster = match &mut database {
            store::DatabaseConfig::Postgres(opts) => {
                opts.schema.clone_from(&self.database_schema);
                Some(self.cluster.plan()?)
            }
            store::DatabaseConfig::Sqlite { .. } if self.database_schema.is_some() => {
                return Err(invalid(
                    "governance.database_schema",
                    "applies to a postgres:// database only",
                ))
            }
            store::DatabaseConfig::Sqlite { .. } => None,
        };
        let spool_dir = match (&self.spool_dir, &database) {
            (Some(dir), _) => dir.into(),
            (None, store::DatabaseConfig::Sqlite { path }) => {
                let mut dir = path.clone().into_os_string();
                dir.push(".spool");
                dir.into()
            }
            (None, store::DatabaseConfig::Postgres(_)) => {
                std::env::temp_dir().join("ringgate-spool")
            }
        };
        if self.flush_interval_ms == 0 {
            return Err(invalid(
                "governance.flush_interval_ms",
                "must be greater than 0",
            ));
        }
        Ok(GovernancePlan {
            database,
            require_key: self.require_virtual_key,
            admin_token,
            secrets,
            flush_interval: ms(self.flush_interval_ms),
            // In a fleet a shard's refill may wait for the database (a cold node's first
            // request on a limit, a share run dry): waiting less than a lease may take would
            // refuse requests as if their limit were spent.
            lease_wait: match &cluster {
                Some(c) => ms(self.lease_wait_ms).max(c.lease_timeout),
                None => ms(self.lease_wait_ms),
            },
            cluster,
            spool_dir,
            request_log_retention: (self.request_log_retention_days > 0)
                .then(|| Duration::from_secs(self.request_log_retention_days * 86_400)),
            request_logs: self.request_logs,
            prices: crate::pricing::catalog(&self.prices, self.default_max_output_tokens)
                .map_err(|e| invalid("governance.prices", e))?,
        })
    }
}

impl Config {
    pub fn control_listen(&self) -> Result<SocketAddr, ConfigError> {
        self.control.listen.parse().map_err(|_| {
            invalid(
                "control.listen",
                format!("`{}` is not an ip:port address", self.control.listen),
            )
        })
    }

    pub fn shard_plan(&self) -> Result<ShardPlan, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("`{}` is not an ip:port address", self.listen),
            )
        })?;
        let tls = match &self.tls {
            Some(t) => Some(
                shards::tls::server_config(&t.cert_file, &t.key_file)
                    .map_err(|e| invalid("tls", e.to_string()))?,
            ),
            None => None,
        };
        if !(64..=32768).contains(&self.runtime.ring_entries)
            || !self.runtime.ring_entries.is_power_of_two()
        {
            return Err(invalid(
                "runtime.ring_entries",
                "must be a power of two between 64 and 32768",
            ));
        }
        Ok(ShardPlan {
            listen,
            shards: self.shards,
            pin_cores: self.pin_cores,
            driver: match self.runtime.driver {
                DriverName::Auto => DriverChoice::Auto,
                DriverName::IoUring => DriverChoice::IoUring,
                DriverName::Epoll => DriverChoice::Epoll,
            },
            ring_entries: self.runtime.ring_entries,
            tls,
            gov: None,
            traces: None,
            cache: None,
            release_memory: Some(crate::memory::release_thread_memory),
        })
    }
}

#[cfg(test)]
mod tests {
    use store::{DatabaseConfig, PgOptions};

    use super::*;

    fn plan(yaml: &str) -> Result<GovernancePlan, ConfigError> {
        serde_yaml::from_str::<GovernanceConfig>(yaml)
            .unwrap()
            .plan()
    }

    #[test]
    fn the_database_url_may_come_from_the_environment() {
        // A name no other test sets: tests share the process environment.
        let name = "RINGGATE_TEST_PLAN_DATABASE_URL";
        let url = "postgres://ringgate:s3cret@db.internal:5432/ringgate";
        std::env::set_var(name, url);
        let from_env = plan(&format!("database: env.{name}")).unwrap();
        assert_eq!(
            from_env.database,
            DatabaseConfig::Postgres(PgOptions::new(url))
        );
        let literal = plan("database: governance.db").unwrap();
        assert_eq!(
            literal.database,
            DatabaseConfig::Sqlite {
                path: "governance.db".into()
            }
        );
        let Err(missing) = plan("database: env.RINGGATE_TEST_PLAN_UNSET") else {
            panic!("an unset variable must be refused");
        };
        let missing = missing.to_string();
        assert!(
            missing.contains("governance.database") && missing.contains("RINGGATE_TEST_PLAN_UNSET"),
            "{missing}"
        );
    }

    #[test]
    fn the_removed_cluster_flag_is_named_and_postgres_is_a_fleet() {
        let Err(removed) = plan("database: postgres://x@h/db\ncluster_leases: true") else {
            panic!("the removed flag must be refused");
        };
        assert!(removed.to_string().contains("was removed"), "{removed}");
        let fleet = plan("database: postgres://x@h/db\ndatabase_schema: fleet_a").unwrap();
        let cluster = fleet.cluster.expect("postgres is a fleet");
        assert_eq!(cluster.node_ttl, Duration::from_secs(10));
        assert!(!cluster.node_id.is_empty());
        let DatabaseConfig::Postgres(opts) = fleet.database else {
            panic!("postgres")
        };
        assert_eq!(opts.schema.as_deref(), Some("fleet_a"));
        assert!(plan("database: a.db").unwrap().cluster.is_none());
        assert!(plan("database: a.db\ndatabase_schema: x").is_err());
        assert!(plan("database: postgres://x@h/db\ncluster: {heartbeat_ms: 6000}").is_err());
    }
}
