//! Seeded random tensors. Every random draw of training and sampling goes
//! through [`TensorRng`] so that the same seed on the same device gives the
//! same result: on the CPU the numbers come from a ChaCha8 stream on the host
//! (candle's CPU RNG cannot be seeded); on CUDA the device generator is seeded
//! once and used directly (no host→device copy per step).
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::Result;

pub struct TensorRng {
    host: ChaCha8Rng,
    device: Device,
}

impl TensorRng {
    pub fn new(seed: u64, device: &Device) -> Result<Self> {
        if !device.is_cpu() {
            device.set_seed(seed)?;
        }
        Ok(TensorRng {
            host: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
        })
    }
    /// The host stream's state for a checkpoint. On CUDA the device
    /// generator's state cannot be read back: [`TensorRng::restore`] reseeds it
    /// from the seed and the step, so a resumed CUDA run is deterministic but
    /// not identical to an uninterrupted one (on the CPU it is identical).
    pub fn capture(&self) -> datasets::train::RngState {
        datasets::train::RngState::capture(&self.host)
    }
    /// Continue from a captured host state (see [`TensorRng::capture`]).
    pub fn restore(
        state: &datasets::train::RngState,
        reseed: u64,
        device: &Device,
    ) -> Result<Self> {
        if !device.is_cpu() {
            device.set_seed(reseed)?;
        }
        Ok(TensorRng {
            host: state.restore()?,
            device: device.clone(),
        })
    }
    /// The host stream (index sampling, level draws, ZIP decoding).
    pub fn host(&mut self) -> &mut ChaCha8Rng {
        &mut self.host
    }
    /// Standard normal f32 tensor of `shape` on the device.
    pub fn normal(&mut self, shape: &[usize]) -> Result<Tensor> {
        if self.device.is_cpu() {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| self.host.sample::<f32, _>(StandardNormal))
                .collect();
            Ok(Tensor::from_vec(v, shape, &self.device)?)
        } else {
            Ok(Tensor::randn(0f32, 1f32, shape, &self.device)?.to_dtype(DType::F32)?)
        }
    }
    /// `n` indices drawn uniformly from `0..upper` (with replacement).
    pub fn indices(&mut self, n: usize, upper: usize) -> Vec<usize> {
        (0..n).map(|_| self.host.random_range(0..upper)).collect()
    }
}
