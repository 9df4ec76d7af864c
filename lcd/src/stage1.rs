//! Stage 1 of LCD (lcd.md): per-environment generators `G_q` and the shared
//! ZIP measurement model, fitted by the tempered Monte-Carlo marginal
//! likelihood
//! `ℓ = − mean_T mean_cells [ T (logsumexp_m(log p(x|s_m)/T) − log M) ]`, `T ∈ {1, T_hi}`.
//!
//! All selected environments' generators run as one batched matmul (weights
//! stacked `[Q, in, out]`). Memory is bounded by chunking the M draws: a
//! first pass (no autograd graph) computes every chunk's `[E, B, Mc]`
//! log-likelihood and the per-cell logsumexp; a second pass recomputes each
//! chunk with the graph and back-propagates the surrogate
//! `−Σ_m w_bm ll_bm`, `w = ½ Σ_T softmax_m(ll/T)` — whose gradient equals
//! the gradient of ℓ — accumulating gradients over chunks. With one chunk
//! the second pass is the only pass.
use candle_core::{Device, Tensor, D};
use ndarray::{Array2, Axis};
use rand::seq::index::sample;

use crate::config::Stage1Config;
use crate::data::TrainingData;
use crate::optim::{warmup_cosine, Adam, AdamParams, OptState};
use crate::params::{Params, Weights};
use crate::rng::TensorRng;
use crate::zip::{cell_features, log_lik, moment_scale};
use crate::{LcdError, Result};

/// Fitted measurement model.
pub struct Stage1 {
    pub params: Params,
    /// Per-gene log scale `log u_g` (moment estimate, not trained). `[d]`
    pub log_u: Tensor,
    pub n_envs: usize,
    pub cfg: Stage1Config,
}

fn softplus_inv(y: f64) -> f64 {
    let y = y.max(1e-4);
    if y > 20.0 {
        y
    } else {
        y.exp_m1().ln()
    }
}

impl Stage1 {
    /// Initialise generators and π from the data (moment estimates).
    pub fn init(
        data: &TrainingData,
        cfg: &Stage1Config,
        rng: &mut TensorRng,
        dev: &Device,
    ) -> Result<Self> {
        let d = data.n_genes();
        let q = data.envs.len();
        let w = cfg.width;
        let u = moment_scale(data.envs[0].x.view());
        let ctrl_mean = data.envs[0]
            .x
            .mean_axis(Axis(0))
            .unwrap_or_else(|| ndarray::Array1::zeros(d));
        // π from the moments: E[x] = (1−π) u  ⇒  π = 1 − mean/u.
        let pi: Vec<f32> = (0..d)
            .map(|g| {
                let p = (1.0 - f64::from(ctrl_mean[g]) / f64::from(u[g])).clamp(0.01, 0.95);
                (p / (1.0 - p)).ln() as f32
            })
            .collect();
        let mut p = Params::new();
        let h = rng.host();
        let s_in = (1.0 / w as f64).sqrt();
        p.normal("gen.in.w", &[q, w, w], s_in, h, dev)?;
        p.zeros("gen.in.b", &[q, 1, w], dev)?;
        for i in 0..cfg.res_blocks {
            p.normal(&format!("gen.res{i}.a.w"), &[q, w, w], s_in, h, dev)?;
            p.zeros(&format!("gen.res{i}.a.b"), &[q, 1, w], dev)?;
            p.normal(&format!("gen.res{i}.b.w"), &[q, w, w], 0.1 * s_in, h, dev)?;
            p.zeros(&format!("gen.res{i}.b.b"), &[q, 1, w], dev)?;
        }
        p.normal("gen.proj.w", &[q, w, d], 0.5 * s_in, h, dev)?;
        // Bias: softplus(b_qg) · u_g = environment mean / (1 − π_g).
        let mut bias = Vec::with_capacity(q * d);
        for env in &data.envs {
            let m = env
                .x
                .mean_axis(Axis(0))
                .unwrap_or_else(|| ndarray::Array1::zeros(d));
            for g in 0..d {
                let pig = 1.0 / (1.0 + (-f64::from(pi[g])).exp());
                bias.push(softplus_inv(f64::from(m[g]) / (1.0 - pig) / f64::from(u[g])) as f32);
            }
        }
        p.insert("gen.proj.b", Tensor::from_vec(bias, (q, 1, d), dev)?)?;
        let rh = cfg.res_hidden;
        for i in 0..cfg.out_blocks {
            p.normal(
                &format!("gen.out{i}.a.w"),
                &[q, d, rh],
                (1.0 / d as f64).sqrt(),
                h,
                dev,
            )?;
            p.zeros(&format!("gen.out{i}.a.b"), &[q, 1, rh], dev)?;
            p.normal(
                &format!("gen.out{i}.b.w"),
                &[q, rh, d],
                0.1 / (rh as f64).sqrt(),
                h,
                dev,
            )?;
            p.zeros(&format!("gen.out{i}.b.b"), &[q, 1, d], dev)?;
        }
        p.insert("pi_logit", Tensor::from_vec(pi, d, dev)?)?;
        let log_u = Tensor::from_vec(u.iter().map(|v| v.ln()).collect::<Vec<f32>>(), d, dev)?;
        Ok(Stage1 {
            params: p,
            log_u,
            n_envs: q,
            cfg: cfg.clone(),
        })
    }

