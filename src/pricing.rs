//! The pricing catalog: list prices shipped in `pricing/prices.yaml` (compiled in), overridden
//! or extended by the config's `governance.prices`. Prices are decimal USD per million tokens
//! in the files and integer nano-dollars per million tokens at run time — no floats anywhere.

use std::collections::BTreeMap;

use serde::Deserialize;
use shards::governance::units::UnitPrices;
use shards::governance::{Price, Prices};
use vocab::NanoUsd;

const CATALOG: &str = include_str!("../pricing/prices.yaml");

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// USD per million input tokens, as a decimal string (`"0.15"`); 0 when not given (a
    /// model priced only by its units).
    #[serde(default = "zero")]
    pub input: String,
    #[serde(default = "zero")]
    pub output: String,
    #[serde(default)]
    pub cached_input: Option<String>,
    /// The most output tokens one response of the model may have.
    #[serde(default)]
    pub max_output: Option<u64>,
    /// USD per minute of audio transcribed or translated, charged by the second.
    #[serde(default)]
    pub per_audio_minute: Option<String>,
    /// USD per million characters of speech input.
    #[serde(default)]
    pub per_million_characters: Option<String>,
    /// USD per image by tier: `quality/size` (`hd/1024x1024`), `size`, `quality` or
    /// `default`.
    #[serde(default)]
    pub per_image: BTreeMap<String, String>,
}

fn zero() -> String {
    "0".into()
}

fn parse_usd(name: &str, field: &str, v: &str) -> Result<NanoUsd, String> {
    v.parse::<NanoUsd>()
        .map_err(|e| format!("prices.{name}.{field}: {e}"))
}

/// The model's unit prices, when it has any.
fn unit_prices(name: &str, p: &PriceConfig) -> Result<Option<UnitPrices>, String> {
    if p.per_audio_minute.is_none() && p.per_million_characters.is_none() && p.per_image.is_empty()
    {
        return Ok(None);
    }
    let optional = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map_or(Ok(NanoUsd::ZERO), |v| parse_usd(name, field, v))
    };
    Ok(Some(UnitPrices {
        per_audio_minute: optional("per_audio_minute", &p.per_audio_minute)?,
        per_million_characters: optional("per_million_characters", &p.per_million_characters)?,
        per_image: p
            .per_image
            .iter()
            .map(|(tier, v)| Ok((tier.clone(), parse_usd(name, "per_image", v)?)))
            .collect::<Result<_, String>>()?,
    }))
}

fn price(name: &str, p: &PriceConfig) -> Result<Price, String> {
    let parse = |field: &str, v: &str| parse_usd(name, field, v);
    let input = parse("input", &p.input)?;
    Ok(Price {
        input_per_mtok: input,
        output_per_mtok: parse("output", &p.output)?,
        cached_input_per_mtok: match &p.cached_input {
            Some(v) => parse("cached_input", v)?,
            None => input,
        },
        max_output: p.max_output,
    })
}

/// The shipped catalog with `overrides` applied; `default_max_output` stands for the output
/// cap of models it does not know.
pub fn catalog(
    overrides: &BTreeMap<String, PriceConfig>,
    default_max_output: u64,
) -> Result<Prices, String> {
    let shipped: BTreeMap<String, PriceConfig> =
        serde_yaml::from_str(CATALOG).map_err(|e| format!("pricing/prices.yaml: {e}"))?;
    let mut prices = Prices::new(default_max_output);
    for (name, p) in shipped.iter().chain(overrides) {
        prices.insert(name, price(name, p)?);
        if let Some(units) = unit_prices(name, p)? {
            prices.insert_units(name, units);
        }
    }
    Ok(prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalog_parses_and_overrides_win() {
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "gpt-4o-mini".to_owned(),
            PriceConfig {
                input: "1".into(),
                output: "2".into(),
                ..PriceConfig::default()
            },
        );
        let prices = catalog(&overrides, 4096).unwrap();
        assert!(prices.len() > 10);
        let p = prices.lookup("openai", "gpt-4o-mini").unwrap();
        assert_eq!(p.input_per_mtok.nanos(), 1_000_000_000);
        assert_eq!(p.cached_input_per_mtok.nanos(), 1_000_000_000);
        assert_eq!(prices.max_output("openai", "gpt-4o"), 16_384);
        assert_eq!(prices.max_output("mock", "no-such-model"), 4096);
        let whisper = prices.lookup_units("openai", "whisper-1").unwrap();
        assert_eq!(whisper.per_audio_minute.nanos(), 6_000_000);
        let dalle = prices.lookup_units("openai", "dall-e-3").unwrap();
        assert!(dalle
            .per_image
            .iter()
            .any(|(tier, _)| tier == "hd/1024x1024"));
        // An override without max_output replaces the entry: the default stands.
        assert_eq!(prices.max_output("openai", "gpt-4o-mini"), 4096);
    }
}
