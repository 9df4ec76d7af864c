//! morph: flexible-size E(3)-equivariant molecule generation by flow matching
//! with atom insertion and deletion (Franke et al., "Generative Molecular
//! Morphing for Flexible-Size Design via Unbalanced Optimal Transport",
//! arXiv:2606.07239; `design/morph.md`), and verifier-based flow expansion in
//! [`expand`] (issue 7).
//!
//! Layout: [`config`] (hyper-parameters, schedules), [`assign`] (Hungarian
//! unbalanced OT, Kabsch), [`egnn`] / [`semla`] (backbones, `net.backbone`) +
//! [`model`] (network and heads),
//! [`interpolant`] (training targets), [`loss`], [`train`] (AdamW, EMA,
//! checkpoints), [`sampler`] (rate integrator), [`io`] (model directories).
pub mod assign;
pub mod config;
pub mod egnn;
pub mod error;
pub mod expand;
pub mod fused;
pub mod interpolant;
pub mod io;
pub mod loss;
pub mod model;
pub mod sampler;
pub mod semla;
pub mod train;

pub use config::MorphConfig;
pub use error::{MorphError, Result};
