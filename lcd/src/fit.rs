//! The two-stage fit of [`LcdModel`] (lcd.md), driven through the shared
//! training-run mechanism of `datasets::train` (issue 8): periodic atomic
//! checkpoints, stop signals and bit-for-bit resumption (on the CPU; see
//! [`TensorRng::capture`] for CUDA).
//!
//! Checkpoint (`<model>/checkpoint/`, written by [`RunDir::save_checkpoint`]):
//! - `state.json`: stage (`stage1` | `stage2`), the next step to run, the
//!   host RNG state, seed, the full config and the curve points so far;
//! - `stage1.safetensors`: generator/π parameters `p.*` (+ Adam state `opt.*`
//!   while stage 1 runs);
//! - stage 2 only: `stage2.safetensors` (score network `p.*`, Adam states
//!   `opt.*`, `opt_emb.*`) and `states.safetensors` (the standardised latent
//!   states `state.{q}` `[n_q, d]` and the statistics `mean_ctrl`, `std` `[1, d]`).
//!
//! Checkpoints are written every `checkpoint_every` steps of each stage and
//! whenever a stop is requested; a stop then ends the fit with
//! `DatasetsError::Interrupted` (wrapped in [`LcdError::Datasets`]). The
//! metrics log `curves.jsonl` is appended live; on resume it is first reset
//! to the checkpoint's points (the history up to the checkpoint is kept, lines
//! written after it by a killed process are recomputed, never duplicated).
use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use datasets::train::{Checkpoint, MetricsLog, RngState, RunDir, StopSignal};
use datasets::DatasetsError;
use serde::{Deserialize, Serialize};

use crate::config::LcdConfig;
use crate::data::TrainingData;
use crate::model::{array_to_tensor, CurvePoint, LcdModel, ProgressFn};
use crate::optim::Adam;
use crate::params::Params;
use crate::rng::TensorRng;
use crate::stage1::Stage1;
use crate::stage2::ScoreNet;
use crate::storage::CURVES;
use crate::{LcdError, Result};

/// Where and how a fit checkpoints: the run directory (already `prepare`d),
/// the checkpoint to continue from, and the stop flag polled between steps.
pub struct FitRun<'a> {
    pub dir: &'a RunDir,
    pub resume: Option<Checkpoint>,
    pub stop: StopSignal,
}

#[derive(Serialize, Deserialize)]
struct CkptState {
    stage: String,
    step: usize,
    rng: RngState,
    seed: u64,
    /// The config as TOML (compared textually: JSON numbers do not round-trip
    /// every f64 exactly).
    config: String,
    /// Curve points with bit-exact numbers.
    curves: Vec<CurveBits>,
}

#[derive(Serialize, Deserialize)]
struct CurveBits {
    stage: String,
    step: usize,
    loss: u64,
    lr: u64,
    seconds: u64,
}

impl From<&CurvePoint> for CurveBits {
    fn from(c: &CurvePoint) -> Self {
        CurveBits {
            stage: c.stage.clone(),
            step: c.step,
            loss: c.loss.to_bits(),
            lr: c.lr.to_bits(),
            seconds: c.seconds.to_bits(),
        }
    }
}

impl From<&CurveBits> for CurvePoint {
    fn from(c: &CurveBits) -> Self {
        CurvePoint {
            stage: c.stage.clone(),
            step: c.step,
            loss: f64::from_bits(c.loss),
            lr: f64::from_bits(c.lr),
            seconds: f64::from_bits(c.seconds),
        }
    }
}

/// `(stage, step)` of a checkpoint written by this module (for the
/// "resuming from checkpoint at …" message).
pub fn checkpoint_position(ck: &Checkpoint) -> (String, u64) {
    (
        ck.state["stage"].as_str().unwrap_or("?").to_string(),
        ck.step,
    )
}

