//! Causal metrics of an estimated effect matrix against a known one
//! (`design/clipr.md`, "Validation and metrics"), plus the adjusted Rand index
//! used to score gene modules.
//!
//! Both matrices use the causal orientation (`[i, j]` = effect of gene `i` on
//! gene `j`); only off-diagonal entries are scored.
//! - `auroc3`: truth classes −/0/+ with `|a| < zero_threshold` (0.5) counted as
//!   0; one-vs-one AUROC of the raw predicted value for each pair of classes
//!   present (higher class = positive), averaged (Hand & Till 2001 style, for
//!   an ordinal score). Ties count ½ (Mann–Whitney).
//! - `directed_auprc`: positives are the true edges `i → j` (`|a_ij| ≥ 0.5`),
//!   score `|â_ij|`; average precision (step-wise, ties grouped). A symmetric
//!   prediction scores `j → i` as high as `i → j` and is penalised.
//! - `pearson`: correlation of off-diagonal entries.
//! - `sign_f1`: macro-F1 over the classes −/0/+ present in truth or
//!   prediction; the prediction is thresholded at `|â| ≥ τ` where, by default,
//!   τ makes the number of predicted edges equal the number of true edges
//!   (scale-free, so estimators in different units compare fairly).
use serde::Serialize;

use ndarray::ArrayView2;

use crate::error::{CliprError, Result};

/// How predicted entries are turned into signs for `sign_f1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SignThreshold {
    /// τ such that the number of predicted edges equals the number of true edges.
    MatchDensity,
    /// A fixed τ in the units of the prediction.
    Fixed(f64),
}

#[derive(Debug, Clone, Copy)]
pub struct MetricOptions {
    /// Truth entries with `|a| <` this are class 0 (default 0.5).
    pub zero_threshold: f64,
    pub sign_threshold: SignThreshold,
}

impl Default for MetricOptions {
    fn default() -> Self {
        MetricOptions {
            zero_threshold: 0.5,
            sign_threshold: SignThreshold::MatchDensity,
        }
    }
}

/// The four scores printed by `cellmol clipr --truth … --json`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CausalMetrics {
    pub auroc3: f64,
    pub directed_auprc: f64,
    pub pearson: f64,
    pub sign_f1: f64,
}

/// Scores `pred` against `truth` (both `[d, d]`, causal orientation).
pub fn causal_metrics(
    pred: ArrayView2<f64>,
    truth: ArrayView2<f64>,
    opts: &MetricOptions,
) -> Result<CausalMetrics> {
    if pred.dim() != truth.dim() || pred.nrows() != pred.ncols() {
        return Err(CliprError::Shape {
            context: "causal metrics".into(),
            expected: format!(
                "two square matrices of the same shape (truth {:?})",
                truth.shape()
            ),
            found: format!("{:?}", pred.shape()),
        });
    }
    let d = pred.nrows();
    let mut p = Vec::with_capacity(d * d.saturating_sub(1));
    let mut t = Vec::with_capacity(p.capacity());
    for i in 0..d {
        for j in 0..d {
            if i != j {
                p.push(pred[[i, j]]);
                t.push(truth[[i, j]]);
            }
        }
    }
    if p.iter().chain(&t).any(|v| !v.is_finite()) {
        return Err(CliprError::NonFinite {
            context: "causal metrics".into(),
            what: "NaN or inf in the effect matrices".into(),
        });
    }
    let z = opts.zero_threshold;
    let cls: Vec<i8> = t.iter().map(|&v| class_of(v, z)).collect();
    // three-class one-vs-one AUROC
    let mut aucs = Vec::new();
    for (lo, hi) in [(-1i8, 0i8), (0, 1), (-1, 1)] {
        let pos: Vec<f64> = p
            .iter()
            .zip(&cls)
            .filter(|(_, &c)| c == hi)
            .map(|(&s, _)| s)
            .collect();
        let neg: Vec<f64> = p
            .iter()
            .zip(&cls)
            .filter(|(_, &c)| c == lo)
            .map(|(&s, _)| s)
            .collect();
        if !pos.is_empty() && !neg.is_empty() {
            aucs.push(auroc(&pos, &neg));
        }
    }
    let auroc3 = if aucs.is_empty() {
        f64::NAN
    } else {
        aucs.iter().sum::<f64>() / aucs.len() as f64
    };
    let labels: Vec<bool> = cls.iter().map(|&c| c != 0).collect();
    let scores: Vec<f64> = p.iter().map(|v| v.abs()).collect();
    let directed_auprc = average_precision(&scores, &labels);
    let pearson = pearson(&p, &t);
    let n_true = labels.iter().filter(|&&l| l).count();
    let tau = match opts.sign_threshold {
        SignThreshold::Fixed(x) => x,
        SignThreshold::MatchDensity => {
            if n_true == 0 {
                f64::INFINITY
            } else {
                let mut s = scores.clone();
                s.sort_by(|a, b| b.total_cmp(a));
                s[n_true - 1]
            }
        }
    };
    let pcls: Vec<i8> = p
        .iter()
        .map(|&v| {
            if v.abs() >= tau && v != 0.0 {
                if v > 0.0 {
                    1
                } else {
                    -1
                }
            } else {
                0
            }
        })
        .collect();
    let sign_f1 = macro_f1(&cls, &pcls);
    Ok(CausalMetrics {
        auroc3,
        directed_auprc,
        pearson,
        sign_f1,
    })
}

fn class_of(v: f64, z: f64) -> i8 {
    if v.abs() < z {
        0
    } else if v > 0.0 {
        1
    } else {
        -1
    }
}

