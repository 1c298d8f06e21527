//! The plans the node runs from: the shards' [`ShardPlan`] (listener, TLS, runtime driver)
//! and the coordinator's [`GovernancePlan`] (store, secrets, intervals, prices).

use std::net::SocketAddr;
use std::time::Duration;

use shards::runtime::{DriverChoice, ShardPlan};

use super::{
    env_reference, invalid, literal_or_env, ms, Config, ConfigError, DriverName, GovernanceConfig,
    RequestLogs,
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
    pub cluster_leases: bool,
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
        if self.cluster_leases && !database.starts_with("postgres") {
            return Err(invalid(
                "governance.cluster_leases",
                "needs a postgres:// database",
            ));
        }
        if self.flush_interval_ms == 0 {
            return Err(invalid(
                "governance.flush_interval_ms",
                "must be greater than 0",
            ));
        }
        Ok(GovernancePlan {
            database: store::DatabaseConfig::from_url(&database),
            require_key: self.require_virtual_key,
            admin_token,
            secrets,
            flush_interval: ms(self.flush_interval_ms),
            lease_wait: ms(self.lease_wait_ms),
            cluster_leases: self.cluster_leases,
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
        let from_env = plan(&format!("database: env.{name}\ncluster_leases: true")).unwrap();
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
}
