//! Continuous Lyapunov equation `A Σ + Σ Aᵀ + Q = 0` for a stable `A`.
//!
//! Solver: the matrix sign-function iteration (Roberts 1980, Int. J. Control
//! 32:677; Benner & Quintana-Ortí 1999, Numer. Algorithms 20:75), a direct
//! method like Bartels–Stewart (Bartels & Stewart 1972) that needs only LU
//! inversions and products, and — unlike a diagonalisation `A = V Λ V⁻¹` —
//! is exact for *defective* drift matrices. Those are the rule here, not the
//! exception: a stabilised W whose graph has acyclic parts has repeated
//! eigenvalues `−0.5` with Jordan blocks (a DAG gives `A = N − 0.5 I`, N
//! nilpotent), where an eigenbasis does not exist.
//!
//! With `A₀ = A`, `Q₀ = Q` and the norm scaling `c_k = √(‖A_k⁻¹‖_F / ‖A_k‖_F)`:
//! `A_{k+1} = (c_k A_k + A_k⁻¹ / c_k) / 2`,
//! `Q_{k+1} = (c_k Q_k + A_k⁻¹ Q_k A_k⁻ᵀ / c_k) / 2`;
//! `A_k → sign(A) = −I` quadratically and `Q_k → 2Σ`. The sequence
//! `(A_k⁻¹, c_k)` does not depend on `Q`, so it is kept and reused for
//! iterative refinement on the exact residual `R = A Σ + Σ Aᵀ + Q`
//! (solve `A Δ + Δ Aᵀ + R = 0`, `Σ ← Σ + Δ`) until ‖R‖_F stops improving.
//! Cost: ~10–20 inversions plus two products per step.
use ndarray::Array2;
use ndarray_linalg::Inverse;

use crate::error::{DatasetsError, Result};

/// Run `f` on a thread with a 256 MiB stack. OpenBLAS's threaded LU
/// (`?getrf_parallel`) needs far more stack than the 2 MiB of Rust's test
/// and rayon threads and crashes there (SIGSEGV); every LAPACK
/// factorisation in the simulators goes through this.
pub fn with_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        match std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn_scoped(s, f)
        {
            Ok(h) => match h.join() {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            },
            Err(e) => panic!("could not spawn a thread for LAPACK: {e}"),
        }
    })
}

/// The sign-function sequence of a stable `A`, reusable for any `Q`.
pub struct LyapunovSolver {
    a: Array2<f64>,
    /// `(A_k⁻¹, c_k)` for every step.
    steps: Vec<(Array2<f64>, f64)>,
}

fn err(message: String) -> DatasetsError {
    DatasetsError::InvalidConfig {
        param: "drift matrix".into(),
        message,
    }
}

impl LyapunovSolver {
    /// Run the sign iteration on `A`; errors if `A` is singular or not stable.
    pub fn new(a: &Array2<f64>) -> Result<Self> {
        with_big_stack(|| Self::new_inner(a))
    }

    fn new_inner(a: &Array2<f64>) -> Result<Self> {
        let d = a.nrows();
        let eye = Array2::<f64>::eye(d);
        let mut ak = a.clone();
        let mut steps = Vec::new();
        let mut converged_at = None;
        for k in 0..100 {
            let inv = ak
                .inv()
                .map_err(|e| err(format!("inverting A_{k} in the sign iteration failed: {e}")))?;
            let dist = frobenius(&(&ak + &eye));
            // Scale only far from convergence; unscaled steps are quadratic near −I.
            let c = if dist > 1e-2 {
                (frobenius(&inv) / frobenius(&ak)).sqrt()
            } else {
                1.0
            };
            let next = (&ak * c + &inv / c) * 0.5;
            let change = frobenius(&(&next - &ak));
            steps.push((inv, c));
            ak = next;
            if let Some(k0) = converged_at {
                if k > k0 {
                    break;
                }
            } else if change <= 1e-13 * (d as f64).sqrt()
                || frobenius(&(&ak + &eye)) <= 1e-12 * (d as f64).sqrt()
            {
                converged_at = Some(k); // one more step for full accuracy
            }
        }
        let dist = frobenius(&(&ak + &eye)) / (d as f64).sqrt();
        if dist.is_nan() || dist >= 1e-6 {
            return Err(err(format!(
                "not stable: sign(A) ≠ −I (rms distance {dist:.3e}); some eigenvalue has Re ≥ 0, so the Lyapunov equation has no PSD solution"
            )));
        }
        Ok(Self {
            a: a.clone(),
            steps,
        })
    }

