//! Nonlinear SDE screen with saturating regulation (a firing-rate /
//! Hopfield-type gene network, e.g. Mjolsness et al. 1991, J. Theor. Biol.
//! 152:429).
//!
//! Drift `f_q(x) = −x + tanh(W x + b) + c_q`, diffusion `dx = f_q dt + dW`:
//! each gene's production saturates in its combined regulatory input
//! `u = W x + b`, decays at unit rate, and a perturbation of gene j adds
//! `c_j = ±U(5, 15)` to gene j's rate (outside the saturation, as CRISPRa/i
//! changes the gene's level itself). Orientation: `w[[j, i]]` is the weight
//! of regulator i in target j's input (row = target, like the linear drift
//! matrix `A`). The graph and the raw weights `±U(1, 3)` are drawn as for the
//! linear screen and then scaled so that the spectral norm ‖W‖₂ equals
//! `contraction` < 1: `x ↦ tanh(W x + b) + c` is then a contraction, the
//! drift has exactly one fixed point per condition, and the Jacobian
//! `J = −I + diag(sech²(W x + b)) W` has log-norm ≤ −(1 − contraction) < 0
//! everywhere (globally stable, no oscillation or chaos).
//!
//! Genetic interactions: a perturbed gene moves by ~|c_j| ≈ 10, so its
//! targets' inputs move by `w · c_j` = O(1) and saturate; a target of both
//! genes of a double sees `tanh(u + Δ_a + Δ_b) ≠ tanh(u + Δ_a) + tanh(u + Δ_b)
//! − tanh(u)`, so the additive model of doubles is wrong at first order.
//! (The variant `−x + W tanh(x)` was measured first: under the same
//! contraction its perturbed genes' outputs are capped at |tanh| ≤ 1 and the
//! mean |interaction| of fixed points was ~2e-4, i.e. invisible.)
//!
//! Sampling: every cell is an independent Euler–Maruyama chain started at the
//! condition's fixed point and run for `burn_in` time units with step `dt`;
//! all chains of one condition advance as one `[d, n_cells]` array, the
//! sparse `W` applied edge by edge to whole rows.
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use ndarray_linalg::Solve;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::graph::{random_weights, signed_uniform, GraphKind};
use super::lyapunov::with_big_stack;
use super::system::Drift;
use crate::error::{DatasetsError, Result};

/// `f(x) = −x + tanh(W x + b)`, perturbation shifts `c_j`.
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

/// Largest singular value of `w` by power iteration on `wᵀw`, with the
/// non-zero entries only (gene networks are sparse: ~10 edges per gene, so
/// this is ~100× cheaper than dense products at d = 1000).
pub fn spectral_norm(w: &Array2<f64>) -> f64 {
    let d = w.ncols();
    if d == 0 {
        return 0.0;
    }
    let nz: Vec<(usize, usize, f64)> = w
        .indexed_iter()
        .filter(|(_, &v)| v != 0.0)
        .map(|((r, c), &v)| (r, c, v))
        .collect();
    let mut v = vec![1.0 / (d as f64).sqrt(); d];
    let mut wv = vec![0.0; w.nrows()];
    let mut u = vec![0.0; d];
    let mut sigma = 0.0;
    for _ in 0..500 {
        wv.iter_mut().for_each(|x| *x = 0.0);
        for &(r, c, x) in &nz {
            wv[r] += x * v[c];
        }
        u.iter_mut().for_each(|x| *x = 0.0);
        for &(r, c, x) in &nz {
            u[c] += x * wv[r];
        }
        let n = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n == 0.0 {
            return 0.0;
        }
        let s_new = n.sqrt();
        v.iter_mut().zip(&u).for_each(|(a, &b)| *a = b / n);
        if (s_new - sigma).abs() <= 1e-12 * s_new {
            return s_new;
        }
        sigma = s_new;
    }
    sigma
}

