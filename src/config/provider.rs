//! Building one provider: its base URL, address, TLS, credentials (`env.NAME` references
//! only), fixed headers and policies, checked field by field — for providers in the file and
//! for those stored through the admin API ([`stored_provider`]).

use std::net::{SocketAddr, ToSocketAddrs};

use shards::snapshot::{
    ApiKey, AwsAuth, Backpressure, BreakerPolicy, PoolSettings, Provider, RetryPolicy, Timeouts,
};

use super::{env_reference, invalid, literal_or_env, ms, ConfigError, ProviderConfig};
use crate::presets::ProviderKind;

/// A provider defined through the admin API, as configuration: `kind` and `base_url` from the
/// record, everything else from its `config_json` (the same fields as in the YAML file).
pub fn stored_provider(p: &store::Provider) -> Result<ProviderConfig, ConfigError> {
    let field = format!("providers.{} (admin API)", p.name);
    let mut value: serde_json::Value = serde_json::from_str(if p.config_json.trim().is_empty() {
        "{}"
    } else {
        &p.config_json
    })
    .map_err(|e| invalid(&field, format!("config_json: {e}")))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| invalid(&field, "config_json must be a JSON object"))?;
    object.insert("kind".into(), serde_json::Value::String(p.kind.clone()));
    object.insert(
        "base_url".into(),
        serde_json::Value::String(p.base_url.clone()),
    );
    let mut config: ProviderConfig =
        serde_json::from_value(value).map_err(|e| invalid(&field, e.to_string()))?;
    config.stored_secret = p.secret.clone();
    Ok(config)
}

/// Parts of a provider base URL.
#[derive(Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_base_url(url: &str) -> Result<BaseUrl, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must start with http:// or https://".into());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [ in host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| "invalid port")?,
            None if after.is_empty() => default_port,
            None => return Err("invalid host".into()),
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| "invalid port")?),
            None => (authority.to_owned(), default_port),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    if path.contains(['?', '#']) {
        return Err("must not contain a query or fragment".into());
    }
    Ok(BaseUrl {
        https,
        host,
        port,
        path: path.trim_end_matches('/').to_owned(),
    })
}

pub(super) fn build_provider(
    name: &str,
    p: &ProviderConfig,
    slot: usize,
) -> Result<Provider, ConfigError> {
    let field = |f: &str| format!("providers.{name}.{f}");
    let base_url = match &p.base_url {
        Some(url) => url.clone(),
        None => p
            .kind
            .default_base_url(p.region.as_deref())
            .ok_or_else(|| {
                invalid(
                    field("base_url"),
                    format!("is required for kind {:?}", p.kind),
                )
            })?,
    };
    let url = parse_base_url(&base_url).map_err(|m| invalid(field("base_url"), m))?;
    let aws = aws_auth(name, p)?;
    let api_version = match (p.kind, &p.api_version) {
        (ProviderKind::Azure, None) => {
            return Err(invalid(field("api_version"), "is required for kind azure"))
        }
        (ProviderKind::Azure, Some(v)) => Some(v.clone()),
        (_, Some(_)) => return Err(invalid(field("api_version"), "only applies to kind azure")),
        (_, None) => None,
    };
    let addrs: Vec<SocketAddr> = match (url.host.as_str(), url.port).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            tracing::warn!(provider = name, host = %url.host, error = %e, "cannot resolve provider host; its requests will fail until restart");
            Vec::new()
        }
    };
    let tls_config = if url.https {
        Some(
            shards::tls::client_config(p.ca_file.as_deref())
                .map_err(|e| invalid(field("ca_file"), e.to_string()))?,
        )
    } else {
        if p.ca_file.is_some() {
            return Err(invalid(field("ca_file"), "only applies to https base URLs"));
        }
        None
    };
    let tls = match &tls_config {
        Some(config) => {
            let server_name = rustls_pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| invalid(field("base_url"), e.to_string()))?;
            Some((
                monoio_rustls::TlsConnector::from(config.clone()),
                server_name,
            ))
        }
        None => None,
    };
    let default_port = if url.https { 443 } else { 80 };
    let host_header = if url.port == default_port {
        bracket_v6(&url.host)
    } else {
        format!("{}:{}", bracket_v6(&url.host), url.port)
    };
    let mut fixed_headers = String::new();
    let keys = build_keys(name, p)?;
    for (h, v) in &p.headers {
        let value = literal_or_env(&field(&format!("headers.{h}")), v)?;
        if !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || value.contains(['\r', '\n'])
        {
            return Err(invalid(
                field(&format!("headers.{h}")),
                "invalid header name or value",
            ));
        }
        fixed_headers.push_str(&format!("{h}: {value}\r\n"));
    }
    if p.pool_max_idle > 100_000 {
        return Err(invalid(field("pool_max_idle"), "must be at most 100000"));
    }
    if !(0.0..=1.0).contains(&p.breaker.error_ratio) || p.breaker.error_ratio == 0.0 {
        return Err(invalid(field("breaker.error_ratio"), "must be in (0, 1]"));
    }
    if p.breaker.consecutive_failures == 0 || p.breaker.half_open_probes == 0 {
        return Err(invalid(
            field("breaker"),
            "consecutive_failures and half_open_probes must be at least 1",
        ));
    }
    if p.backpressure.max_in_flight > 0
        && p.backpressure.max_queue > 0
        && p.backpressure.queue_timeout_ms == 0
    {
        return Err(invalid(
            field("backpressure.queue_timeout_ms"),
            "must be set when max_queue > 0",
        ));
    }
    if p.retry.initial_delay_ms > p.retry.max_delay_ms {
        return Err(invalid(
            field("retry.initial_delay_ms"),
            "must not exceed retry.max_delay_ms",
        ));
    }
    for (f, v) in [
        ("connect_timeout_ms", p.connect_timeout_ms),
        ("first_byte_timeout_ms", p.first_byte_timeout_ms),
        ("idle_timeout_ms", p.idle_timeout_ms),
        ("total_timeout_ms", p.total_timeout_ms),
        ("max_total_timeout_ms", p.max_total_timeout_ms),
    ] {
        if v == 0 {
            return Err(invalid(field(f), "must be greater than 0"));
        }
    }
    Ok(Provider {
        name: name.to_owned(),
        slot,
        wire: p.kind.wire(),
        responses_passthrough: p.kind.serves_responses(),
        api_version,
        aws,
        addrs,
        tls,
        tls_config,
        host_header,
        base_path: url.path,
        fixed_headers: fixed_headers.into_bytes(),
        keys,
        timeouts: Timeouts {
            connect: ms(p.connect_timeout_ms),
            first_byte: ms(p.first_byte_timeout_ms),
            idle: ms(p.idle_timeout_ms),
            total: ms(p.total_timeout_ms),
            max_total: ms(p.max_total_timeout_ms),
        },
        pool: PoolSettings {
            max_idle: p.pool_max_idle,
            idle_timeout: ms(p.pool_idle_timeout_ms),
        },
        retry: RetryPolicy {
            max_retries: p.retry.max_retries,
            initial_delay: ms(p.retry.initial_delay_ms),
            max_delay: ms(p.retry.max_delay_ms),
        },
        breaker: BreakerPolicy {
            consecutive_failures: p.breaker.consecutive_failures,
            error_ratio: p.breaker.error_ratio,
            min_requests: p.breaker.min_requests,
            open_for: ms(p.breaker.open_ms),
            half_open_probes: p.breaker.half_open_probes,
        },
        backpressure: Backpressure {
            max_in_flight: p.backpressure.max_in_flight,
            max_queue: p.backpressure.max_queue,
            queue_timeout: ms(p.backpressure.queue_timeout_ms),
        },
        models: p.models.clone(),
    })
}

