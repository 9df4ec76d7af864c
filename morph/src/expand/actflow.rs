//! ActFlow — active flow expansion (De Santi et al., arXiv:2606.08802) — and
//! the recursive synthetic-training baselines Rec-NF / Rec-F.
//!
//! One ActFlow round: (1) explore in the learned representation — the noise
//! codes `z` that the probability-flow ODE maps to designs: perturbed codes of
//! accepted designs `z + δξ`, higher-temperature codes `τξ`, and short latent
//! random walks that move only while the decoded design stays valid; (2) keep
//! designs the verifier accepts that are novel (farther than `novelty_radius`
//! from the current training set and from each other); (3) continue
//! flow-matching training on the original data plus all accepted designs;
//! (4) repeat. Rec-NF trains recursively on plain model samples, Rec-F on
//! plain model samples that pass the verifier (no exploration, no novelty).
use candle_core::{Device, Tensor};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::flow::{sample_ode, TrainableFlow};
use super::mlp::{train_cfm, CfmConfig};
use super::verifier::{rows, verify_batch, Verifier};
use super::{bad_config, ExpandError, Result};

/// Which recursive-training method to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecursiveMethod {
    /// Exploration + verifier + novelty (ActFlow).
    ActFlow,
    /// Recursive synthetic training, no filter.
    RecNf,
    /// Recursive synthetic training with the verifier filter.
    RecF,
}

/// ActFlow / Rec-NF / Rec-F settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActFlowConfig {
    /// Rounds R (≥ 1).
    pub rounds: usize,
    /// Candidate designs decoded per round (≥ 1), split over the three
    /// exploration moves for ActFlow.
    pub n_candidates: usize,
    /// Most designs added to the training set per round (≥ 1).
    pub max_accept: usize,
    /// Std δ of code perturbations (> 0).
    pub code_noise: f64,
    /// Temperature τ ≥ 1 of high-temperature codes.
    pub temperature: f64,
    /// Steps of each latent random walk (≥ 1).
    pub walk_steps: usize,
    /// Minimum distance (flattened sample space) from the training set for a
    /// design to count as novel (≥ 0).
    pub novelty_radius: f64,
    /// ODE steps for decoding (≥ 1).
    pub n_ode_steps: usize,
    /// Continued flow-matching training per round.
    pub train: CfmConfig,
}

impl Default for ActFlowConfig {
    fn default() -> Self {
        Self {
            rounds: 4,
            n_candidates: 1536,
            max_accept: 400,
            code_noise: 0.5,
            temperature: 1.6,
            walk_steps: 4,
            novelty_radius: 0.05,
            n_ode_steps: 50,
            train: CfmConfig {
                steps: 1000,
                ..CfmConfig::default()
            },
        }
    }
}

impl ActFlowConfig {
    pub fn validate(&self) -> Result<()> {
        let c = "ActFlowConfig";
        if self.rounds == 0 {
            return Err(bad_config(c, "rounds", self.rounds, ">= 1"));
        }
        if self.n_candidates == 0 {
            return Err(bad_config(c, "n_candidates", self.n_candidates, ">= 1"));
        }
        if self.max_accept == 0 {
            return Err(bad_config(c, "max_accept", self.max_accept, ">= 1"));
        }
        if !(self.code_noise > 0.0 && self.code_noise.is_finite()) {
            return Err(bad_config(
                c,
                "code_noise",
                self.code_noise,
                "a finite value > 0",
            ));
        }
        if !(self.temperature >= 1.0 && self.temperature.is_finite()) {
            return Err(bad_config(
                c,
                "temperature",
                self.temperature,
                "a finite value >= 1",
            ));
        }
        if self.walk_steps == 0 {
            return Err(bad_config(c, "walk_steps", self.walk_steps, ">= 1"));
        }
        if !(self.novelty_radius >= 0.0) {
            return Err(bad_config(c, "novelty_radius", self.novelty_radius, ">= 0"));
        }
        if self.n_ode_steps == 0 {
            return Err(bad_config(c, "n_ode_steps", self.n_ode_steps, ">= 1"));
        }
        self.train.validate()
    }
}

/// Per-round summary.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    pub candidates: usize,
    pub valid: usize,
    pub accepted: usize,
    pub train_size: usize,
}

fn gauss(rng: &mut dyn RngCore, n: usize, scale: f64) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.sample::<f64, _>(StandardNormal) * scale) as f32)
        .collect()
}

fn min_dist2(x: &[f32], set: &[Vec<f32>]) -> f64 {
    set.par_iter()
        .map(|s| {
            s.iter()
                .zip(x)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
        })
        .reduce(|| f64::INFINITY, f64::min)
}

/// Greedy novelty filter: keep valid candidates farther than `radius` from
/// `train` and from already-kept ones, at most `max_keep`.
fn keep_novel(
    cands: &[Vec<f32>],
    valid: &[bool],
    train: &[Vec<f32>],
    radius: f64,
    max_keep: usize,
) -> Vec<usize> {
    let r2 = radius * radius;
    let far: Vec<bool> = cands
        .par_iter()
        .zip(valid.par_iter())
        .map(|(c, &v)| v && min_dist2(c, train) > r2)
        .collect();
    let mut kept: Vec<usize> = Vec::new();
    let mut kept_rows: Vec<Vec<f32>> = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        if kept.len() >= max_keep {
            break;
        }
        if far[i] && (r2 == 0.0 || min_dist2(c, &kept_rows) > r2) {
            kept.push(i);
            kept_rows.push(c.clone());
        }
    }
    kept
}

