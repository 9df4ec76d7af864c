//! The generic flow interface used by Flow Expander and ActFlow.
//!
//! Convention (as in `design/expand.md` and the adjoint-matching paper,
//! Domingo-Enrich et al. 2024, §4): **t = 0 is noise, t = 1 is data**, and the
//! interpolant is `x_t = α_t x1 + β_t x0` with `x0 ~ N(0, I)`. Here
//! `α_t = t`, `β_t = 1 − t` (rectified flow). A flow model predicts the
//! velocity `v(x, t) = E[α̇_t x1 + β̇_t x0 | x_t = x]`. From it:
//!
//! * `κ_t = α̇_t/α_t`, `η_t = β_t(κ_t β_t − β̇_t)`, memoryless noise `σ_t = √(2η_t)`;
//! * score `s(x, t) = ∇ log p_t(x) = (v − κ_t x)/η_t`;
//! * memoryless SDE `dX = (2v − κ_t X) dt + σ_t dB` (its `X_0` and `X_1` are
//!   independent, which is what makes reward fine-tuning tilt the terminal law
//!   exactly: `p*(x) ∝ p(x) exp(r(x)/λ)`).
//!
//! Euler–Maruyama `x_{t+h} = x_t + h(2v − κ_t x_t) + √h σ_t ε` is stiff at
//! t → 0 (`κ_t = 1/t`), so [`sample_memoryless`] uses, for t < 0.25, the
//! Gaussian transition of the same reference process (DDPM ancestral step with
//! `x̂1` from `v`; agrees with Euler–Maruyama to first order in `h`), and
//! Euler–Maruyama from t = 0.25 on, where the ancestral step under-disperses
//! (50 steps on N(1.5, 0.5²): variance 0.221 all-ancestral, 0.2499 hybrid;
//! unit test `samplers_reproduce_gaussian_data`). The last step, onto t = 1,
//! is ancestral again: there it is the noiseless denoising `x̂1(x, 1 − h)`,
//! while Euler–Maruyama would leave its `√h σ` noise (and an `h x0` residue)
//! in the terminal sample that the reward sees. On the quick Morph model
//! (late start 0.7, 20 steps), for a graph whose ODE conformers pass the
//! geometry checks 90 % of the time, the Euler–Maruyama end left 0 % passing
//! (44 % with the denoised end).
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_distr::StandardNormal;

use super::Result;

/// The linear interpolant `α_t = t`, `β_t = 1 − t` and its derived schedule.
#[derive(Debug, Clone, Copy, Default)]
pub struct Interpolant;

impl Interpolant {
    pub fn alpha(&self, t: f64) -> f64 {
        t
    }
    pub fn beta(&self, t: f64) -> f64 {
        1.0 - t
    }
    pub fn d_alpha(&self, _t: f64) -> f64 {
        1.0
    }
    pub fn d_beta(&self, _t: f64) -> f64 {
        -1.0
    }
    /// `κ_t = α̇/α` (infinite at t = 0).
    pub fn kappa(&self, t: f64) -> f64 {
        self.d_alpha(t) / self.alpha(t)
    }
    /// `η_t = β_t(κ_t β_t − β̇_t)`; `(1 − t)/t` for the linear interpolant.
    pub fn eta(&self, t: f64) -> f64 {
        self.beta(t) * (self.kappa(t) * self.beta(t) - self.d_beta(t))
    }
    /// Memoryless noise level `σ_t = √(2η_t)`.
    pub fn sigma(&self, t: f64) -> f64 {
        (2.0 * self.eta(t)).max(0.0).sqrt()
    }
    /// Score from velocity, `s = (v − κ_t x)/η_t`, valid for 0 < t < 1.
    /// `x`, `v`: [batch, ...].
    pub fn score(&self, x: &Tensor, v: &Tensor, t: f64) -> Result<Tensor> {
        let (k, e) = (self.kappa(t), self.eta(t));
        Ok(((v - (x * k)?)? / e)?)
    }
    /// Denoised estimates `(x̂1, x̂0)` from `x_t` and `v` (solving the 2×2
    /// system `x = αx1 + βx0`, `v = α̇x1 + β̇x0`).
    pub fn denoise(&self, x: &Tensor, v: &Tensor, t: f64) -> Result<(Tensor, Tensor)> {
        let (a, b, da, db) = (self.alpha(t), self.beta(t), self.d_alpha(t), self.d_beta(t));
        let det = a * db - b * da;
        let x1 = (((x * db)? - (v * b)?)? / det)?;
        let x0 = (((v * a)? - (x * da)?)? / det)?;
        Ok((x1, x0))
    }
}

