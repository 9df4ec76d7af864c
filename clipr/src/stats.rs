//! Small statistics used by the implication test: the two-sample Wilcoxon
//! rank-sum (Mann–Whitney U) test and the Benjamini–Hochberg adjustment.
//!
//! Both follow SciPy's definitions so results can be checked against it:
//! - [`rank_sum_test`] = `scipy.stats.mannwhitneyu(x, y,
//!   alternative="two-sided", method="asymptotic", use_continuity=True)`:
//!   midranks for ties, tie-corrected variance, continuity correction 0.5;
//! - [`benjamini_hochberg`] = `scipy.stats.false_discovery_control(p,
//!   method="bh")`.

/// Result of a two-sided rank-sum test of `x` against `y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankSum {
    /// Mann–Whitney `U` of `x` (`R_x − n_x (n_x + 1) / 2`).
    pub u: f64,
    /// Signed standard score of `U` without continuity correction
    /// (> 0 when `x` tends to be larger than `y`; 0 when every value ties).
    pub z: f64,
    /// Two-sided p-value (normal approximation, continuity-corrected).
    pub p: f64,
}

/// Two-sided Wilcoxon rank-sum test on samples that are **already sorted**
/// ascending (one merge pass, O(n_x + n_y)). Values must be finite (NaN is
/// ordered last and would be treated as a distinct value).
pub fn rank_sum_sorted(x: &[f64], y: &[f64]) -> RankSum {
    let (nx, ny) = (x.len(), y.len());
    if nx == 0 || ny == 0 {
        return RankSum {
            u: 0.0,
            z: 0.0,
            p: 1.0,
        };
    }
    let (mut i, mut j) = (0usize, 0usize);
    let mut before = 0usize; // values ranked so far
    let mut rank_x = 0.0f64;
    let mut tie_sum = 0.0f64; // Σ (t³ − t)
    while i < nx || j < ny {
        let v = match (x.get(i), y.get(j)) {
            (Some(&a), Some(&b)) => {
                if a.total_cmp(&b).is_le() {
                    a
                } else {
                    b
                }
            }
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        let mut tx = 0usize;
        while i < nx && x[i].total_cmp(&v).is_eq() {
            tx += 1;
            i += 1;
        }
        let mut ty = 0usize;
        while j < ny && y[j].total_cmp(&v).is_eq() {
            ty += 1;
            j += 1;
        }
        let t = (tx + ty) as f64;
        let midrank = before as f64 + (t + 1.0) / 2.0;
        rank_x += tx as f64 * midrank;
        tie_sum += t * t * t - t;
        before += tx + ty;
    }
    let (fx, fy) = (nx as f64, ny as f64);
    let n = fx + fy;
    let u1 = rank_x - fx * (fx + 1.0) / 2.0;
    let mu = fx * fy / 2.0;
    let var = fx * fy / 12.0 * ((n + 1.0) - tie_sum / (n * (n - 1.0)));
    if var <= 0.0 || !var.is_finite() {
        // every value ties: no evidence either way
        return RankSum {
            u: u1,
            z: 0.0,
            p: 1.0,
        };
    }
    let s = var.sqrt();
    let u_max = u1.max(fx * fy - u1);
    let zc = (u_max - mu - 0.5) / s;
    let p = (2.0 * normal_sf(zc)).clamp(0.0, 1.0);
    RankSum {
        u: u1,
        z: (u1 - mu) / s,
        p,
    }
}

/// Two-sided Wilcoxon rank-sum test of `x` against `y` (sorts copies).
pub fn rank_sum_test(x: &[f64], y: &[f64]) -> RankSum {
    let mut xs = x.to_vec();
    let mut ys = y.to_vec();
    xs.sort_by(f64::total_cmp);
    ys.sort_by(f64::total_cmp);
    rank_sum_sorted(&xs, &ys)
}

/// Upper tail `P(Z > z)` of the standard normal, accurate in the far tail
/// (via `erfc`, so p-values far below 1e-16 keep their relative precision).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// Benjamini–Hochberg adjusted p-values (q-values), in the input order:
/// `q_(i) = min_{k ≥ i} p_(k) · m / k`, capped at 1. NaN p-values stay NaN
/// and do not count towards `m`.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = idx.len() as f64;
    let mut q = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (r, &i) in idx.iter().enumerate().rev() {
        let v = p[i] * m / (r as f64 + 1.0);
        running = running.min(v);
        q[i] = running.min(1.0);
    }
    q
}

/// `q`-quantile of a sorted slice by linear interpolation (NumPy's default).
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let h = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rank_sum_hand_example() {
        // x = [1, 2], y = [3, 4, 5]: R_x = 3, U = 0; var = 2·3/12·6 = 3;
        // two-sided z = (6 − 3 − 0.5)/√3
        let r = rank_sum_test(&[2.0, 1.0], &[5.0, 3.0, 4.0]);
        assert_eq!(r.u, 0.0);
        assert!((r.z + 3.0 / 3f64.sqrt()).abs() < 1e-12);
        let want = 2.0 * normal_sf(2.5 / 3f64.sqrt());
        assert!((r.p - want).abs() < 1e-15);
        // all tied: p = 1
        assert_eq!(rank_sum_test(&[1.0, 1.0], &[1.0]).p, 1.0);
        assert_eq!(rank_sum_test(&[], &[1.0]).p, 1.0);
    }

    #[test]
    fn bh_hand_example() {
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.5, f64::NAN]);
        // sorted 0.01, 0.03, 0.04, 0.5 with m = 4: 0.04, 0.06, 0.0533.., 0.5 → cummin from the top
        let want = [0.04, 0.04 * 4.0 / 3.0, 0.04 * 4.0 / 3.0, 0.5];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{q:?}");
        }
        assert!(q[4].is_nan());
    }

    #[test]
    fn quantile_interpolates() {
        let v = [0.0, 1.0, 2.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.5), 1.5);
        assert_eq!(quantile_sorted(&v, 1.0), 4.0);
        assert!((quantile_sorted(&v, 0.9) - 3.4).abs() < 1e-12);
    }
}
