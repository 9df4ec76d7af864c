//! Nonlinear SDE screen with saturating regulation.
//!
//! Drift `f_q(x) = −x + W·tanh(x) + b + c_q`, diffusion `dx = f_q dt + dW`.
//! Orientation: `w[[j, i]]` is the weight of regulator i in target j's rate
//! (row = target, like the linear drift matrix `A`). The graph and the raw
//! weights `±U(1, 3)` are drawn as for the linear screen and then scaled so
//! that the spectral norm ‖W‖₂ equals `contraction` < 1: since
//! `|tanh′| ≤ 1`, `x ↦ W tanh(x) + b + c` is then a contraction, the drift
//! has exactly one fixed point per condition, and its Jacobian
//! `J = −I + W diag(sech²(x))` has log-norm ≤ −(1 − contraction) < 0
//! everywhere (globally stable dynamics).
//!
//! Genetic interactions: a perturbation shift `c_j = ±U(5, 15)` drives gene j
//! into saturation, where its influence on its targets is bounded by `|W|`
//! and its sensitivity to its regulators vanishes (`sech² → 0`), so the
//! effect of a double is not the sum of its singles.
//!
//! Sampling: every cell is an independent Euler–Maruyama chain started at the
//! condition's fixed point and run for `burn_in` time units with step `dt`;
//! all chains of one condition advance as one `[d, n_cells]` array, the
//! sparse `W` applied edge by edge to whole rows.
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Zip};
use ndarray_linalg::Solve;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::graph::{random_weights, signed_uniform, GraphKind};
use super::system::Drift;
use crate::error::{DatasetsError, Result};

/// `f(x) = −x + W tanh(x) + b`, perturbation shifts `c_j`.
#[derive(Debug, Clone)]
pub struct NonlinearSystem {
    /// Interaction matrix, row = target, column = regulator. `[d, d]`
    pub w: Array2<f64>,
    /// Bias. `[d]`
    pub b: Array1<f64>,
    /// Perturbation shift `c_j` of every gene. `[d]`
    pub shifts: Array1<f64>,
    /// Non-zero entries of `w` as (target, regulator, weight).
    edges: Vec<(usize, usize, f64)>,
}

impl PartialEq for NonlinearSystem {
    fn eq(&self, o: &Self) -> bool {
        self.w == o.w && self.b == o.b && self.shifts == o.shifts
    }
}

/// Largest singular value of `w` by power iteration on `wᵀw`.
pub fn spectral_norm(w: &Array2<f64>) -> f64 {
    let d = w.ncols();
    if d == 0 {
        return 0.0;
    }
    let mut v = Array1::from_elem(d, 1.0 / (d as f64).sqrt());
    let mut sigma = 0.0;
    for _ in 0..500 {
        let u = w.t().dot(&w.dot(&v));
        let n = u.dot(&u).sqrt();
        if n == 0.0 {
            return 0.0;
        }
        let s_new = n.sqrt();
        v = u / n;
        if (s_new - sigma).abs() <= 1e-12 * s_new {
            return s_new;
        }
        sigma = s_new;
    }
    sigma
}

impl NonlinearSystem {
    /// Build from parts (`w` row = target).
    pub fn new(w: Array2<f64>, b: Array1<f64>, shifts: Array1<f64>) -> Self {
        let edges = w.indexed_iter().filter(|(_, &v)| v != 0.0).map(|((j, i), &v)| (j, i, v)).collect();
        Self { w, b, shifts, edges }
    }

    /// Draw a random contractive system.
    pub fn random(d: usize, graph: GraphKind, degree: f64, bias: f64, shift: (f64, f64), contraction: f64, rng: &mut ChaCha8Rng) -> Self {
        let raw = random_weights(graph, d, degree, 1.0, 3.0, rng).reversed_axes(); // row = target
        let norm = spectral_norm(&raw);
        let w = if norm > 0.0 { raw * (contraction / norm) } else { raw };
        let b = Array1::from_shape_fn(d, |_| rng.random_range(-bias..bias));
        let shifts = Array1::from_shape_fn(d, |_| signed_uniform(rng, shift.0, shift.1));
        Self::new(w, b, shifts)
    }

    /// `W tanh(x)` for gene-major states: `t = tanh(s)`, `[d, n] → [d, n]`.
    fn regulate(&self, t: &Array2<f64>) -> Array2<f64> {
        let mut out = Array2::zeros(t.raw_dim());
        for &(j, i, v) in &self.edges {
            let src = t.row(i);
            out.row_mut(j).scaled_add(v, &src);
        }
        out
    }

