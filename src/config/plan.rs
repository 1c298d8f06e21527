//! The plans the node runs from: the shards' [`ShardPlan`] (listener, TLS, runtime driver)
//! and the coordinator's [`GovernancePlan`] (store, secrets, intervals, prices).

use std::net::SocketAddr;
use std::time::Duration;

use shards::runtime::{DriverChoice, ShardPlan};

use super::{
    env_reference, invalid, ms, Config, ConfigError, DriverName, GovernanceConfig, RequestLogs,
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
        if self.cluster_leases && !self.database.starts_with("postgres") {
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
            database: store::DatabaseConfig::from_url(&self.database),
            require_key: self.require_virtual_key,
            admin_token,
            secrets,
            flush_interval: ms(self.flush_interval_ms),
            lease_wait: ms(self.lease_wait_ms),
            cluster_leases: self.cluster_leases,
            request_logs: self.request_logs,
            prices: crate::pricing::catalog(&self.prices)
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
