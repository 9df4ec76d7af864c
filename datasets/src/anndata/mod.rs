//! AnnData in memory and on disk (`.h5ad`).
//!
//! - [`read_h5ad`] / [`write_h5ad`]: whole-file I/O for every element type of
//!   the anndata on-disk format (modern encodings and the legacy layout).
//! - [`H5adReader`]: backed access; reads `obs`/`var` and selected rows /
//!   columns of `X` or a layer without loading the whole matrix, and iterates
//!   over row chunks; [`H5adReader::open_lazy`] leaves the obs names on disk
//!   until they are asked for, and [`LazyObs::names_of`] reads only the
//!   selected cells' names.
mod backed;
mod direct;
mod h5util;
mod legacy;
mod ops;
mod read;
mod sparse;
mod types;
mod vlen;
mod write;

pub use backed::{BackedObs, ChunkIter, H5adReader, LazyObs};
pub use read::read_h5ad;
pub use types::*;
pub use write::write_h5ad;
