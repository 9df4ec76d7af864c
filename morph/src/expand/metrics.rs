//! Evaluation metrics for expansion (`design/expand.md`, "Evaluation").
//!
//! * validity rate: fraction of samples with verifier score ≥ 0.5;
//! * Vendi score (Friedman & Dieng 2023): `exp(−Σ λ_i log λ_i)` over the
//!   eigenvalues of `K/n`, `K_ii = 1`. RBF kernel `exp(−‖x−y‖²/(2h²))`; linear
//!   kernel on unit-normalised rows (cosine), whose non-zero spectrum equals
//!   that of the `d × d` matrix `XᵀX/n`. Eigenvalues by cyclic Jacobi
//!   rotations ([`sym_eigenvalues`]; no LAPACK in this crate);
//! * coverage of a known valid set: the fraction of reference valid points
//!   (e.g. a grid over the verifier region) that have at least one sample
//!   within Euclidean radius `r`;
//! * Kabsch RMSD between conformers via the quaternion method (Horn 1987;
//!   Theobald 2005): `RMSD² = (G_a + G_b − 2 λ_max(M))/n` with the 4 × 4 key
//!   matrix `M` — identical to Kabsch with a proper rotation — and the mean
//!   pairwise RMSD as a conformer-diversity score.
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use super::{ExpandError, Result};

/// Fraction of scores ≥ 0.5.
pub fn validity_rate(scores: &[f64]) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().filter(|s| **s >= 0.5).count() as f64 / scores.len() as f64
}

/// Eigenvalues of a symmetric matrix by cyclic Jacobi rotations (ascending).
/// Converges quadratically; accurate to ~1e-12 relative for well-scaled input.
pub fn sym_eigenvalues(a: &Array2<f64>) -> Result<Vec<f64>> {
    let n = a.nrows();
    if a.ncols() != n {
        return Err(ExpandError::Shape {
            what: "symmetric eigenproblem".into(),
            expected: "a square matrix".into(),
            got: format!("{:?}", a.dim()),
        });
    }
    // Flat row-major copy; symmetric, so a rotation updates rows p, q and
    // mirrors them into columns p, q.
    let mut m: Vec<f64> = a.iter().copied().collect();
    let scale: f64 = m.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
    for _sweep in 0..60 {
        let mut off = 0.0;
        for i in 0..n {
            for j in (i + 1)..n {
                off += 2.0 * m[i * n + j] * m[i * n + j];
            }
        }
        if off.sqrt() <= 1e-13 * scale {
            break;
        }
        for p in 0..n {
            for q in (p + 1)..n {
                let apq = m[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = if theta == 0.0 {
                    1.0
                } else {
                    theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
                };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                let (app, aqq) = (m[p * n + p], m[q * n + q]);
                // rows p and q (k ≠ p, q), then mirror into the columns
                for k in 0..n {
                    if k == p || k == q {
                        continue;
                    }
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    let np = c * mpk - s * mqk;
                    let nq = s * mpk + c * mqk;
                    m[p * n + k] = np;
                    m[q * n + k] = nq;
                    m[k * n + p] = np;
                    m[k * n + q] = nq;
                }
                m[p * n + p] = app - t * apq;
                m[q * n + q] = aqq + t * apq;
                m[p * n + q] = 0.0;
                m[q * n + p] = 0.0;
            }
        }
    }
    let mut ev: Vec<f64> = (0..n).map(|i| m[i * n + i]).collect();
    ev.sort_by(|a, b| a.total_cmp(b));
    Ok(ev)
}

/// Kernel of the Vendi score.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum VendiKernel {
    /// `exp(−‖x − y‖² / (2 h²))` with bandwidth `h > 0`.
    Rbf { bandwidth: f64 },
    /// Cosine similarity of the rows (linear kernel on unit-normalised rows).
    Linear,
}

/// `exp` of the Shannon entropy of eigenvalues of `K / n` (the Vendi score
/// of a normalised kernel matrix); eigenvalues ≤ 1e-15 are skipped.
pub(crate) fn entropy_exp(eigs: &[f64]) -> f64 {
    let h: f64 = eigs
        .iter()
        .filter(|l| **l > 1e-15)
        .map(|l| -l * l.ln())
        .sum();
    h.exp()
}

