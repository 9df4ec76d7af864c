//! Linear SDE screen (design/lcd.md, "Simulator").
//!
//! `W_ij ~ ±U(1, 3)` on the edges of a random graph (i → j), stabilised as
//! `W ← W − (max Re λ(W) + 0.5) I`; drift matrix `A = Wᵀ`, bias `b ~ U(−3, 3)`,
//! and a perturbation of gene j adds `c_j = ±U(5, 15)` to gene j's rate only.
//! The SDE `dx = (A x + b + c_q) dt + dW` has the stationary law
//! `N(−A⁻¹(b + c_q), Σ)` with `A Σ + Σ Aᵀ + I = 0` (Lyapunov, solved exactly in
//! `lyapunov.rs`); cells are drawn from it directly, `x = μ_q + L z`,
//! `Σ = L Lᵀ` (Cholesky), `z ~ N(0, I)`.
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use ndarray_linalg::{Cholesky, Eig, Factorize, Solve, UPLO};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::graph::{random_weights, signed_uniform, GraphKind};
use super::lyapunov::{with_big_stack, LyapunovSolver};
use super::system::Drift;
use crate::error::{DatasetsError, Result};

/// `f(x) = A x + b`, perturbation shifts `c_j`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearSystem {
    /// Drift matrix `A = Wᵀ`: `a[[j, i]]` is the effect of gene i on gene j's rate. `[d, d]`
    pub a: Array2<f64>,
    /// Bias `b`. `[d]`
    pub b: Array1<f64>,
    /// Perturbation shift `c_j` of every gene. `[d]`
    pub shifts: Array1<f64>,
}

fn linalg(what: &str, e: impl std::fmt::Display) -> DatasetsError {
    DatasetsError::InvalidConfig {
        param: "linear system".into(),
        message: format!("{what} failed: {e}"),
    }
}

impl LinearSystem {
    /// Draw a random stable system (graph, weights, stabilisation, b, shifts).
    pub fn random(
        d: usize,
        graph: GraphKind,
        degree: f64,
        bias: f64,
        shift: (f64, f64),
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let w = random_weights(graph, d, degree, 1.0, 3.0, rng);
        let lam = with_big_stack(|| w.eig())
            .map_err(|e| linalg("eigenvalues of W", e))?
            .0;
        let max_re = lam.iter().map(|l| l.re).fold(f64::NEG_INFINITY, f64::max);
        let w = &w - &(Array2::<f64>::eye(d) * (max_re + 0.5));
        let b = Array1::from_shape_fn(d, |_| rng.random_range(-bias..bias));
        let shifts = Array1::from_shape_fn(d, |_| signed_uniform(rng, shift.0, shift.1));
        Ok(Self {
            a: w.reversed_axes(),
            b,
            shifts,
        })
    }

    /// `W = Aᵀ`, entry [i, j] = effect of gene i on gene j.
    pub fn w(&self) -> Array2<f64> {
        self.a.t().to_owned()
    }

    /// Stationary mean `−A⁻¹(b + c_q)`.
    pub fn stationary_mean(&self, targets: &[usize]) -> Result<Array1<f64>> {
        self.fixed_point(targets)
    }

    /// Stationary covariance Σ (`A Σ + Σ Aᵀ + I = 0`) and the Frobenius norm
    /// of the residual actually achieved.
    pub fn stationary_covariance(&self) -> Result<(Array2<f64>, f64)> {
        let solver = LyapunovSolver::new(&self.a)?;
        Ok(solver.solve(&Array2::eye(self.a.nrows())))
    }

    /// `n` cells `[n, d]` from `N(mean, L Lᵀ)`, `chol` = lower Cholesky factor.
    pub fn sample(
        mean: ArrayView1<f64>,
        chol: &Array2<f64>,
        n: usize,
        rng: &mut ChaCha8Rng,
    ) -> Array2<f64> {
        let d = mean.len();
        let z = Array2::from_shape_fn((n, d), |_| rng.sample::<f64, _>(StandardNormal)); // [n, d]
        z.dot(&chol.t()) + mean
    }

