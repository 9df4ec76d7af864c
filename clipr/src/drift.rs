//! "A drift that can be perturbed and run to its fixed point".
//!
//! CLIPR (see `design/clipr.md`) only needs three things from a model of the
//! regulatory dynamics `dx = f_q(x) dt + noise` under a perturbation `q`:
//! the drift itself, its *initial response* `v_q = f_q(0)` and its *limit
//! response* `l_q` (the fixed point reached from the control state). The
//! [`PerturbableDrift`] trait captures exactly that, so the same estimator
//! code runs on a simulator's true drift and on a trained LCD model.
//!
//! All quantities are in **latent-state units** (for LCD: after undoing the
//! standardisation, see `lcd_drift`), and every call is batched: row `r` of
//! `x` is evaluated under perturbation `perts[r]`.
use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};
use ndarray_linalg::{Factorize, Solve};
use rayon::prelude::*;

use crate::error::{CliprError, Result};

/// Target set of one perturbation (gene indices); empty = control.
pub type Targets = Vec<usize>;

/// A drift `f_q(x)` that can be perturbed and run to its fixed point.
pub trait PerturbableDrift: Sync {
    /// Number of genes `d`.
    fn dim(&self) -> usize;
    /// Gene names (length `d`).
    fn gene_names(&self) -> Vec<String>;
    /// Genes that can be perturbed (for a trained model: its trained targets).
    fn perturbable(&self) -> Vec<usize>;
    /// Drift for every row: `x` is `[n, d]`, `perts.len() == n`; returns `[n, d]`.
    fn drift(&self, x: ArrayView2<f64>, perts: &[Targets]) -> Result<Array2<f64>>;
    /// Initial responses `v_q = f_q(0)`, `[k, d]`.
    fn initial_response(&self, perts: &[Targets]) -> Result<Array2<f64>> {
        let x = Array2::<f64>::zeros((perts.len(), self.dim()));
        self.drift(x.view(), perts)
    }
    /// Limit responses `l_q` (fixed points reached from `x = 0`), `[k, d]`.
    /// Default: noise-free integration of `dx/dt = f_q(x)` ([`integrate_to_fixed_point`]).
    fn limit_response(&self, perts: &[Targets]) -> Result<Array2<f64>> {
        let x0 = Array2::<f64>::zeros((perts.len(), self.dim()));
        integrate_to_fixed_point(self, x0, perts, &IntegrateOptions::default())
    }
}

/// Options of the noise-free integrator.
#[derive(Debug, Clone)]
pub struct IntegrateOptions {
    /// Stop a row when `max_i |f_i(x)| <= tol`.
    pub tol: f64,
    /// Accepted local error per step: `max(atol, rel · h · max|f|)`.
    pub atol: f64,
    pub rel: f64,
    /// Give up after this many attempted steps.
    pub max_steps: usize,
    /// Initial step size.
    pub h0: f64,
}

impl Default for IntegrateOptions {
    fn default() -> Self {
        IntegrateOptions {
            tol: 1e-9,
            atol: 1e-15,
            rel: 0.05,
            max_steps: 200_000,
            h0: 1e-2,
        }
    }
}