/// A flow-matching model: velocity on batched states `[batch, event_shape…]`.
pub trait Flow {
    /// Shape of one sample (e.g. `[2]` for the toy, `[n_atoms, 3]` for conformers).
    fn event_shape(&self) -> Vec<usize>;
    fn device(&self) -> &Device;
    /// `v(x, t)`; `x`: [batch, event…] (f32), `t`: [batch] (f32) → [batch, event…].
    fn velocity(&self, x: &Tensor, t: &Tensor) -> Result<Tensor>;
    /// Draw base noise `x0` for `n` samples: [n, event…]. Override for
    /// constrained noise (e.g. centre-of-mass-free positions).
    fn noise(&self, n: usize, rng: &mut dyn rand::RngCore) -> Result<Tensor> {
        let mut shape = vec![n];
        shape.extend(self.event_shape());
        randn(rng, &shape, self.device())
    }
    /// Velocity at one shared time for the whole batch.
    fn velocity_at(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        let n = x.dim(0)?;
        let tt = Tensor::full(t as f32, n, x.device())?;
        self.velocity(x, &tt)
    }
}

/// A flow whose parameters can be trained (fine-tuning, continued training).
pub trait TrainableFlow: Flow {
    /// The trainable parameters (candle `Var`s, updated in place by optimisers).
    fn vars(&self) -> Vec<Var>;
    /// A copy whose parameters are constants, detached from this model's
    /// storage (later updates to `self` do not change it): the frozen base.
    fn frozen_copy(&self) -> Result<Self>
    where
        Self: Sized;
    /// A trainable copy with fresh `Var`s (same values, independent storage).
    fn trainable_copy(&self) -> Result<Self>
    where
        Self: Sized;
}

/// Standard-normal tensor from a seeded rng (candle's own `randn` is not seeded).
pub fn randn(rng: &mut dyn rand::RngCore, shape: &[usize], device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    Ok(Tensor::from_vec(data, shape, device)?)
}

/// Uniform(0, 1) tensor of shape `[n]`.
pub fn rand_uniform(rng: &mut dyn rand::RngCore, n: usize, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
    Ok(Tensor::from_vec(data, n, device)?)
}

/// Uniform time grid `t_k = k/n_steps`, k = 0..=n_steps.
pub fn time_grid(n_steps: usize) -> Vec<f64> {
    (0..=n_steps).map(|k| k as f64 / n_steps as f64).collect()
}

/// Deterministic probability-flow ODE (Euler) from noise `x0` to data.
/// `x0`: [batch, event…] → [batch, event…].
pub fn sample_ode<F: Flow + ?Sized>(flow: &F, x0: &Tensor, n_steps: usize) -> Result<Tensor> {
    let ts = time_grid(n_steps);
    let mut x = x0.clone();
    for k in 0..n_steps {
        let h = ts[k + 1] - ts[k];
        let v = flow.velocity_at(&x, ts[k])?;
        x = (x + (v * h)?)?.detach();
    }
    Ok(x)
}

/// A sampled trajectory on the grid `ts` (states `xs[k]` at `ts[k]`).
#[derive(Debug, Clone)]
pub struct Trajectory {
    pub ts: Vec<f64>,
    /// Each [batch, event…].
    pub xs: Vec<Tensor>,
}

/// One memoryless step from `t` to `t2 > t` given `v = v(x, t)`; `xi` is
/// standard noise of the shape of `x`. Exact Gaussian transition of the
/// reference process when `x̂1` is exact (see module docs).
pub fn memoryless_step(x: &Tensor, v: &Tensor, t: f64, t2: f64, xi: &Tensor) -> Result<Tensor> {
    let ip = Interpolant;
    let (x1_hat, _) = ip.denoise(x, v, t)?;
    let (a2, b2) = (ip.alpha(t2), ip.beta(t2));
    if ip.alpha(t) <= 0.0 {
        // t = 0: the state is pure noise, so the step forgets it entirely.
        return Ok(((x1_hat * a2)? + (xi * b2)?)?);
    }
    let s = ip.beta(t) / ip.alpha(t); // noise-to-signal of y = x/α
    let s2 = b2 / a2;
    let ratio = (s2 / s).powi(2);
    let y = (x / ip.alpha(t))?;
    let mean_y = ((x1_hat * (1.0 - ratio))? + (y * ratio)?)?;
    let sd_y = (s2 * s2 * (1.0 - ratio)).max(0.0).sqrt();
    Ok((((mean_y + (xi * sd_y)?)?) * a2)?)
}

