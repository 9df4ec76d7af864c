//! Illustrative 2-D expansion tasks (`design/expand.md`, "Evaluation").
//!
//! * `ring`: the valid region is the annulus `1.5 ≤ ‖x‖ ≤ 2`; the pre-trained
//!   flow sees only the quarter arc with angle in [0, π/2].
//! * `boxes`: four unit boxes centred at (±0.75, ±0.75) (gaps 0.5 wide); the
//!   pre-trained flow sees the two boxes with x > 0.
//!
//! The verifier knows the whole region: `c(x) = 1[sdf(x) ≤ 0]` (signed
//! distance `sdf`), with the differentiable surrogate
//! `log c_τ(x) = log σ(−sdf(x)/τ)` (τ = `ToyConfig::verifier_tau`) for gradient projection.
//! Coverage is measured against the grid of spacing 0.1 over [−2.5, 2.5]²
//! restricted to the region, with radius 0.1 (a grid point is covered when a
//! sample lies within 0.1 of it).
use candle_core::{Device, Tensor};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::actflow::{recursive_expand, ActFlowConfig, RecursiveMethod, RoundReport};
use super::adjoint::AdjointConfig;
use super::fe::{flow_expander, FeConfig, FeEvent, ProjectMode};
use super::flow::{sample_ode, Flow, TrainableFlow};
use super::metrics::{coverage, validity_rate, vendi, VendiKernel};
use super::mlp::{train_cfm, CfmConfig, FlowMlp, FlowMlpConfig};
use super::verifier::{verify_batch, Verifier};
use super::{bad_config, ExpandError, Result};

/// Half-width of the plotted / gridded square.
pub const EXTENT: f64 = 2.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToyTask {
    Ring,
    Boxes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToyMethod {
    Fe,
    Actflow,
    RecNf,
    RecF,
}

const RING: (f64, f64) = (1.5, 2.0);
const BOX_C: f64 = 0.75;
const BOX_H: f64 = 0.5;

fn box_sdf(x: f64, y: f64, cx: f64, cy: f64) -> f64 {
    let (dx, dy) = ((x - cx).abs() - BOX_H, (y - cy).abs() - BOX_H);
    let outside = (dx.max(0.0).powi(2) + dy.max(0.0).powi(2)).sqrt();
    outside + dx.max(dy).min(0.0)
}

impl ToyTask {
    /// Signed distance to the whole valid region (negative inside).
    pub fn sdf(&self, x: f64, y: f64) -> f64 {
        match self {
            ToyTask::Ring => {
                let r = (x * x + y * y).sqrt();
                (RING.0 - r).max(r - RING.1)
            }
            ToyTask::Boxes => [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)]
                .iter()
                .map(|(sx, sy)| box_sdf(x, y, sx * BOX_C, sy * BOX_C))
                .fold(f64::INFINITY, f64::min),
        }
    }

    /// `n` training points from the part of the region the pre-trained flow sees.
    pub fn training_data(&self, n: usize, rng: &mut dyn rand::RngCore) -> Array2<f64> {
        let mut out = Array2::zeros((n, 2));
        for i in 0..n {
            let (x, y) = match self {
                ToyTask::Ring => {
                    let th = rng.random_range(0.0..std::f64::consts::FRAC_PI_2);
                    let r = rng.random_range(RING.0 * RING.0..RING.1 * RING.1).sqrt();
                    (r * th.cos(), r * th.sin())
                }
                ToyTask::Boxes => {
                    let cy = if rng.random::<bool>() { BOX_C } else { -BOX_C };
                    (
                        BOX_C + rng.random_range(-BOX_H..BOX_H),
                        cy + rng.random_range(-BOX_H..BOX_H),
                    )
                }
            };
            out[[i, 0]] = x;
            out[[i, 1]] = y;
        }
        out
    }

    /// Reference valid set: grid points of spacing `h` inside the region.
    pub fn reference_grid(&self, h: f64) -> Array2<f64> {
        let m = (2.0 * EXTENT / h).round() as usize;
        let pts: Vec<f64> = (0..=m)
            .flat_map(|i| (0..=m).map(move |j| (-EXTENT + i as f64 * h, -EXTENT + j as f64 * h)))
            .filter(|(x, y)| self.sdf(*x, *y) <= 0.0)
            .flat_map(|(x, y)| [x, y])
            .collect();
        let n = pts.len() / 2;
        Array2::from_shape_vec((n, 2), pts).unwrap_or_else(|_| Array2::zeros((0, 2)))
    }
}