fn tensors_to_bytes(dir: &RunDir, map: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    let tmp = dir
        .path
        .join(format!(".tensors-{}.tmp", std::process::id()));
    candle_core::safetensors::save(map, &tmp)?;
    let bytes = std::fs::read(&tmp).map_err(|e| LcdError::io(&tmp, e))?;
    let _ = std::fs::remove_file(&tmp);
    Ok(bytes)
}

fn tensors_from(
    ck: &Checkpoint,
    dir: &RunDir,
    name: &str,
    dev: &Device,
) -> Result<HashMap<String, Tensor>> {
    let bytes = ck.file(name).ok_or_else(|| LcdError::ModelDir {
        dir: dir.path.clone(),
        message: format!("checkpoint lacks {name}"),
    })?;
    candle_core::safetensors::load_buffer(bytes, dev).map_err(|e| LcdError::Parse {
        path: dir.path.join("checkpoint").join(name),
        message: e.to_string(),
    })
}

/// Checkpoint writer shared by both stages.
struct Saver<'a> {
    run: Option<&'a FitRun<'a>>,
    cfg: &'a LcdConfig,
    seed: u64,
}

impl Saver<'_> {
    /// Whether to checkpoint after finishing step `next − 1` of `total`
    /// (`Some(true)`: and stop).
    fn due(&self, stage: usize, next: usize, total: usize) -> Option<bool> {
        let run = self.run?;
        if run.stop.requested().is_some() {
            return Some(true);
        }
        let (e1, e2) = self.cfg.checkpoint_intervals();
        let every = if stage == 1 { e1 } else { e2 };
        (every > 0 && next % every == 0 && next < total).then_some(false)
    }

    fn save(
        &self,
        stage: &str,
        next: usize,
        rng: &TensorRng,
        curves: &[CurvePoint],
        files: Vec<(String, HashMap<String, Tensor>)>,
    ) -> Result<()> {
        let Some(run) = self.run else { return Ok(()) };
        let state = CkptState {
            stage: stage.into(),
            step: next,
            rng: rng.capture(),
            seed: self.seed,
            config: self.cfg.to_toml(),
            curves: curves.iter().map(CurveBits::from).collect(),
        };
        let state = serde_json::to_value(&state)
            .map_err(|e| LcdError::Data(format!("checkpoint state: {e}")))?;
        let files = files
            .into_iter()
            .map(|(n, m)| Ok((n, tensors_to_bytes(run.dir, &m)?)))
            .collect::<Result<Vec<_>>>()?;
        run.dir.save_checkpoint(&Checkpoint {
            step: next as u64,
            state,
            files,
        })?;
        Ok(())
    }

    fn interrupted(&self, next: usize) -> LcdError {
        let (dir, signal) = match self.run {
            Some(r) => (r.dir.path.clone(), r.stop.requested().unwrap_or(0)),
            None => (Default::default(), 0),
        };
        LcdError::Datasets(DatasetsError::Interrupted {
            dir,
            step: next as u64,
            signal,
        })
    }
}

fn with_opts(params: &Params, opts: &[(&str, &Adam)]) -> Result<HashMap<String, Tensor>> {
    let mut m = HashMap::new();
    params.export("p.", &mut m);
    for (prefix, o) in opts {
        o.export(prefix, &mut m)?;
    }
    Ok(m)
}

/// Stage-2 inputs produced by stage 1 (or by the raw expression).
struct Stage2Inputs {
    states: Vec<Tensor>,
    mean_ctrl: Tensor,
    std: Tensor,
}

impl LcdModel {
    /// Fit both stages on `data` (control first). Deterministic for a given
    /// seed and device. No checkpoints; see [`LcdModel::fit_run`].
    pub fn fit(
        data: &TrainingData,
        cfg: &LcdConfig,
        seed: u64,
        dev: &Device,
        progress: &mut ProgressFn,
    ) -> Result<Self> {
        Self::fit_impl(data, cfg, seed, dev, None, progress)
    }

