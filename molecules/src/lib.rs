//! molecules: the chemistry core of cellmol.
//!
//! - [`Molecule`] / [`ConformerSet`]: atoms, charges, isotopes, positions
//!   `[n_atoms, 3]` (Å), a petgraph bond graph with [`BondOrder`] weights,
//!   ordered data fields, title.
//! - [`sdf`]: SDF/MOL V2000 + V3000 reader (streaming [`SdfReader`] and
//!   parallel [`read_sdf_path`]) and writer ([`write_sdf`]); [`xyz`]: XYZ.
//! - [`qm9`]: qm9pack CSV importer with fixed-seed splits.
//! - [`bonds`]: EDM bond inference from 3D (spatial grid).
//! - [`stability`], [`metrics`]: EDM / model-bond stability, validity,
//!   uniqueness, novelty, distribution distances.
//! - [`chem`] (feature `rdkit`): RDKit sanitisation and canonical SMILES.
//! - [`plain`]: RDKit-free validity and SMILES class keys for plain (neutral,
//!   organic-element) molecules; `compute_metrics` asks RDKit only where these
//!   cannot decide.
//! - [`verify`]: the [`Verifier`] trait and its implementations.
//!
//! See `design/molecules.md` for the protocols these implement.
pub mod bonds;
#[cfg(feature = "rdkit")]
pub mod chem;
pub mod element;
pub mod error;
pub mod io;
pub mod metrics;
pub mod molecule;
pub mod plain;
pub mod qm9;
pub mod sdf;
#[cfg(feature = "rdkit")]
mod smiles_write;
pub mod stability;
pub mod verify;
pub mod xyz;

pub use element::Element;
pub use error::{MolError, Result};
pub use io::{read_molecules_path, write_molecules_path};
pub use metrics::{compute_metrics, MetricsReport, Protocol};
pub use molecule::{BondOrder, BondStereo, ConformerSet, Molecule};
pub use sdf::{
    read_sdf_path, read_sdf_path_with, write_sdf, write_sdf_path, SdfBatch, SdfReadOptions,
    SdfReader,
};
pub use verify::Verifier;
pub use xyz::{read_xyz_path, write_xyz, write_xyz_path};
