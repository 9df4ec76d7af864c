//! The implication test (`design/clipr.md`, "Validation and metrics", on
//! data): a predicted edge `i → j` should imply that gene `j` is
//! differentially expressed when gene `i` is perturbed.
//!
//! 1. **Differential expression.** For every singly perturbed gene `i` of the
//!    effect matrix with at least `min_cells` cells, and every other gene `j`
//!    of the matrix: two-sided Wilcoxon rank-sum test (Mann–Whitney U,
//!    normal approximation with tie and continuity correction, as
//!    `scipy.stats.mannwhitneyu(method="asymptotic")`) of gene `j` in the
//!    cells perturbed at `i` against the control cells. P-values are
//!    Benjamini–Hochberg adjusted **per perturbation** (over its `d − 1`
//!    genes, as scanpy's `rank_genes_groups` does per group); `j` is DE under
//!    `i` when the adjusted value is `< fdr` (default 0.05).
//!    Expression: `log1p(1e4 · counts / library size)` when the matrix holds
//!    counts (non-negative integers; [`Normalize::Auto`]), otherwise the
//!    values as stored (e.g. a simulator's latent states).
//! 2. **Edges.** Candidates are the off-diagonal pairs `(i, j)` with a tested
//!    source `i`. For each quantile `q` (default 0.9, 0.95, 0.99) the
//!    threshold is `τ_q = quantile_q(|a_ij|)` over the candidates (NumPy's
//!    linear interpolation) and the predicted edges are those with
//!    `|a_ij| ≥ τ_q` and `|a_ij| > 1e-9 · max |a|` ([`ZERO_FLOOR`]: a sparse
//!    matrix's high quantiles can fall among its numerical zeros).
//! 3. **Precision** = predicted edges whose target is DE / predicted edges,
//!    with a 95 % percentile bootstrap interval that resamples *perturbations*
//!    (the sources `i`) with replacement — edges of one perturbation share its
//!    cells, so they are not independent. The **baseline** is the DE rate over
//!    all candidates: the expected precision of edges drawn at random.
use std::path::Path;

use datasets::anndata::AnnData;
use datasets::screen::{ConditionKind, Screen, ScreenOptions};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{CliprError, Result};
use crate::stats::{benjamini_hochberg, quantile_sorted, rank_sum_sorted};

/// How expression values are prepared before testing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// `log1p` library-size normalisation when the values are counts, else none.
    Auto,
    /// Always `log1p(1e4 · x / library size)`.
    Log1p,
    /// Test the stored values.
    None,
}

impl std::str::FromStr for Normalize {
    type Err = CliprError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Normalize::Auto),
            "log1p" => Ok(Normalize::Log1p),
            "none" => Ok(Normalize::None),
            other => Err(CliprError::param(
                "normalize",
                format!("expected auto, log1p or none, got {other:?}"),
            )),
        }
    }
}

/// Options of the implication test.
#[derive(Debug, Clone, Serialize)]
pub struct ImplicationOptions {
    /// Quantiles of `|a|` used as edge thresholds, each in (0, 1).
    pub quantiles: Vec<f64>,
    /// Benjamini–Hochberg FDR level for "differentially expressed".
    pub fdr: f64,
    /// Bootstrap resamples for the precision intervals (0 = none).
    pub n_bootstrap: usize,
    pub seed: u64,
    /// Conditions (and the control) need at least this many cells.
    pub min_cells: usize,
    pub normalize: Normalize,
    /// Read expression from this layer instead of X.
    pub layer: Option<String>,
    /// obs column with perturbation labels (auto-detected when `None`).
    pub perturbation_column: Option<String>,
}

impl Default for ImplicationOptions {
    fn default() -> Self {
        ImplicationOptions {
            quantiles: vec![0.9, 0.95, 0.99],
            fdr: 0.05,
            n_bootstrap: 1000,
            seed: 0,
            min_cells: 10,
            normalize: Normalize::Auto,
            layer: None,
            perturbation_column: None,
        }
    }
}

