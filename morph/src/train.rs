//! Training loop: AdamW with linear warm-up then cosine decay, global
//! gradient-norm clipping, an exponential moving average of the weights (the
//! EMA weights are what a model directory stores), classifier-free-guidance
//! condition dropout. Every step is batched tensor work; the per-molecule
//! interpolant is prepared in parallel on the host.
//!
//! Runs go through the shared training-run mechanism of `datasets::train`
//! (issue 8) with [`fit_run`]: periodic atomic checkpoints, stop signals
//! (checkpoint, then [`datasets::DatasetsError::Interrupted`]) and bit-for-bit
//! resumption on the CPU. Everything that decides the next step is in the
//! checkpoint (`<model>/checkpoint/`):
//! - `state.json`: the next step, the AdamW step counter, the shuffle RNG
//!   (ChaCha8 state), the epoch order and position in it, the elapsed time,
//!   the last loss, and the model metadata (config, vocabularies, statistics:
//!   a resume on other data or settings is refused);
//! - `train.safetensors`: weights `p.<name>`, EMA weights `ema.<name>`, AdamW
//!   moments `m.<name>` / `v.<name>`.
//!
//! The per-step interpolant randomness is a pure function of the seed and the
//! step, and the initial weights are drawn from the seed, so a fit is
//! reproducible from its seed. The metrics log `metrics.jsonl` (one JSON line
//! per logged step) is appended live; on resume the lines after the
//! checkpoint are dropped (they are recomputed, never duplicated).
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use datasets::molbatch::{MolSet, MolStats};
use datasets::train::{Checkpoint, MetricsLog, RngState, RunDir, StopSignal};
use datasets::DatasetsError;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::config::MorphConfig;
use crate::error::{MorphError, Result};
use crate::interpolant::{collate, make_batch, Prior};
use crate::io::{ModelDir, ModelMeta};
use crate::model::MorphNet;

/// Name of the metrics log in a model directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
const CKPT_TENSORS: &str = "train.safetensors";

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
    /// Step the run resumed from (None: started fresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<usize>,
    /// Model directory whose weights the run started from ([`InitModel`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<String>,
}

/// AdamW over named parameters in a fixed (sorted-name) order, with the same
/// update as `candle_nn::AdamW` (β = 0.9, 0.999, ε = 1e-8, decoupled weight
/// decay) but with its moments and step counter exportable for checkpoints.
pub struct NamedAdamW {
    names: Vec<String>,
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: usize,
    weight_decay: f64,
}

