//! Training loop: AdamW with linear warm-up then cosine decay, global
//! gradient-norm clipping, an exponential moving average of the weights (the
//! EMA weights are what a model directory stores), classifier-free-guidance
//! condition dropout, periodic checkpoints. Every step is batched tensor work;
//! the per-molecule interpolant is prepared in parallel on the host.
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use datasets::molbatch::{MolSet, MolStats};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::config::MorphConfig;
use crate::error::{MorphError, Result};
use crate::interpolant::{collate, make_batch, Prior};
use crate::io::{ModelDir, ModelMeta};
use crate::model::MorphNet;

/// Learning rate at `step`: linear warm-up, cosine to `lr_min_frac · lr`.
pub fn lr_at(cfg: &crate::config::TrainConfig, step: usize) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let span = cfg.steps.saturating_sub(cfg.warmup_steps).max(1) as f64;
    let p = ((step - cfg.warmup_steps) as f64 / span).min(1.0);
    let lo = cfg.lr * cfg.lr_min_frac;
    lo + 0.5 * (cfg.lr - lo) * (1.0 + (std::f64::consts::PI * p).cos())
}

/// Progress report of one step.
#[derive(Debug, Clone)]
pub struct StepLog {
    pub step: usize,
    pub loss: f32,
    pub terms: Vec<(&'static str, f32)>,
    pub lr: f64,
    pub grad_norm: f64,
    pub elapsed_s: f64,
}

/// Summary of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FitReport {
    pub steps: usize,
    pub elapsed_s: f64,
    pub final_loss: f32,
    pub val_loss: Option<f32>,
    pub stopped_by_time: bool,
}

/// Trainer state.
pub struct Trainer {
    pub varmap: VarMap,
    pub net: MorphNet,
    opt: AdamW,
    ema: HashMap<String, Tensor>,
    pub meta: ModelMeta,
    prior: Prior,
    dev: Device,
}

impl Trainer {
    pub fn new(meta: ModelMeta, dev: &Device) -> Result<Self> {
        meta.config.validate()?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
        let net = MorphNet::new(meta.dims(), vb)?;
        let t = &meta.config.train;
        let opt = AdamW::new(
            varmap.all_vars(),
            ParamsAdamW {
                lr: t.lr,
                weight_decay: t.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        let ema = snapshot(&varmap)?;
        let prior = Prior::new(&meta.stats, meta.config.flow.prior_extra)?;
        Ok(Self {
            varmap,
            net,
            opt,
            ema,
            meta,
            prior,
            dev: dev.clone(),
        })
    }

    /// One optimisation step on the molecules `idx` of `set` (normalised).
    pub fn step(&mut self, set: &MolSet, idx: &[usize], step: usize) -> Result<StepLog> {
        let cfg = &self.meta.config;
        let recs: Vec<_> = idx.iter().map(|&i| &set.records[i]).collect();
        let props = self.meta.cond_values(&recs);
        let samples = make_batch(
            &recs,
            &props,
            &self.prior,
            &cfg.flow,
            cfg.train.cond_drop,
            cfg.train.seed ^ (step as u64).wrapping_mul(0x9E37_79B9),
        );
        let batch = collate(&samples, &self.dev)?;
        let out = self.net.forward(&batch.input)?;
        let losses = crate::loss::compute(&self.net, &out, &batch)?;
        let mut grads = losses.total.backward()?;
        let vars = self.varmap.all_vars();
        let mut sq = 0f64;
        for v in &vars {
            if let Some(g) = grads.get(v) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(MorphError::data(
                format!("training step {step}"),
                format!("non-finite gradient norm {norm}"),
            ));
        }
        let clip = cfg.train.grad_clip;
        if clip > 0.0 && norm > clip {
            let s = clip / norm;
            for v in &vars {
                if let Some(g) = grads.remove(v) {
                    grads.insert(v, (g * s)?);
                }
            }
        }
        let lr = lr_at(&cfg.train, step);
        self.opt.set_learning_rate(lr);
        self.opt.step(&grads)?;
        let d = cfg.train.ema_decay;
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| MorphError::data("trainer", "variable map lock poisoned"))?;
        for (name, var) in data.iter() {
            if let Some(e) = self.ema.get_mut(name) {
                *e = ((&*e * d)? + (var.as_tensor() * (1.0 - d))?)?.detach();
            }
        }
        Ok(StepLog {
            step,
            loss: losses.total.to_scalar::<f32>()?,
            terms: losses.values()?,
            lr,
            grad_norm: norm,
            elapsed_s: 0.0,
        })
    }

    /// Mean loss over `idx` (EMA weights not used; current weights), no gradients.
    pub fn eval_loss(&self, set: &MolSet, idx: &[usize]) -> Result<f32> {
        let cfg = &self.meta.config;
        let mut tot = 0f32;
        let mut cnt = 0;
        for (k, chunk) in idx.chunks(cfg.train.batch_size).enumerate() {
            let recs: Vec<_> = chunk.iter().map(|&i| &set.records[i]).collect();
            let props = self.meta.cond_values(&recs);
            let samples = make_batch(&recs, &props, &self.prior, &cfg.flow, 0.0, 7_777 + k as u64);
            let batch = collate(&samples, &self.dev)?;
            let out = self.net.forward(&batch.input)?;
            tot += crate::loss::compute(&self.net, &out, &batch)?
                .total
                .to_scalar::<f32>()?;
            cnt += 1;
        }
        Ok(if cnt > 0 { tot / cnt as f32 } else { f32::NAN })
    }

    /// Write the EMA weights and metadata to `dir` (atomic per file).
    pub fn save(&self, dir: &Path) -> Result<()> {
        ModelDir::save(dir, &self.meta, &self.ema)
    }
}

fn snapshot(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| MorphError::data("trainer", "variable map lock poisoned"))?;
    data.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?.detach())))
        .collect()
}

