//! AnnData in memory and on disk (`.h5ad`).
mod types;

pub use types::*;
