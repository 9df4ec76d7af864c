//! Stage 2 of LCD (lcd.md): the score network `F(x̂, t, e)` and its training
//! by denoising score matching (Song & Ermon 2019; Karras et al. 2022
//! preconditioning `x̂ = x/√(1+σ²)`, `D(x) = x̂ − σF`).
//!
//! - MLP with 2 hidden layers of width H, tanh; layer 0 also receives the
//!   noise-level embedding (sinusoidal(t) → Dense → tanh → Dense).
//! - Per-gene perturbation embeddings `e_j ∈ ℝ^H` (init N(0, 0.01²)); a
//!   condition adds `Dense_l(Σ_{j∈S} e_j)` to each hidden pre-activation.
//! - Drift `f(x, σ, e) = (D(x) − x)/σ²`; loss `mean ½ ‖σ f(x̃) + ε‖²` with
//!   `x̃ = x + σε` (= ½σ²‖f + (x̃−x)/σ²‖², summed over genes).
use candle_core::{Device, Tensor};

use crate::config::Stage2Config;
use crate::optim::{warmup_cosine, Adam, AdamParams, OptState};
use crate::params::{Params, Weights};
use crate::rng::TensorRng;
use crate::{LcdError, Result};

/// The score network's parameters plus its fixed tables.
pub struct ScoreNet {
    pub params: Params,
    pub d: usize,
    pub hidden: usize,
    /// Number of embedding rows (= perturbation vocabulary size).
    pub n_vocab: usize,
    /// σ per level, descending. `[L]`
    pub sigmas: Vec<f64>,
    /// Sinusoidal embedding of the integer levels. `[L, H]`
    sin_table: Tensor,
}

/// Sinusoidal embedding (Vaswani et al. 2017) of integer levels `0..l` in `h` dims.
pub fn sinusoidal(l: usize, h: usize, dev: &Device) -> Result<Tensor> {
    let half = h / 2;
    let mut v = vec![0f32; l * h];
    for t in 0..l {
        for k in 0..half {
            let freq = (-(10_000f64.ln()) * k as f64 / half.max(1) as f64).exp();
            v[t * h + k] = (t as f64 * freq).sin() as f32;
            v[t * h + half + k] = (t as f64 * freq).cos() as f32;
        }
    }
    Ok(Tensor::from_vec(v, (l, h), dev)?)
}

impl ScoreNet {
    pub fn init(
        d: usize,
        n_vocab: usize,
        sigmas: Vec<f64>,
        hidden: usize,
        rng: &mut TensorRng,
        dev: &Device,
    ) -> Result<Self> {
        let mut p = Params::new();
        let h = hidden;
        let r = rng.host();
        let lin = |p: &mut Params,
                   name: &str,
                   i: usize,
                   o: usize,
                   r: &mut rand_chacha::ChaCha8Rng|
         -> Result<()> {
            p.normal(
                &format!("{name}.w"),
                &[i, o],
                (1.0 / i as f64).sqrt(),
                r,
                dev,
            )?;
            p.zeros(&format!("{name}.b"), &[1, o], dev)
        };
        lin(&mut p, "l0", d, h, r)?;
        lin(&mut p, "l1", h, h, r)?;
        lin(&mut p, "out", h, d, r)?;
        lin(&mut p, "temb0", h, h, r)?;
        lin(&mut p, "temb1", h, h, r)?;
        lin(&mut p, "pert0", h, h, r)?;
        lin(&mut p, "pert1", h, h, r)?;
        p.normal("emb", &[n_vocab.max(1), h], 0.01, r, dev)?;
        let l = sigmas.len();
        Ok(ScoreNet {
            params: p,
            d,
            hidden: h,
            n_vocab,
            sigmas,
            sin_table: sinusoidal(l, h, dev)?,
        })
    }