/// `tanh` within a few ulp of the libm one but about twice as fast: for
/// |x| ≥ 0.625 it is `1 − 2 / (e^{2|x|} + 1)` (no cancellation, tanh ≥ 0.55
/// there; `exp` is much cheaper than the `expm1` libm's tanh uses), below
/// that the rational approximation of Cephes' `tanh`. The sampler spent half
/// its time in libm's tanh.
#[inline]
pub(crate) fn tanh(x: f64) -> f64 {
    let a = x.abs();
    if a.is_nan() || a == 0.0 {
        return x;
    }
    if a < 0.625 {
        // Rational approximation x + x·z·P(z)/Q(z), z = x² (Cephes `tanh`).
        let z = x * x;
        let p = (-9.643_991_794_250_522e-1 * z - 9.928_772_310_019_186e1) * z
            - 1.614_687_684_417_084_5e3;
        let q = ((z + 1.128_116_784_916_329_3e2) * z + 2.235_488_390_601_004_5e3) * z
            + 4.844_063_053_251_255e3;
        return x + x * z * p / q;
    }
    let t = if a > 20.0 {
        1.0
    } else {
        1.0 - 2.0 / ((2.0 * a).exp() + 1.0)
    };
    t.copysign(x)
}

impl NonlinearSystem {
    /// Build from parts (`w` row = target).
    pub fn new(w: Array2<f64>, b: Array1<f64>, shifts: Array1<f64>) -> Self {
        let edges = w
            .indexed_iter()
            .filter(|(_, &v)| v != 0.0)
            .map(|((j, i), &v)| (j, i, v))
            .collect();
        Self {
            w,
            b,
            shifts,
            edges,
        }
    }

    /// Draw a random contractive system.
    pub fn random(
        d: usize,
        graph: GraphKind,
        degree: f64,
        bias: f64,
        shift: (f64, f64),
        contraction: f64,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let raw = random_weights(graph, d, degree, 1.0, 3.0, rng).reversed_axes(); // row = target
        let norm = spectral_norm(&raw);
        let w = if norm > 0.0 {
            raw * (contraction / norm)
        } else {
            raw
        };
        let b = Array1::from_shape_fn(d, |_| rng.random_range(-bias..bias));
        let shifts = Array1::from_shape_fn(d, |_| signed_uniform(rng, shift.0, shift.1));
        Self::new(w, b, shifts)
    }

    /// `W s` for gene-major states, `[d, n] → [d, n]`, with the sparse edges.
    fn regulate(&self, t: &Array2<f64>) -> Array2<f64> {
        let mut out = Array2::zeros(t.raw_dim());
        self.regulate_into(t, &mut out);
        out
    }

    /// [`Self::regulate`] into a buffer of the same shape.
    fn regulate_into(&self, t: &Array2<f64>, out: &mut Array2<f64>) {
        out.fill(0.0);
        for &(j, i, v) in &self.edges {
            let src = t.row(i);
            out.row_mut(j).scaled_add(v, &src);
        }
    }

