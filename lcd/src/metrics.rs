//! Distribution metrics of the evaluation protocol (lcd.md): RMSE of means,
//! Pearson correlation of Δ = mean − ctrl mean, energy distance
//! (Székely & Rizzo 2013; U-statistics within samples), unbiased MMD²
//! (Gretton et al. 2012) with RBF kernels `exp(−‖x−y‖²/(2h²))` averaged over
//! `h ∈ logspace(−2, 1, 10) · √d`, and the per-gene Wasserstein-1 distance
//! averaged over genes. Inputs are cells × genes in the metric space.
use ndarray::{Array2, ArrayView2, Axis};

fn to64(a: ArrayView2<f32>) -> Array2<f64> {
    a.mapv(f64::from)
}

pub fn mean_vec(a: ArrayView2<f32>) -> Vec<f64> {
    let n = a.nrows().max(1) as f64;
    a.axis_iter(Axis(1))
        .map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>() / n)
        .collect()
}

pub fn rmse(a: &[f64], b: &[f64]) -> f64 {
    (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len().max(1) as f64).sqrt()
}

/// Pearson correlation (0 when either side is constant).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().max(1) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    if saa <= 0.0 || sbb <= 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// Squared Euclidean distances between rows of `x` and `y`.
pub fn sq_dists(x: &Array2<f64>, y: &Array2<f64>) -> Array2<f64> {
    let nx: Vec<f64> = x.rows().into_iter().map(|r| r.dot(&r)).collect();
    let ny: Vec<f64> = y.rows().into_iter().map(|r| r.dot(&r)).collect();
    let mut g = x.dot(&y.t());
    for ((i, j), v) in g.indexed_iter_mut() {
        *v = (nx[i] + ny[j] - 2.0 * *v).max(0.0);
    }
    g
}

fn off_diag_mean(k: &Array2<f64>) -> f64 {
    let n = k.nrows();
    if n < 2 {
        return 0.0;
    }
    (k.sum() - k.diag().sum()) / (n * (n - 1)) as f64
}

/// Energy distance `2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖`.
pub fn energy_distance(x: ArrayView2<f32>, y: ArrayView2<f32>) -> f64 {
    let (x, y) = (to64(x), to64(y));
    let dxy = sq_dists(&x, &y).mapv(f64::sqrt).mean().unwrap_or(0.0);
    let dxx = off_diag_mean(&sq_dists(&x, &x).mapv(f64::sqrt));
    let dyy = off_diag_mean(&sq_dists(&y, &y).mapv(f64::sqrt));
    2.0 * dxy - dxx - dyy
}

/// Bandwidths `logspace(−2, 1, 10) · √d`.
pub fn bandwidths(d: usize) -> Vec<f64> {
    (0..10)
        .map(|i| 10f64.powf(-2.0 + 3.0 * i as f64 / 9.0) * (d as f64).sqrt())
        .collect()
}

/// Unbiased MMD² averaged over RBF bandwidths `hs`.
pub fn mmd(x: ArrayView2<f32>, y: ArrayView2<f32>, hs: &[f64]) -> f64 {
    let (x, y) = (to64(x), to64(y));
    let (dxx, dyy, dxy) = (sq_dists(&x, &x), sq_dists(&y, &y), sq_dists(&x, &y));
    hs.iter()
        .map(|&h| {
            let k = |d: &Array2<f64>| d.mapv(|v| (-v / (2.0 * h * h)).exp());
            off_diag_mean(&k(&dxx)) + off_diag_mean(&k(&dyy)) - 2.0 * k(&dxy).mean().unwrap_or(0.0)
        })
        .sum::<f64>()
        / hs.len().max(1) as f64
}

/// Wasserstein-1 between two 1-D empirical distributions: `∫ |F − G|`.
pub fn w1_1d(a: &mut [f64], b: &mut [f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut prev = a[0].min(b[0]);
    let mut total = 0.0;
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        total += (i as f64 / na - j as f64 / nb).abs() * (next - prev);
        while i < a.len() && a[i] <= next {
            i += 1;
        }
        while j < b.len() && b[j] <= next {
            j += 1;
        }
        prev = next;
    }
    total
}

/// Per-gene W1 averaged over genes.
pub fn w1_mean(x: ArrayView2<f32>, y: ArrayView2<f32>) -> f64 {
    let d = x.ncols();
    (0..d)
        .map(|g| {
            let mut a: Vec<f64> = x.column(g).iter().map(|&v| f64::from(v)).collect();
            let mut b: Vec<f64> = y.column(g).iter().map(|&v| f64::from(v)).collect();
            w1_1d(&mut a, &mut b)
        })
        .sum::<f64>()
        / d.max(1) as f64
}

/// Mean and standard error of the mean.
pub fn mean_sem(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    (m, (var / n as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: usize, d: usize, v: Vec<f32>) -> Array2<f32> {
        Array2::from_shape_vec((n, d), v).unwrap_or_default()
    }

    #[test]
    fn energy_of_point_masses_and_identity() {
        // X = {0, 0}, Y = {3, 3}: 2·3 − 0 − 0.
        let x = a(2, 1, vec![0.0, 0.0]);
        let y = a(2, 1, vec![3.0, 3.0]);
        assert!((energy_distance(x.view(), y.view()) - 6.0).abs() < 1e-12);
        // 2-D: distance 5 between (0,0) and (3,4).
        let x = a(2, 2, vec![0.0, 0.0, 0.0, 0.0]);
        let y = a(2, 2, vec![3.0, 4.0, 3.0, 4.0]);
        assert!((energy_distance(x.view(), y.view()) - 10.0).abs() < 1e-9);
        // {0,1} vs {0,1}: 2·E|X−Y| (=0.5) − 1 − 1 = −1 (U-statistic within).
        let x = a(2, 1, vec![0.0, 1.0]);
        assert!((energy_distance(x.view(), x.view()) - (-1.0)).abs() < 1e-12);
    }

    #[test]
    fn mmd_closed_form() {
        let x = a(2, 1, vec![0.0, 0.0]);
        let y = a(2, 1, vec![1.0, 1.0]);
        let h = [0.5, 2.0];
        let want = h
            .iter()
            .map(|h: &f64| 2.0 - 2.0 * (-1.0 / (2.0 * h * h)).exp())
            .sum::<f64>()
            / 2.0;
        assert!((mmd(x.view(), y.view(), &h) - want).abs() < 1e-12);
        let bw = bandwidths(4);
        assert!((bw[0] - 0.02).abs() < 1e-12 && (bw[9] - 20.0).abs() < 1e-9);
    }

    #[test]
    fn w1_closed_form() {
        assert!((w1_1d(&mut [0.0, 1.0], &mut [2.0, 3.0]) - 2.0).abs() < 1e-12);
        // Uniform {0, 1, 2, 3} vs point mass at 0: mean |x| = 1.5.
        assert!((w1_1d(&mut [0.0, 1.0, 2.0, 3.0], &mut [0.0]) - 1.5).abs() < 1e-12);
        let x = a(2, 2, vec![0.0, 0.0, 1.0, 0.0]);
        let y = a(2, 2, vec![0.0, 1.0, 1.0, 1.0]);
        assert!((w1_mean(x.view(), y.view()) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn pearson_rmse_sem() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert!((rmse(&[0.0, 0.0], &[3.0, 4.0]) - 12.5f64.sqrt()).abs() < 1e-12);
        let (m, s) = mean_sem(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (s - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
