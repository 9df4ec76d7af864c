//! Screen simulators with a known causal truth (ground truth for LCD and
//! CLIPR; design/lcd.md "Simulator").
//!
//! - [`linear`]: the linear SDE screen of the LCD paper (Lorch et al. 2026,
//!   arXiv:2601.15341): exact stationary Gaussians via a Lyapunov solve.
//! - [`nonlinear`]: `f(x) = −x + tanh(W x + b) + c_q`, Euler–Maruyama to
//!   stationarity; doubles show genuine genetic interactions.
//! - [`counts`]: optional ZIP count layer `x ~ ZIP(π, u · softplus(s))`.
//!
//! [`simulate_screen`] returns an ordinary [`AnnData`]:
//! - `obs["perturbation"]` categorical: `control`, `G3`, `G3+G17` (genes
//!   `G0 … G{d−1}`, lower index first in doubles); `obs["n_targets"]`;
//! - `var` index = gene names, `var["perturbed"]` (bool);
//! - `X`: latent states (dense f32) or, with `counts`, raw ZIP counts (CSR,
//!   f32 data) and the latent states in `layers["latent"]`;
//! - `varp["true_effects"]`: entry [i, j] = direct effect of gene i on gene j
//!   (`Aᵀ = W` for linear; the transposed Jacobian at the control fixed
//!   point for nonlinear), CLIPR's orientation;
//! - `uns["simulation"]`: kind, graph, seed, sizes and the arrays needed to
//!   rebuild the true system ([`TrueSystem::from_anndata`]): `A` (linear) or
//!   `W` (nonlinear, row = target), `b`, `shift` (c_j of every gene),
//!   `zip_pi`, `zip_u` when counts were drawn.
//!
//! Determinism: a seed drives one ChaCha8 stream for the system and the
//! design, and stream `q + 1` of the same seed for condition q, so results do
//! not depend on the number of threads.
pub mod counts;
pub mod graph;
pub mod linear;
pub mod lyapunov;
pub mod nonlinear;
mod output;
pub mod system;

use rand::seq::index::sample as sample_indices;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use graph::GraphKind;
pub use linear::LinearSystem;
pub use nonlinear::NonlinearSystem;
pub use output::{simulate_screen, SimulatedScreen, TrueSystem};
pub use system::Drift;

use crate::error::{DatasetsError, Result};

/// Which dynamics generate the cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SimKind {
    /// Linear SDE, exact Gaussian stationary law.
    #[default]
    Linear,
    /// `−x + tanh(W x + b) + c`, Euler–Maruyama.
    Nonlinear,
}

impl SimKind {
    pub fn name(self) -> &'static str {
        match self {
            SimKind::Linear => "linear",
            SimKind::Nonlinear => "nonlinear",
        }
    }
}

/// Parameters of a simulated screen. Defaults follow design/lcd.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulationConfig {
    pub kind: SimKind,
    /// Number of genes d (≥ 2).
    pub genes: usize,
    /// Number of perturbed genes p (1 ≤ p ≤ d); each gets a single condition.
    pub perturbed: usize,
    /// Number of double perturbations K among the perturbed genes (≤ p(p−1)/2).
    pub doubles: usize,
    /// Cells per condition N (≥ 1).
    pub cells_per_condition: usize,
    /// Draw ZIP counts into X (latent states go to `layers["latent"]`).
    pub counts: bool,
    pub graph: GraphKind,
    /// Expected edges per gene (ER) or edges added per gene (SF); > 0.
    pub degree: f64,
    pub seed: u64,
    /// Bias `b ~ U(−bias, bias)`; default 3 (linear) or 1 (nonlinear) when `None`.
    pub bias: Option<f64>,
    /// Perturbation shift magnitude range `|c_j| ~ U(shift_min, shift_max)`.
    pub shift_min: f64,
    pub shift_max: f64,
    /// Nonlinear: spectral norm of W, in (0, 1).
    pub contraction: f64,
    /// Nonlinear: Euler–Maruyama step (default 0.025; the stationary variance
    /// of a unit-rate mode is then biased by dt/4 ≈ 0.6 %).
    pub dt: f64,
    /// Nonlinear: simulated time from the fixed point to the recorded state
    /// (default 6: the covariance of a mode decaying at rate r has reached
    /// 1 − e^{−12 r} of its stationary value).
    pub burn_in: f64,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            kind: SimKind::Linear,
            genes: 100,
            perturbed: 20,
            doubles: 20,
            cells_per_condition: 200,
            counts: false,
            graph: GraphKind::Er,
            degree: 10.0,
            seed: 0,
            bias: None,
            shift_min: 5.0,
            shift_max: 15.0,
            contraction: 0.9,
            dt: 0.025,
            burn_in: 6.0,
        }
    }
}

fn bad(param: &str, message: String) -> DatasetsError {
    DatasetsError::InvalidConfig {
        param: param.into(),
        message,
    }
}

impl SimulationConfig {
    /// Bias half-width actually used.
    pub fn bias_range(&self) -> f64 {
        self.bias.unwrap_or(match self.kind {
            SimKind::Linear => 3.0,
            SimKind::Nonlinear => 1.0,
        })
    }