    /// Sample `n` cells `[n, d]` of condition `targets` by Euler–Maruyama.
    pub fn sample(&self, targets: &[usize], n: usize, dt: f64, burn_in: f64, rng: &mut ChaCha8Rng) -> Result<Array2<f64>> {
        let x0 = self.fixed_point(targets)?;
        let rate = &self.b + &self.shift_vector(targets)?; // [d]
        let d = x0.len();
        let mut s = Array2::from_shape_fn((d, n), |(g, _)| x0[g]); // [d, n]
        let steps = (burn_in / dt).ceil() as usize;
        let sq = dt.sqrt();
        let rate_col = rate.insert_axis(Axis(1)); // [d, 1]
        for _ in 0..steps {
            let t = s.mapv(f64::tanh);
            let reg = self.regulate(&t);
            let noise = Array2::from_shape_fn((d, n), |_| rng.sample::<f64, _>(StandardNormal));
            Zip::from(&mut s).and(&reg).and_broadcast(&rate_col).and(&noise).for_each(|x, &r, &c, &z| {
                *x += dt * (-*x + r + c) + sq * z;
            });
        }
        Ok(s.reversed_axes().as_standard_layout().to_owned())
    }
}

impl Drift for NonlinearSystem {
    fn n_genes(&self) -> usize {
        self.b.len()
    }
    fn shifts(&self) -> &Array1<f64> {
        &self.shifts
    }
    fn base_drift(&self, x: ArrayView2<f64>) -> Array2<f64> {
        let t = x.mapv(f64::tanh); // [n, d]
        t.dot(&self.w.t()) - x + &self.b
    }
    fn jacobian(&self, x: ArrayView1<f64>) -> Array2<f64> {
        let sech2 = x.mapv(|v| 1.0 - v.tanh().powi(2));
        let mut j = &self.w * &sech2.insert_axis(Axis(0)); // scale column i by sech²(x_i)
        j.diag_mut().mapv_inplace(|v| v - 1.0);
        j
    }
    /// Fixed-point iteration `x ← W tanh(x) + b + c` (a contraction when
    /// ‖W‖₂ < 1), then Newton steps to machine precision.
    fn fixed_point(&self, targets: &[usize]) -> Result<Array1<f64>> {
        let rate = &self.b + &self.shift_vector(targets)?;
        let mut x = rate.clone();
        for _ in 0..10_000 {
            let t = x.mapv(f64::tanh).insert_axis(Axis(1));
            let next = self.regulate(&t.to_owned()).remove_axis(Axis(1)) + &rate;
            let delta = (&next - &x).iter().map(|v| v.abs()).fold(0.0, f64::max);
            x = next;
            if delta < 1e-10 {
                break;
            }
        }
        for _ in 0..3 {
            let f = self.w.dot(&x.mapv(f64::tanh)) - &x + &rate;
            let res = f.iter().map(|v| v.abs()).fold(0.0, f64::max);
            if res < 1e-13 {
                break;
            }
            let step = self.jacobian(x.view()).solve(&f).map_err(|e| DatasetsError::InvalidConfig {
                param: "nonlinear system".into(),
                message: format!("Newton step at the fixed point failed: {e}"),
            })?;
            x = &x - &step;
        }
        let f = self.w.dot(&x.mapv(f64::tanh)) - &x + &rate;
        let res = f.iter().map(|v| v.abs()).fold(0.0, f64::max);
        if !(res < 1e-6) {
            return Err(DatasetsError::InvalidConfig {
                param: "nonlinear system".into(),
                message: format!("no fixed point found (max |f| = {res:.3e}); is ‖W‖₂ < 1?"),
            });
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sys(d: usize, seed: u64) -> NonlinearSystem {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        NonlinearSystem::random(d, GraphKind::Er, 10.0_f64.min(d as f64 - 1.0), 1.0, (5.0, 15.0), 0.9, &mut rng)
    }

    #[test]
    fn contraction_and_fixed_point() {
        let s = sys(60, 1);
        assert!((spectral_norm(&s.w) - 0.9).abs() < 1e-8);
        for t in [vec![], vec![3], vec![3, 17]] {
            let x = s.fixed_point(&t).expect("fp");
            let f = s.drift(x.view().insert_axis(Axis(0)), &t).expect("drift");
            assert!(f.iter().all(|v| v.abs() < 1e-12), "targets {t:?}");
        }
    }

    #[test]
    fn jacobian_matches_finite_differences() {
        let s = sys(15, 2);
        let x = Array1::from_shape_fn(15, |i| (i as f64 - 7.0) * 0.3);
        let fd = super::super::system::testutil::fd_jacobian(&s, x.view(), 1e-5);
        let err = (&fd - &s.jacobian(x.view())).iter().map(|v| v.abs()).fold(0.0, f64::max);
        assert!(err < 1e-8, "max |J_fd − J| = {err}");
        let te = s.true_effects().expect("te");
        let x0 = s.fixed_point(&[]).expect("fp");
        assert_eq!(te, s.jacobian(x0.view()).t().to_owned());
    }

    #[test]
    fn sampler_mean_near_fixed_point_for_small_noise_effect() {
        // With d = 1 and w = 0 the SDE is an OU process: mean b + c, var 1/2.
        let s = NonlinearSystem::new(Array2::zeros((1, 1)), ndarray::arr1(&[0.7]), ndarray::arr1(&[2.0]));
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let x = s.sample(&[0], 4000, 0.01, 8.0, &mut rng).expect("sample");
        let m = x.mean().unwrap_or(0.0);
        let v = x.var(0.0);
        assert!((m - 2.7).abs() < 0.04, "mean {m}");
        assert!((v - 0.5 / (1.0 - 0.005)).abs() < 0.05, "var {v}");
    }
}