/// Integrates `dx/dt = f_q(x)` from `x0` (`[k, d]`) until `|f| <= tol` in every
/// row, with the Bogacki–Shampine 3(2) embedded pair (first-same-as-last) and
/// one adaptive step size per row. All still-moving rows are evaluated in one
/// batched `drift` call per stage.
pub fn integrate_to_fixed_point<D: PerturbableDrift + ?Sized>(
    drift: &D,
    x0: Array2<f64>,
    perts: &[Targets],
    opts: &IntegrateOptions,
) -> Result<Array2<f64>> {
    let k = x0.nrows();
    if perts.len() != k {
        return Err(CliprError::Shape {
            context: "integrate_to_fixed_point".into(),
            expected: format!("{k} perturbations (rows of x0)"),
            found: perts.len().to_string(),
        });
    }
    let mut x = x0;
    let mut f = drift.drift(x.view(), perts)?; // [k, d]
    let mut h = Array1::from_elem(k, opts.h0);
    let mut active: Vec<usize> = (0..k).filter(|&r| max_abs(f.row(r)) > opts.tol).collect();
    let mut steps = 0usize;
    while !active.is_empty() {
        steps += 1;
        if steps > opts.max_steps {
            let residual = active
                .iter()
                .map(|&r| max_abs(f.row(r)))
                .fold(0.0, f64::max);
            return Err(CliprError::NoConvergence {
                context: format!(
                    "noise-free integration ({} of {k} perturbations still moving)",
                    active.len()
                ),
                steps: opts.max_steps,
                residual,
                tol: opts.tol,
            });
        }
        let p: Vec<Targets> = active.iter().map(|&r| perts[r].clone()).collect();
        let xa = x.select(Axis(0), &active); // [m, d]
        let k1 = f.select(Axis(0), &active);
        let ha = h.select(Axis(0), &active).insert_axis(Axis(1)); // [m, 1]
        let k2 = drift.drift((&xa + &(&k1 * &ha * 0.5)).view(), &p)?;
        let k3 = drift.drift((&xa + &(&k2 * &ha * 0.75)).view(), &p)?;
        let xn = &xa + &((&k1 * (2.0 / 9.0) + &k2 * (1.0 / 3.0) + &k3 * (4.0 / 9.0)) * &ha);
        let k4 = drift.drift(xn.view(), &p)?;
        let err =
            (&k1 * (-5.0 / 72.0) + &k2 * (1.0 / 12.0) + &k3 * (1.0 / 9.0) + &k4 * (-1.0 / 8.0))
                * &ha;
        let mut still = Vec::with_capacity(active.len());
        for (m, &r) in active.iter().enumerate() {
            // Local error relative to the size of the step itself (`rel · h · |f|`):
            // scale-free, and it rejects steps beyond the stability limit even
            // when |f| is already tiny (an x-relative tolerance would not).
            let sc = opts.atol.max(opts.rel * ha[[m, 0]] * max_abs(k1.row(m)));
            let e = max_abs(err.row(m)) / sc;
            if !e.is_finite() || !xn.row(m).iter().all(|v| v.is_finite()) {
                h[r] *= 0.2;
                if h[r] < 1e-14 {
                    return Err(CliprError::NonFinite {
                        context: format!("noise-free integration of perturbation {:?}", perts[r]),
                        what: "drift diverged".into(),
                    });
                }
                still.push(r);
                continue;
            }
            let fac = if e == 0.0 {
                5.0
            } else {
                (0.9 * e.powf(-1.0 / 3.0)).clamp(0.2, 5.0)
            };
            if e <= 1.0 {
                x.row_mut(r).assign(&xn.row(m));
                f.row_mut(r).assign(&k4.row(m));
                if max_abs(k4.row(m)) > opts.tol {
                    still.push(r);
                }
            } else {
                still.push(r);
            }
            h[r] *= fac;
        }
        active = still;
    }
    Ok(x)
}

pub(crate) fn max_abs(v: ndarray::ArrayView1<f64>) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// Adds the shift vector of each row's targets: `out[r, j] += shifts[j]` for `j ∈ perts[r]`.
fn add_shifts(out: &mut Array2<f64>, perts: &[Targets], shifts: &Array1<f64>) {
    for (mut row, t) in out.outer_iter_mut().zip(perts) {
        for &j in t {
            row[j] += shifts[j];
        }
    }
}

fn check_batch(context: &str, x: &ArrayView2<f64>, perts: &[Targets], d: usize) -> Result<()> {
    if x.ncols() != d || x.nrows() != perts.len() {
        return Err(CliprError::Shape {
            context: context.into(),
            expected: format!("[{}, {d}]", perts.len()),
            found: format!("{:?}", x.shape()),
        });
    }
    if let Some(j) = perts.iter().flatten().find(|&&j| j >= d) {
        return Err(CliprError::param(
            "perturbation target",
            format!("gene index {j} is out of range for {d} genes"),
        ));
    }
    Ok(())
}

/// Linear drift `f_q(x) = A x + b + c_q`, `c_q = Σ_{j∈q} shifts_j e_j`
/// (the linear-SDE simulator of `design/lcd.md`). `a[i, j]` is the effect of
/// gene `j` on gene `i` (drift orientation); the causal orientation is `aᵀ`.
#[derive(Debug, Clone)]
pub struct LinearDrift {
    pub a: Array2<f64>,
    pub b: Array1<f64>,
    pub shifts: Array1<f64>,
    pub genes: Vec<String>,
}

impl LinearDrift {
    pub fn new(
        a: Array2<f64>,
        b: Array1<f64>,
        shifts: Array1<f64>,
        genes: Option<Vec<String>>,
    ) -> Result<Self> {
        let d = a.nrows();
        if a.ncols() != d || b.len() != d || shifts.len() != d {
            return Err(CliprError::Shape {
                context: "LinearDrift".into(),
                expected: format!("A [{d}, {d}], b [{d}], shifts [{d}]"),
                found: format!(
                    "A {:?}, b [{}], shifts [{}]",
                    a.shape(),
                    b.len(),
                    shifts.len()
                ),
            });
        }
        let genes = genes.unwrap_or_else(|| default_genes(d));
        Ok(LinearDrift {
            a,
            b,
            shifts,
            genes,
        })
    }
}

