//! The common interface of the simulators' true dynamical systems.
//!
//! A screen condition q perturbs a set of target genes S_q; its drift is
//! `f_q(x) = f(x) + c_q` with `c_q = Σ_{j ∈ S_q} shift_j e_j` (a shift of the
//! perturbed gene's own rate only, design/lcd.md). States are rows:
//! `x: [n_states, d]`.
//!
//! Orientation of `jacobian`: `J[[j, i]] = ∂f_j / ∂x_i` (row = target gene,
//! like the drift matrix `A`). Orientation of `true_effects`: entry `[i, j]`
//! is the direct effect of gene i on gene j, i.e. `Jᵀ` (CLIPR's `a_causal`).
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::error::{DatasetsError, Result};

/// A perturbable drift with a known truth.
pub trait Drift {
    /// Number of genes d.
    fn n_genes(&self) -> usize;
    /// Per-gene perturbation shift `c_j` (length d).
    fn shifts(&self) -> &Array1<f64>;
    /// Drift without perturbation: `[n, d] → [n, d]`.
    fn base_drift(&self, x: ArrayView2<f64>) -> Array2<f64>;
    /// Jacobian `∂f/∂x` at one state (row = target): `[d, d]`.
    fn jacobian(&self, x: ArrayView1<f64>) -> Array2<f64>;
    /// Stationary point of the noise-free perturbed dynamics `f_q(x*) = 0`.
    fn fixed_point(&self, targets: &[usize]) -> Result<Array1<f64>>;

    /// Shift vector `c_q` of a target set (errors on an index ≥ d).
    fn shift_vector(&self, targets: &[usize]) -> Result<Array1<f64>> {
        let d = self.n_genes();
        let mut c = Array1::zeros(d);
        for &t in targets {
            if t >= d {
                return Err(DatasetsError::InvalidConfig {
                    param: "targets".into(),
                    message: format!("gene index {t} out of range for d = {d}"),
                });
            }
            c[t] += self.shifts()[t];
        }
        Ok(c)
    }

    /// Perturbed drift `f_q(x) = f(x) + c_q`: `[n, d] → [n, d]`.
    fn drift(&self, x: ArrayView2<f64>, targets: &[usize]) -> Result<Array2<f64>> {
        let c = self.shift_vector(targets)?;
        Ok(self.base_drift(x) + &c)
    }

    /// Direct effects, entry [i, j] = effect of gene i on gene j: the
    /// transposed Jacobian at the control fixed point.
    fn true_effects(&self) -> Result<Array2<f64>> {
        let x0 = self.fixed_point(&[])?;
        Ok(self.jacobian(x0.view()).reversed_axes())
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// Central finite-difference Jacobian (row = output).
    pub fn fd_jacobian(sys: &dyn Drift, x: ArrayView1<f64>, h: f64) -> Array2<f64> {
        let d = sys.n_genes();
        let mut j = Array2::zeros((d, d));
        for i in 0..d {
            let mut xp = x.to_owned();
            let mut xm = x.to_owned();
            xp[i] += h;
            xm[i] -= h;
            let fp = sys.base_drift(xp.view().insert_axis(ndarray::Axis(0)));
            let fm = sys.base_drift(xm.view().insert_axis(ndarray::Axis(0)));
            let col = (&fp.row(0) - &fm.row(0)) / (2.0 * h);
            j.column_mut(i).assign(&col);
        }
        j
    }
}
