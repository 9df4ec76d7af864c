//! Cell QC, library-size normalisation + log1p, highly variable genes and
//! the evaluation gene selection of design/lcd.md.
//!
//! - Normalisation: `x ← log1p(x · target_sum / library_size)` per cell,
//!   `target_sum = 1e4`, library size = total counts over *all* genes.
//! - HVGs: the Seurat flavour (Satija et al. 2015; scanpy
//!   `highly_variable_genes(flavor="seurat")`): per gene mean m and variance
//!   v of the normalised (not logged) values, dispersion `ln(v / m)`, genes
//!   binned by `ln(1 + m)` into 20 equal-width bins, dispersion z-scored
//!   within its bin (bins of one gene get z = 0); genes ranked by z.
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Cell and condition QC thresholds (all optional except the cell count).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QcOptions {
    /// Drop cells with fewer total counts.
    pub min_counts: Option<f64>,
    /// Drop cells with fewer detected genes.
    pub min_genes: Option<usize>,
    /// Drop cells whose fraction of counts in `MT-` genes exceeds this
    /// (skipped, and reported, when the screen has no `MT-` genes).
    pub max_mito_fraction: Option<f64>,
    /// Conditions with fewer cells (after cell QC) are excluded from splits
    /// and reported (design/lcd.md: ≥ 100).
    pub min_cells_per_condition: usize,
}

impl Default for QcOptions {
    fn default() -> Self {
        Self {
            min_counts: None,
            min_genes: None,
            max_mito_fraction: None,
            min_cells_per_condition: 100,
        }
    }
}

/// Per-cell statistics over all genes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CellStats {
    pub total: f64,
    pub n_genes: usize,
    pub mito: f64,
}

/// Is this a mitochondrial gene name (`MT-…`, any case)?
pub fn is_mito(name: &str) -> bool {
    name.len() > 3 && name[..3].eq_ignore_ascii_case("mt-")
}

/// `log1p(x · target_sum / lib)` row by row, in place. `x: [n_cells, n_genes]`,
/// `library_sizes: [n_cells]`; rows with a zero library stay zero.
pub fn normalize_log1p(x: &mut ndarray::Array2<f32>, library_sizes: &[f64], target_sum: f64) {
    x.axis_iter_mut(ndarray::Axis(0))
        .into_par_iter()
        .zip(library_sizes.par_iter())
        .for_each(|(mut row, &lib)| {
            let s = if lib > 0.0 {
                (target_sum / lib) as f32
            } else {
                0.0
            };
            row.mapv_inplace(|v| (v * s).ln_1p());
        });
}

/// Seurat-flavour normalised dispersion per gene from sums over cells of the
/// normalised values and their squares (`n` cells), as scanpy's
/// `highly_variable_genes(flavor="seurat")` computes it on log1p data:
/// mean and unbiased variance of the normalised counts (a zero mean becomes
/// 1e-12), dispersion `ln(var / mean)` (none where it is 0), genes binned by
/// `ln(1 + mean)` into 20 equal-width bins with pandas' `cut` edges (right-
/// closed, lowest edge lowered by 0.1 % of the range), and
/// `(dispersion − bin mean) / bin std` (std with ddof 1). A bin with one
/// dispersion gives 1 (scanpy's rule). Genes without a normalised dispersion
/// (no dispersion, or a bin of equal dispersions) get `-inf`, which scanpy's
/// top-n selection also never picks.
pub fn seurat_dispersion(sum: &[f64], sumsq: &[f64], n: usize) -> Vec<f64> {
    const BINS: usize = 20;
    let nf = n as f64;
    let g = sum.len();
    let mut mean_log = vec![0.0; g];
    let mut disp = vec![f64::NAN; g];
    for i in 0..g {
        let mut m = sum[i] / nf;
        let v = if n > 1 {
            (sumsq[i] - nf * m * m).max(0.0) / (nf - 1.0)
        } else {
            0.0
        };
        if m == 0.0 {
            m = 1e-12;
        }
        mean_log[i] = m.ln_1p();
        if v > 0.0 {
            disp[i] = (v / m).ln();
        }
    }
    let bin_of = mean_bins(&mean_log, BINS);
    let mut acc = vec![(0.0, 0usize); BINS];
    for i in 0..g {
        if disp[i].is_finite() {
            let b = &mut acc[bin_of[i]];
            b.0 += disp[i];
            b.1 += 1;
        }
    }
    let avg: Vec<f64> = acc.iter().map(|&(s, k)| s / k.max(1) as f64).collect();
    let mut ss = vec![0.0; BINS];
    for i in 0..g {
        if disp[i].is_finite() {
            let d = disp[i] - avg[bin_of[i]];
            ss[bin_of[i]] += d * d;
        }
    }
    (0..g)
        .map(|i| {
            let b = bin_of[i];
            let z = if !disp[i].is_finite() {
                f64::NAN
            } else if acc[b].1 < 2 {
                // scanpy: dev = avg, avg = 0, so z = disp / disp (NaN for 0)
                if disp[i] == 0.0 {
                    f64::NAN
                } else {
                    1.0
                }
            } else {
                let sd = (ss[b] / (acc[b].1 as f64 - 1.0)).sqrt();
                (disp[i] - avg[b]) / sd
            };
            if z.is_nan() {
                f64::NEG_INFINITY
            } else {
                z
            }
        })
        .collect()
}

