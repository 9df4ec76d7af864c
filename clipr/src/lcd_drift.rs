//! A trained LCD model as a [`PerturbableDrift`] (`design/clipr.md`).
//!
//! LCD's score network lives in standardised space `z = (s − shift)/scale`
//! (`shift` = control mean, `scale` = pooled std, per gene). CLIPR works in
//! latent-state units `s`, so the drift is converted as a score:
//! `f_s(s) = f_z((s − shift)/scale) / scale`, evaluated at the smallest noise
//! level σ_min. Hence the initial response `v_q = f_s(0) = f_z(−shift/scale)/scale`.
//! The limit response is LCD's noise-free annealed sampler run from `z = 0`
//! (the control mean) through all noise levels, `l_q ← shift + scale · l_z`.
//! All `k` perturbations advance together as one `[k, d]` tensor with one
//! embedding row per perturbation (`e = multi_hot · E`, plus the mean
//! embedding for targets never perturbed in training).
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use lcd::sampler::annealed_langevin;
use lcd::LcdModel;
use ndarray::{Array1, Array2, ArrayView2};

use crate::drift::{PerturbableDrift, Targets};
use crate::error::{CliprError, Result};

/// A loaded LCD model with its standardisation in f64.
pub struct LcdDrift {
    pub model: LcdModel,
    shift: Array1<f64>,
    scale: Array1<f64>,
    /// Genes (model order) that have a trained embedding.
    trained: Vec<usize>,
    /// For each gene: its row in the embedding table, if trained.
    vocab_row: Vec<Option<usize>>,
}

fn model_err(e: impl std::fmt::Display) -> CliprError {
    CliprError::Model {
        context: "LCD".into(),
        message: e.to_string(),
    }
}

impl LcdDrift {
    /// Loads a model directory written by `cellmol lcd fit`.
    pub fn load(dir: &Path, dev: &Device) -> Result<Self> {
        let (model, _info) = LcdModel::load(dir, dev)?;
        Self::new(model)
    }

    pub fn new(model: LcdModel) -> Result<Self> {
        let (m, s) = model.standardisation();
        let shift = Array1::from_iter(m.iter().map(|&v| f64::from(v)));
        let scale = Array1::from_iter(s.iter().map(|&v| f64::from(v)));
        let genes = model.genes();
        let vocab = model.trained_targets();
        let vocab_row: Vec<Option<usize>> = genes
            .iter()
            .map(|g| vocab.iter().position(|v| v == g))
            .collect();
        let trained = (0..genes.len())
            .filter(|&g| vocab_row[g].is_some())
            .collect();
        if shift.len() != genes.len()
            || scale.len() != genes.len()
            || scale.iter().any(|&v| v.is_nan() || v <= 0.0)
        {
            return Err(model_err("standardisation statistics do not match the gene list or have a non-positive scale"));
        }
        Ok(LcdDrift {
            model,
            shift,
            scale,
            trained,
            vocab_row,
        })
    }

    /// Standardisation `(shift, scale)` per gene, latent-state units.
    pub fn standardisation(&self) -> (&Array1<f64>, &Array1<f64>) {
        (&self.shift, &self.scale)
    }

