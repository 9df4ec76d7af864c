//! Zero-inflated Poisson count layer on top of latent states (design/lcd.md,
//! stage 1 measurement model).
//!
//! `x_g ~ ZIP(π_g, λ_g)`, `λ_g = u_g · softplus(s_g)`:
//! `p(0) = π + (1 − π) e^{−λ}`, `p(k > 0) = (1 − π) λ^k e^{−λ} / k!`, so
//! `E[x] = (1 − π) λ` and `Var[x] = (1 − π) λ (1 + π λ)`.
//!
//! Per-gene parameters drawn by the simulator (documented choice):
//! - `π_g ~ U(0, 0.3)`: up to 30 % structural zeros on top of Poisson zeros;
//! - `u_g = exp(N(ln 3, 0.75²))`: a log-normal per-gene capture scale
//!   (median 3, ~95 % in [0.7, 13]), giving a few counts per gene and cell
//!   for latent states of order 1, typical of UMI data.
use ndarray::{Array1, Array2, ArrayView2, Zip};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Poisson};

/// Numerically safe `softplus(s) = ln(1 + e^s)`.
pub fn softplus(s: f64) -> f64 {
    if s > 30.0 {
        s
    } else {
        s.exp().ln_1p()
    }
}

/// Per-gene ZIP parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ZipParams {
    /// Zero-inflation probability π_g. `[d]`
    pub pi: Array1<f64>,
    /// Rate scale u_g. `[d]`
    pub u: Array1<f64>,
}

impl ZipParams {
    /// Draw `π_g ~ U(0, 0.3)`, `u_g = exp(N(ln 3, 0.75²))`.
    pub fn random(d: usize, rng: &mut ChaCha8Rng) -> Self {
        let ln_u = Normal::new(3f64.ln(), 0.75)
            .unwrap_or_else(|_| unreachable!("constant parameters are valid"));
        let pi = Array1::from_shape_fn(d, |_| rng.random_range(0.0..0.3));
        let u = Array1::from_shape_fn(d, |_| ln_u.sample(rng).exp());
        Self { pi, u }
    }

    /// Counts `[n, d]` for latent states `[n, d]`.
    pub fn sample(&self, latent: ArrayView2<f64>, rng: &mut ChaCha8Rng) -> Array2<u32> {
        let mut out = Array2::<u32>::zeros(latent.raw_dim());
        Zip::indexed(&mut out)
            .and(&latent)
            .for_each(|(_, g), x, &s| {
                *x = sample_zip(self.pi[g], self.u[g] * softplus(s), rng);
            });
        out
    }
}

/// One ZIP draw.
pub fn sample_zip(pi: f64, lambda: f64, rng: &mut ChaCha8Rng) -> u32 {
    if rng.random::<f64>() < pi || lambda <= 0.0 {
        return 0;
    }
    match Poisson::new(lambda) {
        Ok(p) => {
            let k: f64 = p.sample(rng);
            k.min(u32::MAX as f64) as u32
        }
        Err(_) => 0,
    }
}

/// Moment estimate of the ZIP rate used by LCD: `u = max((Var + Mean²)/Mean − 1, 1)`
/// is `λ` exactly for a ZIP(π, λ) (since `E[x²]/E[x] = 1 + λ`), floored at 1.
pub fn moment_rate(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if mean.is_nan() || mean <= 0.0 {
        return 1.0;
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    ((var + mean * mean) / mean - 1.0).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zip_moments_match_closed_form() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (pi, lam) in [(0.0, 2.0), (0.2, 5.0), (0.5, 0.7)] {
            let n = 200_000;
            let xs: Vec<f64> = (0..n)
                .map(|_| f64::from(sample_zip(pi, lam, &mut rng)))
                .collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            let zeros = xs.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
            let (m, v, p0) = (
                (1.0 - pi) * lam,
                (1.0 - pi) * lam * (1.0 + pi * lam),
                pi + (1.0 - pi) * (-lam).exp(),
            );
            assert!((mean - m).abs() < 0.02 * m.max(1.0), "mean {mean} vs {m}");
            assert!((var - v).abs() < 0.03 * v.max(1.0), "var {var} vs {v}");
            assert!((zeros - p0).abs() < 0.005, "p0 {zeros} vs {p0}");
            // LCD's moment estimate of u recovers λ.
            if lam > 1.0 {
                let u = moment_rate(&xs);
                assert!((u - lam).abs() < 0.03 * lam, "u {u} vs λ {lam}");
            }
        }
    }

    #[test]
    fn softplus_is_stable() {
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(softplus(100.0), 100.0);
        assert!(softplus(-50.0) > 0.0 && softplus(-50.0) < 1e-21);
    }
}
