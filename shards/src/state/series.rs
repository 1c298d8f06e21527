//! Per-model request metrics of one shard: for each provider and model it served, latency
//! histograms by status class (the request's duration, its time to first byte, the time spent
//! waiting on the provider, and the gateway's own overhead).
//!
//! The shard finds a model's series through its own index (a hash map only it touches) and
//! records into atomics only it writes; the coordinator walks the table when `/metrics` is
//! scraped and merges every shard's series of one model. A series is allocated the first time
//! its model is served (and its status class's histograms the first time that class is
//! seen), never again; past [`MAX_SERIES`] models one series named [`OTHER`] takes the rest,
//! so a client inventing model names cannot grow the table or the scrape without bound.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use super::histogram::Histogram;
use crate::names::NameHasher;

/// Distinct provider/model pairs a shard keeps series for.
pub const MAX_SERIES: usize = 128;
/// The model label of the series that holds every pair past [`MAX_SERIES`].
pub const OTHER: &str = "other";

/// Status classes, as the `class` label says them.
pub const CLASSES: [&str; 3] = ["2xx", "4xx", "5xx"];

/// The index in [`CLASSES`] of a status.
pub fn class_of(status: u16) -> usize {
    match status {
        ..=399 => 0,
        400..=499 => 1,
        _ => 2,
    }
}

/// What one request's timings went into.
#[derive(Debug, Default)]
pub struct Timings {
    /// Request read start to the response's last byte.
    pub duration: Histogram,
    /// Request read start to the response's first byte.
    pub first_byte: Histogram,
    /// Time waiting on the provider (connecting, its head, its body).
    pub upstream: Histogram,
    /// Time inside the gateway (see `path::tracker`).
    pub overhead: Histogram,
    /// The gateway's own running time, on sampled connections (see `path::busy`).
    pub cpu: Histogram,
}

/// One provider and model on one shard.
#[derive(Debug)]
pub struct ModelSeries {
    pub provider: String,
    pub model: String,
    by_class: [OnceLock<Box<Timings>>; 3],
}

impl ModelSeries {
    fn new(provider: &str, model: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            by_class: Default::default(),
        }
    }

    /// The histograms of a status class (allocated on its first request).
    pub fn class(&self, class: usize) -> &Timings {
        self.by_class[class].get_or_init(Box::default)
    }

    /// The histograms of a status class, if a request of that class was seen.
    pub fn seen(&self, class: usize) -> Option<&Timings> {
        self.by_class[class].get().map(|b| &**b)
    }
}

/// A shard's series, readable by the coordinator. Slot [`MAX_SERIES`] is the overflow.
#[derive(Debug)]
pub struct SeriesTable {
    slots: Box<[OnceLock<Box<ModelSeries>>]>,
}

impl Default for SeriesTable {
    fn default() -> Self {
        Self {
            slots: (0..=MAX_SERIES).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl SeriesTable {
    /// Every series in use.
    pub fn iter(&self) -> impl Iterator<Item = &ModelSeries> {
        self.slots.iter().filter_map(|s| s.get().map(|b| &**b))
    }
}

/// The shard's own way into its table: per provider slot, model name to table slot. Hashed
/// like the configured names (`crate::names`): a model a client named can be inserted, but
/// at most [`MAX_SERIES`] of them.
#[derive(Debug, Default)]
pub struct SeriesIndex {
    by_provider: RefCell<Vec<HashMap<Box<str>, usize, NameHasher>>>,
    used: std::cell::Cell<usize>,
}

impl SeriesIndex {
    /// The series of `model` at the provider in snapshot slot `slot`, created on first use.
    pub fn series<'t>(
        &self,
        table: &'t SeriesTable,
        slot: usize,
        provider: &str,
        model: &str,
    ) -> &'t ModelSeries {
        let mut by_provider = self.by_provider.borrow_mut();
        if by_provider.len() <= slot {
            by_provider.resize_with(slot + 1, HashMap::default);
        }
        let models = &mut by_provider[slot];
        let index = match models.get(model) {
            Some(&i) => i,
            None if self.used.get() < MAX_SERIES => {
                let i = self.used.get();
                self.used.set(i + 1);
                models.insert(model.into(), i);
                let _ = table.slots[i].set(Box::new(ModelSeries::new(provider, model)));
                i
            }
            None => {
                let _ = table.slots[MAX_SERIES].set(Box::new(ModelSeries::new(OTHER, OTHER)));
                MAX_SERIES
            }
        };
        table.slots[index].get().expect("set above or before")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_past_the_cap_share_one_series() {
        let table = SeriesTable::default();
        let index = SeriesIndex::default();
        let a = index.series(&table, 0, "p", "a") as *const ModelSeries;
        assert_eq!(index.series(&table, 0, "p", "a") as *const _, a);
        assert_ne!(index.series(&table, 1, "q", "a") as *const _, a);
        for i in 0..2 * MAX_SERIES {
            index.series(&table, 2, "r", &format!("m{i}"));
        }
        assert_eq!(table.iter().count(), MAX_SERIES + 1);
        assert_eq!(index.series(&table, 2, "r", "new").model, OTHER);
        index
            .series(&table, 0, "p", "a")
            .class(1)
            .overhead
            .record(5);
        assert!(table
            .iter()
            .any(|s| s.model == "a" && s.seen(1).is_some() && s.seen(0).is_none()));
    }
}