/// Run ActFlow / Rec-NF / Rec-F on `model` in place, continuing from
/// `data` ([n, event…]). `progress(round, step, loss)` reports training.
pub fn recursive_expand<F: TrainableFlow, V: Verifier + ?Sized>(
    model: &F,
    data: &Tensor,
    verifier: &V,
    method: RecursiveMethod,
    cfg: &ActFlowConfig,
    rng: &mut dyn RngCore,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<Vec<RoundReport>> {
    cfg.validate()?;
    let device: Device = data.device().clone();
    let event: Vec<usize> = data.dims()[1..].to_vec();
    let d: usize = event.iter().product::<usize>().max(1);
    let mut train_rows = rows(data)?;
    let n_data = train_rows.len();
    if n_data == 0 {
        return Err(ExpandError::Data {
            what: "recursive expansion".into(),
            reason: "no training data".into(),
        });
    }
    // Codes of accepted designs (ActFlow's frontier), flattened.
    let mut frontier: Vec<Vec<f32>> = Vec::new();
    let mut reports = Vec::new();
    let to_tensor = |flat: Vec<f32>, n: usize| -> Result<Tensor> {
        let mut shape = vec![n];
        shape.extend(&event);
        Ok(Tensor::from_vec(flat, shape, &device)?)
    };
    for round in 0..cfg.rounds {
        let n = cfg.n_candidates;
        let (cand_rows, codes): (Vec<Vec<f32>>, Vec<Vec<f32>>) = match method {
            RecursiveMethod::RecNf | RecursiveMethod::RecF => {
                let z = model.noise(n, rng)?;
                (rows(&sample_ode(model, &z, cfg.n_ode_steps)?)?, rows(&z)?)
            }
            RecursiveMethod::ActFlow => {
                // (a) perturbed codes of frontier designs, (b) high temperature,
                // (c) latent random walks from fresh codes.
                let n_walk = n / 3 / cfg.walk_steps.max(1);
                let n_pert = n / 3;
                let n_temp = n.saturating_sub(n_pert + n_walk * cfg.walk_steps).max(1);
                let mut codes: Vec<f32> = Vec::with_capacity(n * d);
                for _ in 0..n_pert {
                    let src = if frontier.is_empty() {
                        gauss(rng, d, 1.0)
                    } else {
                        frontier[rng.random_range(0..frontier.len())].clone()
                    };
                    codes.extend(
                        src.iter()
                            .zip(gauss(rng, d, cfg.code_noise))
                            .map(|(a, b)| a + b),
                    );
                }
                codes.extend(gauss(rng, n_temp * d, cfg.temperature));
                let n_direct = n_pert + n_temp;
                let z = to_tensor(codes, n_direct)?;
                let mut cand = rows(&sample_ode(model, &z, cfg.n_ode_steps)?)?;
                let mut code_rows = rows(&z)?;
                // random walks: batched over walkers, one decode per step
                if n_walk > 0 {
                    let mut walkers: Vec<Vec<f32>> = (0..n_walk)
                        .map(|_| gauss(rng, d, cfg.temperature))
                        .collect();
                    for _ in 0..cfg.walk_steps {
                        let prop: Vec<Vec<f32>> = walkers
                            .iter()
                            .map(|w| {
                                w.iter()
                                    .zip(gauss(rng, d, cfg.code_noise))
                                    .map(|(a, b)| a + b)
                                    .collect()
                            })
                            .collect();
                        let zt = to_tensor(prop.concat(), n_walk)?;
                        let xs = sample_ode(model, &zt, cfg.n_ode_steps)?;
                        let ok = verify_batch(verifier, &xs)?;
                        let xr = rows(&xs)?;
                        for (i, p) in prop.into_iter().enumerate() {
                            if ok[i] >= 0.5 {
                                walkers[i] = p.clone();
                            }
                            cand.push(xr[i].clone());
                            code_rows.push(p);
                        }
                    }
                }
                (cand, code_rows)
            }
        };
        let flat: Vec<f32> = cand_rows.concat();
        let scores = verify_batch(verifier, &to_tensor(flat, cand_rows.len())?)?;
        let valid: Vec<bool> = scores.iter().map(|s| *s >= 0.5).collect();
        let n_valid = valid.iter().filter(|v| **v).count();
        let kept: Vec<usize> = match method {
            RecursiveMethod::ActFlow => keep_novel(
                &cand_rows,
                &valid,
                &train_rows,
                cfg.novelty_radius,
                cfg.max_accept,
            ),
            RecursiveMethod::RecF => (0..cand_rows.len())
                .filter(|&i| valid[i])
                .take(cfg.max_accept)
                .collect(),
            RecursiveMethod::RecNf => (0..cand_rows.len()).take(cfg.max_accept).collect(),
        };
        for &i in &kept {
            train_rows.push(cand_rows[i].clone());
            if method == RecursiveMethod::ActFlow {
                frontier.push(codes[i].clone());
            }
        }
        let train = to_tensor(train_rows.concat(), train_rows.len())?;
        train_cfm(model, &train, None, &cfg.train, rng, |s, l| {
            progress(round, s, l)
        })?;
        reports.push(RoundReport {
            candidates: cand_rows.len(),
            valid: n_valid,
            accepted: kept.len(),
            train_size: train_rows.len(),
        });
    }
    Ok(reports)
}
