//! The pricing catalog: list prices shipped in `pricing/prices.yaml` (compiled in), overridden
//! or extended by the config's `governance.prices`. Prices are decimal USD per million tokens
//! in the files and integer nano-dollars per million tokens at run time — no floats anywhere.

use std::collections::BTreeMap;

use serde::Deserialize;
use shards::governance::{Price, Prices};

const CATALOG: &str = include_str!("../pricing/prices.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// USD per million input tokens, as a decimal string (`"0.15"`).
    pub input: String,
    pub output: String,
    #[serde(default)]
    pub cached_input: Option<String>,
}

/// Parses a non-negative decimal USD amount into nano-dollars, exactly.
pub fn usd_to_nanos(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty()
        || !digits_ok(whole)
        || !digits_ok(frac)
        || frac.len() > 9
    {
        return Err(format!(
            "`{text}` is not a decimal amount with at most 9 decimals"
        ));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| format!("`{text}` is too large"))?
    };
    let frac_nanos: u64 = format!("{frac:0<9}").parse().unwrap_or(0);
    whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(frac_nanos))
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn price(name: &str, p: &PriceConfig) -> Result<Price, String> {
    let parse =
        |field: &str, v: &str| usd_to_nanos(v).map_err(|e| format!("prices.{name}.{field}: {e}"));
    let input = parse("input", &p.input)?;
    Ok(Price {
        input_per_mtok: input,
        output_per_mtok: parse("output", &p.output)?,
        cached_input_per_mtok: match &p.cached_input {
            Some(v) => parse("cached_input", v)?,
            None => input,
        },
    })
}

/// The shipped catalog with `overrides` applied.
pub fn catalog(overrides: &BTreeMap<String, PriceConfig>) -> Result<Prices, String> {
    let shipped: BTreeMap<String, PriceConfig> =
        serde_yaml::from_str(CATALOG).map_err(|e| format!("pricing/prices.yaml: {e}"))?;
    let mut prices = Prices::default();
    for (name, p) in shipped.iter().chain(overrides) {
        prices.insert(name, price(name, p)?);
    }
    Ok(prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_become_exact_nanos() {
        assert_eq!(usd_to_nanos("0.15"), Ok(150_000_000));
        assert_eq!(usd_to_nanos("10"), Ok(10_000_000_000));
        assert_eq!(usd_to_nanos("0.000000001"), Ok(1));
        assert!(usd_to_nanos("0.0000000001").is_err());
        assert!(usd_to_nanos("-1").is_err());
        assert!(usd_to_nanos("abc").is_err());
    }

    #[test]
    fn shipped_catalog_parses_and_overrides_win() {
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "gpt-4o-mini".to_owned(),
            PriceConfig {
                input: "1".into(),
                output: "2".into(),
                cached_input: None,
            },
        );
        let prices = catalog(&overrides).unwrap();
        assert!(prices.len() > 10);
        let p = prices.lookup("openai", "gpt-4o-mini").unwrap();
        assert_eq!(p.input_per_mtok, 1_000_000_000);
        assert_eq!(p.cached_input_per_mtok, 1_000_000_000);
    }
}