impl NamedAdamW {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    pub fn new(names: Vec<String>, vars: Vec<Var>, weight_decay: f64) -> Result<Self> {
        let m = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            names,
            vars,
            m,
            v,
            t: 0,
            weight_decay,
        })
    }

    /// Global gradient norm (summed in name order), clip to `clip` (0 = off),
    /// then one AdamW update at learning rate `lr`. Returns the norm before
    /// clipping; a non-finite norm is an error and leaves the weights as they were.
    pub fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        lr: f64,
        clip: f64,
    ) -> Result<f64> {
        let mut sq = 0f64;
        for var in &self.vars {
            if let Some(g) = grads.get(var) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(MorphError::data(
                format!("training step {}", self.t + 1),
                format!("non-finite gradient norm {norm}"),
            ));
        }
        let scale = if clip > 0.0 && norm > clip {
            clip / norm
        } else {
            1.0
        };
        self.t += 1;
        let (b1, b2) = (Self::BETA1, Self::BETA2);
        let scale_m = 1.0 / (1.0 - b1.powi(self.t as i32));
        let scale_v = 1.0 / (1.0 - b2.powi(self.t as i32));
        for i in 0..self.vars.len() {
            let Some(g) = grads.get(&self.vars[i]) else {
                continue;
            };
            let g = if scale < 1.0 { (g * scale)? } else { g.clone() };
            let m = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?.detach();
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?.detach();
            let theta = self.vars[i].as_tensor().detach();
            let next = (&theta * (1.0 - lr * self.weight_decay))?;
            let adj = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + Self::EPS)?)?;
            self.vars[i].set(&(next - (adj * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(norm)
    }

    fn export(&self, out: &mut HashMap<String, Tensor>) {
        for (i, n) in self.names.iter().enumerate() {
            out.insert(format!("m.{n}"), self.m[i].clone());
            out.insert(format!("v.{n}"), self.v[i].clone());
        }
    }

    fn import(&mut self, map: &HashMap<String, Tensor>, t: usize) -> Result<()> {
        for i in 0..self.names.len() {
            let n = &self.names[i];
            self.m[i] = ckpt_tensor(map, &format!("m.{n}"), self.m[i].dims())?;
            self.v[i] = ckpt_tensor(map, &format!("v.{n}"), self.v[i].dims())?;
        }
        self.t = t;
        Ok(())
    }
}

fn ckpt_tensor(map: &HashMap<String, Tensor>, key: &str, dims: &[usize]) -> Result<Tensor> {
    let t = map
        .get(key)
        .ok_or_else(|| MorphError::data("weights", format!("missing tensor `{key}`")))?;
    if t.dims() != dims {
        return Err(MorphError::data(
            "weights",
            format!("tensor `{key}` has shape {:?}, expected {dims:?}", t.dims()),
        ));
    }
    Ok(t.clone())
}

/// Trainer state.
pub struct Trainer {
    pub varmap: VarMap,
    pub net: MorphNet,
    names: Vec<String>,
    vars: Vec<Var>,
    opt: NamedAdamW,
    ema: HashMap<String, Tensor>,
    pub meta: ModelMeta,
    prior: Prior,
    dev: Device,
}

/// Re-draw every parameter from `seed` with candle's default distributions
/// for linear layers (weights: Kaiming normal, fan-in, ReLU gain; biases:
/// U(±1/√fan_in); normalisation gains 1 and shifts 0), in name order, so the
/// initial weights depend on the seed only (candle's own initialisers are not
/// seeded).
fn seeded_init(names: &[String], vars: &[Var], seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6d6f_7270_685f_696e);
    let fan_in: HashMap<&str, usize> = names
        .iter()
        .zip(vars)
        .filter(|(_, v)| v.rank() == 2)
        .map(|(n, v)| (n.as_str(), v.dims()[1]))
        .collect();
    for (name, var) in names.iter().zip(vars) {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let data: Vec<f32> = if dims.len() == 2 {
            let std = (2.0 / dims[1].max(1) as f64).sqrt();
            (0..n)
                .map(|_| (rng.sample::<f64, _>(StandardNormal) * std) as f32)
                .collect()
        } else if name.ends_with("weight") {
            // rank-1 weight: a normalisation gain
            vec![1.0; n]
        } else {
            let w = name
                .strip_suffix("bias")
                .map(|p| format!("{p}weight"))
                .unwrap_or_default();
            match fan_in.get(w.as_str()) {
                Some(&fan) => {
                    let b = 1.0 / (fan.max(1) as f64).sqrt();
                    (0..n).map(|_| rng.random_range(-b..b) as f32).collect()
                }
                // the shift of a normalisation (its weight is rank 1)
                None if names.contains(&w) => vec![0.0; n],
                None => {
                    let b = 1.0 / (n.max(1) as f64).sqrt();
                    (0..n).map(|_| rng.random_range(-b..b) as f32).collect()
                }
            }
        };
        var.set(&Tensor::from_vec(data, dims, var.device())?)?;
    }
    Ok(())
}

