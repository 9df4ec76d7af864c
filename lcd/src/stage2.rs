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
//! - Optional (not in the paper, [`ConditionPath`]): a zero-initialised
//!   linear path from `e` — an input translation `x − e·W_shift` (parameter
//!   `cshift.w`) or an output term `F += e·W_out` (`cout.w`). Which one a
//!   network has is read from its parameters, so old model directories load
//!   as the paper network.
use candle_core::{Device, Tensor};

use crate::config::{ConditionPath, Stage2Config};
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

/// Parameter names of the optional linear condition paths.
const SHIFT_W: &str = "cshift.w";
const OUT_W: &str = "cout.w";

/// The condition's contribution to the network, computed once per
/// embedding: `Dense_0(e)`, `Dense_1(e)` (each `[N|1, H]`) and the optional
/// linear paths (`[N|1, d]`).
pub struct CondTerms {
    /// `None` for [`ConditionPath::ShiftOnly`] (no per-layer injection).
    pub l0: Option<Tensor>,
    pub l1: Option<Tensor>,
    /// Input translation `m(e)` ([`ConditionPath::Shift`]).
    pub shift: Option<Tensor>,
    /// Output term added to `F` ([`ConditionPath::Output`]).
    pub out: Option<Tensor>,
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
    /// The paper network ([`ConditionPath::None`]).
    pub fn init(
        d: usize,
        n_vocab: usize,
        sigmas: Vec<f64>,
        hidden: usize,
        rng: &mut TensorRng,
        dev: &Device,
    ) -> Result<Self> {
        Self::init_with(d, n_vocab, sigmas, hidden, ConditionPath::None, rng, dev)
    }

