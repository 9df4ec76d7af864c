//! Effect-matrix estimators from perturbation responses.
//!
//! **Published CLIPR estimator** (`design/clipr.md`, after Lorch et al.,
//! arXiv:2601.15341): with a linear drift `f_q(x) = A x + b + c_q`, the
//! initial response `v_q = f_q(0) = b + c_q` and the limit response `l_q`
//! (`f_q(l_q) = 0`) satisfy `v_q = −A l_q`. Stacking the `k` conditions as
//! columns `V, L ∈ ℝ^{d×k}`, Tikhonov least squares gives
//! `Â = −V Lᵀ (L Lᵀ + λ I)⁻¹`. We never form the inverse: with the symmetric
//! `M = L Lᵀ + λ I` we Cholesky-factor `M = R Rᵀ` and solve
//! `M Âᵀ = −L Vᵀ` by two triangular solves. Then `b̂ = −Â l_ctrl` and
//! `ĉ_q = −Â (l_q − l_ctrl)`.
//!
//! **Direction-aware estimator** (this project): uses only limit-response
//! differences `t_j = l_j − l_ctrl = −A⁻¹ c_j e_j` (total effects of a shift
//! `c_j` on gene `j`). With `T = [t_j]` (all genes singly perturbed),
//! `T = −A⁻¹ C` (`C = diag(c)` unknown), so `T⁻¹ = −C⁻¹ A` and, under the
//! unit self-decay normalisation `diag(A) = −1`,
//! `Â_ij = −(T⁻¹)_ij / (T⁻¹)_ii`. It does not use the drift's value away
//! from the fixed points, so a score model (whose drift is `−Σ⁻¹(x − μ_q)`,
//! symmetric) still yields a *directed* matrix, as long as the fixed points
//! (the condition means) are right.
//!
//! Assumptions of the direction-aware estimator: (1) the limit responses are
//! those of a linear system (exact for the linear simulator, a finite-shift
//! approximation for a nonlinear one); (2) a perturbation shifts only its own
//! target (`c_q ∝ e_j`); (3) every gene has the same self-decay, normalised to
//! −1 (true diagonals only rescale rows of A; signs and directions are kept);
//! (4) every gene is singly perturbed. When only a subset `P` is perturbed
//! (unperturbed `U`): the `P×P` block is the Schur complement
//! `A_PP − A_PU A_UU⁻¹ A_UP` (direct effects among `P` after marginalising
//! `U`, i.e. paths through unperturbed genes count as direct), and effects
//! of `P` on `U` are `T_UP T_PP⁻¹ = −A_UU⁻¹ A_UP`, equal to `A_UP` only if
//! `A_UU = −I` (no edges among unperturbed genes). Effects *of* unperturbed
//! genes are not identified and are reported as 0 (`identified = false`).
//!
//! Orientation of every returned matrix: `a_causal[[i, j]]` is the effect of
//! gene `i` on gene `j` (`a_causal = Âᵀ`, where `Â[[j, i]] = ∂f_j/∂x_i`).
use ndarray::{Array1, Array2, Axis};
use ndarray_linalg::triangular::{Diag, SolveTriangular};
use ndarray_linalg::{Cholesky, Factorize, Solve, UPLO};
use serde::Serialize;

use crate::drift::{PerturbableDrift, Targets};
use crate::error::{CliprError, Result};

/// Which estimator produced an effect matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EstimatorKind {
    #[serde(rename = "published")]
    Published,
    #[serde(rename = "direction-aware")]
    DirectionAware,
}

impl EstimatorKind {
    pub fn name(self) -> &'static str {
        match self {
            EstimatorKind::Published => "published",
            EstimatorKind::DirectionAware => "direction-aware",
        }
    }
}

impl std::str::FromStr for EstimatorKind {
    type Err = CliprError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "published" => Ok(EstimatorKind::Published),
            "direction-aware" => Ok(EstimatorKind::DirectionAware),
            other => Err(CliprError::param(
                "estimator",
                format!("expected `published` or `direction-aware`, got {other:?}"),
            )),
        }
    }
}