impl Trainer {
    pub fn new(meta: ModelMeta, dev: &Device) -> Result<Self> {
        meta.config.validate()?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
        let net = MorphNet::with_backbone(meta.dims(), meta.config.net.backbone_spec(), vb)?;
        let (names, vars): (Vec<String>, Vec<Var>) = {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| MorphError::data("trainer", "variable map lock poisoned"))?;
            let mut all: Vec<(String, Var)> =
                data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all.into_iter().unzip()
        };
        seeded_init(&names, &vars, meta.config.train.seed)?;
        let opt = NamedAdamW::new(names.clone(), vars.clone(), meta.config.train.weight_decay)?;
        let ema = names
            .iter()
            .zip(&vars)
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?.detach())))
            .collect::<Result<HashMap<_, _>>>()?;
        let prior = Prior::new(&meta.stats, meta.config.flow.prior_extra)?;
        Ok(Self {
            varmap,
            net,
            names,
            vars,
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
        let grads = losses.total.backward()?;
        let lr = lr_at(&cfg.train, step);
        let norm = self
            .opt
            .step(&grads, lr, cfg.train.grad_clip)
            .map_err(|e| match e {
                MorphError::Data { message, .. } => {
                    MorphError::data(format!("training step {step}"), message)
                }
                e => e,
            })?;
        let d = cfg.train.ema_decay;
        for (name, var) in self.names.iter().zip(&self.vars) {
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

    /// Set the weights (and the EMA) from a map by parameter name, e.g. a
    /// trained model's `model.safetensors` (continued training).
    pub fn load_weights(&mut self, map: &HashMap<String, Tensor>) -> Result<()> {
        for (n, v) in self.names.iter().zip(&self.vars) {
            let w = ckpt_tensor(map, n, v.dims())?.to_device(&self.dev)?;
            v.set(&w)?;
            self.ema.insert(n.clone(), w.copy()?.detach());
        }
        Ok(())
    }

    /// Current (non-EMA) weights, by name.
    pub fn weights(&self) -> Result<HashMap<String, Tensor>> {
        self.names
            .iter()
            .zip(&self.vars)
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?.detach())))
            .collect()
    }

    /// EMA weights, by name (what [`Trainer::save`] writes).
    pub fn ema_weights(&self) -> &HashMap<String, Tensor> {
        &self.ema
    }

    fn export_state(&self) -> Result<HashMap<String, Tensor>> {
        let mut map = HashMap::new();
        for (n, v) in self.names.iter().zip(&self.vars) {
            map.insert(format!("p.{n}"), v.as_tensor().detach());
            if let Some(e) = self.ema.get(n) {
                map.insert(format!("ema.{n}"), e.clone());
            }
        }
        self.opt.export(&mut map);
        Ok(map)
    }

    fn import_state(&mut self, map: &HashMap<String, Tensor>, adam_t: usize) -> Result<()> {
        for (n, v) in self.names.iter().zip(&self.vars) {
            let p = ckpt_tensor(map, &format!("p.{n}"), v.dims())?;
            v.set(&p.to_device(&self.dev)?)?;
            let e = ckpt_tensor(map, &format!("ema.{n}"), v.dims())?;
            self.ema.insert(n.clone(), e.to_device(&self.dev)?);
        }
        let moved: HashMap<String, Tensor> = map
            .iter()
            .filter(|(k, _)| k.starts_with("m.") || k.starts_with("v."))
            .map(|(k, t)| Ok((k.clone(), t.to_device(&self.dev)?)))
            .collect::<Result<_>>()?;
        self.opt.import(&moved, adam_t)
    }
}

/// Where and how a fit checkpoints: the run directory (already
/// [`RunDir::prepare`]d), the checkpoint to continue from, the stop flag
/// polled between steps, and the trained model to start from, if any.
pub struct FitRun<'a> {
    pub dir: &'a RunDir,
    pub resume: Option<Checkpoint>,
    pub stop: StopSignal,
    /// Start from these weights instead of seeded random ones (ignored when
    /// resuming: the checkpoint holds the run's own weights).
    pub init: Option<&'a InitModel>,
}

/// A trained model to continue training or fine-tune from (`morph fit
/// --init`): its weights become the initial weights and the initial EMA; the
/// optimiser, learning-rate schedule and step count start afresh under the
/// new run's config.
pub struct InitModel {
    pub path: std::path::PathBuf,
    pub meta: ModelMeta,
    pub weights: HashMap<String, Tensor>,
}

impl InitModel {
    /// Read a finished model directory (`config.json` + `model.safetensors`).
    pub fn load(dir: &Path) -> Result<Self> {
        // validates config.json and that the weights fit it
        let model = ModelDir::load(dir, &Device::Cpu)?;
        let wpath = dir.join(crate::io::WEIGHTS_FILE);
        let weights =
            candle_core::safetensors::load(&wpath, &Device::Cpu).map_err(|e| MorphError::File {
                path: wpath.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            path: dir.to_path_buf(),
            meta: model.meta,
            weights,
        })
    }

    /// Refuse a start model whose network or vocabularies differ from the
    /// new run's: its weights would not fit, or would mean other atoms.
    pub fn check(&self, config: &MorphConfig, vocab: &datasets::molbatch::MolVocab) -> Result<()> {
        let path = self.path.join(crate::io::CONFIG_FILE);
        let fail = |message: String| MorphError::File {
            path: path.clone(),
            message,
        };
        if self.meta.config.net != config.net {
            return Err(fail(format!(
                "the start model's network ({}) differs from the run's ({}); use the same [net] settings",
                net_summary(&self.meta.config.net),
                net_summary(&config.net)
            )));
        }
        if &self.meta.vocab != vocab {
            return Err(fail(format!(
                "the start model was trained on elements {:?}, charges {:?}, bonds {:?}; the data have elements {:?}, charges {:?}, bonds {:?}",
                self.meta.vocab.elements,
                self.meta.vocab.charges,
                self.meta.vocab.bonds,
                vocab.elements,
                vocab.charges,
                vocab.bonds
            )));
        }
        Ok(())
    }
}

