//! The `observability` section: log format and access log, who may scrape `/metrics`, which
//! labels the usage metrics carry, and where traces go.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{env_reference, invalid, literal_or_env, ConfigError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// `text` (default) or `json` (one JSON object per line).
    #[serde(default)]
    pub log_format: LogFormat,
    /// One log line per request (target `access`): id, path, provider, model, status,
    /// timings.
    #[serde(default)]
    pub access_log: bool,
    /// `env.NAME`: `/metrics` then requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// Token and spend metrics by virtual key and team (governance only).
    #[serde(default = "default_true")]
    pub key_labels: bool,
    /// Distinct keys labelled at most; the rest are summed under `key="other"`.
    #[serde(default = "default_max_key_labels")]
    pub max_key_labels: usize,
    /// OpenTelemetry traces over OTLP/HTTP; off when absent.
    pub traces: Option<TracesConfig>,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::default(),
            access_log: false,
            metrics_token: None,
            key_labels: true,
            max_key_labels: default_max_key_labels(),
            traces: None,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// The OTLP/HTTP traces URL, e.g. `http://otel-collector:4318/v1/traces`.
    pub endpoint: String,
    /// Share of requests traced when the client sent no sampling decision (0 to 1).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// `service.name` of the spans' resource.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Extra request headers for the collector (literal or `env.NAME`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How often buffered spans are sent.
    #[serde(default = "default_export_interval_ms")]
    pub export_interval_ms: u64,
}

fn default_true() -> bool {
    true
}
fn default_max_key_labels() -> usize {
    1000
}
fn default_sample_ratio() -> f64 {
    1.0
}
fn default_service_name() -> String {
    "ringgate".into()
}
fn default_export_interval_ms() -> u64 {
    1000
}

/// The section, checked and with its secrets resolved.
#[derive(Debug, Clone, Default)]
pub struct Observability {
    pub log_format: LogFormat,
    pub access_log: bool,
    pub metrics_token: Option<String>,
    pub key_labels: bool,
    pub max_key_labels: usize,
    pub traces: Option<Traces>,
}

/// Where and how spans are exported (src/coordinator/traces/).
#[derive(Debug, Clone)]
pub struct Traces {
    /// `http://host[:port]/path`.
    pub endpoint: hyper::Uri,
    pub sample_ratio: f64,
    pub service_name: String,
    /// Sent with every export; values are marked sensitive, so `Debug` does not print them.
    pub headers: hyper::HeaderMap,
    pub export_interval: Duration,
}

impl ObservabilityConfig {
    pub fn plan(&self) -> Result<Observability, ConfigError> {
        let metrics_token = self
            .metrics_token
            .as_deref()
            .map(|v| env_reference("observability.metrics_token", v))
            .transpose()?;
        let traces = self.traces.as_ref().map(TracesConfig::plan).transpose()?;
        Ok(Observability {
            log_format: self.log_format,
            access_log: self.access_log,
            metrics_token,
            key_labels: self.key_labels,
            max_key_labels: self.max_key_labels,
            traces,
        })
    }
}

impl TracesConfig {
    fn plan(&self) -> Result<Traces, ConfigError> {
        let endpoint = self
            .endpoint
            .parse::<hyper::Uri>()
            .ok()
            // No `user:password@`: the URL is logged when exports fail (headers carry secrets).
            .filter(|uri| {
                uri.scheme_str() == Some("http")
                    && uri.host().is_some()
                    && uri.authority().is_some_and(|a| !a.as_str().contains('@'))
            })
            .ok_or_else(|| {
                invalid(
                    "observability.traces.endpoint",
                    format!(
                        "`{}` must be an http:// URL with a host and no credentials (an \
                         OTLP/HTTP collector; https is not supported yet; secrets go in headers)",
                        self.endpoint
                    ),
                )
            })?;
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid(
                "observability.traces.sample_ratio",
                format!("{} is not between 0 and 1", self.sample_ratio),
            ));
        }
        let mut headers = hyper::HeaderMap::new();
        for (name, value) in &self.headers {
            let field = format!("observability.traces.headers.{name}");
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&field, "is not a valid header name"))?;
            let mut value = hyper::header::HeaderValue::try_from(literal_or_env(&field, value)?)
                .map_err(|_| invalid(&field, "is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(Traces {
            endpoint,
            sample_ratio: self.sample_ratio,
            service_name: self.service_name.clone(),
            headers,
            export_interval: Duration::from_millis(self.export_interval_ms.max(10)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traces(yaml: &str) -> Result<Traces, ConfigError> {
        let config: TracesConfig = serde_yaml::from_str(yaml).expect("valid YAML");
        config.plan()
    }

    #[test]
    fn traces_need_an_http_collector_and_valid_headers() {
        let t = traces(
            "endpoint: http://collector:4318/v1/traces\nheaders: {x-token: secret-value}\nexport_interval_ms: 1",
        )
        .unwrap();
        assert_eq!(t.endpoint.host(), Some("collector"));
        assert_eq!(t.endpoint.path(), "/v1/traces");
        assert_eq!(t.export_interval, Duration::from_millis(10));
        assert!(!format!("{t:?}").contains("secret-value"));
        for (yaml, field) in [
            ("endpoint: https://collector/v1/traces", "endpoint"),
            ("endpoint: collector:4318", "endpoint"),
            ("endpoint: http:///v1/traces", "endpoint"),
            ("endpoint: http://user:pw@c/v1/traces", "endpoint"),
            ("endpoint: http://c/\nsample_ratio: 1.5", "sample_ratio"),
            (
                "endpoint: http://c/\nheaders: {'bad name': x}",
                "headers.bad name",
            ),
            ("endpoint: http://c/\nheaders: {x: \"a\\nb\"}", "headers.x"),
        ] {
            let e = traces(yaml).unwrap_err().to_string();
            assert!(e.contains(field), "{yaml}: {e}");
        }
    }
}