    /// One pass of the sign-function solve for `Q`.
    fn apply(&self, q: &Array2<f64>) -> Array2<f64> {
        let mut qk = q.clone();
        for (inv, c) in &self.steps {
            let t = inv.dot(&qk).dot(&inv.t()); // A_k⁻¹ Q_k A_k⁻ᵀ
            qk = (&qk * *c + &t / *c) * 0.5;
        }
        let s = qk * 0.5;
        (&s + &s.t()) * 0.5
    }

    /// Residual `A Σ + Σ Aᵀ + Q`.
    pub fn residual(&self, sigma: &Array2<f64>, q: &Array2<f64>) -> Array2<f64> {
        let a_s = self.a.dot(sigma);
        &a_s + &a_s.t() + q
    }

    /// Solve `A Σ + Σ Aᵀ + Q = 0` for symmetric `Q`; returns (Σ, ‖residual‖_F).
    pub fn solve(&self, q: &Array2<f64>) -> (Array2<f64>, f64) {
        let mut sigma = self.apply(q);
        let mut norm = frobenius(&self.residual(&sigma, q));
        for _ in 0..5 {
            let r = self.residual(&sigma, q);
            let cand = &sigma + &self.apply(&r);
            let n2 = frobenius(&self.residual(&cand, q));
            if n2 >= norm {
                break;
            }
            sigma = cand;
            norm = n2;
        }
        (sigma, norm)
    }
}

/// Frobenius norm.
pub fn frobenius(m: &Array2<f64>) -> f64 {
    m.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Solve `A Σ + Σ Aᵀ + I = 0` (the stationary covariance of `dx = A x dt + dW`).
pub fn solve_lyapunov_identity(a: &Array2<f64>) -> Result<(Array2<f64>, f64)> {
    let solver = LyapunovSolver::new(a)?;
    Ok(solver.solve(&Array2::eye(a.nrows())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::graph::{random_weights, GraphKind};
    use ndarray_linalg::{Cholesky, Eig};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn stable(kind: GraphKind, d: usize, degree: f64, seed: u64) -> Array2<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = random_weights(kind, d, degree, 1.0, 3.0, &mut rng);
        let lam = with_big_stack(|| w.eig()).expect("eig").0;
        let shift = lam.iter().map(|l| l.re).fold(f64::MIN, f64::max) + 0.5;
        (&w - &(Array2::<f64>::eye(d) * shift)).t().to_owned()
    }

    #[test]
    fn residual_tiny_for_random_drifts() {
        for (kind, d, deg, seed) in [
            (GraphKind::Er, 5, 2.0, 1),
            (GraphKind::Er, 50, 10.0, 2),
            (GraphKind::Er, 200, 10.0, 3),
            (GraphKind::Sf, 60, 2.0, 4),
        ] {
            let a = stable(kind, d, deg, seed);
            let (sigma, res) = solve_lyapunov_identity(&a).expect("solve");
            assert!(res <= 1e-8, "{kind:?} d={d}: residual {res}");
            assert!(
                with_big_stack(|| sigma.cholesky(ndarray_linalg::UPLO::Lower)).is_ok(),
                "Σ not positive definite"
            );
        }
    }

    #[test]
    fn closed_forms_including_a_jordan_block() {
        // a = −k: Σ = 1/(2k).
        let a = Array2::from_diag(&ndarray::arr1(&[-1.0, -2.0, -0.5]));
        let (s, _) = solve_lyapunov_identity(&a).expect("solve");
        for (i, k) in [1.0, 2.0, 0.5].iter().enumerate() {
            assert!((s[[i, i]] - 0.5 / k).abs() < 1e-14);
        }
        // Defective A = [[−1, 1], [0, −1]]: Σ = [[3/4, 1/4], [1/4, 1/2]] by hand.
        let a = ndarray::arr2(&[[-1.0, 1.0], [0.0, -1.0]]);
        let (s, res) = solve_lyapunov_identity(&a).expect("solve");
        assert!(res < 1e-13);
        let want = ndarray::arr2(&[[0.75, 0.25], [0.25, 0.5]]);
        assert!((&s - &want).iter().all(|v| v.abs() < 1e-14), "{s}");
        // A DAG: strictly lower-triangular W shifted by −0.5 (all eigenvalues equal).
        let a = stable(GraphKind::Er, 40, 3.0, 9);
        let dag = Array2::from_shape_fn((40, 40), |(i, j)| {
            if i > j {
                a[[i, j]]
            } else if i == j {
                -0.5
            } else {
                0.0
            }
        });
        let (_, res) = solve_lyapunov_identity(&dag).expect("solve");
        assert!(res < 1e-8, "DAG residual {res}");
    }

    #[test]
    fn unstable_is_an_error() {
        let a = ndarray::arr2(&[[0.1, 0.0], [0.0, -1.0]]);
        let e = solve_lyapunov_identity(&a)
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("not stable"), "{e}");
    }
}
