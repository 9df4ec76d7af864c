//! The fitted LCD model: the two-stage fit, prediction of (unseen)
//! perturbation combinations, and the drift interface used by CLIPR.
//!
//! Public interface for CLIPR (all in standardised latent space
//! `z = (s − mean_ctrl)/std_all`):
//! - [`LcdModel::drift`]`(x_std [N, d], level, targets) -> [N, d]`: `f(x, σ_level, e_S)`.
//! - [`LcdModel::sample_noise_free`]`(x0 [N, d], targets) -> [N, d]`: the
//!   annealed sampler with ξ = 0 from `x0` through all levels.
//! - [`LcdModel::standardisation`]`() -> (mean_ctrl, std_all)` (latent-state units).
//! - [`LcdModel::genes`], [`LcdModel::trained_targets`], [`LcdModel::n_levels`].
use candle_core::{Device, Tensor};
use ndarray::Array2;

use crate::config::LcdConfig;
use crate::params::Weights;
use crate::rng::TensorRng;
use crate::sampler::annealed_langevin;
use crate::stage1::Stage1;
use crate::stage2::ScoreNet;
use crate::{LcdError, Result};

/// One point of a training curve (written to `curves.jsonl`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CurvePoint {
    pub stage: String,
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// Progress events of [`LcdModel::fit`]: (stage name, step, total steps, loss).
pub type ProgressFn<'a> = dyn FnMut(&str, usize, usize, f64) + 'a;

/// A trained model, ready to predict.
pub struct LcdModel {
    pub cfg: LcdConfig,
    pub genes: Vec<String>,
    /// Targets with a trained embedding (sorted).
    pub vocabulary: Vec<String>,
    /// Labels of the training environments (control first).
    pub train_conditions: Vec<String>,
    pub mean_ctrl: Vec<f32>,
    pub std_all: Vec<f32>,
    /// Zero-inflation probability and ZIP scale per gene (empty without noise model).
    pub pi: Vec<f32>,
    pub u: Vec<f32>,
    pub net: ScoreNet,
    pub stage1: Option<Stage1>,
    pub curves: Vec<CurvePoint>,
    pub seed: u64,
    pub device: Device,
}

/// Predicted cells of one condition.
pub struct ConditionPrediction {
    pub label: String,
    pub targets: Vec<String>,
    /// Targets never perturbed in training (embedded as the mean embedding).
    pub unseen_targets: Vec<String>,
    /// Chain end points in latent-state units (not standardised). `[chains, d]`
    pub latent: Array2<f32>,
    /// Decoded cells: counts (noise model) or expression. `[chains·decodes, d]`
    pub cells: Array2<f32>,
}

fn tensor_to_array(t: &Tensor) -> Result<Array2<f32>> {
    let (n, d) = t.dims2()?;
    let v = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Array2::from_shape_vec((n, d), v).map_err(|e| LcdError::Data(e.to_string()))
}

pub(crate) fn array_to_tensor(a: &Array2<f32>, dev: &Device) -> Result<Tensor> {
    let (n, d) = a.dim();
    let v: Vec<f32> = a.iter().cloned().collect();
    Ok(Tensor::from_vec(v, (n, d), dev)?)
}

impl LcdModel {
    pub fn genes(&self) -> &[String] {
        &self.genes
    }
    /// Targets perturbed in training (they have a learned embedding).
    pub fn trained_targets(&self) -> &[String] {
        &self.vocabulary
    }
    /// `(mean_ctrl, std_all)` per gene, in latent-state units.
    pub fn standardisation(&self) -> (&[f32], &[f32]) {
        (&self.mean_ctrl, &self.std_all)
    }
    /// Number of noise levels (level `n_levels − 1` is σ_min).
    pub fn n_levels(&self) -> usize {
        self.net.sigmas.len()
    }
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Condition embedding `[1, H]` for targets, and the targets that were
    /// never perturbed in training (mean embedding). Unknown names (neither a
    /// trained target nor a model gene) are an error.
    pub fn embedding(&self, targets: &[String]) -> Result<(Tensor, Vec<String>)> {
        let w = self.net.params.detached();
        let emb = w.get("emb")?;
        let h = self.net.hidden;
        let mut e = Tensor::zeros((1, h), candle_core::DType::F32, &self.device)?;
        let mut unseen = Vec::new();
        for t in targets {
            if let Some(i) = self.vocabulary.iter().position(|v| v == t) {
                e = (e + emb.narrow(0, i, 1)?)?;
            } else if self.genes.iter().any(|g| g == t) {
                if self.vocabulary.is_empty() {
                    return Err(LcdError::Perturbation {
                        label: t.clone(),
                        message: "the model was trained without perturbations".into(),
                    });
                }
                e = (e + self.net.mean_embedding()?)?;
                unseen.push(t.clone());
            } else {
                return Err(LcdError::Perturbation {
                    label: t.clone(),
                    message: format!(
                        "unknown target: neither perturbed in training ({} targets) nor one of the model's {} genes",
                        self.vocabulary.len(),
                        self.genes.len()
                    ),
                });
            }
        }
        Ok((e, unseen))
    }

