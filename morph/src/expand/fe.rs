//! Flow Expander (De Santi et al., ICLR 2026, arXiv:2602.15984, Alg. 1):
//! K mirror-descent iterations, each
//!
//! 1. **expand** — raise entropy: adjoint matching with the terminal reward
//!    gradient `∇r(x) = −γ λ [s̃_k(x) − β s̃_pre(x)]` (`s̃_k` smoothed score of
//!    the current model, frozen as the base of this step; `s̃_pre` of the frozen
//!    pre-trained model). With β = 0 the optimum of the step is
//!    `p_{k+1} ∝ p_k^{1−γ}` (flattened density);
//! 2. **project** — onto the verifier: adjoint matching with `∇r = η ∇log c(x)`
//!    (the verifier's own gradient or a Gaussian-smoothed estimate for a 0/1
//!    verifier), or rejection-weighted flow matching on verified samples;
//! 3. the fine-tuned model becomes the base of the next iteration.
//!
//! Smoothed score: `design/expand.md` writes `s(x, 1−ε)`. Because
//! `x_t = α_t x1 + β_t x0` also *shrinks* the data by `α_t`, `s(x, 1−ε)`
//! evaluated at a terminal sample is biased towards the origin by
//! ≈ `ε‖x‖/β_t²` (two noise standard deviations at ε = 0.01, ‖x‖ = 2), which
//! turns the entropy step into a translation (seen on the `ring` toy). We use
//! the score of `p_1` smoothed by `N(0, (β/α)²)`, i.e.
//! `s̃(x) = α_t s(α_t x, t)` at `t = 1 − ε`, which has zero mean under `p_1`
//! up to the smoothing.
use candle_core::Tensor;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::adjoint::{adjoint_matching, AdjointConfig};
use super::flow::{sample_ode, score, Flow, Interpolant, TrainableFlow};
use super::mlp::{train_cfm, CfmConfig};
use super::verifier::{grad_log_batch, tangent_batch, verify_batch, Smoothing, Verifier};
use super::{bad_config, ExpandError, Result};

/// How the project step uses the verifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectMode {
    /// `η ∇log c` from the verifier's differentiable surrogate (falls back to
    /// the smoothed estimate when the verifier has none).
    Gradient,
    /// Gaussian-smoothed gradient estimate of a 0/1 verifier.
    Smoothed(Smoothing),
    /// Flow matching on `n` ODE samples weighted by their verifier score.
    Rejection { n_samples: usize, train: CfmConfig },
    /// No projection (expand only).
    None,
}

/// Flow Expander settings (defaults from `design/expand.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeConfig {
    /// Mirror-descent iterations K (≥ 1).
    pub iterations: usize,
    /// Expansion step size γ (> 0).
    pub gamma: f64,
    /// Projection strength η (> 0).
    pub eta: f64,
    /// Weight β ≥ 0 of the pre-trained score in the entropy gradient.
    pub beta: f64,
    /// Score evaluation time offset ε ∈ (0, 0.5): scores at t = 1 − ε.
    pub epsilon: f64,
    /// Adjoint matching of the expand step.
    pub expand: AdjointConfig,
    /// Adjoint matching of the project step.
    pub project: AdjointConfig,
    pub project_mode: ProjectMode,
    /// ODE steps when sampling for rejection-weighted projection.
    pub n_ode_steps: usize,
    /// Per-sample bound on the norm of the project step's terminal reward
    /// gradient `η ∇log c(x)` (≤ 0 disables, the default). A robust reward:
    /// a sample far outside the verifier's region pulls with norm
    /// `reward_clip` instead of its full surrogate gradient, as if the
    /// penalty grew linearly rather than quadratically out there (Huber).
    /// Without it the few worst samples (geometry-surrogate gradients of
    /// several hundred to ~1300 on Morph conformers, against ~20 for nearly
    /// valid ones) set the direction of every clipped step.
    pub reward_clip: f64,
    /// Expand only along the verifier's valid set: the entropy gradient at
    /// each terminal sample is projected onto the verifier's tangent space
    /// there ([`Verifier::tangent`]; for conformers, rigid motions and
    /// torsions, so bonds and angles are not stretched by the expansion).
    /// Off by default; without a verifier, or where it has no tangent space,
    /// the gradient is used as it is.
    pub expand_tangent: bool,
}

impl Default for FeConfig {
    fn default() -> Self {
        Self {
            iterations: 3,
            gamma: 1.0,
            eta: 1.0,
            beta: 0.0,
            epsilon: 0.01,
            expand: AdjointConfig::default(),
            project: AdjointConfig::default(),
            project_mode: ProjectMode::Gradient,
            n_ode_steps: 50,
            reward_clip: 0.0,
            expand_tangent: false,
        }
    }
}