    pub fn from_params(
        params: Params,
        d: usize,
        hidden: usize,
        n_vocab: usize,
        sigmas: Vec<f64>,
        dev: &Device,
    ) -> Result<Self> {
        let l = sigmas.len();
        Ok(ScoreNet {
            params,
            d,
            hidden,
            n_vocab,
            sigmas,
            sin_table: sinusoidal(l, hidden, dev)?,
        })
    }

    /// Condition embeddings from multi-hot rows `[C, V]` → `[C, H]` (`Σ_{j∈S} e_j`).
    pub fn condition_embedding(&self, w: &Weights, multi_hot: &Tensor) -> Result<Tensor> {
        Ok(multi_hot.matmul(w.get("emb")?)?)
    }

    /// Mean of the trained embeddings (used for targets never perturbed in training). `[1, H]`
    pub fn mean_embedding(&self) -> Result<Tensor> {
        Ok(self.params.get("emb")?.mean_keepdim(0)?)
    }

    /// Noise-level embeddings of all levels: sinusoidal → Dense → tanh → Dense. `[L, H]`
    pub fn level_table(&self, w: &Weights) -> Result<Tensor> {
        w.dense("temb1", &w.dense("temb0", &self.sin_table)?.tanh()?)
    }

    /// Per-layer condition terms `(Dense_0(e), Dense_1(e))`, each `[N|1, H]`.
    pub fn condition_terms(&self, w: &Weights, e: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((w.dense("pert0", e)?, w.dense("pert1", e)?))
    }

    /// Drift `f(x, σ_t, e)`. `x`: `[N, d]`; `levels`: `[N]` u32 level indices;
    /// `sigma`: `[N, 1]` their σ; `e`: `[N, H]` or `[1, H]` condition embeddings.
    pub fn drift(
        &self,
        w: &Weights,
        x: &Tensor,
        levels: &Tensor,
        sigma: &Tensor,
        e: &Tensor,
    ) -> Result<Tensor> {
        let temb = self.level_table(w)?.index_select(levels, 0)?; // [N, H]
        let cond = self.condition_terms(w, e)?;
        self.drift_pre(w, x, &temb, sigma, &cond)
    }

    /// Drift with precomputed level embedding rows `temb` (`[N|1, H]`) and
    /// condition terms (the sampler computes them once per level / run).
    pub fn drift_pre(
        &self,
        w: &Weights,
        x: &Tensor,
        temb: &Tensor,
        sigma: &Tensor,
        cond: &(Tensor, Tensor),
    ) -> Result<Tensor> {
        let scale = (sigma.sqr()? + 1.0)?.sqrt()?.recip()?; // [N|1, 1]
        let xh = x.broadcast_mul(&scale)?; // [N, d]
        let h0 = w
            .dense("l0", &xh)?
            .broadcast_add(temb)?
            .broadcast_add(&cond.0)?
            .tanh()?; // [N, H]
        let h1 = w.dense("l1", &h0)?.broadcast_add(&cond.1)?.tanh()?; // [N, H]
        let f_out = w.dense("out", &h1)?; // [N, d]
        let den = (xh - f_out.broadcast_mul(sigma)?)?; // D(x)
        Ok((den - x)?.broadcast_div(&sigma.sqr()?)?)
    }

    /// σ tensor `[N, 1]` for level indices.
    pub fn sigma_of(&self, levels: &[u32], dev: &Device) -> Result<Tensor> {
        let v: Vec<f32> = levels
            .iter()
            .map(|&l| self.sigmas[l as usize] as f32)
            .collect();
        Ok(Tensor::from_vec(v, (levels.len(), 1), dev)?)
    }