fn net_summary(n: &crate::config::NetConfig) -> String {
    format!(
        "{:?}, {} layers × {}, {} mixture components",
        n.backbone, n.n_layers, n.hidden, n.n_mix
    )
}

#[derive(Serialize, Deserialize)]
struct CkptState {
    /// Next step to run.
    step: usize,
    adam_t: usize,
    rng: RngState,
    order: Vec<usize>,
    pos: usize,
    elapsed_s_bits: u64,
    last_loss_bits: u32,
    /// `ModelMeta` as JSON with `train.max_minutes` zeroed (the time budget
    /// may change between a run and its resumption; nothing else may).
    meta: String,
}

fn meta_key(meta: &ModelMeta) -> Result<String> {
    let mut m = meta.clone();
    m.config.train.max_minutes = 0.0;
    m.trained_steps = 0;
    serde_json::to_string(&m).map_err(|e| MorphError::data("model metadata", e.to_string()))
}

/// Step of a checkpoint written by [`fit_run`] (for "resuming from …" messages).
pub fn checkpoint_step(ck: &Checkpoint) -> u64 {
    ck.step
}

fn tensors_to_bytes(dir: &RunDir, map: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    let tmp = dir
        .path
        .join(format!(".ckpt-tensors-{}.tmp", std::process::id()));
    candle_core::safetensors::save(map, &tmp)?;
    let bytes = std::fs::read(&tmp).map_err(|source| MorphError::Io {
        path: tmp.clone(),
        source,
    })?;
    let _ = std::fs::remove_file(&tmp);
    Ok(bytes)
}