/// Bin of each value among `bins` equal-width bins as pandas `cut(x, bins)`
/// makes them: `linspace(min, max, bins + 1)` edges, right-closed intervals,
/// the first edge lowered by 0.1 % of the range (all-equal values: the range
/// is widened by 0.1 % of the value, or by 0.001 around 0).
fn mean_bins(x: &[f64], bins: usize) -> Vec<usize> {
    let (mut lo, mut hi) = x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if x.is_empty() {
        return Vec::new();
    }
    let adjust_first = lo != hi;
    if !adjust_first {
        let d = if lo != 0.0 { 0.001 * lo.abs() } else { 0.001 };
        lo -= d;
        hi += d;
    }
    let step = (hi - lo) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|k| lo + k as f64 * step).collect();
    edges[bins] = hi;
    if adjust_first {
        edges[0] -= (hi - lo) * 0.001;
    }
    x.iter()
        .map(|&v| {
            edges
                .partition_point(|&e| e < v)
                .saturating_sub(1)
                .min(bins - 1)
        })
        .collect()
}

/// Indices of the `n` genes with the highest normalised dispersion (ties
/// by index; genes at `-inf` are never chosen), best first, skipping
/// `exclude`d genes.
pub fn top_dispersed(z: &[f64], n: usize, exclude: &[bool]) -> Vec<usize> {
    let mut rest: Vec<usize> = (0..z.len())
        .filter(|&g| z[g] > f64::NEG_INFINITY && !exclude.get(g).copied().unwrap_or(false))
        .collect();
    rest.sort_by(|&a, &b| z[b].total_cmp(&z[a]).then(a.cmp(&b)));
    rest.truncate(n);
    rest
}

/// The genes chosen for evaluation, in order: perturbed in test, perturbed in
/// training, then HVGs (var indices).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneSelection {
    pub genes: Vec<usize>,
    pub n_test_perturbed: usize,
    pub n_train_perturbed: usize,
    pub n_hvg: usize,
    /// More perturbed genes than `n_genes`: the list was cut.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_matches_definition() {
        let mut x = ndarray::arr2(&[[1.0f32, 3.0], [0.0, 0.0]]);
        normalize_log1p(&mut x, &[4.0, 0.0], 1e4);
        assert!((x[[0, 0]] - (2500f32).ln_1p()).abs() < 1e-5);
        assert!((x[[0, 1]] - (7500f32).ln_1p()).abs() < 1e-4);
        assert_eq!(x[[1, 0]], 0.0);
    }

    #[test]
    fn dispersion_ranks_overdispersed_gene_first() {
        // 400 genes (~20 per mean bin) with var ≈ mean, one with var = 20·mean.
        let n = 100;
        let mut sum = Vec::new();
        let mut sumsq = Vec::new();
        for i in 0..400 {
            let m = 1.0 + i as f64 * 0.005;
            let v = if i == 200 {
                20.0 * m
            } else {
                m * (1.0 + 0.01 * (i % 5) as f64)
            };
            sum.push(m * n as f64);
            sumsq.push(v * (n as f64 - 1.0) + n as f64 * m * m);
        }
        let z = seurat_dispersion(&sum, &sumsq, n);
        let best = (0..400)
            .max_by(|&a, &b| z[a].total_cmp(&z[b]))
            .expect("genes");
        assert_eq!(best, 200);
        assert!(z[200] > 3.0, "z = {}", z[200]);
        assert!(is_mito("MT-CO1") && is_mito("mt-Nd1") && !is_mito("MTOR"));
    }
}
