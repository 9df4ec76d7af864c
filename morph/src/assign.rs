//! Matching prior atoms to data atoms by unbalanced optimal transport
//! (`design/morph.md`, "Matching noise atoms to data atoms"): a square
//! `(N + M)²` cost with deletion and insertion blocks solved exactly by the
//! Hungarian algorithm (Kuhn 1955; shortest augmenting paths with potentials,
//! O(n³)), followed by a Kabsch/Horn rotation of the prior onto its matched
//! targets (Horn 1987, unit quaternions).

/// Cost used for forbidden cells of the deletion / insertion blocks.
pub const FORBIDDEN: f64 = 1e8;

/// Solve the linear assignment problem on a square `n × n` cost matrix
/// (row-major). Returns `col_of_row`.
pub fn hungarian(cost: &[f64], n: usize) -> Vec<usize> {
    assert_eq!(cost.len(), n * n, "hungarian: cost must be n × n");
    if n == 0 {
        return Vec::new();
    }
    // 1-based potentials formulation.
    let inf = f64::INFINITY;
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; n + 1];
    let mut p = vec![0usize; n + 1]; // p[j] = row matched to column j
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![inf; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0usize;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut col_of_row = vec![0usize; n];
    for j in 1..=n {
        if p[j] > 0 {
            col_of_row[p[j] - 1] = j - 1;
        }
    }
    col_of_row
}

/// Costs of the unbalanced OT matching.
#[derive(Debug, Clone, Copy)]
pub struct MatchCosts {
    pub c_move: f64,
    pub c_sub: f64,
    pub c_ins: f64,
    pub c_del: f64,
}

/// Result of matching: per prior atom the data atom it becomes (`None` =
/// deleted); the data atoms no prior atom reaches are inserted.
#[derive(Debug, Clone, PartialEq)]
pub struct Matching {
    pub prior_to_data: Vec<Option<usize>>,
    pub inserted: Vec<usize>,
}

