//! datasets: AnnData (.h5ad) I/O, perturbation screens, screen simulators and
//! molecule batches.
pub mod anndata;
pub mod error;
pub mod molbatch;
pub mod screen;
pub mod simd;
pub mod simulate;
pub mod train;

pub use anndata::AnnData;
pub use error::{DatasetsError, Result};