impl ImplicationOptions {
    pub fn validate(&self) -> Result<()> {
        if self.quantiles.is_empty() {
            return Err(CliprError::param("quantiles", "give at least one quantile"));
        }
        if let Some(q) = self
            .quantiles
            .iter()
            .find(|q| !(q.is_finite() && **q > 0.0 && **q < 1.0))
        {
            return Err(CliprError::param(
                "quantiles",
                format!("each must lie in (0, 1), got {q}"),
            ));
        }
        if !(self.fdr.is_finite() && self.fdr > 0.0 && self.fdr < 1.0) {
            return Err(CliprError::param(
                "fdr",
                format!("must lie in (0, 1), got {}", self.fdr),
            ));
        }
        if self.min_cells < 2 {
            return Err(CliprError::param(
                "min_cells",
                format!("must be >= 2, got {}", self.min_cells),
            ));
        }
        Ok(())
    }
}

/// Differential-expression results: row `r` = perturbation of gene
/// `sources[r]`, column `j` = gene `j` of the effect matrix.
#[derive(Debug, Clone)]
pub struct DeTable {
    /// Effect-matrix index of each tested perturbation's target.
    pub sources: Vec<usize>,
    /// Cells of each tested perturbation.
    pub n_cells: Vec<usize>,
    pub n_control: usize,
    /// Raw two-sided p-values `[sources, d]` (NaN on the diagonal `j = i`).
    pub pvals: Array2<f64>,
    /// BH-adjusted p-values per perturbation (NaN on the diagonal).
    pub qvals: Array2<f64>,
    /// Signed z of each test (> 0: higher under the perturbation); the
    /// diagonal holds the perturbed gene's own z (the perturbation's direction).
    pub z: Array2<f64>,
    /// Whether values were log1p-normalised counts.
    pub normalized: bool,
    /// Single perturbations of matrix genes left out (label, reason).
    pub skipped: Vec<(String, String)>,
}

fn looks_like_counts(x: &Array2<f32>) -> bool {
    x.iter().all(|&v| v >= 0.0 && v.fract() == 0.0)
}