/// AUROC = P(score_pos > score_neg) + ½ P(tie), via ranks (O(n log n)).
pub fn auroc(pos: &[f64], neg: &[f64]) -> f64 {
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += all[i..=j].iter().filter(|x| x.1).count() as f64 * avg_rank;
        i = j + 1;
    }
    let (np, nn) = (pos.len() as f64, neg.len() as f64);
    (rank_sum - np * (np + 1.0) / 2.0) / (np * nn)
}

/// Average precision `Σ_n (R_n − R_{n−1}) P_n` over distinct score thresholds
/// (as scikit-learn's `average_precision_score`); NaN without positives.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> f64 {
    let n_pos = labels.iter().filter(|&&l| l).count();
    if n_pos == 0 {
        return f64::NAN;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut prev_r) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            if labels[idx[j]] {
                tp += 1;
            } else {
                fp += 1;
            }
            j += 1;
        }
        let r = tp as f64 / n_pos as f64;
        let prec = tp as f64 / (tp + fp) as f64;
        ap += (r - prev_r) * prec;
        prev_r = r;
        i = j;
    }
    ap
}

/// Pearson correlation (NaN when either side is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// Macro-F1 over the classes that occur in `truth` or `pred`.
pub fn macro_f1(truth: &[i8], pred: &[i8]) -> f64 {
    let mut f1s = Vec::new();
    for c in [-1i8, 0, 1] {
        let tp = truth
            .iter()
            .zip(pred)
            .filter(|(&t, &p)| t == c && p == c)
            .count() as f64;
        let n_t = truth.iter().filter(|&&t| t == c).count() as f64;
        let n_p = pred.iter().filter(|&&p| p == c).count() as f64;
        if n_t + n_p > 0.0 {
            f1s.push(2.0 * tp / (n_t + n_p));
        }
    }
    f1s.iter().sum::<f64>() / f1s.len().max(1) as f64
}

/// Adjusted Rand index of two labellings (Hubert & Arabie 1985).
pub fn adjusted_rand_index(a: &[i64], b: &[i64]) -> f64 {
    use std::collections::HashMap;
    let n = a.len();
    let mut cont: HashMap<(i64, i64), f64> = HashMap::new();
    let mut ra: HashMap<i64, f64> = HashMap::new();
    let mut rb: HashMap<i64, f64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *cont.entry((x, y)).or_default() += 1.0;
        *ra.entry(x).or_default() += 1.0;
        *rb.entry(y).or_default() += 1.0;
    }
    let c2 = |v: f64| v * (v - 1.0) / 2.0;
    let index: f64 = cont.values().map(|&v| c2(v)).sum();
    let sa: f64 = ra.values().map(|&v| c2(v)).sum();
    let sb: f64 = rb.values().map(|&v| c2(v)).sum();
    let total = c2(n as f64);
    let expected = sa * sb / total;
    let max = 0.5 * (sa + sb);
    if (max - expected).abs() < 1e-300 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn auroc_by_hand() {
        // pos {3, 1}, neg {2, 0}: pairs (3>2, 3>0, 1<2, 1>0) → 3/4
        assert!((auroc(&[3.0, 1.0], &[2.0, 0.0]) - 0.75).abs() < 1e-12);
        // one tie counts ½: pos {1}, neg {1, 0} → (0.5 + 1)/2
        assert!((auroc(&[1.0], &[1.0, 0.0]) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn average_precision_by_hand() {
        // ranked: + - + -  → AP = 1·½ + ⅔·½ = 5/6
        let ap = average_precision(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false]);
        assert!((ap - 5.0 / 6.0).abs() < 1e-12);
        // all tied: AP = prevalence
        let ap = average_precision(&[1.0; 4], &[true, false, false, false]);
        assert!((ap - 0.25).abs() < 1e-12);
    }

    #[test]
    fn macro_f1_and_pearson_by_hand() {
        // truth  - 0 + +, pred - + + 0: F1(-)=1, F1(0)=0, F1(+)=2·1/(2+2)=0.5 → 0.5
        assert!((macro_f1(&[-1, 0, 1, 1], &[-1, 1, 1, 0]) - 0.5).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn metrics_of_truth_are_perfect_and_symmetric_answers_lose_direction() {
        // 0→1 (+2), 1→2 (−1.5), 2→0 (+0.8): a directed cycle
        let truth = array![[-1.0, 2.0, 0.0], [0.0, -1.0, -1.5], [0.8, 0.0, -1.0]];
        let m = causal_metrics(truth.view(), truth.view(), &MetricOptions::default()).unwrap();
        assert!((m.auroc3 - 1.0).abs() < 1e-12 && (m.directed_auprc - 1.0).abs() < 1e-12);
        assert!((m.pearson - 1.0).abs() < 1e-12 && (m.sign_f1 - 1.0).abs() < 1e-12);
        let sym = &truth + &truth.t();
        let s = causal_metrics(sym.view(), truth.view(), &MetricOptions::default()).unwrap();
        // every true edge ties with its reverse (a non-edge): AP with pairs tied = ½
        assert!((s.directed_auprc - 0.5).abs() < 1e-12, "{s:?}");
        assert!(s.auroc3 < 1.0);
    }

    #[test]
    fn ari_by_hand() {
        assert!((adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 7, 7]) - 1.0).abs() < 1e-12);
        // sklearn: adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714
        assert!((adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 4.0 / 7.0).abs() < 1e-12);
        // contingency index 2, row and column sums of pairs 6 and 6, 15 pairs: (2 − 2.4)/(6 − 2.4)
        let ari = adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 1, 0, 1, 0, 1]);
        let expected = (2.0 - 6.0 * 6.0 / 15.0) / (6.0 - 36.0 / 15.0);
        assert!((ari - expected).abs() < 1e-12);
    }
}
