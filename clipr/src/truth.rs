//! The simulators' true drifts (`datasets::simulate`) as [`PerturbableDrift`]s,
//! and the ground truth of a simulated screen.
//!
//! A simulated screen (`cellmol simulate screen`) carries
//! `varp["true_effects"]` (entry `[i, j]` = direct effect of gene `i` on gene
//! `j`, CLIPR's orientation) and `uns["simulation"]`, from which the true
//! system is rebuilt ([`datasets::simulate::TrueSystem::from_anndata`]).
use std::path::Path;

use datasets::anndata::{AnnData, Column, DenseArray, Matrix};
use datasets::simulate::{Drift, TrueSystem};
use ndarray::{Array2, ArrayView2, Ix2};
use rayon::prelude::*;

use crate::drift::{PerturbableDrift, Targets};
use crate::error::{CliprError, Result};

/// A simulator's true system with gene names.
pub struct SimulatedDrift<S> {
    pub system: S,
    pub genes: Vec<String>,
    /// Genes that may be perturbed (default: all; for a screen: `var["perturbed"]`).
    pub targets: Vec<usize>,
}

impl<S: Drift> SimulatedDrift<S> {
    pub fn new(system: S, genes: Vec<String>) -> Result<Self> {
        if genes.len() != system.n_genes() {
            return Err(CliprError::Shape {
                context: "SimulatedDrift gene names".into(),
                expected: system.n_genes().to_string(),
                found: genes.len().to_string(),
            });
        }
        let targets = (0..genes.len()).collect();
        Ok(SimulatedDrift {
            system,
            genes,
            targets,
        })
    }
}

impl<S: Drift + Sync> PerturbableDrift for SimulatedDrift<S> {
    fn dim(&self) -> usize {
        self.system.n_genes()
    }
    fn gene_names(&self) -> Vec<String> {
        self.genes.clone()
    }
    fn perturbable(&self) -> Vec<usize> {
        self.targets.clone()
    }
    /// `f(x) + c_q` for every row: one batched `base_drift`, then the shifts.
    fn drift(&self, x: ArrayView2<f64>, perts: &[Targets]) -> Result<Array2<f64>> {
        let d = self.dim();
        if x.ncols() != d || x.nrows() != perts.len() {
            return Err(CliprError::Shape {
                context: "SimulatedDrift::drift".into(),
                expected: format!("[{}, {d}]", perts.len()),
                found: format!("{:?}", x.shape()),
            });
        }
        let mut out = self.system.base_drift(x); // [n, d]
        for (mut row, t) in out.outer_iter_mut().zip(perts) {
            row += &self
                .system
                .shift_vector(t)
                .map_err(|e| CliprError::param("perturbation target", e.to_string()))?;
        }
        Ok(out)
    }
    /// The simulator's exact fixed points (linear solve / contraction + Newton),
    /// one per perturbation, in parallel on large-stack threads (LAPACK).
    fn limit_response(&self, perts: &[Targets]) -> Result<Array2<f64>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .stack_size(64 << 20)
            .build()
            .map_err(|e| CliprError::linalg("thread pool", e))?;
        let rows: Vec<Result<ndarray::Array1<f64>>> = pool.install(|| {
            perts
                .par_iter()
                .map(|t| {
                    self.system
                        .fixed_point(t)
                        .map_err(|e| CliprError::NoConvergence {
                            context: format!("fixed point of {t:?}: {e}"),
                            steps: 0,
                            residual: f64::NAN,
                            tol: 0.0,
                        })
                })
                .collect()
        });
        let mut out = Array2::<f64>::zeros((perts.len(), self.dim()));
        for (r, row) in rows.into_iter().enumerate() {
            out.row_mut(r).assign(&row?);
        }
        Ok(out)
    }
}

/// Ground truth of a simulated screen.
pub struct ScreenTruth {
    /// `varp["true_effects"]`, `[d, d]`, `[i, j]` = effect of gene i on gene j.
    pub effects: Array2<f64>,
    pub genes: Vec<String>,
    /// Genes marked in `var["perturbed"]` (all genes when the column is absent).
    pub perturbed: Vec<usize>,
    /// The true system, when `uns["simulation"]` can rebuild it.
    pub system: Option<TrueSystem>,
}

/// Reads `varp["true_effects"]` (and the true system) from a simulated screen.
pub fn screen_truth(adata: &AnnData, file: &Path) -> Result<ScreenTruth> {
    let genes = adata.var_names().to_vec();
    let d = genes.len();
    let effects = match adata.varp.get("true_effects") {
        Some(Matrix::Dense(a)) => a
            .to_f64()
            .and_then(|a| a.into_dimensionality::<Ix2>().ok())
            .ok_or_else(|| CliprError::Shape {
                context: format!("{}: varp/true_effects", file.display()),
                expected: "a numeric 2-D array".into(),
                found: a.dtype_name().into(),
            })?,
        Some(Matrix::Sparse(_)) => {
            return Err(CliprError::Shape {
                context: format!("{}: varp/true_effects", file.display()),
                expected: "a dense array".into(),
                found: "a sparse matrix".into(),
            })
        }
        None => {
            return Err(CliprError::param(
                "--truth",
                format!(
                    "{}: no varp/true_effects (is it a screen from `cellmol simulate screen`?)",
                    file.display()
                ),
            ))
        }
    };
    if effects.dim() != (d, d) {
        return Err(CliprError::Shape {
            context: format!("{}: varp/true_effects", file.display()),
            expected: format!("[{d}, {d}]"),
            found: format!("{:?}", effects.shape()),
        });
    }
    let perturbed = match adata.var.column("perturbed") {
        Some(Column::Array(DenseArray::Bool(b))) => b
            .iter()
            .enumerate()
            .filter(|(_, &v)| v)
            .map(|(i, _)| i)
            .collect(),
        _ => (0..d).collect(),
    };
    let system = TrueSystem::from_anndata(adata).ok();
    Ok(ScreenTruth {
        effects,
        genes,
        perturbed,
        system,
    })
}