/// Runs the rank-sum tests of every single perturbation of a matrix gene
/// against control, for the genes `genes` of the effect matrix.
pub fn de_tests(
    adata: &AnnData,
    file: &Path,
    genes: &[String],
    opts: &ImplicationOptions,
) -> Result<DeTable> {
    opts.validate()?;
    let mut sopts = ScreenOptions {
        layer: opts.layer.clone(),
        perturbation_column: opts.perturbation_column.clone(),
        ..Default::default()
    };
    sopts.qc.min_cells_per_condition = opts.min_cells;
    let screen = Screen::from_anndata(adata, sopts)?;
    let var: Vec<usize> = genes
        .iter()
        .map(|g| {
            screen.var_index(g).ok_or_else(|| CliprError::UnknownGene {
                gene: g.clone(),
                n_genes: adata.n_vars(),
                context: format!("{} (var_names)", file.display()),
            })
        })
        .collect::<Result<_>>()?;
    let control = screen.control().ok_or_else(|| {
        CliprError::param(
            "screen",
            format!(
                "{}: no control cells (labels {:?} in obs column {:?})",
                file.display(),
                datasets::screen::labels::CONTROL_LABELS,
                screen.report().column
            ),
        )
    })?;
    if control.n_cells() < opts.min_cells {
        return Err(CliprError::param(
            "screen",
            format!(
                "{}: {} control cells, the test needs at least {} (--min-cells)",
                file.display(),
                control.n_cells(),
                opts.min_cells
            ),
        ));
    }
    let gene_pos: std::collections::HashMap<&str, usize> = genes
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let mut tested: Vec<(usize, &datasets::screen::Condition)> = Vec::new();
    let mut skipped = Vec::new();
    for c in screen.conditions() {
        if c.kind != ConditionKind::Single {
            continue;
        }
        let Some(&src) = gene_pos.get(c.targets[0].as_str()) else {
            continue;
        };
        if c.n_cells() < opts.min_cells {
            skipped.push((
                c.label.clone(),
                format!("{} cells < min_cells {}", c.n_cells(), opts.min_cells),
            ));
            continue;
        }
        tested.push((src, c));
    }
    tested.sort_by_key(|(s, _)| *s);
    if tested.is_empty() {
        return Err(CliprError::param(
            "screen",
            format!(
                "{}: no single perturbation of a gene of the effect matrix with >= {} cells",
                file.display(),
                opts.min_cells
            ),
        ));
    }
    let ctrl_raw = screen.dense_counts(&control.cells, &var)?;
    let normalized = match opts.normalize {
        Normalize::Log1p => true,
        Normalize::None => false,
        Normalize::Auto => looks_like_counts(&ctrl_raw),
    };
    let load = |cells: &[usize]| -> Result<Array2<f32>> {
        Ok(if normalized {
            screen.normalized(cells, &var)?
        } else {
            screen.dense_counts(cells, &var)?
        })
    };
    let ctrl = if normalized {
        load(&control.cells)?
    } else {
        ctrl_raw
    };
    let d = genes.len();
    if ctrl.iter().any(|v| !v.is_finite()) {
        return Err(CliprError::NonFinite {
            context: format!("{}: control cells", file.display()),
            what: "NaN or inf expression".into(),
        });
    }
    // control values per gene, sorted once
    let ctrl_sorted: Vec<Vec<f64>> = (0..d)
        .into_par_iter()
        .map(|j| {
            let mut v: Vec<f64> = ctrl.column(j).iter().map(|&x| x as f64).collect();
            v.sort_by(f64::total_cmp);
            v
        })
        .collect();
    let rows: Vec<Result<(Vec<f64>, Vec<f64>)>> = tested
        .par_iter()
        .map(|&(src, c)| {
            let x = load(&c.cells)?;
            if x.iter().any(|v| !v.is_finite()) {
                return Err(CliprError::NonFinite {
                    context: format!("{}: cells of {}", file.display(), c.label),
                    what: "NaN or inf expression".into(),
                });
            }
            let mut p = vec![f64::NAN; d];
            let mut z = vec![f64::NAN; d];
            let mut buf = Vec::with_capacity(x.nrows());
            for j in 0..d {
                buf.clear();
                buf.extend(x.column(j).iter().map(|&v| v as f64));
                buf.sort_by(f64::total_cmp);
                let r = rank_sum_sorted(&buf, &ctrl_sorted[j]);
                z[j] = r.z;
                if j != src {
                    p[j] = r.p;
                }
            }
            Ok((p, z))
        })
        .collect();
    let k = tested.len();
    let mut pvals = Array2::<f64>::from_elem((k, d), f64::NAN);
    let mut qvals = pvals.clone();
    let mut zs = pvals.clone();
    for (r, row) in rows.into_iter().enumerate() {
        let (p, z) = row?;
        let q = benjamini_hochberg(&p);
        for j in 0..d {
            pvals[[r, j]] = p[j];
            qvals[[r, j]] = q[j];
            zs[[r, j]] = z[j];
        }
    }
    Ok(DeTable {
        sources: tested.iter().map(|(s, _)| *s).collect(),
        n_cells: tested.iter().map(|(_, c)| c.n_cells()).collect(),
        n_control: control.n_cells(),
        pvals,
        qvals,
        z: zs,
        normalized,
        skipped,
    })
}

/// Candidates with `|a| ≤ ZERO_FLOOR · max |a|` are numerical zeros and never
/// predicted edges (an exact estimator leaves ~1e-16 where the truth has 0).
pub const ZERO_FLOOR: f64 = 1e-9;