/// Vendi score of samples `x` ([n, d]). Cost O(n³) for RBF: pass a subsample
/// (a few hundred rows) for large sets.
pub fn vendi(x: ArrayView2<f64>, kernel: VendiKernel) -> Result<f64> {
    let n = x.nrows();
    if n == 0 {
        return Err(ExpandError::Data {
            what: "Vendi score".into(),
            reason: "no samples".into(),
        });
    }
    match kernel {
        VendiKernel::Rbf { bandwidth } => {
            if !(bandwidth > 0.0) {
                return Err(ExpandError::Config {
                    config: "VendiKernel",
                    field: "bandwidth",
                    value: bandwidth.to_string(),
                    expected: "> 0",
                });
            }
            let rows: Vec<Vec<f64>> = (0..n)
                .into_par_iter()
                .map(|i| {
                    (0..n)
                        .map(|j| {
                            let d2: f64 = x
                                .row(i)
                                .iter()
                                .zip(x.row(j).iter())
                                .map(|(a, b)| (a - b) * (a - b))
                                .sum();
                            (-d2 / (2.0 * bandwidth * bandwidth)).exp() / n as f64
                        })
                        .collect()
                })
                .collect();
            let k = Array2::from_shape_fn((n, n), |(i, j)| rows[i][j]);
            Ok(entropy_exp(&sym_eigenvalues(&k)?))
        }
        VendiKernel::Linear => {
            let mut xn = x.to_owned();
            for mut r in xn.axis_iter_mut(Axis(0)) {
                let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                if norm > 0.0 {
                    r.mapv_inplace(|v| v / norm);
                }
            }
            let c = xn.t().dot(&xn) / n as f64; // [d, d], same non-zero spectrum as K/n
            Ok(entropy_exp(&sym_eigenvalues(&c)?))
        }
    }
}

/// Fraction of `reference` points ([m, d]) with a sample ([n, d]) within `radius`.
pub fn coverage(reference: ArrayView2<f64>, samples: ArrayView2<f64>, radius: f64) -> f64 {
    if reference.nrows() == 0 {
        return 0.0;
    }
    let r2 = radius * radius;
    let hit = (0..reference.nrows())
        .into_par_iter()
        .filter(|&i| {
            let p = reference.row(i);
            samples.rows().into_iter().any(|s| {
                s.iter()
                    .zip(p.iter())
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    <= r2
            })
        })
        .count();
    hit as f64 / reference.nrows() as f64
}