    /// Sample `n` cells `[n, d]` of condition `targets` by Euler–Maruyama.
    pub fn sample(
        &self,
        targets: &[usize],
        n: usize,
        dt: f64,
        burn_in: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Array2<f64>> {
        let x0 = self.fixed_point(targets)?;
        let shift = self.shift_vector(targets)?; // [d]
        let d = x0.len();
        let mut s = Array2::from_shape_fn((d, n), |(g, _)| x0[g]); // [d, n]
        let steps = (burn_in / dt).ceil() as usize;
        let sq = dt.sqrt();
        // Plain per-gene loops over reused buffers; the noise is drawn in
        // the same (gene-major) order as before, so samples are unchanged.
        let mut u = Array2::<f64>::zeros((d, n));
        for _ in 0..steps {
            self.regulate_into(&s, &mut u); // [d, n]
            for g in 0..d {
                let (b, c) = (self.b[g], shift[g]);
                let mut xs = s.row_mut(g);
                let us = u.row(g);
                for (x, &ug) in xs.iter_mut().zip(us.iter()) {
                    let z: f64 = rng.sample(StandardNormal);
                    *x += dt * (-*x + tanh(ug + b) + c) + sq * z;
                }
            }
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
        let u = x.dot(&self.w.t()) + &self.b; // [n, d]
        u.mapv(f64::tanh) - x
    }
    fn jacobian(&self, x: ArrayView1<f64>) -> Array2<f64> {
        let u = self.w.dot(&x) + &self.b;
        let sech2 = u.mapv(|v| 1.0 - v.tanh().powi(2));
        let mut j = &self.w * &sech2.insert_axis(Axis(1)); // scale row j by sech²(u_j)
        j.diag_mut().mapv_inplace(|v| v - 1.0);
        j
    }
    /// Fixed-point iteration `x ← tanh(W x + b) + c` (a contraction when
    /// ‖W‖₂ < 1), then Newton steps to machine precision.
    fn fixed_point(&self, targets: &[usize]) -> Result<Array1<f64>> {
        let c = self.shift_vector(targets)?;
        let drift = |x: &Array1<f64>| (self.w.dot(x) + &self.b).mapv(f64::tanh) - x + &c;
        let mut x = self.b.mapv(f64::tanh) + &c;
        for _ in 0..10_000 {
            let xc = x.view().insert_axis(Axis(1)).to_owned();
            let next = (self.regulate(&xc).remove_axis(Axis(1)) + &self.b).mapv(f64::tanh) + &c;
            let delta = (&next - &x).iter().map(|v| v.abs()).fold(0.0, f64::max);
            x = next;
            if delta < 1e-10 {
                break;
            }
        }
        for _ in 0..3 {
            let f = drift(&x);
            let res = f.iter().map(|v| v.abs()).fold(0.0, f64::max);
            if res < 1e-13 {
                break;
            }
            let jac = self.jacobian(x.view());
            let step =
                with_big_stack(|| jac.solve(&f)).map_err(|e| DatasetsError::InvalidConfig {
                    param: "nonlinear system".into(),
                    message: format!("Newton step at the fixed point failed: {e}"),
                })?;
            x = &x - &step;
        }
        let f = drift(&x);
        let res = f.iter().map(|v| v.abs()).fold(0.0, f64::max);
        if res.is_nan() || res >= 1e-6 {
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
        NonlinearSystem::random(
            d,
            GraphKind::Er,
            10.0_f64.min(d as f64 - 1.0),
            1.0,
            (5.0, 15.0),
            0.9,
            &mut rng,
        )
    }

    #[test]
    fn fast_tanh_matches_libm() {
        let mut worst = 0.0f64;
        for k in -400_000..=400_000 {
            let x = k as f64 * 1e-4 + 1.2345e-6;
            let err = (tanh(x) - x.tanh()).abs();
            worst = worst.max(err);
        }
        assert!(worst <= 2.0 * f64::EPSILON, "max |tanh err| = {worst:e}");
        // Relative accuracy near 0 as well.
        for k in 1..2000 {
            let x = k as f64 * 1e-9;
            assert!(
                (tanh(x) / x.tanh() - 1.0).abs() <= 4.0 * f64::EPSILON,
                "x = {x:e}"
            );
        }
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(1e3), 1.0);
        assert_eq!(tanh(-1e3), -1.0);
        assert!(tanh(f64::NAN).is_nan());
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f64).to_bits());
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
        let err = (&fd - &s.jacobian(x.view()))
            .iter()
            .map(|v| v.abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-8, "max |J_fd − J| = {err}");
        let te = s.true_effects().expect("te");
        let x0 = s.fixed_point(&[]).expect("fp");
        assert_eq!(te, s.jacobian(x0.view()).t().to_owned());
    }

    #[test]
    fn sampler_mean_near_fixed_point_for_small_noise_effect() {
        // With d = 1 and w = 0 the SDE is an OU process: mean tanh(b) + c, var 1/2.
        let s = NonlinearSystem::new(
            Array2::zeros((1, 1)),
            ndarray::arr1(&[0.7]),
            ndarray::arr1(&[2.0]),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let x = s.sample(&[0], 4000, 0.01, 8.0, &mut rng).expect("sample");
        let m = x.mean().unwrap_or(0.0);
        let v = x.var(0.0);
        assert!((m - (0.7f64.tanh() + 2.0)).abs() < 0.04, "mean {m}");
        assert!((v - 0.5 / (1.0 - 0.005)).abs() < 0.05, "var {v}");
    }
}
