//! Verifier-based flow expansion: Flow Expander and ActFlow.
//!
//! Implements `design/expand.md`: De Santi, Protopapas, Hsieh, Krause,
//! "Verifier-Constrained Flow Expansion for Discovery Beyond the Data"
//! (ICLR 2026, arXiv:2602.15984) — Flow Expander ([`fe`]); De Santi et al.,
//! "Active Flow Expansion for Out-of-Distribution Discovery" (arXiv:2606.08802)
//! — ActFlow and the Rec-NF / Rec-F baselines ([`actflow`]); adjoint matching
//! (Domingo-Enrich et al. 2024, arXiv:2409.08861) as the fine-tuning engine
//! ([`adjoint`]).
//!
//! Everything is generic over the [`flow::Flow`] / [`flow::TrainableFlow`]
//! traits (batched velocity `v(x, t)` on `[batch, event…]` tensors; t = 0 noise,
//! t = 1 data) and the [`verifier::Verifier`] trait, so a Morph model plugs in
//! by implementing them. [`mlp`] is a small flow-matching MLP, [`toy`] the
//! illustrative 2-D tasks (`ring`, `boxes`), [`metrics`] validity, Vendi,
//! coverage and Kabsch-RMSD diversity. [`molecular`] plugs trained Morph
//! models in: conformer flows for Flow Expander, graph-level ActFlow, and the
//! adapter from `molecules`' verifiers.
pub mod actflow;
pub mod adjoint;
pub mod fe;
pub mod flow;
pub mod guard;
pub mod metrics;
pub mod mlp;
pub mod molecular;
pub mod plot;
pub mod toy;
pub mod verifier;

use std::path::PathBuf;

/// Errors of the expansion module (kept separate from Morph's error enum).
#[derive(Debug, thiserror::Error)]
pub enum ExpandError {
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("invalid {config}.{field} = {value}: expected {expected}")]
    Config {
        config: &'static str,
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        what: String,
        expected: String,
        got: String,
    },
    #[error("{what}: {reason}")]
    Data { what: String, reason: String },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("drawing {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, ExpandError>;

/// Shorthand for a config-range error.
pub(crate) fn bad_config(
    config: &'static str,
    field: &'static str,
    value: impl std::fmt::Display,
    expected: &'static str,
) -> ExpandError {
    ExpandError::Config {
        config,
        field,
        value: value.to_string(),
        expected,
    }
}