    /// Stationary means `−A⁻¹(b + c_q)` of many conditions with one LU
    /// factorisation of `A`.
    pub fn stationary_means(&self, conditions: &[&[usize]]) -> Result<Vec<Array1<f64>>> {
        let lu = with_big_stack(|| self.a.factorize()).map_err(|e| linalg("LU of A", e))?;
        conditions
            .iter()
            .map(|t| {
                let rhs = -(&self.b + &self.shift_vector(t)?);
                lu.solve(&rhs)
                    .map_err(|e| linalg("solving A x = −(b + c)", e))
            })
            .collect()
    }

    /// Lower Cholesky factor of Σ.
    pub fn cholesky(sigma: &Array2<f64>) -> Result<Array2<f64>> {
        with_big_stack(|| sigma.cholesky(UPLO::Lower)).map_err(|e| linalg("Cholesky of Σ", e))
    }
}

impl Drift for LinearSystem {
    fn n_genes(&self) -> usize {
        self.b.len()
    }
    fn shifts(&self) -> &Array1<f64> {
        &self.shifts
    }
    fn base_drift(&self, x: ArrayView2<f64>) -> Array2<f64> {
        x.dot(&self.a.t()) + &self.b // [n, d]
    }
    fn jacobian(&self, _x: ArrayView1<f64>) -> Array2<f64> {
        self.a.clone()
    }
    fn fixed_point(&self, targets: &[usize]) -> Result<Array1<f64>> {
        let rhs = -(&self.b + &self.shift_vector(targets)?);
        with_big_stack(|| self.a.solve(&rhs)).map_err(|e| linalg("solving A x = −(b + c)", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sys(d: usize, seed: u64) -> LinearSystem {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        LinearSystem::random(
            d,
            GraphKind::Er,
            10.0_f64.min(d as f64 - 1.0),
            3.0,
            (5.0, 15.0),
            &mut rng,
        )
        .expect("system")
    }

    #[test]
    fn stabilised_and_fixed_point_zero_drift() {
        let s = sys(40, 3);
        let lam = s.a.eig().expect("eig").0;
        let max_re = lam.iter().map(|l| l.re).fold(f64::NEG_INFINITY, f64::max);
        assert!((max_re + 0.5).abs() < 1e-8, "max Re λ(A) = {max_re}");
        let x = s.fixed_point(&[2, 7]).expect("fp");
        let f = s
            .drift(x.view().insert_axis(ndarray::Axis(0)), &[2, 7])
            .expect("drift");
        assert!(f.iter().all(|v| v.abs() < 1e-9));
        let c = s.shift_vector(&[2, 7]).expect("c");
        assert_eq!(c.iter().filter(|v| **v != 0.0).count(), 2);
        assert!((5.0..15.0).contains(&c[2].abs()));
    }

    #[test]
    fn euler_maruyama_matches_lyapunov_covariance() {
        // Long EM run of dx = A(x − μ)dt + dW vs the exact Σ.
        let d = 6;
        let s = sys(d, 11);
        let (sigma, res) = s.stationary_covariance().expect("lyap");
        assert!(res < 1e-10);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let n_chains = 2000;
        let dt = 0.002;
        let mut x = Array2::<f64>::zeros((n_chains, d)); // deviations from the mean, [n, d]
        let steps = (4.0 / (0.5 * dt)) as usize; // several relaxation times of the slowest mode
        for _ in 0..steps {
            let noise =
                Array2::from_shape_fn((n_chains, d), |_| rng.sample::<f64, _>(StandardNormal));
            x = &x + &(x.dot(&s.a.t()) * dt) + &(noise * dt.sqrt());
        }
        let emp = x.t().dot(&x) / n_chains as f64;
        let scale = sigma.diag().iter().cloned().fold(0.0, f64::max);
        let err = (&emp - &sigma).iter().map(|v| v.abs()).fold(0.0, f64::max);
        assert!(err < 0.15 * scale, "max |Σ_em − Σ| = {err}, scale {scale}");
    }

    #[test]
    fn jacobian_matches_finite_differences() {
        let s = sys(10, 4);
        let x = Array1::from_shape_fn(10, |i| i as f64 * 0.1);
        let fd = super::super::system::testutil::fd_jacobian(&s, x.view(), 1e-5);
        let err = (&fd - &s.jacobian(x.view()))
            .iter()
            .map(|v| v.abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-7);
        assert_eq!(s.true_effects().expect("te"), s.w());
    }
}
