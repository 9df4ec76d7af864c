//! A small flow-matching MLP (for the illustrative toy flows) and generic
//! conditional flow matching (CFM) training for any [`TrainableFlow`].
//!
//! CFM (Lipman et al. 2023; Liu et al. 2023, rectified flow): with
//! `x_t = t x1 + (1 − t) x0`, `x0 ~ N(0, I)`, `t ~ U(0, 1)`, minimise
//! `E w(x1) ‖v_θ(x_t, t) − (x1 − x0)‖²` (optional per-sample weights `w` give
//! rejection/verifier-weighted training).
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::flow::{rand_uniform, Flow, TrainableFlow};
use super::{bad_config, ExpandError, Result};

/// Architecture of [`FlowMlp`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowMlpConfig {
    /// Data dimension (≥ 1; 2 for the toy tasks).
    pub dim: usize,
    /// Hidden width (≥ 1).
    pub hidden: usize,
    /// Number of hidden layers (≥ 1).
    pub n_layers: usize,
    /// Number of sinusoidal time frequencies (`π·2^j`, j < n_freqs).
    pub n_freqs: usize,
}

impl Default for FlowMlpConfig {
    fn default() -> Self {
        Self {
            dim: 2,
            hidden: 128,
            n_layers: 3,
            n_freqs: 6,
        }
    }
}

impl FlowMlpConfig {
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(bad_config("FlowMlpConfig", "dim", self.dim, ">= 1"));
        }
        if self.hidden == 0 {
            return Err(bad_config("FlowMlpConfig", "hidden", self.hidden, ">= 1"));
        }
        if self.n_layers == 0 {
            return Err(bad_config(
                "FlowMlpConfig",
                "n_layers",
                self.n_layers,
                ">= 1",
            ));
        }
        Ok(())
    }
    fn in_features(&self) -> usize {
        self.dim + 1 + 2 * self.n_freqs
    }
}

/// MLP velocity field `v(x, t)` on `[batch, dim]` with sinusoidal time features.
#[derive(Debug, Clone)]
pub struct FlowMlp {
    cfg: FlowMlpConfig,
    /// (weight [in, out], bias [out]) per layer.
    layers: Vec<(Tensor, Tensor)>,
    vars: Vec<Var>,
    device: Device,
}