/// Precision of the edges above one quantile threshold.
#[derive(Debug, Clone, Serialize)]
pub struct ImplicationLevel {
    pub quantile: f64,
    /// `|a|` threshold (edges with `|a| ≥ threshold`).
    pub threshold: f64,
    pub n_edges: usize,
    /// Predicted edges whose target is DE under the source's perturbation.
    pub n_implied: usize,
    pub precision: f64,
    /// 95 % bootstrap interval of the precision (NaN without bootstrap).
    pub ci_low: f64,
    pub ci_high: f64,
    /// Among the implied edges, the fraction whose DE direction agrees with
    /// the effect's sign: `sign(a_ij) = sign(z_ij) · sign(z_ii)`, where `z_ii`
    /// is how the perturbation moved its own target (knock-down or activation).
    pub sign_agreement: f64,
}

/// The implication test's summary.
#[derive(Debug, Clone, Serialize)]
pub struct ImplicationReport {
    pub test: &'static str,
    pub fdr: f64,
    pub normalized_log1p: bool,
    pub n_perturbations: usize,
    pub n_control_cells: usize,
    pub n_candidate_pairs: usize,
    /// DE rate over all candidate pairs (precision of random edges).
    pub baseline_rate: f64,
    pub n_bootstrap: usize,
    pub levels: Vec<ImplicationLevel>,
    /// Single perturbations of matrix genes not tested: `[label, reason]`.
    pub skipped: Vec<(String, String)>,
}