/// Fit a model on a normalised molecule set and write it to `out_dir`.
/// `on_step` sees every step (progress bars, logs).
pub fn fit(
    set: &MolSet,
    stats: &MolStats,
    config: &MorphConfig,
    dev: &Device,
    out_dir: &Path,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<FitReport> {
    let meta = ModelMeta::new(config.clone(), set, stats)?;
    let mut tr = Trainer::new(meta, dev)?;
    let tc = config.train.clone();
    let (train_idx, val_idx) = set.split(tc.val_frac, tc.seed)?;
    if train_idx.is_empty() {
        return Err(MorphError::data(
            "training set",
            "no molecules left after the validation split",
        ));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(tc.seed);
    let mut order = train_idx.clone();
    let mut pos = order.len();
    let start = Instant::now();
    let mut last = f32::NAN;
    let mut stopped_by_time = false;
    let mut done = 0;
    for step in 0..tc.steps {
        if tc.max_minutes > 0.0 && start.elapsed().as_secs_f64() > tc.max_minutes * 60.0 {
            stopped_by_time = true;
            break;
        }
        if pos + tc.batch_size > order.len() {
            order.shuffle(&mut rng);
            pos = 0;
        }
        let end = (pos + tc.batch_size).min(order.len());
        let mut log = tr.step(set, &order[pos..end], step)?;
        pos = end;
        log.elapsed_s = start.elapsed().as_secs_f64();
        last = log.loss;
        done = step + 1;
        on_step(&log);
        if tc.checkpoint_every > 0 && done % tc.checkpoint_every == 0 {
            tr.save(out_dir)?;
        }
    }
    let val_loss = if val_idx.is_empty() {
        None
    } else {
        Some(tr.eval_loss(set, &val_idx)?)
    };
    tr.meta.trained_steps = done;
    tr.save(out_dir)?;
    Ok(FitReport {
        steps: done,
        elapsed_s: start.elapsed().as_secs_f64(),
        final_loss: last,
        val_loss,
        stopped_by_time,
    })
}
