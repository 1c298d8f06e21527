//! Tables of configured names — models, providers, aliases, fallbacks, prices, cache rules —
//! that every request looks up with the names it carries.
//!
//! They hash with foldhash rather than std's SipHash: a governed request makes some ten such
//! lookups, and SipHash showed as 1.3 % of a governed shard's samples (docs/perf.md, "Names
//! hashed fast, …", 2026-12-07). foldhash is seeded per process too. Hash
//! flooding needs control over what a table holds; these hold only what an admin configured,
//! and a client's names are only looked up.

use std::collections::{HashMap, HashSet};

/// The hasher of [`NameMap`] and [`NameSet`].
pub type NameHasher = foldhash::fast::RandomState;

/// Configured names to what they stand for.
pub type NameMap<V> = HashMap<String, V, NameHasher>;

/// A set of configured names.
pub type NameSet = HashSet<String, NameHasher>;