/// Initial and limit responses of control plus single-gene perturbations.
#[derive(Debug, Clone)]
pub struct Responses {
    /// Condition `r` (row `r` below); entry 0 is the control (empty set).
    pub conditions: Vec<Targets>,
    /// Initial responses `v_q`, `[k, d]`.
    pub initial: Array2<f64>,
    /// Limit responses `l_q`, `[k, d]`.
    pub limit: Array2<f64>,
    /// Gene names, length `d`.
    pub genes: Vec<String>,
}

impl Responses {
    pub fn dim(&self) -> usize {
        self.initial.ncols()
    }
    /// Genes that are singly perturbed, with the row of their condition.
    pub fn singles(&self) -> Vec<(usize, usize)> {
        self.conditions
            .iter()
            .enumerate()
            .filter(|(_, t)| t.len() == 1)
            .map(|(r, t)| (t[0], r))
            .collect()
    }
    pub fn control_row(&self) -> Result<usize> {
        self.conditions
            .iter()
            .position(|t| t.is_empty())
            .ok_or_else(|| {
                CliprError::param("responses", "no control condition (empty target set)")
            })
    }
}

/// Computes initial and limit responses for the control and one single-gene
/// perturbation per gene of `targets` (default: all perturbable genes), as two
/// batched calls of `drift`.
pub fn responses<D: PerturbableDrift + ?Sized>(
    drift: &D,
    targets: Option<&[usize]>,
) -> Result<Responses> {
    let d = drift.dim();
    let mut t: Vec<usize> = match targets {
        Some(t) => t.to_vec(),
        None => drift.perturbable(),
    };
    t.sort_unstable();
    t.dedup();
    if let Some(&j) = t.iter().find(|&&j| j >= d) {
        return Err(CliprError::param(
            "targets",
            format!("gene index {j} out of range for {d} genes"),
        ));
    }
    let mut conditions: Vec<Targets> = vec![vec![]];
    conditions.extend(t.iter().map(|&j| vec![j]));
    let initial = drift.initial_response(&conditions)?;
    let limit = drift.limit_response(&conditions)?;
    for (name, m) in [("initial", &initial), ("limit", &limit)] {
        if m.dim() != (conditions.len(), d) {
            return Err(CliprError::Shape {
                context: format!("{name} responses"),
                expected: format!("[{}, {d}]", conditions.len()),
                found: format!("{:?}", m.shape()),
            });
        }
        if !m.iter().all(|v| v.is_finite()) {
            return Err(CliprError::NonFinite {
                context: format!("{name} responses"),
                what: "NaN or inf".into(),
            });
        }
    }
    Ok(Responses {
        conditions,
        initial,
        limit,
        genes: drift.gene_names(),
    })
}

/// An estimated effect matrix and what is known about its reliability.
#[derive(Debug, Clone)]
pub struct Effects {
    pub estimator: EstimatorKind,
    /// `[d, d]`; entry `[i, j]` = effect of gene `i` on gene `j`.
    pub a_causal: Array2<f64>,
    /// Published estimator only: `b̂` `[d]` and `ĉ_q` `[k, d]` (rows follow `Responses::conditions`).
    pub b_hat: Option<Array1<f64>>,
    pub c_hat: Option<Array2<f64>>,
    /// Target genes of each condition (`Responses::conditions`; row order of `c_hat`).
    pub conditions: Vec<Targets>,
    /// Number of conditions used (control included) and the number of genes.
    pub k: usize,
    pub d: usize,
    /// λ of the Tikhonov regularisation (published estimator).
    pub lambda: f64,
    /// Whether the matrix is identified from the data (see `note`).
    pub identified: bool,
    /// Human-readable statement about identification, written into outputs.
    pub note: String,
}