/// Scores an effect matrix (`[i, j]` = effect of `i` on `j`, genes as in
/// `de`) against a DE table.
pub fn implication(
    a: &Array2<f64>,
    de: &DeTable,
    opts: &ImplicationOptions,
) -> Result<ImplicationReport> {
    opts.validate()?;
    let d = de.pvals.ncols();
    if a.dim() != (d, d) {
        return Err(CliprError::Shape {
            context: "implication test: effect matrix vs DE table".into(),
            expected: format!("[{d}, {d}]"),
            found: format!("{:?}", a.shape()),
        });
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(CliprError::NonFinite {
            context: "implication test".into(),
            what: "NaN or inf in the effect matrix".into(),
        });
    }
    let k = de.sources.len();
    let is_de = |r: usize, j: usize| de.qvals[[r, j]] < opts.fdr;
    let mut mags: Vec<f64> = Vec::with_capacity(k * d);
    let mut n_de = 0usize;
    for (r, &i) in de.sources.iter().enumerate() {
        for j in (0..d).filter(|&j| j != i) {
            mags.push(a[[i, j]].abs());
            n_de += usize::from(is_de(r, j));
        }
    }
    let n_cand = mags.len();
    mags.sort_by(f64::total_cmp);
    // entries this small relative to the largest are numerical zeros, never edges
    let floor = mags.last().copied().unwrap_or(0.0) * ZERO_FLOOR;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let mut levels = Vec::with_capacity(opts.quantiles.len());
    for &q in &opts.quantiles {
        let tau = quantile_sorted(&mags, q);
        // per perturbation: (edges, implied, sign-agreeing implied)
        let mut per: Vec<(usize, usize, usize)> = vec![(0, 0, 0); k];
        for (r, &i) in de.sources.iter().enumerate() {
            for j in (0..d).filter(|&j| j != i) {
                let e = a[[i, j]];
                if e.abs() > floor && e.abs() >= tau {
                    per[r].0 += 1;
                    if is_de(r, j) {
                        per[r].1 += 1;
                        if (e > 0.0) == ((de.z[[r, j]] > 0.0) == (de.z[[r, i]] > 0.0)) {
                            per[r].2 += 1;
                        }
                    }
                }
            }
        }
        let n_edges: usize = per.iter().map(|p| p.0).sum();
        let n_implied: usize = per.iter().map(|p| p.1).sum();
        let n_sign: usize = per.iter().map(|p| p.2).sum();
        let ratio = |a: usize, b: usize| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        let (mut lo, mut hi) = (f64::NAN, f64::NAN);
        if opts.n_bootstrap > 0 && n_edges > 0 {
            let mut boots = Vec::with_capacity(opts.n_bootstrap);
            for _ in 0..opts.n_bootstrap {
                let (mut e, mut m) = (0usize, 0usize);
                for _ in 0..k {
                    let r = rng.random_range(0..k);
                    e += per[r].0;
                    m += per[r].1;
                }
                if e > 0 {
                    boots.push(m as f64 / e as f64);
                }
            }
            boots.sort_by(f64::total_cmp);
            lo = quantile_sorted(&boots, 0.025);
            hi = quantile_sorted(&boots, 0.975);
        }
        levels.push(ImplicationLevel {
            quantile: q,
            threshold: tau,
            n_edges,
            n_implied,
            precision: ratio(n_implied, n_edges),
            ci_low: lo,
            ci_high: hi,
            sign_agreement: ratio(n_sign, n_implied),
        });
    }
    Ok(ImplicationReport {
        test: "two-sided Wilcoxon rank-sum vs control (normal approx., tie + continuity corrected), Benjamini-Hochberg per perturbation",
        fdr: opts.fdr,
        normalized_log1p: de.normalized,
        n_perturbations: k,
        n_control_cells: de.n_control,
        n_candidate_pairs: n_cand,
        baseline_rate: if n_cand == 0 {
            f64::NAN
        } else {
            n_de as f64 / n_cand as f64
        },
        n_bootstrap: opts.n_bootstrap,
        levels,
        skipped: de.skipped.clone(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ndarray::array;

    fn table(q: Array2<f64>, z: Array2<f64>) -> DeTable {
        DeTable {
            sources: vec![0, 1],
            n_cells: vec![10, 10],
            n_control: 10,
            pvals: q.clone(),
            qvals: q,
            z,
            normalized: false,
            skipped: vec![],
        }
    }

    #[test]
    fn precision_counts_implied_edges() {
        // sources 0 and 1 of a 3-gene matrix; DE: 0→1 yes, 0→2 no, 1→0 yes, 1→2 no
        let nan = f64::NAN;
        let q = array![[nan, 0.01, 0.9], [0.001, nan, 0.5]];
        let z = array![[2.0, 3.0, 0.1], [-4.0, 5.0, 0.2]];
        let de = table(q, z);
        let a = array![[-1.0, 2.0, 0.1], [-3.0, -1.0, 0.2], [5.0, 5.0, -1.0]];
        let opts = ImplicationOptions {
            quantiles: vec![0.5, 0.9],
            n_bootstrap: 200,
            ..Default::default()
        };
        let r = implication(&a, &de, &opts).unwrap();
        assert_eq!(r.n_candidate_pairs, 4);
        assert!((r.baseline_rate - 0.5).abs() < 1e-12);
        // |a| over candidates: 0.1, 0.2, 2, 3 → median 1.1: edges 0→1 (DE), 1→0 (DE)
        let l = &r.levels[0];
        assert!((l.threshold - 1.1).abs() < 1e-12);
        assert_eq!((l.n_edges, l.n_implied), (2, 2));
        assert_eq!(l.precision, 1.0);
        assert_eq!(l.sign_agreement, 1.0); // 0→1 +/+ and 1→0 −/−
        assert_eq!((l.ci_low, l.ci_high), (1.0, 1.0));
        // q = 0.9 → threshold 2.7: only 1→0
        assert_eq!(r.levels[1].n_edges, 1);
        // a matrix predicting the non-DE pairs scores 0
        let b = array![[-1.0, 0.1, 2.0], [0.2, -1.0, 3.0], [0.0, 0.0, -1.0]];
        let r = implication(&b, &de, &opts).unwrap();
        assert_eq!(r.levels[0].precision, 0.0);
        // wrong shape and bad options are errors
        assert!(implication(&Array2::zeros((2, 2)), &de, &opts).is_err());
        let bad = ImplicationOptions {
            quantiles: vec![1.0],
            ..Default::default()
        };
        assert!(implication(&a, &de, &bad).is_err());
    }
}