/// The toy verifier: exact 0/1 membership plus a sigmoid surrogate gradient.
#[derive(Debug, Clone, Copy)]
pub struct ToyVerifier {
    pub task: ToyTask,
    /// Temperature τ of the surrogate `σ(−sdf/τ)`.
    pub tau: f64,
}

impl Verifier for ToyVerifier {
    fn verify(&self, x: &[f32]) -> f64 {
        f64::from(u8::from(
            x.len() == 2 && self.task.sdf(x[0] as f64, x[1] as f64) <= 0.0,
        ))
    }
    fn grad_log(&self, x: &[f32]) -> Option<Vec<f32>> {
        if x.len() != 2 {
            return None;
        }
        let (px, py) = (x[0] as f64, x[1] as f64);
        let e = 1e-4;
        let gx = (self.task.sdf(px + e, py) - self.task.sdf(px - e, py)) / (2.0 * e);
        let gy = (self.task.sdf(px, py + e) - self.task.sdf(px, py - e)) / (2.0 * e);
        // ∇ log σ(−d/τ) = −(1 − σ(−d/τ)) ∇d / τ
        let d = self.task.sdf(px, py);
        let w = 1.0 - 1.0 / (1.0 + (d / self.tau).exp());
        Some(vec![
            (-w * gx / self.tau) as f32,
            (-w * gy / self.tau) as f32,
        ])
    }
}

/// Settings of a toy run (defaults sized for ≤ ~1–2 min on a CPU).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToyConfig {
    pub seed: u64,
    /// Training points of the pre-trained flow.
    pub n_data: usize,
    pub model: FlowMlpConfig,
    pub pretrain: CfmConfig,
    /// Samples used for every metric and picture.
    pub n_eval: usize,
    /// ODE steps for evaluation samples.
    pub n_ode_steps: usize,
    /// Spacing of the reference grid and coverage radius.
    pub grid_spacing: f64,
    pub coverage_radius: f64,
    /// RBF bandwidth and subsample size of the Vendi score.
    pub vendi_bandwidth: f64,
    pub vendi_n: usize,
    /// Temperature τ of the verifier's surrogate gradient `∇log σ(−sdf/τ)`.
    pub verifier_tau: f64,
    pub fe: FeConfig,
    pub actflow: ActFlowConfig,
}

impl Default for ToyConfig {
    /// Sized for ≈ 1 min per run on a (shared) 2-core CPU; tuned on `ring`
    /// seed 0 (see the issue report for the table).
    fn default() -> Self {
        let am = AdjointConfig {
            n_samples: 256,
            batch: 128,
            n_steps: 25,
            rounds: 8,
            epochs: 1,
            lr: 1e-3,
            grad_clip: 0.4,
            ..AdjointConfig::default()
        };
        let project_mode = ProjectMode::Rejection {
            n_samples: 2000,
            train: CfmConfig {
                steps: 600,
                batch: 256,
                lr: 2e-3,
                grad_clip: 1.0,
                ..CfmConfig::default()
            },
        };
        Self {
            seed: 0,
            n_data: 2000,
            model: FlowMlpConfig {
                hidden: 64,
                ..FlowMlpConfig::default()
            },
            pretrain: CfmConfig {
                steps: 800,
                batch: 256,
                lr: 2e-3,
                grad_clip: 1.0,
                ..CfmConfig::default()
            },
            n_eval: 1500,
            n_ode_steps: 50,
            grid_spacing: 0.1,
            coverage_radius: 0.1,
            vendi_bandwidth: 0.5,
            vendi_n: 400,
            verifier_tau: 0.2,
            fe: FeConfig {
                iterations: 4,
                gamma: 1.0,
                epsilon: 0.05,
                expand: am.clone(),
                project: am,
                project_mode,
                ..FeConfig::default()
            },
            actflow: ActFlowConfig::default(),
        }
    }
}