/// The published CLIPR estimator `Â = −V Lᵀ (L Lᵀ + λ I)⁻¹` (Cholesky solve).
pub fn published(resp: &Responses, lambda: f64) -> Result<Effects> {
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(CliprError::param(
            "lambda",
            format!("must be finite and >= 0, got {lambda}"),
        ));
    }
    let (k, d) = resp.limit.dim();
    let l = &resp.limit; // [k, d]  (rows = l_q, i.e. Lᵀ of the column convention)
    let v = &resp.initial; // [k, d]
    let mut m = l.t().dot(l); // L Lᵀ, [d, d]
    for i in 0..d {
        m[[i, i]] += lambda;
    }
    let rhs = -l.t().dot(v); // −L Vᵀ, [d, d]
    let r = m.cholesky(UPLO::Lower).map_err(|e| {
        CliprError::linalg(
            "Cholesky of L Lᵀ + λI",
            format!("{e} (k = {k} conditions for d = {d} genes, λ = {lambda}: increase --lambda)"),
        )
    })?;
    let y = r
        .solve_triangular(UPLO::Lower, Diag::NonUnit, &rhs)
        .map_err(|e| CliprError::linalg("triangular solve", e))?;
    let a_causal = r
        .t()
        .solve_triangular(UPLO::Upper, Diag::NonUnit, &y)
        .map_err(|e| CliprError::linalg("triangular solve", e))?; // = Âᵀ
    let ctrl = resp.control_row()?;
    let a_hat = a_causal.t();
    let b_hat = -a_hat.dot(&resp.limit.row(ctrl));
    let diff = &resp.limit - &resp.limit.row(ctrl).insert_axis(Axis(0)); // [k, d]
    let c_hat = -diff.dot(&a_causal); // rows: −Â (l_q − l_ctrl)
                                      // rank check: smallest pivot of the Cholesky factor relative to the largest
    let piv: Vec<f64> = (0..d).map(|i| r[[i, i]] * r[[i, i]] - lambda).collect();
    let pmax = piv.iter().cloned().fold(0.0f64, f64::max);
    let pmin = piv.iter().cloned().fold(f64::INFINITY, f64::min);
    let full_rank = k >= d && pmin > 1e-10 * pmax.max(f64::MIN_POSITIVE);
    let note = if k < d {
        format!("NOT IDENTIFIED: k = {k} conditions (control + {} singles) < d = {d} genes; the matrix is a λ-regularised approximation (λ = {lambda:e})", k - 1)
    } else if !full_rank {
        format!("NOT IDENTIFIED: the {k} limit responses are (numerically) rank deficient for d = {d}; λ-regularised approximation (λ = {lambda:e})")
    } else {
        format!("identified for a linear drift: k = {k} conditions, d = {d} genes, λ = {lambda:e}")
    };
    Ok(Effects {
        estimator: EstimatorKind::Published,
        a_causal,
        b_hat: Some(b_hat),
        c_hat: Some(c_hat),
        conditions: resp.conditions.clone(),
        k,
        d,
        lambda,
        identified: full_rank,
        note,
    })
}

