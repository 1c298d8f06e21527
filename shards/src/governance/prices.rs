//! The model catalog the data plane reads: prices per model in integer nano-dollars per
//! million tokens (the cost of one request's usage computed exactly in integers), and the most
//! output tokens a model may produce (what a request without `max_tokens` is estimated at).

use vocab::NanoUsd;

use super::units::UnitPrices;
use crate::names::NameMap;

/// What a million tokens cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    pub input_per_mtok: NanoUsd,
    pub output_per_mtok: NanoUsd,
    pub cached_input_per_mtok: NanoUsd,
    /// The most output tokens one response may have, when known.
    pub max_output: Option<u64>,
}

impl Price {
    /// Cost rounded up to the nano-dollar (never under-charge), saturating.
    pub fn cost(&self, prompt: u64, completion: u64, cached: u64) -> NanoUsd {
        let cached = cached.min(prompt);
        let total = u128::from(prompt - cached) * u128::from(self.input_per_mtok.nanos())
            + u128::from(cached) * u128::from(self.cached_input_per_mtok.nanos())
            + u128::from(completion) * u128::from(self.output_per_mtok.nanos());
        NanoUsd::from_nanos(u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX))
    }
}

/// Prices by `provider/model`, with bare model names as a fallback.
#[derive(Debug, Clone, Default)]
pub struct Prices {
    by_name: NameMap<Price>,
    /// Non-token units (audio, speech, images), for the models that have them.
    units_by_name: NameMap<UnitPrices>,
    /// Output cap assumed for models without `max_output`.
    default_max_output: u64,
}

impl Prices {
    pub fn new(default_max_output: u64) -> Self {
        Self {
            by_name: NameMap::default(),
            units_by_name: NameMap::default(),
            default_max_output,
        }
    }

    /// The most output tokens `model` at `provider` may produce: the catalog's, else the
    /// configured default.
    pub fn max_output(&self, provider: &str, model: &str) -> u64 {
        self.lookup(provider, model)
            .and_then(|p| p.max_output)
            .unwrap_or(self.default_max_output)
    }

    pub fn insert(&mut self, name: &str, price: Price) {
        self.by_name.insert(name.to_owned(), price);
    }

    pub fn insert_units(&mut self, name: &str, units: UnitPrices) {
        self.units_by_name.insert(name.to_owned(), units);
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The price of `model` at `provider`: `provider/model`, else `model`.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<&Price> {
        by_model(&self.by_name, provider, model)
    }

    /// The unit prices of `model` at `provider`, named as in [`Prices::lookup`].
    pub fn lookup_units(&self, provider: &str, model: &str) -> Option<&UnitPrices> {
        by_model(&self.units_by_name, provider, model)
    }
}

/// `provider/model` in `table`, else `model`. Runs on every governed request (admission and
/// settlement look prices up), so the joined name is built on the stack when it fits.
fn by_model<'t, T>(table: &'t NameMap<T>, provider: &str, model: &str) -> Option<&'t T> {
    const ON_STACK: usize = 128;
    let len = provider.len() + 1 + model.len();
    let mut buf = [0u8; ON_STACK];
    let joined = if len <= ON_STACK {
        buf[..provider.len()].copy_from_slice(provider.as_bytes());
        buf[provider.len()] = b'/';
        buf[provider.len() + 1..len].copy_from_slice(model.as_bytes());
        // Two whole `str`s joined by an ASCII byte are UTF-8.
        std::str::from_utf8(&buf[..len])
            .ok()
            .and_then(|k| table.get(k))
    } else {
        table.get(&format!("{provider}/{model}"))
    };
    joined.or_else(|| table.get(model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_looked_up_with_their_provider_first() {
        let table: NameMap<u8> = [("p/m", 1), ("m", 2), ("n", 3)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(by_model(&table, "p", "m"), Some(&1));
        assert_eq!(by_model(&table, "q", "m"), Some(&2));
        assert_eq!(by_model(&table, "q", "x"), None);
        let long = "x".repeat(200);
        assert_eq!(by_model(&table, &long, "n"), Some(&3));
        let table: NameMap<u8> = [(format!("{long}/n"), 4)].into_iter().collect();
        assert_eq!(by_model(&table, &long, "n"), Some(&4));
    }

    #[test]
    fn exact_integer_costs() {
        // $0.15 / $0.60 / $0.075 per million tokens.
        let p = Price {
            input_per_mtok: NanoUsd::from_nanos(150_000_000),
            output_per_mtok: NanoUsd::from_nanos(600_000_000),
            cached_input_per_mtok: NanoUsd::from_nanos(75_000_000),
            max_output: None,
        };
        let cost = |prompt, completion, cached| p.cost(prompt, completion, cached).nanos();
        assert_eq!(cost(1_000_000, 0, 0), 150_000_000);
        assert_eq!(cost(1000, 500, 0), 150_000 + 300_000);
        assert_eq!(cost(1000, 0, 400), 600 * 150 + 400 * 75);
        assert_eq!(cost(1, 0, 0), 150, "rounds up, never to zero");
        let mut prices = Prices::default();
        prices.insert("gpt-4o-mini", p);
        assert!(prices.lookup("openai", "gpt-4o-mini").is_some());
        assert!(prices.lookup("openai", "other").is_none());
    }
}