    /// A network with the given condition path. The extra weights are zeros
    /// and draw nothing from `rng`, so every other weight equals the paper
    /// network's for the same seed and the outputs at initialisation agree.
    pub fn init_with(
        d: usize,
        n_vocab: usize,
        sigmas: Vec<f64>,
        hidden: usize,
        path: ConditionPath,
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
        if path != ConditionPath::ShiftOnly {
            lin(&mut p, "pert0", h, h, r)?;
            lin(&mut p, "pert1", h, h, r)?;
        }
        p.normal("emb", &[n_vocab.max(1), h], 0.01, r, dev)?;
        match path {
            ConditionPath::None => {}
            ConditionPath::Shift | ConditionPath::ShiftOnly => p.zeros(SHIFT_W, &[h, d], dev)?,
            ConditionPath::Output => p.zeros(OUT_W, &[h, d], dev)?,
        }
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

    /// The condition path this network's parameters implement.
    pub fn condition_path(&self) -> Result<ConditionPath> {
        let names = self.params.names();
        let has = |n: &str| names.iter().any(|k| k == n);
        match (has(SHIFT_W), has(OUT_W), has("pert0.w")) {
            (false, false, true) => Ok(ConditionPath::None),
            (true, false, true) => Ok(ConditionPath::Shift),
            (true, false, false) => Ok(ConditionPath::ShiftOnly),
            (false, true, true) => Ok(ConditionPath::Output),
            (s, o, pl) => Err(LcdError::Data(format!(
                "score network parameters do not form a known condition path \
                 ({SHIFT_W:?}: {s}, {OUT_W:?}: {o}, \"pert0.w\": {pl})"
            ))),
        }
    }

    /// Parameters that are not weight-decayed: the embedding table (decay
    /// would pull rows of targets absent from a batch to 0 and bias the mean
    /// embedding) and the linear condition paths.
    pub fn undecayed(name: &str) -> bool {
        name == "emb" || name == SHIFT_W || name == OUT_W
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

    /// Condition terms of embeddings `e` (`[N|1, H]`).
    pub fn condition_terms(&self, w: &Weights, e: &Tensor) -> Result<CondTerms> {
        let lin = |name: &str| -> Result<Option<Tensor>> {
            match w.0.get(name) {
                Some(m) => Ok(Some(crate::blas::matmul(e, m)?)),
                None => Ok(None),
            }
        };
        let layer = |name: &str| -> Result<Option<Tensor>> {
            match w.0.contains_key(&format!("{name}.w")) {
                true => Ok(Some(w.dense(name, e)?)),
                false => Ok(None),
            }
        };
        Ok(CondTerms {
            l0: layer("pert0")?,
            l1: layer("pert1")?,
            shift: lin(SHIFT_W)?,
            out: lin(OUT_W)?,
        })
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
        cond: &CondTerms,
    ) -> Result<Tensor> {
        if self.fused_drift(w, x, temb, sigma, cond) {
            return crate::cpu_fast::drift(self, w, x, temb, sigma, cond, None);
        }
        self.drift_graph(w, x, temb, sigma, cond)
    }

    /// One annealed-Langevin step `x + ε f(x) + √(2ε) ξ` (ξ from `rng`;
    /// `None`: the noise-free step). On the CPU path the update and the noise
    /// draw are fused into the drift's last pass; the host stream advances
    /// the same way on both paths.
    #[allow(clippy::too_many_arguments)]
    pub fn langevin_step(
        &self,
        w: &Weights,
        x: &Tensor,
        temb: &Tensor,
        sigma: &Tensor,
        cond: &CondTerms,
        eps: f64,
        rng: Option<&mut TensorRng>,
    ) -> Result<Tensor> {
        let scale = (2.0 * eps).sqrt();
        if self.fused_drift(w, x, temb, sigma, cond) {
            let step = crate::cpu_fast::Langevin {
                eps: eps as f32,
                noise: rng.map(|r| (r.normal_key(), scale as f32)),
            };
            return crate::cpu_fast::drift(self, w, x, temb, sigma, cond, Some(step));
        }
        let f = self.drift_graph(w, x, temb, sigma, cond)?;
        let mut x = (x + (f * eps)?)?;
        if let Some(r) = rng {
            let (n, d) = x.dims2()?;
            let z = r.normal_rows(n, d)?;
            x = (x + (z * scale)?)?;
        }
        Ok(x)
    }

    /// CPU, f32, no gradient wanted (the sampler, CLIPR): fused passes.
    fn fused_drift(
        &self,
        w: &Weights,
        x: &Tensor,
        temb: &Tensor,
        sigma: &Tensor,
        cond: &CondTerms,
    ) -> bool {
        x.device().is_cpu()
            && x.dtype() == candle_core::DType::F32
            && crate::cpu_fast::supported(self)
            && !crate::cpu_fast::any_tracked(&[
                Some(x),
                Some(temb),
                Some(sigma),
                cond.l0.as_ref(),
                cond.l1.as_ref(),
                cond.shift.as_ref(),
                cond.out.as_ref(),
            ])
            && !w.0.values().any(|t| t.track_op())
    }

    /// The drift as candle ops (any device; differentiable).
    fn drift_graph(
        &self,
        w: &Weights,
        x: &Tensor,
        temb: &Tensor,
        sigma: &Tensor,
        cond: &CondTerms,
    ) -> Result<Tensor> {
        // Shift path: f(x, σ, e) = f_net(x − m(e), σ, e).
        let shifted;
        let x = match &cond.shift {
            Some(m) => {
                shifted = x.broadcast_sub(m)?;
                &shifted
            }
            None => x,
        };
        let scale = (sigma.sqr()? + 1.0)?.sqrt()?.recip()?; // [N|1, 1]
        let xh = x.broadcast_mul(&scale)?; // [N, d]
        let mut a0 = w.dense("l0", &xh)?.broadcast_add(temb)?;
        if let Some(c) = &cond.l0 {
            a0 = a0.broadcast_add(c)?;
        }
        let h0 = a0.tanh()?; // [N, H]
        let mut a1 = w.dense("l1", &h0)?;
        if let Some(c) = &cond.l1 {
            a1 = a1.broadcast_add(c)?;
        }
        let h1 = a1.tanh()?; // [N, H]
        let mut f_out = w.dense("out", &h1)?; // [N, d]
        if let Some(o) = &cond.out {
            f_out = f_out.broadcast_add(o)?;
        }
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

    /// Whether [`ScoreNet::dsm_gradients`] can take the fused CPU step for
    /// this network (CPU, f32, OpenBLAS on, no input-shift path).
    pub fn fused_step_available(&self) -> Result<bool> {
        Ok(crate::cpu_fast::supported(self)
            && matches!(
                self.condition_path()?,
                ConditionPath::None | ConditionPath::Output
            ))
    }

    /// Loss and parameter gradients (by name) of one DSM step on rows `rows`
    /// of `state` (`[n, d]`) under `multi_hot` (`[1, V]`). `fused`: the
    /// fused CPU step (`cpu_fast`; an error where
    /// [`ScoreNet::fused_step_available`] is false), else candle autograd
    /// through [`ScoreNet::dsm_loss`]. Both draw the same random numbers.
    pub fn dsm_gradients(
        &self,
        state: &Tensor,
        rows: &[u32],
        multi_hot: &Tensor,
        rng: &mut TensorRng,
        fused: bool,
    ) -> Result<(f64, std::collections::HashMap<String, Tensor>)> {
        if fused {
            if !self.fused_step_available()? || !state.device().is_cpu() {
                return Err(LcdError::Data(
                    "the fused stage-2 step needs f32 parameters on the CPU, OpenBLAS \
                     enabled and a network without the shift condition path"
                        .into(),
                ));
            }
            return crate::cpu_fast::dsm_step(self, state, rows, multi_hot, rng);
        }
        let dev = state.device();
        let idx = Tensor::from_vec(rows.to_vec(), rows.len(), dev)?;
        let x = state.index_select(&idx, 0)?; // [B, d]
        let w = self.params.live();
        let loss = self.dsm_loss(&w, &x, multi_hot, rng)?;
        let lv = f64::from(loss.to_scalar::<f32>()?);
        if !lv.is_finite() {
            return Ok((lv, Default::default()));
        }
        let g = loss.backward()?;
        let mut out = std::collections::HashMap::new();
        for (n, v) in self.params.names().into_iter().zip(self.params.vars()) {
            if let Some(t) = g.get(v.as_tensor()) {
                out.insert(n, t.clone());
            }
        }
        Ok((lv, out))
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
        // The embedding table and the linear condition paths are not decayed
        // (see [`ScoreNet::undecayed`]); their gradients go to `opt_emb`.
        let mut opt_emb = None;
        let free: Vec<usize> = (0..names.len())
            .filter(|&i| Self::undecayed(&names[i]))
            .collect();
        if !free.is_empty() {
            let hp0 = AdamParams {
                weight_decay: 0.0,
                ..hp
            };
            opt_emb = Some(Adam::new(
                free.iter().map(|&i| vars[i].clone()).collect(),
                hp0,
            )?);
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
        // CPU + f32 + a path without input shift: the fused step of
        // `cpu_fast` (same loss, same random draws); otherwise candle autograd.
        let fused = dev.is_cpu()
            && self.fused_step_available()?
            && states.iter().all(|s| s.dtype() == candle_core::DType::F32);
        // The fused step keeps its buffers between steps; free them when
        // training ends (also on an error or a stop request).
        let _scratch = crate::cpu_fast::ScratchGuard;
        for step in start..cfg.steps {
            let q = rng.indices(1, states.len())[0];
            let nq = states[q].dim(0)?;
            let rows: Vec<u32> = rng
                .indices(cfg.batch, nq)
                .into_iter()
                .map(|v| v as u32)
                .collect();
            let (lv, g) = self.dsm_gradients(&states[q], &rows, &multi_hot[q], rng, fused)?;
            let mut grads: Vec<Option<Tensor>> = names.iter().map(|n| g.get(n).cloned()).collect();
            if !lv.is_finite() {
                return Err(LcdError::Diverged {
                    stage: "stage 2",
                    step,
                    loss: lv,
                });
            }
            let lr = warmup_cosine(step, 0, cfg.steps, cfg.lr);
            if let Some(o) = opt_emb.as_mut() {
                let g0: Vec<Option<Tensor>> = free.iter().map(|&i| grads[i].take()).collect();
                o.step(&g0, lr)?;
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