/// Below this time the sampler takes ancestral steps, above it Euler–Maruyama.
pub const ANCESTRAL_BELOW: f64 = 0.25;

/// One Euler–Maruyama step of the memoryless SDE from `t` to `t2`.
pub fn euler_maruyama_step(x: &Tensor, v: &Tensor, t: f64, t2: f64, xi: &Tensor) -> Result<Tensor> {
    let ip = Interpolant;
    let h = t2 - t;
    let drift = ((v * 2.0)? - (x * ip.kappa(t))?)?;
    Ok(((x + (drift * h)?)? + (xi * (ip.sigma(t) * h.sqrt()))?)?)
}

/// Memoryless-SDE sampler from noise `x0` with `n_steps` uniform steps
/// (ancestral steps below [`ANCESTRAL_BELOW`], Euler–Maruyama above).
/// Returns the whole trajectory (detached).
pub fn sample_memoryless<F: Flow + ?Sized>(
    flow: &F,
    x0: &Tensor,
    n_steps: usize,
    rng: &mut dyn rand::RngCore,
) -> Result<Trajectory> {
    let ts = time_grid(n_steps);
    let mut xs = Vec::with_capacity(n_steps + 1);
    xs.push(x0.detach());
    for k in 0..n_steps {
        let x = &xs[k];
        let v = flow.velocity_at(x, ts[k])?;
        let xi = randn(rng, x.dims(), x.device())?;
        // the last step lands on t = 1, where the ancestral step is the
        // noiseless denoising x̂1 (Euler–Maruyama would leave √h σ noise in
        // the terminal sample)
        let next = if ts[k] < ANCESTRAL_BELOW || k + 1 == n_steps {
            memoryless_step(x, &v, ts[k], ts[k + 1], &xi)?
        } else {
            euler_maruyama_step(x, &v, ts[k], ts[k + 1], &xi)?
        }
        .detach();
        xs.push(next);
    }
    Ok(Trajectory { ts, xs })
}

/// Score of the flow at time `t` (0 < t < 1): `s = (v − κ_t x)/η_t`.
pub fn score<F: Flow + ?Sized>(flow: &F, x: &Tensor, t: f64) -> Result<Tensor> {
    let v = flow.velocity_at(x, t)?;
    Interpolant.score(x, &v, t)
}

/// Closed-form flow for Gaussian data `N(μ, diag(s²))` (per-dimension), with
/// optionally trainable `μ` and `log s`. Used to test samplers and adjoint
/// matching against exact answers. `v = E[x1|x] − E[x0|x]` with
/// `Var(x_t) = t²s² + (1−t)²`.
#[derive(Debug, Clone)]
pub struct GaussianFlow {
    mu: Tensor,    // [d]
    log_s: Tensor, // [d]
    vars: Vec<Var>,
    device: Device,
}

impl GaussianFlow {
    pub fn new(mu: &[f32], s: &[f32], trainable: bool, device: &Device) -> Result<Self> {
        let log_s: Vec<f32> = s.iter().map(|v| v.ln()).collect();
        let mu_t = Tensor::from_slice(mu, mu.len(), device)?;
        let ls_t = Tensor::from_slice(&log_s, log_s.len(), device)?;
        if trainable {
            let (vm, vs) = (Var::from_tensor(&mu_t)?, Var::from_tensor(&ls_t)?);
            Ok(Self {
                mu: vm.as_tensor().clone(),
                log_s: vs.as_tensor().clone(),
                vars: vec![vm, vs],
                device: device.clone(),
            })
        } else {
            Ok(Self {
                mu: mu_t,
                log_s: ls_t,
                vars: vec![],
                device: device.clone(),
            })
        }
    }
    /// Current `(μ, s)`.
    pub fn params(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.mu.to_vec1()?, self.log_s.exp()?.to_vec1()?))
    }
}

