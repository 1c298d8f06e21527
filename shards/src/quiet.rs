//! Telling when a thread has just gone quiet after work, from a measure of its activity
//! read at regular checks: the moment to give back memory that work left behind, once per
//! quiet spell and never under load.

/// Tells, one check after another, when activity has just stopped.
pub struct QuietWatch<T> {
    seen: T,
    released: bool,
}

impl<T: PartialEq> QuietWatch<T> {
    /// Activity so far `seen`: what came before has nothing left to give back.
    pub fn new(seen: T) -> Self {
        Self {
            seen,
            released: true,
        }
    }

    /// True when the activity has not moved since the last check but had moved before it
    /// (the first quiet check after work).
    pub fn tick(&mut self, now: T) -> bool {
        if now != self.seen {
            self.seen = now;
            self.released = false;
            return false;
        }
        !std::mem::replace(&mut self.released, true)
    }
}

#[cfg(test)]
mod tests {
    use super::QuietWatch;

    #[test]
    fn release_comes_once_per_quiet_spell_after_work() {
        let mut watch = QuietWatch::new((0, 0));
        assert!(!watch.tick((0, 0)), "no work yet");
        assert!(!watch.tick((5, 2)), "busy");
        assert!(!watch.tick((9, 2)), "still busy");
        assert!(watch.tick((9, 2)), "quiet after work");
        assert!(!watch.tick((9, 2)), "released already");
        assert!(!watch.tick((9, 1)), "a connection closed");
        assert!(watch.tick((9, 1)), "quiet again");
    }
}