/// Keep the metrics lines of steps ≤ `upto` (a resumed run recomputes the rest).
fn truncate_metrics(dir: &RunDir, upto: usize) -> Result<()> {
    let path = dir.path.join(METRICS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(MorphError::Io { path, source }),
    };
    let mut kept = String::new();
    for line in text.lines() {
        // a torn last line of a killed process does not parse: dropped
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["step"].as_u64().is_some_and(|s| s as usize <= upto) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    dir.write_file(METRICS_FILE, kept.as_bytes())?;
    Ok(())
}

/// Fit a model on a normalised molecule set and write it to `out_dir` (no
/// checkpoints, no metrics log; see [`fit_run`]). `on_step` sees every step.
pub fn fit(
    set: &MolSet,
    stats: &MolStats,
    config: &MorphConfig,
    dev: &Device,
    out_dir: &Path,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<FitReport> {
    let tr = fit_impl(set, stats, config, dev, None, on_step)?;
    tr.0.save(out_dir)?;
    Ok(tr.1)
}

/// Fit with checkpoints every `train.checkpoint_every` steps in `run.dir`
/// (and the metrics log `metrics.jsonl` there), continuing from `run.resume`
/// if given, and write the model (`config.json`, `model.safetensors`) into
/// `run.dir`. The caller marks the directory finished ([`RunDir::finish`])
/// after writing any further artefacts. On a stop request the latest state is
/// checkpointed and the error is `MorphError::Datasets(Interrupted { .. })`.
pub fn fit_run(
    set: &MolSet,
    stats: &MolStats,
    config: &MorphConfig,
    dev: &Device,
    run: &FitRun,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<FitReport> {
    let (tr, rep) = fit_impl(set, stats, config, dev, Some(run), on_step)?;
    tr.save(&run.dir.path)?;
    Ok(rep)
}

fn fit_impl(
    set: &MolSet,
    stats: &MolStats,
    config: &MorphConfig,
    dev: &Device,
    run: Option<&FitRun>,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<(Trainer, FitReport)> {
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
    let key = meta_key(&tr.meta)?;
    let mut rng = ChaCha8Rng::seed_from_u64(tc.seed);
    let mut order = train_idx.clone();
    let mut pos = order.len();
    let mut first = 0usize;
    let mut offset = 0f64;
    let mut last = f32::NAN;
    let resume = run.and_then(|r| r.resume.as_ref());
    let init = run.and_then(|r| r.init);
    if let (Some(m), None) = (init, resume) {
        m.check(config, &set.vocab)?;
        tr.load_weights(&m.weights).map_err(|e| MorphError::File {
            path: m.path.join(crate::io::WEIGHTS_FILE),
            message: e.to_string(),
        })?;
    }
    if let (Some(ck), Some(r)) = (resume, run) {
        let ctx = || format!("{}: checkpoint", r.dir.path.display());
        let st: CkptState = serde_json::from_value(ck.state.clone())
            .map_err(|e| MorphError::data(ctx(), format!("not a Morph checkpoint: {e}")))?;
        if st.meta != key {
            return Err(MorphError::data(
                ctx(),
                "was written for other training data or another config (seed, sizes, steps, condition); resume with the same data and settings or pass --force to start over",
            ));
        }
        if st.step > tc.steps || st.pos > st.order.len() || st.order.len() != train_idx.len() {
            return Err(MorphError::data(
                ctx(),
                format!(
                    "inconsistent state (step {} of {}, position {} of {})",
                    st.step,
                    tc.steps,
                    st.pos,
                    st.order.len()
                ),
            ));
        }
        let bytes = ck
            .file(CKPT_TENSORS)
            .ok_or_else(|| MorphError::data(ctx(), format!("{CKPT_TENSORS} is missing")))?;
        let map = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| {
            MorphError::File {
                path: r.dir.path.join("checkpoint").join(CKPT_TENSORS),
                message: e.to_string(),
            }
        })?;
        tr.import_state(&map, st.adam_t)?;
        rng = st.rng.restore()?;
        order = st.order;
        pos = st.pos;
        first = st.step;
        offset = f64::from_bits(st.elapsed_s_bits);
        last = f32::from_bits(st.last_loss_bits);
        truncate_metrics(r.dir, first)?;
    }
    let mut metrics = match run {
        Some(r) => Some(MetricsLog::open(
            &r.dir.path.join(METRICS_FILE),
            resume.is_some(),
        )?),
        None => None,
    };
    let log_every = (tc.steps / 1000).max(1);
    let start = Instant::now();
    let elapsed = |start: &Instant| offset + start.elapsed().as_secs_f64();
    let mut stopped_by_time = false;
    let mut done = first;
    for step in first..tc.steps {
        if tc.max_minutes > 0.0 && elapsed(&start) > tc.max_minutes * 60.0 {
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
        log.elapsed_s = elapsed(&start);
        last = log.loss;
        done = step + 1;
        on_step(&log);
        if let Some(m) = metrics.as_mut() {
            if done % log_every == 0 || done == tc.steps || done == first + 1 {
                let mut rec = serde_json::Map::new();
                rec.insert("step".into(), done.into());
                rec.insert("loss".into(), f64::from(log.loss).into());
                rec.insert("lr".into(), log.lr.into());
                rec.insert("grad_norm".into(), log.grad_norm.into());
                for (k, v) in &log.terms {
                    rec.insert(format!("loss_{k}"), f64::from(*v).into());
                }
                rec.insert("seconds".into(), log.elapsed_s.into());
                m.log(&serde_json::Value::Object(rec))?;
            }
        }
        let Some(r) = run else { continue };
        let stop = r.stop.requested();
        let periodic = tc.checkpoint_every > 0 && done % tc.checkpoint_every == 0;
        if stop.is_some() || (periodic && done < tc.steps) {
            let state = CkptState {
                step: done,
                adam_t: tr.opt.t,
                rng: RngState::capture(&rng),
                order: order.clone(),
                pos,
                elapsed_s_bits: elapsed(&start).to_bits(),
                last_loss_bits: last.to_bits(),
                meta: key.clone(),
            };
            let state = serde_json::to_value(&state)
                .map_err(|e| MorphError::data("checkpoint state", e.to_string()))?;
            let bytes = tensors_to_bytes(r.dir, &tr.export_state()?)?;
            r.dir.save_checkpoint(&Checkpoint {
                step: done as u64,
                state,
                files: vec![(CKPT_TENSORS.into(), bytes)],
            })?;
            if let Some(signal) = stop {
                return Err(MorphError::Datasets(DatasetsError::Interrupted {
                    dir: r.dir.path.clone(),
                    step: done as u64,
                    signal,
                }));
            }
        }
    }
    let val_loss = if val_idx.is_empty() {
        None
    } else {
        Some(tr.eval_loss(set, &val_idx)?)
    };
    tr.meta.trained_steps = done;
    let report = FitReport {
        steps: done,
        elapsed_s: elapsed(&start),
        final_loss: last,
        val_loss,
        stopped_by_time,
        resumed_from: resume.map(|_| first),
        init_from: init.map(|m| m.path.display().to_string()),
    };
    Ok((tr, report))
}
