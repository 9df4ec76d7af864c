//! Verifiers: `verify(sample) ∈ [0, 1]` (strong verifier: exact 0/1 validity;
//! weak verifier: a score or a noisy/partial check), optionally with
//! `∇ log c(x)` where a differentiable surrogate exists (`design/expand.md`,
//! "Verifiers"). Molecules plug in by wrapping `molecules`' verifier in a type
//! that decodes a flattened sample into a molecule.
//!
//! For a 0/1 verifier without gradient, [`grad_log_batch`] estimates the
//! gradient of the Gaussian-smoothed log-verifier
//! `∇ log c_s(x) = E[c(x + sξ) ξ] / (s · (E[c(x + sξ)] + δ))`, `ξ ~ N(0, I)`
//! (Stein / zeroth-order estimator; Nesterov & Spokoiny 2017).
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::Result;

/// A verifier on flattened samples (`x.len()` = product of the event shape).
pub trait Verifier: Sync {
    /// Validity score in [0, 1] (1 = valid).
    fn verify(&self, x: &[f32]) -> f64;
    /// `∇_x log c(x)` of a differentiable surrogate, if the verifier has one.
    fn grad_log(&self, _x: &[f32]) -> Option<Vec<f32>> {
        None
    }
}

/// Rows of a `[batch, event…]` tensor as flattened vectors.
pub fn rows(x: &Tensor) -> Result<Vec<Vec<f32>>> {
    let n = x.dim(0)?;
    Ok(x.reshape((n, ()))?
        .to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?)
}

/// Verify every sample of a batch (parallel over samples).
pub fn verify_batch<V: Verifier + ?Sized>(v: &V, x: &Tensor) -> Result<Vec<f64>> {
    Ok(rows(x)?.par_iter().map(|r| v.verify(r)).collect())
}

/// Gaussian smoothing used to estimate `∇ log c` for non-differentiable verifiers.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Smoothing {
    /// Smoothing scale `s` (> 0), in data units.
    pub scale: f64,
    /// Perturbations per sample (≥ 1).
    pub n_draws: usize,
    /// Floor `δ` added to the smoothed verifier before taking the log.
    pub floor: f64,
}

impl Default for Smoothing {
    fn default() -> Self {
        Self {
            scale: 0.15,
            n_draws: 64,
            floor: 0.05,
        }
    }
}

/// `∇ log c(x)` for each sample, [batch, event…]: the verifier's own gradient
/// when `smoothing` is `None` and it has one, otherwise the smoothed estimate
/// (seeded per sample from `seed`, so results do not depend on thread order).
pub fn grad_log_batch<V: Verifier + ?Sized>(
    v: &V,
    x: &Tensor,
    smoothing: Option<Smoothing>,
    seed: u64,
) -> Result<Tensor> {
    let rs = rows(x)?;
    let d = rs.first().map_or(0, |r| r.len());
    let grads: Vec<Vec<f32>> = rs
        .par_iter()
        .enumerate()
        .map(|(i, r)| match (smoothing, v.grad_log(r)) {
            (None, Some(g)) => g,
            (sm, _) => smoothed_grad_log(v, r, sm.unwrap_or_default(), seed.wrapping_add(i as u64)),
        })
        .collect();
    let flat: Vec<f32> = grads
        .into_iter()
        .flat_map(|g| g.into_iter().chain(std::iter::repeat(0.0)).take(d))
        .collect();
    Ok(Tensor::from_vec(flat, x.dims(), x.device())?)
}

fn smoothed_grad_log<V: Verifier + ?Sized>(v: &V, x: &[f32], sm: Smoothing, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = x.len();
    let mut acc = vec![0f64; d];
    let mut mean_c = 0f64;
    let mut xp = vec![0f32; d];
    let mut xi = vec![0f64; d];
    for _ in 0..sm.n_draws.max(1) {
        for j in 0..d {
            xi[j] = rng.sample::<f64, _>(StandardNormal);
        }
        // antithetic pair: baseline-free, lower variance
        for s in [1.0, -1.0] {
            for j in 0..d {
                xp[j] = x[j] + (s * sm.scale * xi[j]) as f32;
            }
            let c = v.verify(&xp);
            mean_c += c;
            for j in 0..d {
                acc[j] += s * c * xi[j];
            }
        }
    }
    let m = 2.0 * sm.n_draws.max(1) as f64;
    mean_c /= m;
    acc.iter()
        .map(|a| (a / m / (sm.scale * (mean_c + sm.floor))) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Half-plane x0 > 0 without a gradient.
    struct Half;
    impl Verifier for Half {
        fn verify(&self, x: &[f32]) -> f64 {
            f64::from(u8::from(x[0] > 0.0))
        }
    }

    #[test]
    fn smoothed_gradient_points_into_the_valid_region() {
        let x = Tensor::from_vec(vec![-0.1f32, 0.3, 0.05, -0.2], (2, 2), &Device::Cpu).expect("x");
        let g = grad_log_batch(&Half, &x, None, 3)
            .expect("grad")
            .to_vec2::<f32>()
            .expect("vec");
        for row in &g {
            assert!(row[0] > 0.5, "gradient should push towards x0 > 0: {row:?}");
            assert!(
                row[1].abs() < row[0] / 2.0,
                "no systematic push along x1: {row:?}"
            );
        }
    }
}