impl FlowMlp {
    /// Trainable model with seeded uniform(±1/√fan_in) weights, zero biases.
    pub fn new(cfg: &FlowMlpConfig, rng: &mut dyn rand::RngCore, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let mut sizes = vec![cfg.in_features()];
        sizes.extend(std::iter::repeat_n(cfg.hidden, cfg.n_layers));
        sizes.push(cfg.dim);
        let mut layers = Vec::new();
        let mut vars = Vec::new();
        for w in sizes.windows(2) {
            let (fi, fo) = (w[0], w[1]);
            let bound = 1.0 / (fi as f32).sqrt();
            let data: Vec<f32> = (0..fi * fo)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            let wv = Var::from_tensor(&Tensor::from_vec(data, (fi, fo), device)?)?;
            let bv = Var::from_tensor(&Tensor::zeros(fo, DType::F32, device)?)?;
            layers.push((wv.as_tensor().clone(), bv.as_tensor().clone()));
            vars.push(wv);
            vars.push(bv);
        }
        Ok(Self {
            cfg: cfg.clone(),
            layers,
            vars,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &FlowMlpConfig {
        &self.cfg
    }

    /// Save the weights as safetensors (atomically) next to nothing else; the
    /// caller writes the config.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            map.insert(format!("layer{i}.weight"), w.clone());
            map.insert(format!("layer{i}.bias"), b.clone());
        }
        let tmp = path.with_extension("safetensors.tmp");
        candle_core::safetensors::save(&map, &tmp)?;
        std::fs::rename(&tmp, path).map_err(|source| ExpandError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Load weights written by [`FlowMlp::save`] as a trainable model.
    pub fn load(cfg: &FlowMlpConfig, path: &Path, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let map = candle_core::safetensors::load(path, device)?;
        let mut layers = Vec::new();
        let mut vars = Vec::new();
        for i in 0..=cfg.n_layers {
            let get = |name: String| {
                map.get(&name).cloned().ok_or_else(|| ExpandError::Data {
                    what: path.display().to_string(),
                    reason: format!("missing tensor {name}"),
                })
            };
            let (w, b) = (
                Var::from_tensor(&get(format!("layer{i}.weight"))?)?,
                Var::from_tensor(&get(format!("layer{i}.bias"))?)?,
            );
            layers.push((w.as_tensor().clone(), b.as_tensor().clone()));
            vars.push(w);
            vars.push(b);
        }
        Ok(Self {
            cfg: cfg.clone(),
            layers,
            vars,
            device: device.clone(),
        })
    }
}

impl Flow for FlowMlp {
    fn event_shape(&self) -> Vec<usize> {
        vec![self.cfg.dim]
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn velocity(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let t = t.to_dtype(DType::F32)?.reshape((n, 1))?; // [b, 1]
        let freqs: Vec<f32> = (0..self.cfg.n_freqs)
            .map(|j| std::f32::consts::PI * 2f32.powi(j as i32))
            .collect();
        let mut feats = vec![x.clone(), t.clone()];
        if !freqs.is_empty() {
            let f = Tensor::from_vec(freqs, (1, self.cfg.n_freqs), &self.device)?;
            let arg = t.broadcast_mul(&f)?; // [b, n_freqs]
            feats.push(arg.sin()?);
            feats.push(arg.cos()?);
        }
        let mut h = Tensor::cat(&feats, 1)?; // [b, in_features]
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.matmul(w)?.broadcast_add(b)?;
            if i < last {
                h = candle_nn::ops::silu(&h)?;
            }
        }
        Ok(h)
    }
}

impl TrainableFlow for FlowMlp {
    fn vars(&self) -> Vec<Var> {
        self.vars.clone()
    }
    fn frozen_copy(&self) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|(w, b)| Ok((w.copy()?.detach(), b.copy()?.detach())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: self.cfg.clone(),
            layers,
            vars: vec![],
            device: self.device.clone(),
        })
    }
    fn trainable_copy(&self) -> Result<Self> {
        let mut layers = Vec::new();
        let mut vars = Vec::new();
        for (w, b) in &self.layers {
            let (wv, bv) = (
                Var::from_tensor(&w.copy()?.detach())?,
                Var::from_tensor(&b.copy()?.detach())?,
            );
            layers.push((wv.as_tensor().clone(), bv.as_tensor().clone()));
            vars.push(wv);
            vars.push(bv);
        }
        Ok(Self {
            cfg: self.cfg.clone(),
            layers,
            vars,
            device: self.device.clone(),
        })
    }
}

/// Optimiser of a training or fine-tuning run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    /// AdamW without weight decay (the default; right for training from
    /// scratch). A fresh AdamW moves every parameter by about `lr` in the
    /// sign of its gradient on its first steps, whatever the gradient's
    /// size, so a few steps on a trained network move it a long way.
    #[default]
    Adam,
    /// Plain gradient descent: steps proportional to the (clipped)
    /// gradient, so parameters the loss hardly depends on stay put; for
    /// short fine-tuning runs of a pre-trained network (FE on Morph).
    Sgd,
}

/// The optimiser of one run ([`OptimKind`]) over `vars`.
pub enum Tuner {
    Adam(AdamW),
    Sgd(candle_nn::SGD),
}

impl Tuner {
    pub fn new(kind: OptimKind, vars: Vec<Var>, lr: f64) -> Result<Self> {
        Ok(match kind {
            OptimKind::Adam => Self::Adam(AdamW::new(
                vars,
                ParamsAdamW {
                    lr,
                    weight_decay: 0.0,
                    ..Default::default()
                },
            )?),
            OptimKind::Sgd => Self::Sgd(candle_nn::SGD::new(vars, lr)?),
        })
    }

