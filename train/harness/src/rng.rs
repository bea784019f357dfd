//! A small seeded generator for weight initialisation. candle's CPU random ops cannot be seeded,
//! and a reproducible start is what lets the noise floor be measured at all.

use candle_core::{Device, Result, Shape, Tensor};

/// SplitMix64: tiny, fast and good enough for initial weights.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An f32 tensor with entries uniform in [-bound, bound).
    pub fn uniform(
        &mut self,
        shape: impl Into<Shape>,
        bound: f64,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let data: Vec<f32> = (0..shape.elem_count())
            .map(|_| ((self.next_f64() * 2.0 - 1.0) * bound) as f32)
            .collect();
        Tensor::from_vec(data, shape, device)
    }

    /// An f32 tensor with normal entries (Box-Muller).
    pub fn normal(&mut self, shape: impl Into<Shape>, std: f64, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let data: Vec<f32> = (0..shape.elem_count())
            .map(|_| {
                let u1 = self.next_f64().max(f64::MIN_POSITIVE);
                let u2 = self.next_f64();
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std) as f32
            })
            .collect();
        Tensor::from_vec(data, shape, device)
    }
}