    /// Generator forward: `eps` `[E, M, width]` → latent states `[E, M, d]`
    /// for environments `idx` (None = all Q).
    pub fn generate(&self, w: &Weights, eps: &Tensor, idx: Option<&Tensor>) -> Result<Tensor> {
        let mut h = w.dense_env("gen.in", eps, idx)?; // [E, M, W]
        for i in 0..self.cfg.res_blocks {
            let a = w.dense_env(&format!("gen.res{i}.a"), &h, idx)?.silu()?;
            h = (&h + w.dense_env(&format!("gen.res{i}.b"), &a, idx)?)?;
        }
        let mut s = w.dense_env("gen.proj", &h, idx)?; // [E, M, d]
        for i in 0..self.cfg.out_blocks {
            let a = w.dense_env(&format!("gen.out{i}.a"), &s, idx)?.silu()?; // [E, M, R]
            s = (&s + w.dense_env(&format!("gen.out{i}.b"), &a, idx)?)?;
        }
        Ok(s)
    }

    /// Per-gene zero-inflation probabilities π. `[d]`
    pub fn pi(&self) -> Result<Vec<f32>> {
        Ok(candle_nn_sigmoid(&self.params.get("pi_logit")?)?.to_vec1::<f32>()?)
    }

    /// Train with the tempered MC marginal likelihood. `on_step(step, loss,
    /// lr, optimisers)` is called after every step (progress, curves,
    /// checkpoints); an error from it ends training (a stop request).
    /// `resume = (first step, optimiser state)` continues a checkpointed run.
    pub fn train(
        &mut self,
        data: &TrainingData,
        rng: &mut TensorRng,
        dev: &Device,
        resume: Option<(usize, &OptState)>,
        mut on_step: impl FnMut(usize, f64, f64, &[(&str, &Adam)], &TensorRng) -> Result<()>,
    ) -> Result<()> {
        let cfg = self.cfg.clone();
        let q = self.n_envs;
        let d = data.n_genes();
        let e = if cfg.envs_per_step == 0 || cfg.envs_per_step >= q {
            q
        } else {
            cfg.envs_per_step
        };
        let b = cfg.batch_cells;
        let m = cfg.mc_samples;
        let hp = AdamParams {
            beta1: 0.0,
            beta2: cfg.beta2,
            eps: 1e-8,
            weight_decay: 0.0,
            clip: Some(cfg.grad_clip),
        };
        let vars = self.params.vars();
        let mut opt = Adam::new(vars.clone(), hp)?;
        let temps = [1.0, cfg.t_hi];
        let mut start = 0;
        if let Some((first, state)) = resume {
            opt.import("opt.", state)?;
            start = first;
        }
        for step in start..cfg.steps {
            // Environments and cells of this step.
            let envs: Vec<usize> = if e == q {
                (0..q).collect()
            } else {
                sample(rng.host(), q, e).into_vec()
            };
            let idx = if e == q {
                None
            } else {
                Some(Tensor::from_vec(
                    envs.iter().map(|&i| i as u32).collect::<Vec<u32>>(),
                    e,
                    dev,
                )?)
            };
            let mut feat = Vec::with_capacity(e * b * 3 * d);
            let mut cst = Vec::with_capacity(e * b);
            for &qi in &envs {
                let x = &data.envs[qi].x;
                let rows = rng.indices(b, x.nrows());
                let xb: Array2<f32> = x.select(Axis(0), &rows);
                let (f, c) = cell_features(xb.view());
                feat.extend(f);
                cst.extend(c);
            }
            let feat = Tensor::from_vec(feat, (e, b, 3 * d), dev)?; // [E, B, 3d]
            let cst = Tensor::from_vec(cst, (e, b, 1), dev)?; // [E, B, 1]
            let chunks: Vec<usize> = (0..m)
                .step_by(cfg.mc_chunk)
                .map(|s| cfg.mc_chunk.min(m - s))
                .collect();
            let eps: Vec<Tensor> = chunks
                .iter()
                .map(|&c| rng.normal(&[e, c, cfg.width]))
                .collect::<Result<_>>()?;
            // Pass 1: detached log-likelihoods of all chunks → [E, B, M].
            let ll_all = if chunks.len() == 1 {
                None
            } else {
                let wd = self.params.detached();
                let pl = wd.get("pi_logit")?.clone();
                let parts = eps
                    .iter()
                    .map(|ep| {
                        log_lik(
                            &feat,
                            &cst,
                            &self.generate(&wd, ep, idx.as_ref())?,
                            &pl,
                            &self.log_u,
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                Some(Tensor::cat(&parts, 2)?)
            };
            let live = self.params.live();
            let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
            let mut weights: Option<Tensor> = None;
            let mut loss_val = 0.0;
            let mut offset = 0;
            for (ci, ep) in eps.iter().enumerate() {
                let ll = log_lik(
                    &feat,
                    &cst,
                    &self.generate(&live, ep, idx.as_ref())?,
                    live.get("pi_logit")?,
                    &self.log_u,
                )?;
                if weights.is_none() {
                    let full = match &ll_all {
                        Some(t) => t.clone(),
                        None => ll.detach(),
                    };
                    let mut w_sum: Option<Tensor> = None;
                    for &t in &temps {
                        let z = (&full / t)?; // [E, B, M]
                        let lse = z.log_sum_exp(D::Minus1)?; // [E, B]
                        loss_val -= 0.5
                            * t
                            * (f64::from(lse.mean_all()?.to_scalar::<f32>()?) - (m as f64).ln());
                        let sm = z.broadcast_sub(&lse.unsqueeze(2)?)?.exp()?;
                        w_sum = Some(match w_sum {
                            Some(a) => (a + sm)?,
                            None => sm,
                        });
                    }
                    weights = w_sum.map(|w| w * 0.5).transpose()?;
                }
                let w = weights
                    .as_ref()
                    .ok_or_else(|| LcdError::Data("no weights".into()))?;
                let wc = w.narrow(2, offset, chunks[ci])?;
                offset += chunks[ci];
                let surrogate = ((wc * &ll)?.sum_all()? * (-1.0 / (e * b) as f64))?;
                let g = surrogate.backward()?;
                for (slot, v) in grads.iter_mut().zip(&vars) {
                    if let Some(gv) = g.get(v.as_tensor()) {
                        *slot = Some(match slot.take() {
                            Some(a) => (a + gv.detach())?,
                            None => gv.detach(),
                        });
                    }
                }
            }
            if !loss_val.is_finite() {
                return Err(LcdError::Diverged {
                    stage: "stage 1",
                    step,
                    loss: loss_val,
                });
            }
            let lr = warmup_cosine(step, cfg.warmup, cfg.steps, cfg.lr);
            opt.step(&grads, lr)?;
            on_step(step, loss_val / d as f64, lr, &[("opt.", &opt)], &*rng)?;
        }
        Ok(())
    }

    /// Draw `n` latent states for every environment: `Vec` of `[n, d]` tensors.
    pub fn sample_latents(
        &self,
        n: usize,
        rng: &mut TensorRng,
        dev: &Device,
    ) -> Result<Vec<Tensor>> {
        let w = self.params.detached();
        let mut out = Vec::with_capacity(self.n_envs);
        let chunk = 4096usize;
        for q in 0..self.n_envs {
            let idx = Tensor::from_vec(vec![q as u32], 1, dev)?;
            let mut parts = Vec::new();
            let mut done = 0;
            while done < n {
                let c = chunk.min(n - done);
                let eps = rng.normal(&[1, c, self.cfg.width])?;
                parts.push(self.generate(&w, &eps, Some(&idx))?.squeeze(0)?);
                done += c;
            }
            out.push(Tensor::cat(&parts, 0)?);
        }
        Ok(out)
    }
}

fn candle_nn_sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(((x.neg()?.exp()? + 1.0)?.recip())?)
}