impl ToyConfig {
    /// Read a TOML `ToyConfig` (missing fields take their defaults) and validate it.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ExpandError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Self = toml::from_str(&text).map_err(|e| ExpandError::Data {
            what: path.display().to_string(),
            reason: format!("not a valid ToyConfig TOML: {e}"),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let c = "ToyConfig";
        if self.n_data == 0 {
            return Err(bad_config(c, "n_data", self.n_data, ">= 1"));
        }
        if self.n_eval < 2 {
            return Err(bad_config(c, "n_eval", self.n_eval, ">= 2"));
        }
        if !(self.grid_spacing > 0.0) {
            return Err(bad_config(c, "grid_spacing", self.grid_spacing, "> 0"));
        }
        if !(self.coverage_radius > 0.0) {
            return Err(bad_config(
                c,
                "coverage_radius",
                self.coverage_radius,
                "> 0",
            ));
        }
        if !(self.vendi_bandwidth > 0.0) {
            return Err(bad_config(
                c,
                "vendi_bandwidth",
                self.vendi_bandwidth,
                "> 0",
            ));
        }
        if !(self.verifier_tau > 0.0) {
            return Err(bad_config(c, "verifier_tau", self.verifier_tau, "> 0"));
        }
        if self.vendi_n < 2 {
            return Err(bad_config(c, "vendi_n", self.vendi_n, ">= 2"));
        }
        self.model.validate()?;
        if self.model.dim != 2 {
            return Err(bad_config(
                c,
                "model.dim",
                self.model.dim,
                "2 for the toy tasks",
            ));
        }
        self.pretrain.validate()?;
        self.fe.validate()?;
        self.actflow.validate()
    }
}

/// Metrics of one sample set (the CLI's JSON fields).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ToyMetrics {
    pub validity: f64,
    pub coverage: f64,
    pub vendi: f64,
}

/// Result of a toy run.
#[derive(Debug, Clone)]
pub struct ToyOutcome {
    pub before: ToyMetrics,
    pub after: ToyMetrics,
    /// Linear-kernel Vendi (before, after).
    pub vendi_linear: (f64, f64),
    pub data: Array2<f64>,
    pub samples_before: Array2<f64>,
    pub samples_after: Array2<f64>,
    pub rounds: Vec<RoundReport>,
}

/// A progress tick: `stage` ("pretrain", "expand", "project", "round k") at `step` of `total`.
#[derive(Debug, Clone)]
pub struct Tick {
    pub stage: String,
    pub step: usize,
    pub total: usize,
}

fn to_array(x: &Tensor) -> Result<Array2<f64>> {
    let v = x.to_dtype(candle_core::DType::F64)?.to_vec2::<f64>()?;
    let n = v.len();
    Ok(Array2::from_shape_vec((n, 2), v.concat()).unwrap_or_else(|_| Array2::zeros((0, 2))))
}

