//! CLIPR — causal linearisation via perturbation responses (`design/clipr.md`;
//! Lorch et al., arXiv:2601.15341): direct causal effects, gene modules and
//! graphs from any perturbable drift — a simulator's true drift or a trained
//! LCD model — plus a direction-aware estimator, causal metrics, the
//! implication test on screen data ([`implication`]) and heat maps ([`plot`]).
//!
//! Orientation convention everywhere: `a_causal[[i, j]]` is the effect of
//! gene `i` on gene `j` (the transpose of the drift Jacobian `∂f_j/∂x_i`).
pub mod drift;
pub mod error;
pub mod estimate;
pub mod export;
pub mod implication;
pub mod into;
pub mod lcd_drift;
pub mod metrics;
pub mod modules;
pub mod plot;
pub mod report;
pub mod stats;
pub mod truth;

pub use drift::{LinearDrift, NonlinearDrift, PerturbableDrift, Targets};
pub use error::{CliprError, Result};
pub use estimate::{
    direction_aware, estimate, published, responses, Effects, EstimatorKind, Responses,
};
pub use implication::{de_tests, implication, ImplicationOptions, ImplicationReport};
pub use metrics::{causal_metrics, CausalMetrics, MetricOptions};
pub use modules::{gene_modules, ModuleOptions, Modules};
pub use plot::plot_clipr;