impl Flow for GaussianFlow {
    fn event_shape(&self) -> Vec<usize> {
        vec![self.mu.dim(0).unwrap_or(1)]
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn velocity(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let t_b = t.to_dtype(DType::F32)?.unsqueeze(1)?.broadcast_as(dims)?; // [b, d]
        let s2_b = (&self.log_s * 2.0)?
            .exp()?
            .unsqueeze(0)?
            .broadcast_as(dims)?; // [b, d]
        let mu_b = self.mu.unsqueeze(0)?.broadcast_as(dims)?; // [b, d]
        let one_m_t = (1.0 - &t_b)?;
        let var_t = ((t_b.sqr()? * &s2_b)? + one_m_t.sqr()?)?; // [b, d]
        let centred = (x - (&t_b * &mu_b)?)?; // [b, d]
        let e_x1 = (&mu_b + ((&t_b * &s2_b)? * &centred)?.div(&var_t)?)?;
        let e_x0 = (&one_m_t * &centred)?.div(&var_t)?;
        Ok((e_x1 - e_x0)?)
    }
}

impl TrainableFlow for GaussianFlow {
    fn vars(&self) -> Vec<Var> {
        self.vars.clone()
    }
    fn frozen_copy(&self) -> Result<Self> {
        Ok(Self {
            mu: self.mu.copy()?.detach(),
            log_s: self.log_s.copy()?.detach(),
            vars: vec![],
            device: self.device.clone(),
        })
    }
    fn trainable_copy(&self) -> Result<Self> {
        let (vm, vs) = (
            Var::from_tensor(&self.mu.copy()?.detach())?,
            Var::from_tensor(&self.log_s.copy()?.detach())?,
        );
        Ok(Self {
            mu: vm.as_tensor().clone(),
            log_s: vs.as_tensor().clone(),
            vars: vec![vm, vs],
            device: self.device.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn moments(x: &Tensor) -> (f64, f64) {
        let v: Vec<f32> = x.flatten_all().and_then(|t| t.to_vec1()).expect("vec");
        let n = v.len() as f64;
        let m = v.iter().map(|a| *a as f64).sum::<f64>() / n;
        let var = v.iter().map(|a| (*a as f64 - m).powi(2)).sum::<f64>() / n;
        (m, var)
    }

    #[test]
    fn samplers_reproduce_gaussian_data() {
        let dev = Device::Cpu;
        let flow = GaussianFlow::new(&[1.5], &[0.5], false, &dev).expect("flow");
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let x0 = flow.noise(20_000, &mut rng).expect("noise");
        let (m, v) = moments(&sample_ode(&flow, &x0, 50).expect("ode"));
        assert!(
            (m - 1.5).abs() < 0.03 && (v - 0.25).abs() < 0.02,
            "ODE: mean {m} var {v}"
        );
        let traj = sample_memoryless(&flow, &x0, 50, &mut rng).expect("sde");
        let (m, v) = moments(&traj.xs[50]);
        assert!(
            (m - 1.5).abs() < 0.03 && (v - 0.25).abs() < 0.02,
            "SDE: mean {m} var {v}"
        );
        // intermediate marginal at t = 0.5: N(0.75, 0.25·0.25 + 0.25); the
        // coarse early ancestral steps leave it ~7 % over-dispersed (0.333
        // measured), which the later steps correct.
        let (m, v) = moments(&traj.xs[25]);
        assert!(
            (m - 0.75).abs() < 0.03 && (v - 0.3125).abs() < 0.035,
            "SDE t=0.5: mean {m} var {v}"
        );
    }

    #[test]
    fn memoryless_sampler_ends_without_step_noise() {
        // data N(1.5, 0.01²): with 10 steps an Euler–Maruyama end would leave
        // √h σ_0.9 ≈ 0.15 of noise; the denoised end is within the data's sd
        let dev = Device::Cpu;
        let flow = GaussianFlow::new(&[1.5], &[0.01], false, &dev).expect("flow");
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x0 = flow.noise(4_000, &mut rng).expect("noise");
        let traj = sample_memoryless(&flow, &x0, 10, &mut rng).expect("sde");
        let (m, v) = moments(&traj.xs[10]);
        assert!((m - 1.5).abs() < 0.01, "mean {m}");
        assert!(v.sqrt() < 0.02, "terminal sd {} vs data sd 0.01", v.sqrt());
    }

    #[test]
    fn score_from_velocity_matches_closed_form() {
        let dev = Device::Cpu;
        let (mu, s) = (0.7f64, 1.3f64);
        let flow = GaussianFlow::new(&[mu as f32], &[s as f32], false, &dev).expect("flow");
        let x = Tensor::from_vec(vec![-1.0f32, 0.2, 2.5], (3, 1), &dev).expect("x");
        for t in [0.2, 0.5, 0.9] {
            let sc: Vec<f32> = score(&flow, &x, t)
                .and_then(|s| Ok(s.flatten_all()?.to_vec1()?))
                .expect("score");
            let var = t * t * s * s + (1.0 - t) * (1.0 - t);
            for (xi, si) in [-1.0, 0.2, 2.5].iter().zip(sc) {
                let want = -(xi - t * mu) / var;
                assert!((si as f64 - want).abs() < 1e-4, "t {t}: {si} vs {want}");
            }
        }
    }
}