    /// Genes perturbed in a target set that have no trained embedding.
    pub fn unseen(&self, perts: &[Targets]) -> Vec<String> {
        let mut out: Vec<String> = perts
            .iter()
            .flatten()
            .filter(|&&g| self.vocab_row.get(g).copied().flatten().is_none())
            .map(|&g| self.model.genes()[g].clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Per-row condition embeddings `[n, H]`: `Σ_{j∈S} e_j` (mean embedding for untrained targets).
    fn embeddings(&self, perts: &[Targets]) -> Result<Tensor> {
        let d = self.model.genes().len();
        let n_vocab = self.model.trained_targets().len();
        let dev = self.model.device();
        let net = &self.model.net;
        let w = net.params.detached();
        let mut multi_hot = vec![0f32; perts.len() * n_vocab.max(1)];
        let mut unseen = vec![0f32; perts.len()];
        for (r, t) in perts.iter().enumerate() {
            for &g in t {
                if g >= d {
                    return Err(CliprError::param(
                        "perturbation target",
                        format!("gene index {g} out of range for {d} genes"),
                    ));
                }
                match self.vocab_row[g] {
                    Some(v) => multi_hot[r * n_vocab.max(1) + v] += 1.0,
                    None => unseen[r] += 1.0,
                }
            }
        }
        let mh =
            Tensor::from_vec(multi_hot, (perts.len(), n_vocab.max(1)), dev).map_err(model_err)?; // [n, V]
        let mut e = net.condition_embedding(&w, &mh).map_err(model_err)?; // [n, H]
        if unseen.iter().any(|&u| u > 0.0) {
            if n_vocab == 0 {
                return Err(model_err("the model was trained without perturbations"));
            }
            let cnt = Tensor::from_vec(unseen, (perts.len(), 1), dev).map_err(model_err)?; // [n, 1]
            let mean = net.mean_embedding().map_err(model_err)?; // [1, H]
            e = (e + cnt.matmul(&mean).map_err(model_err)?).map_err(model_err)?;
        }
        Ok(e)
    }

    fn to_tensor(&self, a: &Array2<f64>) -> Result<Tensor> {
        let (n, d) = a.dim();
        let v: Vec<f32> = a.iter().map(|&x| x as f32).collect();
        Tensor::from_vec(v, (n, d), self.model.device()).map_err(model_err)
    }

    fn to_array(t: &Tensor) -> Result<Array2<f64>> {
        let (n, d) = t.dims2().map_err(model_err)?;
        let v = t
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(model_err)?;
        Array2::from_shape_vec((n, d), v.into_iter().map(f64::from).collect()).map_err(model_err)
    }
}

impl PerturbableDrift for LcdDrift {
    fn dim(&self) -> usize {
        self.model.genes().len()
    }
    fn gene_names(&self) -> Vec<String> {
        self.model.genes().to_vec()
    }
    /// The model's trained targets (genes with a learned embedding).
    fn perturbable(&self) -> Vec<usize> {
        self.trained.clone()
    }
    /// `f_s(s) = f_z((s − shift)/scale, σ_min) / scale`, all rows in one batch.
    fn drift(&self, x: ArrayView2<f64>, perts: &[Targets]) -> Result<Array2<f64>> {
        let d = self.dim();
        if x.ncols() != d || x.nrows() != perts.len() {
            return Err(CliprError::Shape {
                context: "LcdDrift::drift".into(),
                expected: format!("[{}, {d}]", perts.len()),
                found: format!("{:?}", x.shape()),
            });
        }
        let n = x.nrows();
        let z = (&x - &self.shift) / &self.scale; // [n, d]
        let zt = self.to_tensor(&z)?;
        let e = self.embeddings(perts)?;
        let net = &self.model.net;
        let w = net.params.detached();
        let level = (self.model.n_levels() - 1) as u32;
        let levels = Tensor::from_vec(vec![level; n], n, self.model.device()).map_err(model_err)?;
        let sigma = net
            .sigma_of(&vec![level; n], self.model.device())
            .map_err(model_err)?; // [n, 1]
        let f = net.drift(&w, &zt, &levels, &sigma, &e).map_err(model_err)?; // [n, d]
        Ok(Self::to_array(&f)? / &self.scale)
    }
    /// Noise-free annealed run from `z = 0` through all levels, `[k, d]` in one batch.
    fn limit_response(&self, perts: &[Targets]) -> Result<Array2<f64>> {
        let d = self.dim();
        let x0 =
            Tensor::zeros((perts.len(), d), DType::F32, self.model.device()).map_err(model_err)?; // [k, d]
        let e = self.embeddings(perts)?; // [k, H]
        let net = &self.model.net;
        let w = net.params.detached();
        let lz = annealed_langevin(net, &w, &x0, &e, &self.model.cfg.sampler, None, |_| {})
            .map_err(model_err)?;
        let l = Self::to_array(&lz)? * &self.scale + &self.shift;
        if l.iter().any(|v| !v.is_finite()) {
            return Err(CliprError::NonFinite {
                context: "LCD noise-free annealed run".into(),
                what: "the sampler diverged".into(),
            });
        }
        Ok(l)
    }
}