    /// [`Tuner::step`] on a scalar `loss` that must be finite: returns its
    /// value, or a data error naming `what` and `when` (e.g. "at step 3")
    /// without stepping.
    pub fn step_finite(
        &mut self,
        vars: &[Var],
        loss: &Tensor,
        max_norm: f64,
        what: &str,
        when: impl std::fmt::Display,
    ) -> Result<f64> {
        let lv = f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        if !lv.is_finite() {
            return Err(ExpandError::Data {
                what: what.into(),
                reason: format!("loss became {lv} {when}").trim_end().to_string(),
            });
        }
        self.step(vars, loss, max_norm)?;
        Ok(lv)
    }

    /// One step on `loss` with the gradient clipped to global norm
    /// `max_norm` (≤ 0: no clip); returns the gradient norm before clipping.
    pub fn step(&mut self, vars: &[Var], loss: &Tensor, max_norm: f64) -> Result<f64> {
        match self {
            Self::Adam(o) => clipped_step(o, vars, loss, max_norm),
            Self::Sgd(o) => clipped_step(o, vars, loss, max_norm),
        }
    }
}

/// One optimiser step with global gradient-norm clipping (`max_norm ≤ 0`
/// disables clipping). Returns the pre-clip gradient norm.
fn clipped_step<O: Optimizer>(
    opt: &mut O,
    vars: &[Var],
    loss: &Tensor,
    max_norm: f64,
) -> Result<f64> {
    let mut grads = loss.backward()?;
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / norm;
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    opt.step(&grads)?;
    Ok(norm)
}

/// Settings of conditional-flow-matching training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CfmConfig {
    /// Optimiser steps (≥ 1).
    pub steps: usize,
    /// Mini-batch size (≥ 1).
    pub batch: usize,
    /// Learning rate (> 0).
    pub lr: f64,
    /// Global gradient-norm clip (≤ 0 disables).
    pub grad_clip: f64,
    /// `adam` (default) or `sgd` ([`OptimKind`]).
    pub optimizer: OptimKind,
}

impl Default for CfmConfig {
    fn default() -> Self {
        Self {
            steps: 2000,
            batch: 256,
            lr: 2e-3,
            grad_clip: 1.0,
            optimizer: OptimKind::Adam,
        }
    }
}

impl CfmConfig {
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(bad_config("CfmConfig", "steps", self.steps, ">= 1"));
        }
        if self.batch == 0 {
            return Err(bad_config("CfmConfig", "batch", self.batch, ">= 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(bad_config("CfmConfig", "lr", self.lr, "a finite value > 0"));
        }
        Ok(())
    }
}