/// Evaluate a flow with fixed evaluation noise `z` ([n_eval, 2]).
fn evaluate<F: Flow>(
    flow: &F,
    z: &Tensor,
    task: ToyTask,
    cfg: &ToyConfig,
    grid: &Array2<f64>,
) -> Result<(ToyMetrics, f64, Array2<f64>)> {
    let xs = sample_ode(flow, z, cfg.n_ode_steps)?;
    let ver = ToyVerifier {
        task,
        tau: cfg.verifier_tau,
    };
    let validity = validity_rate(&verify_batch(&ver, &xs)?);
    let arr = to_array(&xs)?;
    let cov = coverage(grid.view(), arr.view(), cfg.coverage_radius);
    let sub = arr.slice(ndarray::s![..cfg.vendi_n.min(arr.nrows()), ..]);
    let v_rbf = vendi(
        sub,
        VendiKernel::Rbf {
            bandwidth: cfg.vendi_bandwidth,
        },
    )?;
    let v_lin = vendi(arr.view(), VendiKernel::Linear)?;
    Ok((
        ToyMetrics {
            validity,
            coverage: cov,
            vendi: v_rbf,
        },
        v_lin,
        arr,
    ))
}

/// Pre-train a flow on the partial data, expand it with `method`, and measure
/// before/after. Deterministic given `cfg.seed` (on the CPU).
pub fn run_toy(
    task: ToyTask,
    method: ToyMethod,
    cfg: &ToyConfig,
    device: &Device,
    mut tick: impl FnMut(Tick),
) -> Result<ToyOutcome> {
    cfg.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let data = task.training_data(cfg.n_data, &mut rng);
    let data_t = Tensor::from_vec(
        data.iter().map(|v| *v as f32).collect::<Vec<f32>>(),
        (cfg.n_data, 2),
        device,
    )?;
    let model = FlowMlp::new(&cfg.model, &mut rng, device)?;
    let total = cfg.pretrain.steps;
    train_cfm(&model, &data_t, None, &cfg.pretrain, &mut rng, |s, _| {
        tick(Tick {
            stage: "pretrain".into(),
            step: s + 1,
            total,
        })
    })?;
    let pre = model.frozen_copy()?;
    let grid = task.reference_grid(cfg.grid_spacing);
    let mut eval_rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_e7a1);
    let z = model.noise(cfg.n_eval, &mut eval_rng)?;
    let (before, vl_before, samples_before) = evaluate(&pre, &z, task, cfg, &grid)?;
    let ver = ToyVerifier {
        task,
        tau: cfg.verifier_tau,
    };
    let mut rounds = Vec::new();
    match method {
        ToyMethod::Fe => {
            let per = cfg.fe.expand.rounds + cfg.fe.project.rounds;
            let total = cfg.fe.iterations * per;
            flow_expander(&model, &pre, Some(&ver), &cfg.fe, &mut rng, |e| {
                let (stage, step) = match e {
                    FeEvent::Expand(it, r, _) => ("expand", it * per + r + 1),
                    FeEvent::Project(it, r, _) => {
                        ("project", it * per + cfg.fe.expand.rounds + r + 1)
                    }
                };
                tick(Tick {
                    stage: stage.into(),
                    step,
                    total,
                });
            })?;
        }
        ToyMethod::Actflow | ToyMethod::RecNf | ToyMethod::RecF => {
            let m = match method {
                ToyMethod::Actflow => RecursiveMethod::ActFlow,
                ToyMethod::RecNf => RecursiveMethod::RecNf,
                _ => RecursiveMethod::RecF,
            };
            let steps = cfg.actflow.train.steps;
            let total = cfg.actflow.rounds * steps;
            rounds = recursive_expand(
                &model,
                &data_t,
                &ver,
                m,
                &cfg.actflow,
                &mut rng,
                |r, s, _| {
                    tick(Tick {
                        stage: format!("round {}", r + 1),
                        step: r * steps + s + 1,
                        total,
                    })
                },
            )?;
        }
    }
    let (after, vl_after, samples_after) = evaluate(&model, &z, task, cfg, &grid)?;
    Ok(ToyOutcome {
        before,
        after,
        vendi_linear: (vl_before, vl_after),
        data,
        samples_before,
        samples_after,
        rounds,
    })
}