    /// DSM loss of a batch `x` `[N, d]` under embedding `e` `[1, H]`.
    pub fn dsm_loss(
        &self,
        w: &Weights,
        x: &Tensor,
        e_multi_hot: &Tensor,
        rng: &mut TensorRng,
    ) -> Result<Tensor> {
        let n = x.dim(0)?;
        let dev = x.device();
        let lv: Vec<u32> = rng
            .indices(n, self.sigmas.len())
            .into_iter()
            .map(|v| v as u32)
            .collect();
        let sigma = self.sigma_of(&lv, dev)?; // [N, 1]
        let levels = Tensor::from_vec(lv, n, dev)?;
        let eps = rng.normal(&[n, self.d])?; // [N, d]
        let xt = (x + eps.broadcast_mul(&sigma)?)?;
        let e = self.condition_embedding(w, e_multi_hot)?; // [1, H]
        let f = self.drift(w, &xt, &levels, &sigma, &e)?;
        let r = (f.broadcast_mul(&sigma)? + eps)?; // σ f + ε
        Ok((r.sqr()?.sum(1)?.mean_all()? * 0.5)?)
    }

    /// Train by DSM (`resume` and `on_step` as in [`crate::stage1::Stage1::train`]). `states[q]`: standardised latent states `[n_q, d]` of
    /// environment q; `multi_hot[q]`: `[1, V]` its targets.
    pub fn train(
        &mut self,
        states: &[Tensor],
        multi_hot: &[Tensor],
        cfg: &Stage2Config,
        rng: &mut TensorRng,
        resume: Option<(usize, &OptState)>,
        mut on_step: impl FnMut(usize, f64, f64, &[(&str, &Adam)], &TensorRng) -> Result<()>,
    ) -> Result<()> {
        let vars = self.params.vars();
        let names = self.params.names();
        let hp = AdamParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: cfg.weight_decay,
            clip: None,
        };
        let mut opt = Adam::new(vars.clone(), hp)?;
        // The embedding table is not decayed (decay would pull unused rows to 0 and bias the mean embedding).
        let mut opt_emb = None;
        let emb_pos = names.iter().position(|n| n == "emb");
        if let Some(i) = emb_pos {
            let hp0 = AdamParams {
                weight_decay: 0.0,
                ..hp
            };
            opt_emb = Some(Adam::new(vec![vars[i].clone()], hp0)?);
        }
        let dev = states
            .first()
            .map(|s| s.device().clone())
            .ok_or_else(|| LcdError::Data("no environments".into()))?;
        let mut start = 0;
        if let Some((first, state)) = resume {
            opt.import("opt.", state)?;
            if let Some(o) = opt_emb.as_mut() {
                o.import("opt_emb.", state)?;
            }
            start = first;
        }
        for step in start..cfg.steps {
            let q = rng.indices(1, states.len())[0];
            let nq = states[q].dim(0)?;
            let rows: Vec<u32> = rng
                .indices(cfg.batch, nq)
                .into_iter()
                .map(|v| v as u32)
                .collect();
            let x = states[q].index_select(&Tensor::from_vec(rows, cfg.batch, &dev)?, 0)?; // [B, d]
            let w = self.params.live();
            let loss = self.dsm_loss(&w, &x, &multi_hot[q], rng)?;
            let lv = f64::from(loss.to_scalar::<f32>()?);
            if !lv.is_finite() {
                return Err(LcdError::Diverged {
                    stage: "stage 2",
                    step,
                    loss: lv,
                });
            }
            let g = loss.backward()?;
            let mut grads: Vec<Option<Tensor>> =
                vars.iter().map(|v| g.get(v.as_tensor()).cloned()).collect();
            let lr = warmup_cosine(step, 0, cfg.steps, cfg.lr);
            if let (Some(i), Some(o)) = (emb_pos, opt_emb.as_mut()) {
                o.step(&[grads[i].take()], lr)?;
            }
            opt.step(&grads, lr)?;
            match &opt_emb {
                Some(o) => on_step(step, lv, lr, &[("opt.", &opt), ("opt_emb.", o)], &*rng)?,
                None => on_step(step, lv, lr, &[("opt.", &opt)], &*rng)?,
            }
        }
        Ok(())
    }
}
