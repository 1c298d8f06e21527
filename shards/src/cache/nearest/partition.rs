//! One partition's structure, and its moves between structures: into a graph when it
//! outgrows the crossover; into a fresh graph once it has replaced as many entries as it
//! holds (usearch reuses a removed entry's node, and its links degrade: on the bench,
//! recall@1 fell to 0.95–0.97 once half the entries were replaced, where a fresh graph has
//! 1.0); back into a flat scan when it shrinks under half the crossover.
//!
//! A move into a graph costs an insert per entry (seconds for 10k entries of 1536
//! dimensions), so [`Partition::upkeep`] does it a slice at a time while the old structure
//! keeps answering; a move into a flat scan is a copy, done at once.

use std::time::Instant;

use super::flat::Flat;
use super::graph::Graph;

pub(super) struct Partition {
    serving: Structure,
    /// The graph being filled to take over from `serving`.
    next: Option<NextGraph>,
}

enum Structure {
    Flat(Flat),
    Graph(Graph),
}

struct NextGraph {
    graph: Graph,
    /// Keys still to copy from `serving`: all of its keys when the move began, and the keys
    /// inserted since (a key removed since is skipped).
    pending: Vec<[u8; 32]>,
}

impl Partition {
    /// An empty partition: flat, or a graph from the first entry when `graph_from` is 0.
    pub(super) fn new(dimension: usize, graph_from: usize) -> Self {
        let graph = match graph_from {
            0 => Graph::new(dimension, 64),
            _ => None,
        };
        let serving = graph.map_or_else(|| Structure::Flat(Flat::new(dimension)), Structure::Graph);
        Self {
            serving,
            next: None,
        }
    }

    pub(super) fn dimension(&self) -> usize {
        match &self.serving {
            Structure::Flat(flat) => flat.dimension(),
            Structure::Graph(graph) => graph.dimension(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match &self.serving {
            Structure::Flat(flat) => flat.len(),
            Structure::Graph(graph) => graph.len(),
        }
    }

    /// Adds an entry whose key is not in the partition, its vector normalised; false when
    /// usearch refused it.
    pub(super) fn insert(&mut self, key: [u8; 32], vector: &[f32], expires_at_ms: u64) -> bool {
        let added = match &mut self.serving {
            Structure::Flat(flat) => {
                flat.insert(key, vector, expires_at_ms);
                true
            }
            Structure::Graph(graph) => graph.insert(key, vector, expires_at_ms),
        };
        if let Some(next) = self.next.as_mut().filter(|_| added) {
            next.pending.push(key);
        }
        added
    }

    pub(super) fn remove(&mut self, key: &[u8; 32]) {
        match &mut self.serving {
            Structure::Flat(flat) => flat.remove(key),
            Structure::Graph(graph) => graph.remove(key),
        }
        if let Some(next) = &mut self.next {
            next.graph.remove(key);
        }
    }

    pub(super) fn nearest(
        &self,
        vector: &[f32],
        threshold: f32,
        now_ms: u64,
    ) -> Option<([u8; 32], f32)> {
        match &self.serving {
            Structure::Flat(flat) => flat.nearest(vector, threshold, now_ms),
            Structure::Graph(graph) => graph.nearest(vector, threshold, now_ms),
        }
    }

    pub(super) fn keys(&self) -> Vec<[u8; 32]> {
        match &self.serving {
            Structure::Flat(flat) => flat.keys().copied().collect(),
            Structure::Graph(graph) => graph.keys().copied().collect(),
        }
    }

    /// Whether [`Partition::upkeep`] has work: a move under way or due.
    pub(super) fn needs_upkeep(&self, graph_from: usize) -> bool {
        self.next.is_some()
            || match &self.serving {
                Structure::Flat(flat) => flat.len() > graph_from,
                Structure::Graph(graph) => {
                    graph.len() <= graph_from / 2 || graph.replaced() >= graph.len()
                }
            }
    }

    /// Moves the partition into the structure its size calls for, copying entries into a
    /// new graph until `deadline` (the rest at the next call).
    pub(super) fn upkeep(&mut self, graph_from: usize, deadline: Instant) {
        if self.next.is_none() {
            match &self.serving {
                Structure::Graph(graph) if graph.len() <= graph_from / 2 => {
                    self.make_flat();
                    return;
                }
                Structure::Flat(flat) if flat.len() > graph_from => self.begin_graph(),
                Structure::Graph(graph) if graph.replaced() >= graph.len() => self.begin_graph(),
                _ => return,
            }
        }
        self.fill_next_graph(deadline);
    }

    fn begin_graph(&mut self) {
        // Room to double before usearch has to grow it.
        if let Some(graph) = Graph::new(self.dimension(), self.len() * 2) {
            self.next = Some(NextGraph {
                graph,
                pending: self.keys(),
            });
        }
    }

    fn fill_next_graph(&mut self, deadline: Instant) {
        let Self { serving, next } = self;
        let Some(filling) = next else {
            return;
        };
        while Instant::now() < deadline {
            let Some(key) = filling.pending.pop() else {
                if let Some(done) = next.take() {
                    *serving = Structure::Graph(done.graph);
                }
                return;
            };
            if filling.graph.contains(&key) {
                continue;
            }
            let copied = match serving {
                Structure::Flat(flat) => flat.get(&key).map(|(vector, expires_at_ms)| {
                    filling.graph.insert(key, vector, expires_at_ms)
                }),
                Structure::Graph(graph) => graph.get(&key).map(|(vector, expires_at_ms)| {
                    filling.graph.insert(key, &vector, expires_at_ms)
                }),
            };
            if copied == Some(false) {
                // usearch refused an entry: the move is given up, and tried again later.
                *next = None;
                return;
            }
        }
    }

    /// A graph that shrank, as a flat scan: a copy of its vectors.
    fn make_flat(&mut self) {
        let Structure::Graph(graph) = &self.serving else {
            return;
        };
        let mut flat = Flat::new(graph.dimension());
        for key in graph.keys() {
            if let Some((vector, expires_at_ms)) = graph.get(key) {
                flat.insert(*key, &vector, expires_at_ms);
            }
        }
        // An entry usearch could not give back: keep the graph rather than lose it.
        if flat.len() == graph.len() {
            self.serving = Structure::Flat(flat);
        }
    }

    #[cfg(test)]
    pub(super) fn is_graph(&self) -> bool {
        matches!(self.serving, Structure::Graph(_))
    }
}