/// Build the `(N + M)²` cost (rows: N prior atoms then M insertion dummies;
/// columns: M data atoms then N deletion dummies) and solve it.
/// `pinned` forces prior atom i onto data atom j (scaffold atoms).
pub fn unbalanced_match(
    x0: &[[f64; 3]],
    a0: &[usize],
    x1: &[[f64; 3]],
    a1: &[usize],
    costs: &MatchCosts,
    pinned: &[(usize, usize)],
) -> Matching {
    let (n, m) = (x0.len(), x1.len());
    let s = n + m;
    let mut c = vec![0.0; s * s];
    for i in 0..s {
        for j in 0..s {
            c[i * s + j] = match (i < n, j < m) {
                (true, true) => {
                    let d = (0..3)
                        .map(|k| (x0[i][k] - x1[j][k]).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    costs.c_move * d + if a0[i] != a1[j] { costs.c_sub } else { 0.0 }
                }
                (true, false) => {
                    if j - m == i {
                        costs.c_del
                    } else {
                        FORBIDDEN
                    }
                }
                (false, true) => {
                    if i - n == j {
                        costs.c_ins
                    } else {
                        FORBIDDEN
                    }
                }
                (false, false) => 0.0,
            };
        }
    }
    for &(pi, dj) in pinned {
        for j in 0..s {
            c[pi * s + j] = if j == dj { -FORBIDDEN } else { FORBIDDEN };
        }
        for i in 0..s {
            if i != pi {
                c[i * s + dj] = FORBIDDEN;
            }
        }
    }
    let col = hungarian(&c, s);
    let prior_to_data: Vec<Option<usize>> =
        (0..n).map(|i| (col[i] < m).then_some(col[i])).collect();
    let mut reached = vec![false; m];
    prior_to_data
        .iter()
        .flatten()
        .for_each(|&j| reached[j] = true);
    let inserted = (0..m).filter(|&j| !reached[j]).collect();
    Matching {
        prior_to_data,
        inserted,
    }
}

/// Largest-eigenvalue eigenvector of a symmetric 4 × 4 matrix (cyclic Jacobi).
fn top_eigvec4(mut a: [[f64; 4]; 4]) -> [f64; 4] {
    let mut v = [[0.0; 4]; 4];
    (0..4).for_each(|i| v[i][i] = 1.0);
    for _sweep in 0..50 {
        let off: f64 = (0..4)
            .flat_map(|i| (0..4).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..4 {
            for q in p + 1..4 {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..4 {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..4 {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for k in 0..4 {
                    let (vkp, vkq) = (v[k][p], v[k][q]);
                    v[k][p] = c * vkp - s * vkq;
                    v[k][q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let best = (0..4)
        .max_by(|&i, &j| a[i][i].total_cmp(&a[j][j]))
        .unwrap_or(0);
    [v[0][best], v[1][best], v[2][best], v[3][best]]
}

/// Proper rotation `R` (row-major 3 × 3) minimising `Σ ‖R p_i − q_i‖²` about
/// the origin (Horn's quaternion solution of the Kabsch problem).
pub fn kabsch(p: &[[f64; 3]], q: &[[f64; 3]]) -> [[f64; 3]; 3] {
    let mut s = [[0.0; 3]; 3];
    for (pi, qi) in p.iter().zip(q) {
        for a in 0..3 {
            for b in 0..3 {
                s[a][b] += pi[a] * qi[b];
            }
        }
    }
    let (sxx, sxy, sxz) = (s[0][0], s[0][1], s[0][2]);
    let (syx, syy, syz) = (s[1][0], s[1][1], s[1][2]);
    let (szx, szy, szz) = (s[2][0], s[2][1], s[2][2]);
    let n = [
        [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
        [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
        [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
        [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
    ];
    let [w, x, y, z] = top_eigvec4(n);
    let norm = (w * w + x * x + y * y + z * z).sqrt().max(1e-300);
    let (w, x, y, z) = (w / norm, x / norm, y / norm, z / norm);
    [
        [
            w * w + x * x - y * y - z * z,
            2.0 * (x * y - w * z),
            2.0 * (x * z + w * y),
        ],
        [
            2.0 * (x * y + w * z),
            w * w - x * x + y * y - z * z,
            2.0 * (y * z - w * x),
        ],
        [
            2.0 * (x * z - w * y),
            2.0 * (y * z + w * x),
            w * w - x * x - y * y + z * z,
        ],
    ]
}

/// Apply a row-major rotation to a point.
pub fn rotate(r: &[[f64; 3]; 3], p: &[f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|a| r[a][0] * p[0] + r[a][1] * p[1] + r[a][2] * p[2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn brute(cost: &[f64], n: usize) -> f64 {
        fn rec(c: &[f64], n: usize, row: usize, used: &mut Vec<bool>) -> f64 {
            if row == n {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for j in 0..n {
                if !used[j] {
                    used[j] = true;
                    best = best.min(c[row * n + j] + rec(c, n, row + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        rec(cost, n, 0, &mut vec![false; n])
    }

    #[test]
    fn hungarian_is_optimal_against_brute_force() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for n in 1..=7 {
            for _ in 0..20 {
                let c: Vec<f64> = (0..n * n).map(|_| rng.random_range(0.0..10.0)).collect();
                let a = hungarian(&c, n);
                let mut seen = vec![false; n];
                a.iter().for_each(|&j| seen[j] = true);
                assert!(seen.iter().all(|&s| s));
                let got: f64 = (0..n).map(|i| c[i * n + a[i]]).sum();
                assert!((got - brute(&c, n)).abs() < 1e-9, "n={n}");
            }
        }
    }

    #[test]
    fn unbalanced_blocks() {
        let x0 = [[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [9.0, 9.0, 9.0]];
        let x1 = [[5.1, 0.0, 0.0], [0.1, 0.0, 0.0]];
        let c = MatchCosts {
            c_move: 1.0,
            c_sub: 0.0,
            c_ins: 1e8,
            c_del: 0.0,
        };
        let m = unbalanced_match(&x0, &[0, 0, 0], &x1, &[0, 0], &c, &[]);
        assert_eq!(m.prior_to_data, vec![Some(1), Some(0), None]);
        assert!(m.inserted.is_empty());
        // More data atoms than prior atoms: one insertion is forced.
        let m = unbalanced_match(&x0[..1], &[0], &x1, &[0, 0], &c, &[]);
        assert_eq!(m.prior_to_data, vec![Some(1)]);
        assert_eq!(m.inserted, vec![0]);
        // Pinning overrides the distance preference.
        let m = unbalanced_match(&x0, &[0, 0, 0], &x1, &[0, 0], &c, &[(0, 0)]);
        assert_eq!(m.prior_to_data[0], Some(0));
    }

    #[test]
    fn kabsch_recovers_rotation() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let p: Vec<[f64; 3]> = (0..6)
            .map(|_| [0; 3].map(|_| rng.random_range(-1.0..1.0)))
            .collect();
        let (ang, ax) = (0.7f64, [1.0, 2.0, -0.5f64]);
        let nrm = (ax[0] * ax[0] + ax[1] * ax[1] + ax[2] * ax[2]).sqrt();
        let (w, s) = ((ang / 2.0).cos(), (ang / 2.0).sin());
        let (x, y, z) = (s * ax[0] / nrm, s * ax[1] / nrm, s * ax[2] / nrm);
        let r_true = [
            [
                w * w + x * x - y * y - z * z,
                2.0 * (x * y - w * z),
                2.0 * (x * z + w * y),
            ],
            [
                2.0 * (x * y + w * z),
                w * w - x * x + y * y - z * z,
                2.0 * (y * z - w * x),
            ],
            [
                2.0 * (x * z - w * y),
                2.0 * (y * z + w * x),
                w * w - x * x - y * y + z * z,
            ],
        ];
        let q: Vec<[f64; 3]> = p.iter().map(|pi| rotate(&r_true, pi)).collect();
        let r = kabsch(&p, &q);
        for (pi, qi) in p.iter().zip(&q) {
            let rp = rotate(&r, pi);
            (0..3).for_each(|k| assert!((rp[k] - qi[k]).abs() < 1e-8));
        }
    }
}
