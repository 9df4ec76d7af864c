//! Seeded random tensors. Every random draw of training and sampling goes
//! through [`TensorRng`] so that the same seed on the same device gives the
//! same result: on the CPU the numbers come from a ChaCha8 stream on the host
//! (candle's CPU RNG cannot be seeded); on CUDA the device generator is seeded
//! once and used directly (no host→device copy per step).
//!
//! A CPU normal tensor takes one `u64` key from the host stream and fills
//! blocks of [`NORMAL_BLOCK`] values in parallel, block `b` from its own
//! xoshiro256++ generator seeded (SplitMix64) from `(key, b)`; the values
//! depend on the seed only, not on the number of threads. xoshiro256++
//! (Blackman & Vigna 2021) passes BigCrush and costs about a fifth of
//! ChaCha8 per draw, which matters at 10⁶–10⁷ normals per step.
use candle_core::{DType, Device, Tensor};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::Result;

/// Values per independently seeded block of a CPU normal draw.
pub const NORMAL_BLOCK: usize = 1 << 14;

/// Fill `out` with standard normals from the key `key` (see the module docs;
/// parallel over blocks, same values for any thread count).
pub fn fill_normal(out: &mut [f32], key: u64) {
    out.par_chunks_mut(NORMAL_BLOCK)
        .enumerate()
        .for_each(|(b, chunk)| {
            let mut r = Xoshiro::new(key, b as u64);
            for v in chunk.iter_mut() {
                *v = r.sample(StandardNormal);
            }
        });
}

/// Fill one row of a row-keyed normal draw: row `i` of `[n, d]` comes from
/// the generator `(key, i)` (the Langevin step's noise, so that a fused
/// kernel can draw each row where it uses it, whatever rows a thread has).
pub fn normal_row(out: &mut [f32], key: u64, row: u64) {
    let mut r = Xoshiro::new(key, row);
    for v in out.iter_mut() {
        *v = r.sample(StandardNormal);
    }
}

/// `x[j] += scale · ξ_j` for row `row` of a row-keyed draw (same values as
/// [`normal_row`]).
pub fn add_normal_row(x: &mut [f32], scale: f32, key: u64, row: u64) {
    let mut r = Xoshiro::new(key, row);
    let mut z = [0f32; 256];
    for c in x.chunks_mut(256) {
        let z = &mut z[..c.len()];
        for v in z.iter_mut() {
            *v = r.sample(StandardNormal);
        }
        for (v, z) in c.iter_mut().zip(z.iter()) {
            *v += z * scale;
        }
    }
}

/// xoshiro256++ state for one block of a normal draw.
struct Xoshiro([u64; 4]);

impl Xoshiro {
    fn new(key: u64, block: u64) -> Self {
        // SplitMix64 from key ⊕ golden-ratio multiple of the block index
        let mut z = key ^ block.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Xoshiro([next(), next(), next(), next()])
    }
}

impl RngCore for Xoshiro {
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for c in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

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
            let mut v = vec![0f32; shape.iter().product()];
            fill_normal(&mut v, self.normal_key());
            Ok(Tensor::from_vec(v, shape, &self.device)?)
        } else {
            Ok(Tensor::randn(0f32, 1f32, shape, &self.device)?.to_dtype(DType::F32)?)
        }
    }
    /// `[n, d]` standard normals drawn row by row ([`normal_row`]; one key
    /// from the host stream on the CPU).
    pub fn normal_rows(&mut self, n: usize, d: usize) -> Result<Tensor> {
        if self.device.is_cpu() {
            let key = self.normal_key();
            let mut v = vec![0f32; n * d];
            if d > 0 {
                v.par_chunks_mut(d)
                    .enumerate()
                    .for_each(|(i, row)| normal_row(row, key, i as u64));
            }
            Ok(Tensor::from_vec(v, (n, d), &self.device)?)
        } else {
            self.normal(&[n, d])
        }
    }
    /// The key of the next CPU normal draw (advances the host stream exactly
    /// as [`TensorRng::normal`] does): fused CPU kernels that draw their own
    /// noise with [`fill_normal`] stay on the same stream as the tensor path.
    pub fn normal_key(&mut self) -> u64 {
        self.host.random()
    }
    /// `n` indices drawn uniformly from `0..upper` (with replacement).
    pub fn indices(&mut self, n: usize, upper: usize) -> Vec<usize> {
        (0..n).map(|_| self.host.random_range(0..upper)).collect()
    }
}