impl FeConfig {
    pub fn validate(&self) -> Result<()> {
        let c = "FeConfig";
        if self.iterations == 0 {
            return Err(bad_config(c, "iterations", self.iterations, ">= 1"));
        }
        if !(self.gamma > 0.0 && self.gamma.is_finite()) {
            return Err(bad_config(c, "gamma", self.gamma, "a finite value > 0"));
        }
        if !(self.eta > 0.0 && self.eta.is_finite()) {
            return Err(bad_config(c, "eta", self.eta, "a finite value > 0"));
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return Err(bad_config(c, "beta", self.beta, "a finite value >= 0"));
        }
        if !(self.epsilon > 0.0 && self.epsilon < 0.5) {
            return Err(bad_config(
                c,
                "epsilon",
                self.epsilon,
                "a value in (0, 0.5)",
            ));
        }
        if self.n_ode_steps == 0 {
            return Err(bad_config(c, "n_ode_steps", self.n_ode_steps, ">= 1"));
        }
        if !self.reward_clip.is_finite() {
            return Err(bad_config(
                c,
                "reward_clip",
                self.reward_clip,
                "a finite value (<= 0 disables)",
            ));
        }
        if let ProjectMode::Rejection { n_samples: 0, .. } = self.project_mode {
            return Err(bad_config(c, "project_mode.n_samples", 0, ">= 1"));
        }
        self.expand.validate()?;
        self.project.validate()
    }
}

/// Score of `p_1` smoothed by the interpolant's noise at time `t`:
/// `s̃(x) = α_t s(α_t x, t)` (see module docs). `x`: [batch, event…].
pub fn smoothed_score<F: Flow + ?Sized>(flow: &F, x: &Tensor, t: f64) -> Result<Tensor> {
    let a = Interpolant.alpha(t);
    Ok((score(flow, &(x * a)?, t)? * a)?)
}

/// Each sample's row of `g` ([batch, event…]) scaled to norm ≤ `max_norm`
/// (unchanged when `max_norm ≤ 0`).
pub fn clip_rows(g: &Tensor, max_norm: f64) -> Result<Tensor> {
    if max_norm <= 0.0 {
        return Ok(g.clone());
    }
    let b = g.dim(0)?;
    let norms = g.flatten_from(1)?.sqr()?.sum(1)?.sqrt()?; // [b]
    let scale = (norms.affine(1.0 / max_norm, 0.0)?.maximum(1.0)?).recip()?;
    let mut shape = vec![b];
    shape.extend(std::iter::repeat_n(1, g.rank() - 1));
    Ok(g.broadcast_mul(&scale.reshape(shape)?)?)
}

/// Progress events of [`flow_expander`].
#[derive(Debug, Clone, Copy)]
pub enum FeEvent {
    /// (iteration, round, loss) of an expand step.
    Expand(usize, usize, f64),
    /// (iteration, round, loss) of a project step.
    Project(usize, usize, f64),
}