    /// Check every field; errors name the bad value.
    pub fn validate(&self) -> Result<()> {
        if self.genes < 2 {
            return Err(bad(
                "genes",
                format!("need at least 2 genes, but is {}", self.genes),
            ));
        }
        if self.perturbed == 0 || self.perturbed > self.genes {
            return Err(bad(
                "perturbed",
                format!(
                    "should be in [1, genes = {}], but is {}",
                    self.genes, self.perturbed
                ),
            ));
        }
        let max_doubles = self.perturbed * (self.perturbed - 1) / 2;
        if self.doubles > max_doubles {
            return Err(bad(
                "doubles",
                format!("at most p(p−1)/2 = {max_doubles} pairs exist among {} perturbed genes, but asked for {}", self.perturbed, self.doubles),
            ));
        }
        if self.cells_per_condition == 0 {
            return Err(bad("cells-per-condition", "should be ≥ 1, but is 0".into()));
        }
        if !(self.degree > 0.0 && self.degree.is_finite()) {
            return Err(bad(
                "degree",
                format!("should be > 0, but is {}", self.degree),
            ));
        }
        let bias = self.bias_range();
        if !(bias > 0.0 && bias.is_finite()) {
            return Err(bad("bias", format!("should be > 0, but is {bias}")));
        }
        if !(self.shift_min > 0.0 && self.shift_max > self.shift_min && self.shift_max.is_finite())
        {
            return Err(bad(
                "shift",
                format!(
                    "need 0 < shift_min < shift_max, but range is [{}, {}]",
                    self.shift_min, self.shift_max
                ),
            ));
        }
        if self.kind == SimKind::Nonlinear {
            if !(self.contraction > 0.0 && self.contraction < 1.0) {
                return Err(bad(
                    "contraction",
                    format!("should be in (0, 1), but is {}", self.contraction),
                ));
            }
            if !(self.dt > 0.0 && self.dt <= 0.5) {
                return Err(bad(
                    "dt",
                    format!("should be in (0, 0.5], but is {}", self.dt),
                ));
            }
            if !(self.burn_in >= self.dt && self.burn_in.is_finite()) {
                return Err(bad(
                    "burn_in",
                    format!("should be ≥ dt = {}, but is {}", self.dt, self.burn_in),
                ));
            }
        }
        let n_cells = (1 + self.perturbed + self.doubles).checked_mul(self.cells_per_condition);
        match n_cells.and_then(|n| n.checked_mul(self.genes)) {
            Some(v) if v <= 4_000_000_000 => Ok(()),
            _ => Err(bad(
                "cells-per-condition",
                "cells × genes exceeds 4e9 values; reduce the screen size".into(),
            )),
        }
    }
}

/// One simulated condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCondition {
    /// `control`, `G3` or `G3+G17`.
    pub label: String,
    /// Perturbed gene indices (sorted).
    pub targets: Vec<usize>,
}

/// Gene name of index `g`.
pub fn gene_name(g: usize) -> String {
    format!("G{g}")
}

/// Condition label of a target set (`control` when empty).
pub fn condition_label(targets: &[usize]) -> String {
    if targets.is_empty() {
        "control".into()
    } else {
        targets
            .iter()
            .map(|&g| gene_name(g))
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// Choose the perturbed genes (sorted) and the conditions: control, p
/// singles, K doubles drawn uniformly without replacement among all pairs.
pub fn design(cfg: &SimulationConfig, rng: &mut ChaCha8Rng) -> (Vec<usize>, Vec<SimCondition>) {
    let mut perturbed = sample_indices(rng, cfg.genes, cfg.perturbed).into_vec();
    perturbed.sort_unstable();
    let mut conds = vec![SimCondition {
        label: condition_label(&[]),
        targets: vec![],
    }];
    for &g in &perturbed {
        conds.push(SimCondition {
            label: condition_label(&[g]),
            targets: vec![g],
        });
    }
    let p = perturbed.len();
    let pairs: Vec<(usize, usize)> = (0..p)
        .flat_map(|a| (a + 1..p).map(move |b| (a, b)))
        .collect();
    let mut chosen = sample_indices(rng, pairs.len(), cfg.doubles).into_vec();
    chosen.sort_unstable();
    for k in chosen {
        let (a, b) = pairs[k];
        let t = vec![perturbed[a], perturbed[b]];
        conds.push(SimCondition {
            label: condition_label(&t),
            targets: t,
        });
    }
    (perturbed, conds)
}

/// The random stream of a seed: 0 for the system and design, q + 1 for condition q.
pub fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_bad_values() {
        let cfg = SimulationConfig {
            genes: 10,
            perturbed: 11,
            ..Default::default()
        };
        assert!(cfg
            .validate()
            .expect_err("invalid")
            .to_string()
            .contains("perturbed"));
        let cfg = SimulationConfig {
            genes: 10,
            perturbed: 4,
            doubles: 7,
            ..Default::default()
        };
        let e = cfg.validate().expect_err("invalid").to_string();
        assert!(e.contains("doubles") && e.contains('6'), "{e}");
        let cfg = SimulationConfig {
            kind: SimKind::Nonlinear,
            contraction: 1.2,
            ..Default::default()
        };
        assert!(cfg
            .validate()
            .expect_err("invalid")
            .to_string()
            .contains("1.2"));
        assert!(SimulationConfig::default().validate().is_ok());
    }

    #[test]
    fn design_has_all_requested_conditions() {
        let cfg = SimulationConfig {
            genes: 30,
            perturbed: 6,
            doubles: 15,
            ..Default::default()
        };
        let (pert, conds) = design(&cfg, &mut stream_rng(1, 0));
        assert_eq!(pert.len(), 6);
        assert_eq!(conds.len(), 1 + 6 + 15);
        let labels: std::collections::HashSet<_> = conds.iter().map(|c| c.label.clone()).collect();
        assert_eq!(labels.len(), conds.len());
        assert!(conds[7..].iter().all(|c| c.targets.len() == 2
            && c.targets.iter().all(|t| pert.contains(t))
            && c.targets[0] < c.targets[1]));
        assert_eq!(condition_label(&[3, 17]), "G3+G17");
    }
}
