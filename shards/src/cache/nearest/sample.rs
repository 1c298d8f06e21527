//! Deterministic sample embeddings for the index's tests and its bench (which sits outside
//! the crate, hence public): gaussian directions of unit length, and near-duplicates of
//! them, as a semantic cache sees paraphrases.

/// An entry's key made from a number.
pub fn key(i: usize) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&(i as u64).to_le_bytes());
    key
}

/// A generator of unit-length gaussian vectors (SplitMix64 and Box–Muller) from a seed.
pub struct Vectors(pub u64);

impl Vectors {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    pub fn random(&mut self, dimension: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dimension)
            .map(|_| {
                let (u, w) = (self.uniform(), self.uniform());
                (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * w).cos()
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    /// `base` plus noise of norm `noise` (relative to the unit base).
    pub fn near(&mut self, base: &[f32], noise: f32) -> Vec<f32> {
        let direction = self.random(base.len());
        base.iter()
            .zip(direction)
            .map(|(b, d)| b + noise * d)
            .collect()
    }
}