    /// Fit with checkpoints in `run.dir` (appending the metrics log
    /// `curves.jsonl` there), continuing from `run.resume` if given. On a stop
    /// request the latest state is checkpointed and the error is
    /// `LcdError::Datasets(DatasetsError::Interrupted { .. })`.
    pub fn fit_run(
        data: &TrainingData,
        cfg: &LcdConfig,
        seed: u64,
        dev: &Device,
        run: &FitRun,
        progress: &mut ProgressFn,
    ) -> Result<Self> {
        Self::fit_impl(data, cfg, seed, dev, Some(run), progress)
    }

    fn fit_impl(
        data: &TrainingData,
        cfg: &LcdConfig,
        seed: u64,
        dev: &Device,
        run: Option<&FitRun>,
        progress: &mut ProgressFn,
    ) -> Result<Self> {
        cfg.validate()?;
        data.validate(cfg.noise_model)?;
        let d = data.n_genes();
        let resume = run.and_then(|r| r.resume.as_ref());
        let state: Option<CkptState> = resume
            .map(|ck| serde_json::from_value(ck.state.clone()))
            .transpose()
            .map_err(|e| LcdError::Data(format!("checkpoint state: {e}")))?;
        if let Some(s) = &state {
            if s.config != cfg.to_toml() || s.seed != seed {
                return Err(LcdError::ModelDir {
                    dir: run.map(|r| r.dir.path.clone()).unwrap_or_default(),
                    message: format!("the checkpoint was written with a different config or seed (seed {}); resume with the same settings or pass --force to start over", s.seed),
                });
            }
        }
        let mut curves: Vec<CurvePoint> = state
            .as_ref()
            .map(|s| s.curves.iter().map(CurvePoint::from).collect())
            .unwrap_or_default();
        let mut metrics = match run {
            Some(r) => {
                if resume.is_some() {
                    // The log continues from the checkpoint: lines a hard kill left
                    // after it are replaced (they will be recomputed), earlier ones kept.
                    let mut text = String::new();
                    for c in &curves {
                        text.push_str(
                            &serde_json::to_string(c).map_err(|e| LcdError::Data(e.to_string()))?,
                        );
                        text.push('\n');
                    }
                    r.dir.write_file(CURVES, text.as_bytes())?;
                }
                Some(MetricsLog::open(
                    &r.dir.path.join(CURVES),
                    resume.is_some(),
                )?)
            }
            None => None,
        };
        let saver = Saver { run, cfg, seed };
        let t0 = Instant::now();
        let offset = curves.last().map(|c| c.seconds).unwrap_or(0.0);
        let every = |steps: usize| (steps / 1000).max(1);
        let mut record = |curves: &mut Vec<CurvePoint>,
                          stage: &str,
                          step: usize,
                          loss: f64,
                          lr: f64|
         -> Result<()> {
            let p = CurvePoint {
                stage: stage.into(),
                step,
                loss,
                lr,
                seconds: offset + t0.elapsed().as_secs_f64(),
            };
            if let Some(m) = metrics.as_mut() {
                m.log(&serde_json::to_value(&p).map_err(|e| LcdError::Data(e.to_string()))?)?;
            }
            curves.push(p);
            Ok(())
        };
        let mut rng = TensorRng::new(seed, dev)?;
        let in_stage2 = state.as_ref().is_some_and(|s| s.stage == "stage2");
        let (inputs, stage1, pi, u) = if in_stage2 {
            // Everything stage 1 produced is in the checkpoint.
            let ck = resume.ok_or_else(|| LcdError::Data("no checkpoint".into()))?;
            let dir = run
                .map(|r| r.dir)
                .ok_or_else(|| LcdError::Data("no run directory".into()))?;
            let st = tensors_from(ck, dir, "states.safetensors", dev)?;
            let get = |k: String| {
                st.get(&k)
                    .cloned()
                    .ok_or_else(|| LcdError::Data(format!("checkpoint lacks {k:?}")))
            };
            let states = (0..data.envs.len())
                .map(|q| get(format!("state.{q}")))
                .collect::<Result<Vec<_>>>()?;
            let inputs = Stage2Inputs {
                states,
                mean_ctrl: get("mean_ctrl".into())?,
                std: get("std".into())?,
            };
            if cfg.noise_model {
                let s1 = Stage1::init(data, &cfg.stage1, &mut TensorRng::new(seed, dev)?, dev)?;
                s1.params
                    .assign("p.", &tensors_from(ck, dir, "stage1.safetensors", dev)?)?;
                let (pi, u) = (s1.pi()?, s1.log_u.exp()?.to_vec1::<f32>()?);
                (inputs, Some(s1), pi, u)
            } else {
                (inputs, None, Vec::new(), Vec::new())
            }
        } else {
            let (latents, stage1, pi, u) = if cfg.noise_model {
                let mut s1 = Stage1::init(data, &cfg.stage1, &mut rng, dev)?;
                let mut opt_state = None;
                if let (Some(s), Some(ck), Some(r)) = (&state, resume, run) {
                    let map = tensors_from(ck, r.dir, "stage1.safetensors", dev)?;
                    s1.params.assign("p.", &map)?;
                    rng = TensorRng::restore(&s.rng, seed ^ (s.step as u64).rotate_left(32), dev)?;
                    opt_state = Some((s.step, map));
                }
                let total = cfg.stage1.steps;
                let ev = every(total);
                let params = s1.params.clone();
                {
                    let curves = &mut curves;
                    let saver = &saver;
                    let record = &mut record;
                    let progress = &mut *progress;
                    let hook = |step: usize,
                                loss: f64,
                                lr: f64,
                                opts: &[(&str, &Adam)],
                                rng: &TensorRng|
                     -> Result<()> {
                        progress("stage 1", step + 1, total, loss);
                        if step % ev == 0 || step + 1 == total {
                            record(curves, "stage1", step, loss, lr)?;
                        }
                        if let Some(stop) = saver.due(1, step + 1, total) {
                            saver.save(
                                "stage1",
                                step + 1,
                                rng,
                                curves,
                                vec![("stage1.safetensors".into(), with_opts(&params, opts)?)],
                            )?;
                            if stop {
                                return Err(saver.interrupted(step + 1));
                            }
                        }
                        Ok(())
                    };
                    s1.train(
                        data,
                        &mut rng,
                        dev,
                        opt_state.as_ref().map(|(s, m)| (*s, m)),
                        hook,
                    )?;
                }
                let lat = s1.sample_latents(cfg.stage1.latent_per_env, &mut rng, dev)?;
                let (pi, u) = (s1.pi()?, s1.log_u.exp()?.to_vec1::<f32>()?);
                (lat, Some(s1), pi, u)
            } else {
                let lat = data
                    .envs
                    .iter()
                    .map(|e| array_to_tensor(&e.x, dev))
                    .collect::<Result<Vec<_>>>()?;
                (lat, None, Vec::new(), Vec::new())
            };
            // Standardise: mean of control, std pooled over all environments.
            // Accumulated per environment (no concatenated copy) and applied
            // while consuming `latents`, so peak memory stays ≈ one copy of
            // the states (d = 1000: 4.5 GB for 113 environments × 10 000).
            let mean_ctrl = latents[0].mean_keepdim(0)?; // [1, d]
            let total: usize = latents
                .iter()
                .map(|l| l.dim(0))
                .sum::<candle_core::Result<usize>>()?;
            let mut sum: Option<Tensor> = None;
            for l in &latents {
                let s = l.sum_keepdim(0)?;
                sum = Some(match sum {
                    Some(a) => (a + s)?,
                    None => s,
                });
            }
            let mean_all =
                (sum.ok_or_else(|| LcdError::Data("no environments".into()))? / total as f64)?;
            let mut ss: Option<Tensor> = None;
            for l in &latents {
                let s = l.broadcast_sub(&mean_all)?.sqr()?.sum_keepdim(0)?;
                ss = Some(match ss {
                    Some(a) => (a + s)?,
                    None => s,
                });
            }
            let var = (ss.ok_or_else(|| LcdError::Data("no environments".into()))? / total as f64)?;
            let std = var.sqrt()?.maximum(1e-6f32)?; // [1, d]
            let states: Vec<Tensor> = latents
                .into_iter()
                .map(|l| Ok(l.broadcast_sub(&mean_ctrl)?.broadcast_div(&std)?))
                .collect::<Result<_>>()?;
            (
                Stage2Inputs {
                    states,
                    mean_ctrl,
                    std,
                },
                stage1,
                pi,
                u,
            )
        };
        // Stage 2.
        let vocabulary = data.vocabulary();
        let vpos = |t: &str| vocabulary.iter().position(|v| v == t);
        let multi_hot: Vec<Tensor> = data
            .envs
            .iter()
            .map(|e| {
                let mut v = vec![0f32; vocabulary.len().max(1)];
                for t in &e.targets {
                    if let Some(i) = vpos(t) {
                        v[i] += 1.0;
                    }
                }
                Ok(Tensor::from_vec(v, (1, vocabulary.len().max(1)), dev)?)
            })
            .collect::<Result<_>>()?;
        let mut net = ScoreNet::init_with(
            d,
            vocabulary.len(),
            cfg.sigmas(),
            cfg.stage2.hidden,
            cfg.stage2.condition_path,
            &mut rng,
            dev,
        )?;
        let mut opt_state = None;
        if let (true, Some(s), Some(ck), Some(r)) = (in_stage2, &state, resume, run) {
            let map = tensors_from(ck, r.dir, "stage2.safetensors", dev)?;
            net.params.assign("p.", &map)?;
            rng = TensorRng::restore(&s.rng, seed ^ (s.step as u64).rotate_left(32) ^ 2, dev)?;
            opt_state = Some((s.step, map));
        }
        // Stage-2 checkpoints carry stage 1's outputs.
        let mut fixed = Vec::new();
        if run.is_some() {
            let mut st = HashMap::new();
            for (q, s) in inputs.states.iter().enumerate() {
                st.insert(format!("state.{q}"), s.clone());
            }
            st.insert("mean_ctrl".into(), inputs.mean_ctrl.clone());
            st.insert("std".into(), inputs.std.clone());
            fixed.push(("states.safetensors".to_string(), st));
            if let Some(s1) = &stage1 {
                let mut m = HashMap::new();
                s1.params.export("p.", &mut m);
                fixed.push(("stage1.safetensors".to_string(), m));
            }
        }
        let total = cfg.stage2.steps;
        let ev = every(total);
        let net_params = net.params.clone();
        {
            let curves = &mut curves;
            let saver = &saver;
            let record = &mut record;
            let progress = &mut *progress;
            let hook = |step: usize,
                        loss: f64,
                        lr: f64,
                        opts: &[(&str, &Adam)],
                        rng: &TensorRng|
             -> Result<()> {
                progress("stage 2", step + 1, total, loss);
                if step % ev == 0 || step + 1 == total {
                    record(curves, "stage2", step, loss, lr)?;
                }
                if let Some(stop) = saver.due(2, step + 1, total) {
                    let mut files = fixed.clone();
                    files.push(("stage2.safetensors".into(), with_opts(&net_params, opts)?));
                    saver.save("stage2", step + 1, rng, curves, files)?;
                    if stop {
                        return Err(saver.interrupted(step + 1));
                    }
                }
                Ok(())
            };
            net.train(
                &inputs.states,
                &multi_hot,
                &cfg.stage2,
                &mut rng,
                opt_state.as_ref().map(|(s, m)| (*s, m)),
                hook,
            )?;
        }
        Ok(LcdModel {
            cfg: cfg.clone(),
            genes: data.genes.clone(),
            vocabulary,
            train_conditions: data.envs.iter().map(|e| e.name.clone()).collect(),
            mean_ctrl: inputs.mean_ctrl.flatten_all()?.to_vec1()?,
            std_all: inputs.std.flatten_all()?.to_vec1()?,
            pi,
            u,
            net,
            stage1,
            curves,
            seed,
            device: dev.clone(),
        })
    }
}