/// Bedrock's signing credentials; required for kind bedrock and refused elsewhere.
fn aws_auth(name: &str, p: &ProviderConfig) -> Result<Option<AwsAuth>, ConfigError> {
    let field = |f: &str| format!("providers.{name}.{f}");
    if p.kind != ProviderKind::Bedrock {
        if p.region.is_some() || p.aws_access_key_id.is_some() || p.aws_secret_access_key.is_some()
        {
            return Err(invalid(
                field("region"),
                "AWS settings only apply to kind bedrock",
            ));
        }
        return Ok(None);
    }
    if p.api_key.is_some() || !p.keys.is_empty() {
        return Err(invalid(
            field("api_key"),
            "bedrock signs requests with AWS credentials, not API keys",
        ));
    }
    let required = |f: &str, v: &Option<String>| -> Result<String, ConfigError> {
        let v = v
            .as_ref()
            .ok_or_else(|| invalid(field(f), "is required for kind bedrock"))?;
        env_reference(&field(f), v)
    };
    Ok(Some(AwsAuth {
        region: p
            .region
            .clone()
            .ok_or_else(|| invalid(field("region"), "is required for kind bedrock"))?,
        access_key: required("aws_access_key_id", &p.aws_access_key_id)?,
        secret_key: required("aws_secret_access_key", &p.aws_secret_access_key)?,
        session_token: match &p.aws_session_token {
            Some(v) => Some(env_reference(&field("aws_session_token"), v)?),
            None => None,
        },
    }))
}

/// The provider's API keys: `api_key` (one key) or `keys` (several, weighted).
fn build_keys(name: &str, p: &ProviderConfig) -> Result<Vec<ApiKey>, ConfigError> {
    let line = |key: String| p.kind.key_line(&key);
    match (&p.api_key, p.keys.is_empty()) {
        (Some(_), false) => Err(invalid(
            format!("providers.{name}.keys"),
            "set either api_key or keys, not both",
        )),
        (Some(key), true) => Ok(vec![ApiKey {
            header_line: line(env_reference(&format!("providers.{name}.api_key"), key)?),
            weight: 1,
            models: Vec::new(),
        }]),
        (None, true) if p.stored_secret.is_some() => Ok(vec![ApiKey {
            header_line: line(p.stored_secret.clone().unwrap_or_default()),
            weight: 1,
            models: Vec::new(),
        }]),
        (None, _) => p
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let field = format!("providers.{name}.keys[{i}]");
                if k.weight == 0 {
                    return Err(invalid(format!("{field}.weight"), "must be at least 1"));
                }
                Ok(ApiKey {
                    header_line: line(env_reference(&format!("{field}.key"), &k.key)?),
                    weight: k.weight,
                    models: k.models.clone(),
                })
            })
            .collect(),
    }
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("https://api.openai.com/v1/").unwrap(),
            BaseUrl {
                https: true,
                host: "api.openai.com".into(),
                port: 443,
                path: "/v1".into()
            }
        );
        assert_eq!(parse_base_url("http://[::1]:8001").unwrap().host, "::1");
        assert!(parse_base_url("ftp://x").is_err());
        assert!(parse_base_url("http://:80/v1").is_err());
        assert!(parse_base_url("http://h:99999/").is_err());
    }
}