/// The direction-aware estimator from limit-response differences with unit
/// self-decay (`diag(A) = −1`); see the module documentation for its assumptions.
pub fn direction_aware(resp: &Responses) -> Result<Effects> {
    let (k, d) = resp.limit.dim();
    let ctrl = resp.control_row()?;
    let singles = resp.singles();
    if singles.is_empty() {
        return Err(CliprError::param(
            "responses",
            "the direction-aware estimator needs single-gene perturbations",
        ));
    }
    let p_idx: Vec<usize> = singles.iter().map(|&(g, _)| g).collect();
    let mut in_p = vec![false; d];
    for &g in &p_idx {
        in_p[g] = true;
    }
    let u_idx: Vec<usize> = (0..d).filter(|&g| !in_p[g]).collect();
    let p = p_idx.len();
    // T: [d, p], column j = l_{P_j} − l_ctrl
    let mut t = Array2::<f64>::zeros((d, p));
    for (c, &(_, row)) in singles.iter().enumerate() {
        let diff = &resp.limit.row(row) - &resp.limit.row(ctrl);
        t.column_mut(c).assign(&diff);
    }
    let t_pp = t.select(Axis(0), &p_idx); // [p, p]
    let lu = t_pp
        .factorize()
        .map_err(|e| CliprError::linalg("LU of the total-effect block T_PP", e))?;
    // M = T_PP⁻¹ (column by column from the LU factors)
    let mut minv = Array2::<f64>::zeros((p, p));
    for c in 0..p {
        let mut e = Array1::<f64>::zeros(p);
        e[c] = 1.0;
        let col = lu.solve(&e).map_err(|e| {
            CliprError::linalg(
                "solving with T_PP (a perturbation without effect on its own target?)",
                e,
            )
        })?;
        minv.column_mut(c).assign(&col);
    }
    // Â in drift orientation, Â[i, j] = effect of j on i
    let mut a_hat = Array2::<f64>::zeros((d, d));
    for (a, &gi) in p_idx.iter().enumerate() {
        let m_ii = minv[[a, a]];
        if m_ii.abs() < 1e-300 || !m_ii.is_finite() {
            return Err(CliprError::Linalg {
                context: "direction-aware normalisation".into(),
                message: format!(
                    "(T⁻¹)_ii = {m_ii} for gene {}: self-decay cannot be normalised",
                    resp.genes.get(gi).cloned().unwrap_or_default()
                ),
            });
        }
        for (b, &gj) in p_idx.iter().enumerate() {
            a_hat[[gi, gj]] = -minv[[a, b]] / m_ii;
        }
    }
    if !u_idx.is_empty() {
        let t_up = t.select(Axis(0), &u_idx); // [u, p]
        let kmat = t_up.dot(&minv); // T_UP T_PP⁻¹ = −A_UU⁻¹ A_UP
        for (a, &gu) in u_idx.iter().enumerate() {
            for (b, &gj) in p_idx.iter().enumerate() {
                a_hat[[gu, gj]] = kmat[[a, b]];
            }
            a_hat[[gu, gu]] = -1.0;
        }
    }
    let a_causal = a_hat.t().to_owned();
    let identified = u_idx.is_empty();
    let note = if identified {
        format!("direction-aware: all {d} genes singly perturbed; identified up to per-gene self-decay (diag(A) = -1)")
    } else {
        format!(
            "direction-aware: NOT IDENTIFIED for {} of {d} genes that are not perturbed: their outgoing effects are set to 0, effects among the {p} perturbed genes marginalise the others, effects on unperturbed genes assume no edges among them",
            u_idx.len()
        )
    };
    Ok(Effects {
        estimator: EstimatorKind::DirectionAware,
        a_causal,
        b_hat: None,
        c_hat: None,
        conditions: resp.conditions.clone(),
        k,
        d,
        lambda: 0.0,
        identified,
        note,
    })
}

/// Runs the named estimator.
pub fn estimate(resp: &Responses, kind: EstimatorKind, lambda: f64) -> Result<Effects> {
    match kind {
        EstimatorKind::Published => published(resp, lambda),
        EstimatorKind::DirectionAware => direction_aware(resp),
    }
}

/// Symmetry ratio `‖A − Aᵀ‖_F / ‖A‖_F` (0 for a symmetric matrix).
pub fn symmetry_ratio(a: &Array2<f64>) -> f64 {
    let n = a.iter().map(|v| v * v).sum::<f64>().sqrt();
    let diff = (a - &a.t()).iter().map(|v| v * v).sum::<f64>().sqrt();
    if n > 0.0 {
        diff / n
    } else {
        0.0
    }
}

/// Relative Frobenius error `‖X − Y‖ / ‖Y‖`.
pub fn relative_error(x: &Array2<f64>, y: &Array2<f64>) -> f64 {
    let n = y.iter().map(|v| v * v).sum::<f64>().sqrt();
    let diff = (x - y).iter().map(|v| v * v).sum::<f64>().sqrt();
    diff / n.max(f64::MIN_POSITIVE)
}
