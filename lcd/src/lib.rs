//! Latent causal diffusion (LCD) for single-cell perturbation screens, after
//! Lorch, Zhang, Bunne, Krause, Schölkopf & Uhler, "Latent causal diffusions
//! for single-cell perturbation modeling" (arXiv:2601.15341). See
//! `shared/design/lcd.md` for the model; this crate implements it with candle
//! on any `Device`.
//!
//! - [`stage1`]: per-environment generators + ZIP measurement model ([`zip`]).
//! - [`stage2`]: score network trained by denoising score matching.
//! - [`sampler`]: annealed Langevin sampling (noisy and noise-free).
//! - [`model`]: the fitted [`LcdModel`], model directories, prediction, and
//!   the drift interface used by CLIPR.
//! - [`baselines`], [`metrics`], [`evaluate`]: the evaluation protocol.
pub mod blas;
pub mod config;
mod cpu_fast;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod fit;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod params;
pub mod rng;
pub mod sampler;
pub mod screen;
pub mod stage1;
pub mod stage2;
pub mod storage;
pub mod synthetic;
pub mod zip;

pub use config::LcdConfig;
pub use error::{LcdError, Result};
pub use model::LcdModel;