/// Train `flow` by CFM on `data` ([n, event…]) with optional per-sample
/// weights `[n]` (≥ 0, not all 0). Batched; `on_step(step, loss)` reports
/// progress. Returns the mean loss over the last 10 % of steps.
pub fn train_cfm<F: TrainableFlow>(
    flow: &F,
    data: &Tensor,
    weights: Option<&[f32]>,
    cfg: &CfmConfig,
    rng: &mut dyn rand::RngCore,
    mut on_step: impl FnMut(usize, f64),
) -> Result<f64> {
    cfg.validate()?;
    let n = data.dim(0)?;
    if n == 0 {
        return Err(ExpandError::Data {
            what: "flow-matching data".into(),
            reason: "no samples".into(),
        });
    }
    if let Some(w) = weights {
        if w.len() != n {
            return Err(ExpandError::Shape {
                what: "CFM weights".into(),
                expected: format!("{n}"),
                got: format!("{}", w.len()),
            });
        }
        if w.iter().any(|v| !(*v >= 0.0)) || w.iter().all(|v| *v == 0.0) {
            return Err(ExpandError::Data {
                what: "CFM weights".into(),
                reason: "must be >= 0 and not all zero".into(),
            });
        }
    }
    let device = data.device();
    let vars = flow.vars();
    let mut opt = Tuner::new(cfg.optimizer, vars.clone(), cfg.lr)?;
    let tail = (cfg.steps / 10).max(1);
    let mut tail_loss = 0.0;
    let event_elems: usize = data.dims()[1..].iter().product::<usize>().max(1);
    for step in 0..cfg.steps {
        let idx: Vec<u32> = (0..cfg.batch)
            .map(|_| rng.random_range(0..n) as u32)
            .collect();
        let idx_t = Tensor::from_slice(&idx, cfg.batch, device)?;
        let x1 = data.index_select(&idx_t, 0)?; // [b, event…]
        let x0 = flow.noise(cfg.batch, rng)?; // [b, event…]
        let t = rand_uniform(rng, cfg.batch, device)?; // [b]
        let mut tshape = vec![cfg.batch];
        tshape.extend(std::iter::repeat_n(1, x1.rank() - 1));
        let tb = t.reshape(tshape)?.broadcast_as(x1.dims())?;
        let xt = ((&tb * &x1)? + ((1.0 - &tb)? * &x0)?)?;
        let target = (&x1 - &x0)?;
        let v = flow.velocity(&xt, &t)?;
        let per = (v - target)?.sqr()?.flatten_from(1)?.sum(1)?; // [b]
        let loss = match weights {
            Some(w) => {
                let wb: Vec<f32> = idx.iter().map(|&i| w[i as usize]).collect();
                let wt = Tensor::from_vec(wb, cfg.batch, device)?;
                ((per * &wt)?.sum_all()?
                    / (wt.sum_all()?.to_scalar::<f32>()? as f64 * event_elems as f64).max(1e-12))?
            }
            None => (per.mean_all()? / event_elems as f64)?,
        };
        let lv = opt.step_finite(
            &vars,
            &loss,
            cfg.grad_clip,
            "flow-matching training",
            format_args!("at step {step}"),
        )?;
        if step >= cfg.steps - tail {
            tail_loss += lv / tail as f64;
        }
        on_step(step, lv);
    }
    Ok(tail_loss)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `loss = Σ c_i θ_i` has gradient `c`: one step of each optimiser from
    /// θ = 0, against the closed form.
    fn one_step(kind: OptimKind, c: &[f32], lr: f64, clip: f64) -> Vec<f32> {
        let dev = Device::Cpu;
        let theta = Var::zeros(c.len(), DType::F32, &dev).unwrap();
        let ct = Tensor::from_slice(c, c.len(), &dev).unwrap();
        let loss = (theta.as_tensor() * &ct).unwrap().sum_all().unwrap();
        let mut opt = Tuner::new(kind, vec![theta.clone()], lr).unwrap();
        let norm = opt.step(&[theta.clone()], &loss, clip).unwrap();
        let want = c.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        assert!((norm - want).abs() < 1e-5 * want, "norm {norm} vs {want}");
        theta.as_tensor().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn sgd_steps_along_the_clipped_gradient() {
        let c = [3.0f32, -4.0, 1e-4];
        let got = one_step(OptimKind::Sgd, &c, 0.1, 0.0);
        for (g, ci) in got.iter().zip(c) {
            assert!((g + 0.1 * ci).abs() < 1e-7, "{got:?}");
        }
        // norm 5 clipped to 1: the step is lr·c/5
        let got = one_step(OptimKind::Sgd, &c, 0.1, 1.0);
        for (g, ci) in got.iter().zip(c) {
            assert!((g + 0.1 * ci / 5.0).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn fresh_adam_moves_every_parameter_by_lr() {
        // the reason for `sgd` in fine-tuning: Adam's first step is lr·sign(g),
        // the same for a gradient of 1e-4 as for one of 4
        let c = [3.0f32, -4.0, 1e-4];
        let got = one_step(OptimKind::Adam, &c, 0.01, 0.0);
        for (g, ci) in got.iter().zip(c) {
            assert!((g + 0.01 * ci.signum()).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn optimizer_names_in_settings() {
        let c: CfmConfig = toml::from_str("optimizer = \"sgd\"").unwrap();
        assert_eq!(c.optimizer, OptimKind::Sgd);
        assert_eq!(CfmConfig::default().optimizer, OptimKind::Adam);
        let e = toml::from_str::<CfmConfig>("optimizer = \"rmsprop\"").unwrap_err();
        assert!(e.to_string().contains("rmsprop"), "{e}");
    }
}