pub(crate) fn default_genes(d: usize) -> Vec<String> {
    (0..d).map(|i| format!("G{i}")).collect()
}

impl PerturbableDrift for LinearDrift {
    fn dim(&self) -> usize {
        self.a.nrows()
    }
    fn gene_names(&self) -> Vec<String> {
        self.genes.clone()
    }
    fn perturbable(&self) -> Vec<usize> {
        (0..self.dim()).collect()
    }
    fn drift(&self, x: ArrayView2<f64>, perts: &[Targets]) -> Result<Array2<f64>> {
        check_batch("LinearDrift::drift", &x, perts, self.dim())?;
        let mut out = x.dot(&self.a.t()) + &self.b; // [n, d]
        add_shifts(&mut out, perts, &self.shifts);
        Ok(out)
    }
    /// Exact fixed point `l_q = −A⁻¹ (b + c_q)` (one LU factorisation, k solves).
    fn limit_response(&self, perts: &[Targets]) -> Result<Array2<f64>> {
        let x0 = Array2::<f64>::zeros((perts.len(), self.dim()));
        let rhs = -self.drift(x0.view(), perts)?; // [k, d]
        let lu = self
            .a
            .factorize()
            .map_err(|e| CliprError::linalg("LU of the linear drift A", e))?;
        let mut out = Array2::<f64>::zeros(rhs.dim());
        for (r, mut row) in out.outer_iter_mut().enumerate() {
            let s = lu
                .solve(&rhs.row(r).to_owned())
                .map_err(|e| CliprError::linalg("fixed point of the linear drift", e))?;
            row.assign(&s);
        }
        Ok(out)
    }
}

/// Saturating drift `f_q(x) = −x + W tanh(x) + b + c_q` (the nonlinear
/// simulator). `w[i, j]` is the effect of gene `j` on gene `i` (drift orientation).
#[derive(Debug, Clone)]
pub struct NonlinearDrift {
    pub w: Array2<f64>,
    pub b: Array1<f64>,
    pub shifts: Array1<f64>,
    pub genes: Vec<String>,
}

impl NonlinearDrift {
    pub fn new(
        w: Array2<f64>,
        b: Array1<f64>,
        shifts: Array1<f64>,
        genes: Option<Vec<String>>,
    ) -> Result<Self> {
        let d = w.nrows();
        if w.ncols() != d || b.len() != d || shifts.len() != d {
            return Err(CliprError::Shape {
                context: "NonlinearDrift".into(),
                expected: format!("W [{d}, {d}], b [{d}], shifts [{d}]"),
                found: format!(
                    "W {:?}, b [{}], shifts [{}]",
                    w.shape(),
                    b.len(),
                    shifts.len()
                ),
            });
        }
        let genes = genes.unwrap_or_else(|| default_genes(d));
        Ok(NonlinearDrift {
            w,
            b,
            shifts,
            genes,
        })
    }
    /// Jacobian `∂f/∂x = −I + W diag(1 − tanh²(x))` at one state.
    pub fn jacobian(&self, x: ndarray::ArrayView1<f64>) -> Array2<f64> {
        let d = self.w.nrows();
        let s = x.mapv(|v| 1.0 - v.tanh().powi(2));
        let mut j = &self.w * &s.insert_axis(Axis(0));
        for i in 0..d {
            j[[i, i]] -= 1.0;
        }
        j
    }
}

impl PerturbableDrift for NonlinearDrift {
    fn dim(&self) -> usize {
        self.w.nrows()
    }
    fn gene_names(&self) -> Vec<String> {
        self.genes.clone()
    }
    fn perturbable(&self) -> Vec<usize> {
        (0..self.dim()).collect()
    }
    fn drift(&self, x: ArrayView2<f64>, perts: &[Targets]) -> Result<Array2<f64>> {
        check_batch("NonlinearDrift::drift", &x, perts, self.dim())?;
        let mut out = x.mapv(f64::tanh).dot(&self.w.t()) - x + &self.b;
        add_shifts(&mut out, perts, &self.shifts);
        Ok(out)
    }
    /// Noise-free integration to `|f| < 1e-6`, then Newton polishing with the exact Jacobian.
    fn limit_response(&self, perts: &[Targets]) -> Result<Array2<f64>> {
        let x0 = Array2::<f64>::zeros((perts.len(), self.dim()));
        let opts = IntegrateOptions {
            tol: 1e-6,
            ..Default::default()
        };
        let mut x = integrate_to_fixed_point(self, x0, perts, &opts)?;
        newton_polish(&mut x, perts, |xr, p| {
            let f = self.drift(xr.insert_axis(Axis(0)), std::slice::from_ref(p))?;
            Ok((f.row(0).to_owned(), self.jacobian(xr)))
        })?;
        Ok(x)
    }
}

