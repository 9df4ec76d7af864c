//! Annealed Langevin dynamics (Song & Ermon 2019; lcd.md "Sampling"): for
//! each noise level σ_i in descending order, K Euler–Maruyama steps
//! `x ← x + ε_i f(x, σ_i, e) + √(2ε_i) ξ`, `ε_i = base · (σ_i/σ_min)²`.
//! All chains (of all conditions) advance together as one `[N, d]` tensor.
//! The noise-free variant (ξ = 0) follows the drift to its fixed point and is
//! what CLIPR uses for limit responses.
use candle_core::Tensor;

use crate::config::SamplerConfig;
use crate::params::Weights;
use crate::rng::TensorRng;
use crate::stage2::ScoreNet;
use crate::Result;

/// Run the annealed sampler from `x0` `[N, d]` with per-chain embeddings
/// `e` `[N, H]` (or `[1, H]`). `rng = None` gives the noise-free variant.
/// `on_level(i)` is called after each level.
pub fn annealed_langevin(
    net: &ScoreNet,
    w: &Weights,
    x0: &Tensor,
    e: &Tensor,
    cfg: &SamplerConfig,
    mut rng: Option<&mut TensorRng>,
    mut on_level: impl FnMut(usize),
) -> Result<Tensor> {
    // the fused CPU drift keeps [N, d] / [N, H] scratch buffers per thread;
    // free them when sampling ends
    let _scratch = crate::cpu_fast::ScratchGuard;
    let dev = x0.device();
    let sigma_min = net.sigmas.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut x = x0.clone();
    let table = net.level_table(w)?; // [L, H]
    let cond = net.condition_terms(w, e)?; // per-chain condition terms, computed once
    for (i, &s) in net.sigmas.iter().enumerate() {
        let eps = cfg.step_base * (s / sigma_min).powi(2);
        let temb = table.narrow(0, i, 1)?; // [1, H]
        let sigma = Tensor::from_vec(vec![s as f32], (1, 1), dev)?;
        for _ in 0..cfg.steps_per_level {
            x = net.langevin_step(w, &x, &temb, &sigma, &cond, eps, rng.as_deref_mut())?;
        }
        on_level(i);
    }
    Ok(x)
}