/// Minimal RMSD between two conformers ([n_atoms, 3], same atom order) over
/// rotations and translations (Kabsch, via the quaternion key matrix).
pub fn kabsch_rmsd(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<f64> {
    if a.dim() != b.dim() || a.ncols() != 3 || a.nrows() == 0 {
        return Err(ExpandError::Shape {
            what: "Kabsch RMSD".into(),
            expected: "two [n_atoms, 3] arrays of equal shape".into(),
            got: format!("{:?} and {:?}", a.dim(), b.dim()),
        });
    }
    let n = a.nrows() as f64;
    let (ca, cb) = (a.mean_axis(Axis(0)), b.mean_axis(Axis(0)));
    let (ca, cb) = match (ca, cb) {
        (Some(x), Some(y)) => (x, y),
        _ => {
            return Err(ExpandError::Data {
                what: "Kabsch RMSD".into(),
                reason: "empty conformer".into(),
            })
        }
    };
    let pa = &a - &ca.insert_axis(Axis(0));
    let pb = &b - &cb.insert_axis(Axis(0));
    let s = pa.t().dot(&pb); // [3, 3] cross-covariance
    let (ga, gb) = (
        pa.iter().map(|v| v * v).sum::<f64>(),
        pb.iter().map(|v| v * v).sum::<f64>(),
    );
    let (sxx, sxy, sxz, syx, syy, syz, szx, szy, szz) = (
        s[[0, 0]],
        s[[0, 1]],
        s[[0, 2]],
        s[[1, 0]],
        s[[1, 1]],
        s[[1, 2]],
        s[[2, 0]],
        s[[2, 1]],
        s[[2, 2]],
    );
    let k = ndarray::arr2(&[
        [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
        [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
        [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
        [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
    ]);
    let ev = sym_eigenvalues(&k)?;
    let lmax = ev.last().copied().unwrap_or(0.0);
    Ok(((ga + gb - 2.0 * lmax).max(0.0) / n).sqrt())
}

/// Mean pairwise Kabsch RMSD of a set of conformers of one molecule.
pub fn rmsd_diversity(confs: &[Array2<f64>]) -> Result<f64> {
    if confs.len() < 2 {
        return Ok(0.0);
    }
    let pairs: Vec<(usize, usize)> = (0..confs.len())
        .flat_map(|i| ((i + 1)..confs.len()).map(move |j| (i, j)))
        .collect();
    let vals = pairs
        .par_iter()
        .map(|&(i, j)| kabsch_rmsd(confs[i].view(), confs[j].view()))
        .collect::<Result<Vec<f64>>>()?;
    Ok(vals.iter().sum::<f64>() / vals.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn jacobi_matches_known_spectrum() {
        // eigenvalues of [[2,1,0],[1,2,1],[0,1,2]] are 2−√2, 2, 2+√2
        let a = array![[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]];
        let ev = sym_eigenvalues(&a).expect("eig");
        let want = [2.0 - 2f64.sqrt(), 2.0, 2.0 + 2f64.sqrt()];
        for (e, w) in ev.iter().zip(want) {
            assert!((e - w).abs() < 1e-10, "{ev:?}");
        }
    }

    #[test]
    fn jacobi_preserves_trace_and_frobenius() {
        // random symmetric 40×40: Σλ = trace, Σλ² = ‖A‖_F²
        let n = 40;
        let mut a = Array2::<f64>::zeros((n, n));
        let mut state = 12345u64;
        for i in 0..n {
            for j in 0..=i {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5;
                a[[i, j]] = v;
                a[[j, i]] = v;
            }
        }
        let ev = sym_eigenvalues(&a).expect("eig");
        let tr: f64 = (0..n).map(|i| a[[i, i]]).sum();
        let fro: f64 = a.iter().map(|v| v * v).sum();
        assert!((ev.iter().sum::<f64>() - tr).abs() < 1e-9);
        assert!((ev.iter().map(|v| v * v).sum::<f64>() - fro).abs() < 1e-9);
    }

    #[test]
    fn vendi_counts_clusters() {
        // 3 well-separated clusters of identical points → Vendi = 3 (RBF)
        let mut rows = Vec::new();
        for c in [0.0, 10.0, 20.0] {
            for _ in 0..4 {
                rows.extend([c, 0.0]);
            }
        }
        let x = Array2::from_shape_vec((12, 2), rows).expect("x");
        let v = vendi(x.view(), VendiKernel::Rbf { bandwidth: 0.5 }).expect("vendi");
        assert!((v - 3.0).abs() < 1e-6, "{v}");
        // linear kernel: orthogonal directions → 2
        let y = array![[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]];
        let vl = vendi(y.view(), VendiKernel::Linear).expect("vendi");
        assert!((vl - 2.0).abs() < 1e-9, "{vl}");
    }

    #[test]
    fn kabsch_is_rotation_invariant() {
        let a = array![
            [0.0, 0.0, 0.0],
            [1.5, 0.0, 0.0],
            [0.0, 1.2, 0.3],
            [0.4, -0.7, 1.1]
        ];
        let (c, s) = (0.6f64.cos(), 0.6f64.sin());
        let r = array![[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        let b = a.dot(&r.t()) + &array![[3.0, -1.0, 2.0]];
        assert!(kabsch_rmsd(a.view(), b.view()).expect("rmsd") < 1e-7);
        // a known non-zero case: move one atom by 1 Å along z of a planar-free set;
        // the optimum can only be ≤ the unaligned RMSD.
        let mut d = b.clone();
        d[[0, 2]] += 1.0;
        let rm = kabsch_rmsd(a.view(), d.view()).expect("rmsd");
        assert!(rm > 0.05 && rm <= 0.5 + 1e-9, "{rm}");
        assert!(rmsd_diversity(&[a.clone(), b, d]).expect("div") > 0.0);
    }

    #[test]
    fn coverage_counts_reference_points() {
        let refp = array![[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]];
        let s = array![[0.05, 0.0], [1.0, 0.08]];
        assert!((coverage(refp.view(), s.view(), 0.1) - 2.0 / 3.0).abs() < 1e-12);
    }
}