/// A few Newton steps per row (in parallel) given `f` and its Jacobian.
pub(crate) fn newton_polish<F>(x: &mut Array2<f64>, perts: &[Targets], fj: F) -> Result<()>
where
    F: Fn(ndarray::ArrayView1<f64>, &Targets) -> Result<(Array1<f64>, Array2<f64>)> + Sync,
{
    // LAPACK (OpenBLAS' recursive LU) needs more stack than rayon's default 2 MiB.
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(64 << 20)
        .build()
        .map_err(|e| CliprError::linalg("thread pool for Newton steps", e))?;
    let rows: Vec<Result<Array1<f64>>> = pool.install(|| {
        (0..x.nrows())
            .into_par_iter()
            .map(|r| {
                let mut xr = x.row(r).to_owned();
                for _ in 0..20 {
                    let (f, j) = fj(xr.view(), &perts[r])?;
                    if max_abs(f.view()) < 1e-13 {
                        break;
                    }
                    let step = j
                        .solve(&f)
                        .map_err(|e| CliprError::linalg("Newton step at the fixed point", e))?;
                    Zip::from(&mut xr).and(&step).for_each(|a, &s| *a -= s);
                }
                Ok(xr)
            })
            .collect()
    });
    for (r, row) in rows.into_iter().enumerate() {
        x.row_mut(r).assign(&row?);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn integrator_reaches_the_exact_linear_fixed_point() {
        // A non-normal stable matrix with rotation: ‖f‖ is not monotone along the flow.
        let a = array![[-1.0, 3.0, 0.0], [-3.0, -1.0, 0.5], [0.0, 2.0, -0.5]];
        let lin =
            LinearDrift::new(a, array![0.3, -1.0, 2.0], array![5.0, -7.0, 9.0], None).unwrap();
        let perts: Vec<Targets> = vec![vec![], vec![0], vec![1], vec![2], vec![0, 2]];
        let exact = lin.limit_response(&perts).unwrap();
        let x0 = Array2::zeros((perts.len(), 3));
        let num = integrate_to_fixed_point(&lin, x0, &perts, &IntegrateOptions::default()).unwrap();
        let err = (&exact - &num)
            .mapv(f64::abs)
            .fold(0.0f64, |m, &v| m.max(v));
        assert!(err < 1e-7, "integration error {err}");
        // and the residual at the exact fixed point is zero
        let f = lin.drift(exact.view(), &perts).unwrap();
        assert!(f.iter().all(|v| v.abs() < 1e-12));
    }

    #[test]
    fn nonlinear_fixed_point_has_zero_drift() {
        let w = array![[0.0, 1.5, -0.5], [-2.0, 0.0, 0.0], [0.7, 0.0, 0.0]];
        let nl =
            NonlinearDrift::new(w, array![0.5, -0.2, 0.1], array![3.0, -3.0, 2.0], None).unwrap();
        let perts: Vec<Targets> = vec![vec![], vec![0], vec![1, 2]];
        let l = nl.limit_response(&perts).unwrap();
        let f = nl.drift(l.view(), &perts).unwrap();
        assert!(f.iter().all(|v| v.abs() < 1e-12), "{f}");
        // Jacobian against central differences
        let x = l.row(1).to_owned();
        let j = nl.jacobian(x.view());
        for c in 0..3 {
            let mut xp = x.clone();
            let mut xm = x.clone();
            xp[c] += 1e-6;
            xm[c] -= 1e-6;
            let fp = nl
                .drift(xp.view().insert_axis(Axis(0)), &perts[1..2])
                .unwrap();
            let fm = nl
                .drift(xm.view().insert_axis(Axis(0)), &perts[1..2])
                .unwrap();
            for r in 0..3 {
                let fd = (fp[[0, r]] - fm[[0, r]]) / 2e-6;
                assert!((fd - j[[r, c]]).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn bad_targets_are_errors() {
        let lin =
            LinearDrift::new(-Array2::eye(2), Array1::zeros(2), Array1::ones(2), None).unwrap();
        let x = Array2::zeros((1, 2));
        assert!(lin.drift(x.view(), &[vec![5]]).is_err());
        assert!(lin.drift(x.view(), &[vec![], vec![]]).is_err());
    }
}