    /// Drift `f(x, σ_level, e_S)` in standardised space. `x_std`: `[N, d]`.
    pub fn drift(&self, x_std: &Tensor, level: usize, targets: &[String]) -> Result<Tensor> {
        let n = x_std.dim(0)?;
        let level = level.min(self.n_levels() - 1);
        let (e, _) = self.embedding(targets)?;
        let w = self.net.params.detached();
        let levels = Tensor::from_vec(vec![level as u32; n], n, &self.device)?;
        let sigma = self.net.sigma_of(&vec![level as u32; n], &self.device)?;
        self.net.drift(&w, x_std, &levels, &sigma, &e)
    }

    /// Noise-free annealed sampler from `x0` `[N, d]` (standardised) under `targets`.
    pub fn sample_noise_free(&self, x0: &Tensor, targets: &[String]) -> Result<Tensor> {
        let (e, _) = self.embedding(targets)?;
        let w = self.net.params.detached();
        annealed_langevin(&self.net, &w, x0, &e, &self.cfg.sampler, None, |_| {})
    }

    /// Sample `chains` chains per condition (all conditions in one batch),
    /// decode each end point `decodes_per_chain` times.
    pub fn predict(
        &self,
        conditions: &[Vec<String>],
        chains: usize,
        seed: u64,
        mut on_level: impl FnMut(usize, usize),
    ) -> Result<Vec<ConditionPrediction>> {
        let dev = &self.device;
        let d = self.genes.len();
        let mut rng = TensorRng::new(seed, dev)?;
        let mut embs = Vec::new();
        let mut unseen = Vec::new();
        for c in conditions {
            let (e, u) = self.embedding(c)?;
            embs.push(e.broadcast_as((chains, self.net.hidden))?);
            unseen.push(u);
        }
        if conditions.is_empty() {
            return Ok(Vec::new());
        }
        let e = Tensor::cat(&embs, 0)?.contiguous()?; // [C·chains, H]
        let n = chains * conditions.len();
        let x0 = rng.normal(&[n, d])?;
        let w: Weights = self.net.params.detached();
        let l = self.n_levels();
        let z = annealed_langevin(
            &self.net,
            &w,
            &x0,
            &e,
            &self.cfg.sampler,
            Some(&mut rng),
            |i| on_level(i + 1, l),
        )?;
        let mean = Tensor::from_vec(self.mean_ctrl.clone(), (1, d), dev)?;
        let std = Tensor::from_vec(self.std_all.clone(), (1, d), dev)?;
        let s = z.broadcast_mul(&std)?.broadcast_add(&mean)?; // [N, d] latent units
        let s = tensor_to_array(&s)?;
        let reps = self.cfg.sampler.decodes_per_chain;
        let mut out = Vec::new();
        for (ci, c) in conditions.iter().enumerate() {
            let lat = s
                .slice(ndarray::s![ci * chains..(ci + 1) * chains, ..])
                .to_owned();
            let cells = if self.cfg.noise_model {
                let flat: Vec<f32> = lat.iter().cloned().collect();
                let mut all = Vec::with_capacity(flat.len() * reps);
                for _ in 0..reps {
                    all.extend(crate::zip::sample_counts(
                        &flat,
                        d,
                        &self.pi,
                        &self.u,
                        rng.host(),
                    ));
                }
                Array2::from_shape_vec((chains * reps, d), all)
                    .map_err(|e| LcdError::Data(e.to_string()))?
            } else {
                lat.clone()
            };
            out.push(ConditionPrediction {
                label: if c.is_empty() {
                    "control".into()
                } else {
                    c.join("+")
                },
                targets: c.clone(),
                unseen_targets: unseen[ci].clone(),
                latent: lat,
                cells,
            });
        }
        Ok(out)
    }
}