/// Run Flow Expander on `model` in place. `pre` is the frozen pre-trained
/// flow (for β > 0); `verifier` enables the project step.
pub fn flow_expander<F, P, V>(
    model: &F,
    pre: &P,
    verifier: Option<&V>,
    cfg: &FeConfig,
    rng: &mut dyn RngCore,
    mut progress: impl FnMut(FeEvent),
) -> Result<()>
where
    F: TrainableFlow,
    P: Flow + ?Sized,
    V: Verifier + ?Sized,
{
    cfg.validate()?;
    let t_score = 1.0 - cfg.epsilon;
    for it in 0..cfg.iterations {
        // 1. expand: ∇r = −γλ [s_k − β s_pre] at 1 − ε.
        let base = model.frozen_copy()?;
        let lambda = cfg.expand.lambda;
        let entropy_grad = |x: &Tensor| -> Result<Tensor> {
            let mut s = smoothed_score(&base, x, t_score)?;
            if cfg.beta > 0.0 {
                s = (s - (smoothed_score(pre, x, t_score)? * cfg.beta)?)?;
            }
            let g = (s * (-cfg.gamma * lambda))?;
            match verifier {
                Some(v) if cfg.expand_tangent => tangent_batch(v, x, &g),
                _ => Ok(g),
            }
        };
        adjoint_matching(model, &base, &entropy_grad, &cfg.expand, rng, |r, l| {
            progress(FeEvent::Expand(it, r, l))
        })?;
        // 2. project onto the verifier.
        let Some(ver) = verifier else { continue };
        match &cfg.project_mode {
            ProjectMode::None => {}
            ProjectMode::Gradient | ProjectMode::Smoothed(_) => {
                let smoothing = match &cfg.project_mode {
                    ProjectMode::Smoothed(s) => Some(*s),
                    _ => None,
                };
                let base = model.frozen_copy()?;
                let seed = rng.next_u64();
                let calls = std::cell::Cell::new(0u64);
                let proj_grad = |x: &Tensor| -> Result<Tensor> {
                    calls.set(calls.get() + 1);
                    let g =
                        grad_log_batch(ver, x, smoothing, seed.wrapping_add(calls.get() << 32))?;
                    clip_rows(&(g * cfg.eta)?, cfg.reward_clip)
                };
                adjoint_matching(model, &base, &proj_grad, &cfg.project, rng, |r, l| {
                    progress(FeEvent::Project(it, r, l))
                })?;
            }
            ProjectMode::Rejection { n_samples, train } => {
                let x0 = model.noise(*n_samples, rng)?;
                let xs = sample_ode(model, &x0, cfg.n_ode_steps)?;
                let w: Vec<f32> = verify_batch(ver, &xs)?
                    .iter()
                    .map(|c| c.powf(cfg.eta) as f32)
                    .collect();
                if w.iter().all(|v| *v == 0.0) {
                    return Err(ExpandError::Data {
                        what: "rejection-weighted projection".into(),
                        reason: format!(
                            "none of {n_samples} samples passed the verifier in iteration {it}"
                        ),
                    });
                }
                train_cfm(model, &xs, Some(&w), train, rng, |s, l| {
                    progress(FeEvent::Project(it, s, l))
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Valid set: the line x₁ = 0 of the plane (tangent: the x₀ axis).
    struct Line;
    impl Verifier for Line {
        fn verify(&self, x: &[f32]) -> f64 {
            f64::from(u8::from(x[1].abs() < 0.1))
        }
        fn tangent(&self, _x: &[f32], g: &[f32]) -> Option<Vec<f32>> {
            Some(vec![g[0], 0.0])
        }
    }

    /// Expand only (no projection) on N(0, I₂): the scales after K = 2
    /// iterations, with and without `expand_tangent`.
    fn expanded_scales(tangent: bool) -> Vec<f32> {
        use crate::expand::flow::GaussianFlow;
        use rand::SeedableRng;
        let dev = Device::Cpu;
        let pre = GaussianFlow::new(&[0.0, 0.0], &[1.0, 1.0], false, &dev).expect("pre");
        let model = GaussianFlow::new(&[0.0, 0.0], &[1.0, 1.0], true, &dev).expect("model");
        let cfg = FeConfig {
            iterations: 2,
            gamma: 0.5,
            epsilon: 0.05,
            expand: AdjointConfig {
                rounds: 20,
                lr: 2e-2,
                n_samples: 128,
                batch: 128,
                ..Default::default()
            },
            project_mode: ProjectMode::None,
            expand_tangent: tangent,
            ..Default::default()
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        flow_expander(&model, &pre, Some(&Line), &cfg, &mut rng, |_| {}).expect("fe");
        model.params().expect("params").1
    }

    #[test]
    fn tangent_expansion_widens_only_along_the_valid_set() {
        let free = expanded_scales(false);
        let along = expanded_scales(true);
        // the entropy step widens both axes without the tangent projection …
        assert!(free[0] > 1.1 && free[1] > 1.1, "{free:?}");
        // … and only the valid line's axis with it
        assert!(along[0] > 1.1, "{along:?}");
        assert!((along[1] - 1.0).abs() < 1e-4, "{along:?}");
    }

    #[test]
    fn clip_rows_bounds_each_sample_norm() {
        // rows of norm 5 (3-4-0), 0.5 and 0: bound 2 scales only the first
        let g = Tensor::from_vec(
            vec![3f32, 4.0, 0.0, 0.3, 0.0, 0.4, 0.0, 0.0, 0.0],
            (3, 1, 3),
            &Device::Cpu,
        )
        .expect("tensor");
        let c = clip_rows(&g, 2.0).expect("clip");
        let v = c
            .flatten_all()
            .expect("flat")
            .to_vec1::<f32>()
            .expect("vec");
        let want = [1.2f32, 1.6, 0.0, 0.3, 0.0, 0.4, 0.0, 0.0, 0.0];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{v:?} vs {want:?}");
        }
        let off = clip_rows(&g, 0.0).expect("off");
        assert_eq!(
            off.flatten_all()
                .expect("flat")
                .to_vec1::<f32>()
                .expect("vec"),
            g.flatten_all()
                .expect("flat")
                .to_vec1::<f32>()
                .expect("vec")
        );
    }
}
