//! Reproducible test tensors, for the crate's tests, its integration tests and `kernel-check`:
//! one generator, so that every check draws its inputs the same way.

use candle_core::{Device, Tensor};

/// SplitMix64: reproducible test data without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Normal with standard deviation `std`, as a `shape` tensor.
    pub fn normal(&mut self, shape: &[usize], std: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                let (u, v) = (self.uniform(), self.uniform());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * std) as f32
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    /// Ids in `0..n` as a u32 `shape` tensor.
    pub fn ids(&mut self, shape: &[usize], n: usize) -> Tensor {
        let count: usize = shape.iter().product();
        let data: Vec<u32> = (0..count)
            .map(|_| (self.next() % n as u64) as u32)
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }
}
