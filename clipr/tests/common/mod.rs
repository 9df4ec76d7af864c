//! Small ground-truth systems for the clipr tests (same recipe as the linear
//! simulator of `design/lcd.md`: Erdős–Rényi graph, `W_ij ~ ±U(1, 3)`,
//! `W ← W − (max Re λ(W) + 0.5) I`, `A = Wᵀ`, `b ~ U(−3, 3)`, shifts `±U(5, 15)`).
#![allow(dead_code)]
use clipr::{LinearDrift, NonlinearDrift};
use ndarray::{Array1, Array2};
use ndarray_linalg::{Eig, Solve};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn pm(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    let v = rng.random_range(lo..hi);
    if rng.random_bool(0.5) {
        v
    } else {
        -v
    }
}

/// Random W (`W[i, j]` = effect of i on j) with expected out-degree `deg`.
pub fn er_weights(d: usize, deg: f64, lo: f64, hi: f64, rng: &mut ChaCha8Rng) -> Array2<f64> {
    let p = (deg / (d as f64 - 1.0)).min(1.0);
    Array2::from_shape_fn((d, d), |(i, j)| {
        if i != j && rng.random_bool(p) {
            pm(rng, lo, hi)
        } else {
            0.0
        }
    })
}

pub fn er_linear(d: usize, deg: f64, seed: u64) -> LinearDrift {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w = er_weights(d, deg, 1.0, 3.0, &mut rng);
    let ev = w.eig().expect("eig").0;
    let max_re = ev.iter().map(|z| z.re).fold(f64::NEG_INFINITY, f64::max);
    for i in 0..d {
        w[[i, i]] -= max_re + 0.5;
    }
    let b = Array1::from_shape_fn(d, |_| rng.random_range(-3.0..3.0));
    let shifts = Array1::from_shape_fn(d, |_| pm(&mut rng, 5.0, 15.0));
    LinearDrift::new(w.t().to_owned(), b, shifts, None).expect("shapes")
}

/// `f = −x + W_dᵀ... `: drift-orientation weights `w[i, j]` = effect of j on i.
pub fn er_nonlinear(d: usize, deg: f64, seed: u64) -> NonlinearDrift {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w = er_weights(d, deg, 0.5, 1.5, &mut rng);
    let b = Array1::from_shape_fn(d, |_| rng.random_range(-1.0..1.0));
    let shifts = Array1::from_shape_fn(d, |_| pm(&mut rng, 1.0, 3.0));
    NonlinearDrift::new(w.t().to_owned(), b, shifts, None).expect("shapes")
}

/// Σ solving `A Σ + Σ Aᵀ + I = 0` by the Kronecker form (small d only).
pub fn lyapunov(a: &Array2<f64>) -> Array2<f64> {
    let d = a.nrows();
    let n = d * d;
    // vec(AΣ + ΣAᵀ) = (I⊗A + A⊗I) vec(Σ) (column-major vec)
    let mut k = Array2::<f64>::zeros((n, n));
    for i in 0..d {
        for j in 0..d {
            // row index of Σ_ij in column-major: i + d·j
            let r = i + d * j;
            for l in 0..d {
                k[[r, l + d * j]] += a[[i, l]]; // (AΣ)_ij = Σ_l A_il Σ_lj
                k[[r, i + d * l]] += a[[j, l]]; // (ΣAᵀ)_ij = Σ_l Σ_il A_jl
            }
        }
    }
    let mut rhs = Array1::<f64>::zeros(n);
    for i in 0..d {
        rhs[i + d * i] = -1.0;
    }
    let v = k.solve(&rhs).expect("Lyapunov solve");
    Array2::from_shape_fn((d, d), |(i, j)| v[i + d * j])
}

/// Runs `f` on a thread with a 64 MiB stack: OpenBLAS' recursive LU
/// (`dgetrf_parallel`) overflows the 2 MiB stacks of test threads.
pub fn big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("test thread panicked")
}
