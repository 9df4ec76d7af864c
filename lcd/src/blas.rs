//! CPU matrix products through the system OpenBLAS `cblas_sgemm` for the
//! LCD networks. The fused stage-2 path ([`crate::cpu_fast`]) calls [`gemm`]
//! on plain buffers; [`matmul`] serves candle graphs. At the stage-2 shapes
//! OpenBLAS's AVX2 ("Haswell") sgemm runs at about candle's gemm speed and
//! its AVX-512 ("Cooperlake"/"SkylakeX") sgemm at ~1.7× (see
//! `lcd/examples/lcd_matmul_bench.rs` and [`openblas_core`]); the gain of
//! the CPU path comes mostly from the fused elementwise passes it allows.
//!
//! [`matmul`] is the entry point: 2-D f32 tensors on the CPU go through the
//! [`Sgemm`] custom op, whose backward pass expresses both gradients through
//! the same op (`dA = G·Bᵀ`, `dB = Aᵀ·G`, transposes as strides, no copies),
//! so autograd works; every other case (CUDA, other dtypes, batched
//! operands) is candle's `matmul`. `CELLMOL_LCD_GEMM=candle` forces candle's
//! path on the CPU too (comparisons, debugging).
//!
//! Threads: one place decides ([`blas_threads`]). OpenBLAS runs its own
//! pthread pool beside rayon's; candle's CPU kernels other than matmul run
//! on the calling thread, so the two pools do not compete as long as the
//! OpenBLAS pool is no larger than the machine. The count is
//! `OPENBLAS_NUM_THREADS`, else `CANDLE_NUM_THREADS`, else
//! `RAYON_NUM_THREADS`, else the available parallelism; it is set once,
//! before the first product. OpenBLAS splits sgemm over rows and columns of
//! the result, not over the inner dimension, so with a fixed thread count
//! (and kernel family) a product is bitwise the same for the same inputs
//! (`tests/determinism.rs`, `tests/fused_step.rs`).
#![allow(unsafe_code)]

use std::os::raw::c_int;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Once, OnceLock};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

// Linked through `openblas-src` (feature `system`: the distribution's
// libopenblas, LP64 interface).
use openblas_src as _;

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn openblas_set_num_threads(n: c_int);
    fn openblas_get_num_threads() -> c_int;
    fn openblas_get_corename() -> *const std::os::raw::c_char;
}

fn env_threads(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
}

/// The OpenBLAS thread count (see the module documentation).
pub fn blas_threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        env_threads("OPENBLAS_NUM_THREADS")
            .or_else(|| env_threads("CANDLE_NUM_THREADS"))
            .or_else(|| env_threads("RAYON_NUM_THREADS"))
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
    })
}

fn init_threads() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let n = c_int::try_from(blas_threads()).unwrap_or(1);
        // SAFETY: plain setter of the library's global thread count, called once.
        unsafe { openblas_set_num_threads(n) };
    });
}

/// The kernel family OpenBLAS runs (`openblas_get_corename`, e.g.
/// "Haswell"). OpenBLAS picks it for the CPU when it loads unless
/// `OPENBLAS_CORETYPE` names one (this project's machines set
/// `OPENBLAS_CORETYPE=Haswell`, the AVX2 kernels, although the CPUs have
/// AVX-512; without it OpenBLAS 0.3.21 picks "Cooperlake").
pub fn openblas_core() -> String {
    init_threads();
    // SAFETY: returns a pointer to a static NUL-terminated string.
    let p = unsafe { openblas_get_corename() };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null, NUL-terminated, static.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// A hint when `OPENBLAS_CORETYPE` pins OpenBLAS to pre-AVX-512 kernels on
/// a CPU with AVX-512F (some cluster images set `Haswell`): OpenBLAS's own
/// choice (Skylake-X / Cooper Lake kernels) runs sgemm about twice as fast
/// on such CPUs (measured: 425 vs 228 GFLOP/s on a 2-core EPYC).
pub fn core_hint() -> Option<String> {
    let pinned = std::env::var("OPENBLAS_CORETYPE").ok()?;
    let old = [
        "haswell",
        "zen",
        "sandybridge",
        "nehalem",
        "core2",
        "penryn",
        "dunnington",
        "prescott",
        "atom",
        "barcelona",
        "bulldozer",
        "piledriver",
        "steamroller",
        "excavator",
    ];
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    (avx512 && old.contains(&pinned.trim().to_ascii_lowercase().as_str())).then(|| {
        format!(
            "OPENBLAS_CORETYPE={pinned} pins OpenBLAS to kernels older than this CPU (it has \
             AVX-512); unset it to let OpenBLAS choose (about 2x faster LCD/CLIPR matrix products)"
        )
    })
}

/// Run `f` with OpenBLAS on one thread per call (restored afterwards, also
/// on a panic), so that several rayon threads can each run their own
/// products without OpenBLAS's pool synchronising them. Calls are
/// serialised with one another; nothing else in the process may call
/// OpenBLAS meanwhile expecting its thread pool.
pub(crate) fn single_threaded<R>(f: impl FnOnce() -> R) -> R {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            let n = c_int::try_from(blas_threads()).unwrap_or(1);
            // SAFETY: plain setter of the library's global thread count.
            unsafe { openblas_set_num_threads(n) };
        }
    }
    let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    init_threads();
    // SAFETY: plain setter of the library's global thread count.
    unsafe { openblas_set_num_threads(1) };
    let _restore = Restore;
    f()
}

/// The thread count OpenBLAS reports (after [`blas_threads`] was applied).
pub fn openblas_threads() -> usize {
    init_threads();
    // SAFETY: plain getter.
    usize::try_from(unsafe { openblas_get_num_threads() }).unwrap_or(0)
}

/// 0: not decided yet, 1: OpenBLAS, 2: candle.
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether [`matmul`] uses OpenBLAS on the CPU: yes unless
/// `CELLMOL_LCD_GEMM=candle` or [`set_enabled`]`(false)`.
pub fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = !matches!(
                std::env::var("CELLMOL_LCD_GEMM").ok().as_deref(),
                Some("candle")
            );
            MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
    }
}

/// Choose the CPU matmul of [`matmul`] for the whole process (benchmarks and
/// the test that compares both paths; it affects every thread).
pub fn set_enabled(on: bool) {
    MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// `a · b` for 2-D tensors: OpenBLAS on the CPU for f32 (when [`enabled`]),
/// candle's matmul otherwise. Differentiable either way.
pub fn matmul(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if enabled() && is_blas_case(a, b) {
        a.apply_op2_arc(b, std::sync::Arc::new(Box::new(Sgemm)))
    } else {
        a.matmul(b)
    }
}

/// Candle's matmul always (the reference path of the tests and benchmarks).
pub fn matmul_candle(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    a.matmul(b)
}

/// OpenBLAS always (the operands must be 2-D f32 on the CPU).
pub fn matmul_blas(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if !is_blas_case(a, b) {
        candle_core::bail!(
            "sgemm: expected two 2-D f32 CPU tensors, got {:?} {:?} on {:?} and {:?} {:?} on {:?}",
            a.dims(),
            a.dtype(),
            a.device(),
            b.dims(),
            b.dtype(),
            b.device()
        );
    }
    a.apply_op2_arc(b, std::sync::Arc::new(Box::new(Sgemm)))
}

fn is_blas_case(a: &Tensor, b: &Tensor) -> bool {
    a.device().is_cpu()
        && b.device().is_cpu()
        && a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && a.rank() == 2
        && b.rank() == 2
}

/// How a 2-D strided operand is handed to sgemm: transposed or not, its
/// leading dimension, and its first element. `None`: not expressible
/// (broadcast or gapped strides), the caller copies it first.
fn operand(l: &Layout) -> Option<(c_int, usize, usize)> {
    let (r, c) = match l.dims() {
        [r, c] => (*r, *c),
        _ => return None,
    };
    let (s0, s1) = match l.stride() {
        [s0, s1] => (*s0, *s1),
        _ => return None,
    };
    let o = l.start_offset();
    if (c <= 1 || s1 == 1) && (r <= 1 || s0 >= c.max(1)) {
        let ld = if r <= 1 { c.max(1) } else { s0 };
        return Some((NO_TRANS, ld, o));
    }
    if (r <= 1 || s0 == 1) && (c <= 1 || s1 >= r.max(1)) {
        let ld = if c <= 1 { r.max(1) } else { s1 };
        return Some((TRANS, ld, o));
    }
    None
}

fn f32_slice<'a>(s: &'a CpuStorage, what: &str) -> candle_core::Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v),
        other => candle_core::bail!("sgemm: {what} must be f32, got {:?}", other.dtype()),
    }
}

fn to_int(v: usize, what: &str) -> candle_core::Result<c_int> {
    c_int::try_from(v).map_err(|_| {
        candle_core::Error::Msg(format!("sgemm: {what} = {v} exceeds the BLAS int range"))
    })
}

/// `C = A·B` for f32 operands `A` `[m, k]` (storage `a`) and `B` `[k, n]`
/// into a new row-major `[m, n]` buffer. Strided operands that sgemm cannot
/// address directly are copied to contiguous rows first.
pub(crate) fn sgemm_strided(
    a: &[f32],
    la: &Layout,
    b: &[f32],
    lb: &Layout,
) -> candle_core::Result<(Vec<f32>, usize, usize)> {
    let (m, k) = la.shape().dims2()?;
    let (k2, n) = lb.shape().dims2()?;
    if k != k2 {
        candle_core::bail!("sgemm: inner dimensions differ: [{m}, {k}] · [{k2}, {n}]");
    }
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return Ok((out, m, n));
    }
    if k == 0 {
        return Ok((out, m, n));
    }
    let copy_a;
    let (ta, lda, oa, a) = match operand(la) {
        Some((t, ld, o)) => (t, ld, o, a),
        None => {
            copy_a = gather(a, la);
            (NO_TRANS, k, 0, copy_a.as_slice())
        }
    };
    let copy_b;
    let (tb, ldb, ob, b) = match operand(lb) {
        Some((t, ld, o)) => (t, ld, o, b),
        None => {
            copy_b = gather(b, lb);
            (NO_TRANS, n, 0, copy_b.as_slice())
        }
    };
    // Bounds: the last element each operand addresses must lie in its storage.
    let last = |t: c_int, ld: usize, o: usize, rows: usize, cols: usize| {
        if t == NO_TRANS {
            o + (rows - 1) * ld + cols - 1
        } else {
            o + (cols - 1) * ld + rows - 1
        }
    };
    if last(ta, lda, oa, m, k) >= a.len() || last(tb, ldb, ob, k, n) >= b.len() {
        candle_core::bail!("sgemm: operand layout exceeds its storage");
    }
    init_threads();
    let (mi, ni, ki) = (to_int(m, "m")?, to_int(n, "n")?, to_int(k, "k")?);
    let (ldai, ldbi, ldci) = (to_int(lda, "lda")?, to_int(ldb, "ldb")?, to_int(n, "ldc")?);
    // SAFETY: dimensions and leading dimensions were checked against the
    // slices above (every addressed element is in bounds); `out` is a fresh
    // m·n buffer with ldc = n; the library does not retain the pointers.
    unsafe {
        cblas_sgemm(
            ROW_MAJOR,
            ta,
            tb,
            mi,
            ni,
            ki,
            1.0,
            a.as_ptr().add(oa),
            ldai,
            b.as_ptr().add(ob),
            ldbi,
            0.0,
            out.as_mut_ptr(),
            ldci,
        );
    }
    Ok((out, m, n))
}

/// `C = op(A)·op(B) + beta·C` on packed row-major buffers: `op(A)` is
/// `[m, k]` (`a` holds `[m, k]`, or `[k, m]` when `trans_a`), `op(B)` is
/// `[k, n]` (`b` holds `[k, n]`, or `[n, k]` when `trans_b`), `c` is `[m, n]`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) -> Result<(), String> {
    gemm_scaled(trans_a, trans_b, m, n, k, 1.0, a, b, beta, c)
}

/// [`gemm`] with a factor on the product: `C = alpha·op(A)·op(B) + beta·C`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_scaled(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) -> Result<(), String> {
    if a.len() < m * k || b.len() < k * n || c.len() < m * n {
        return Err(format!(
            "buffers of {}, {}, {} values for [{m}, {k}]·[{k}, {n}]",
            a.len(),
            b.len(),
            c.len()
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        for v in &mut c[..m * n] {
            // β = 0 never reads C (it may hold anything), as in BLAS.
            *v = if beta == 0.0 { 0.0 } else { *v * beta };
        }
        return Ok(());
    }
    let int = |v: usize| c_int::try_from(v).map_err(|_| format!("{v} exceeds the BLAS int range"));
    let lda = if trans_a { m } else { k };
    let ldb = if trans_b { k } else { n };
    let (mi, ni, ki, ldai, ldbi) = (int(m)?, int(n)?, int(k)?, int(lda)?, int(ldb)?);
    init_threads();
    // SAFETY: the buffers hold at least m·k, k·n and m·n values, which is
    // exactly what these dimensions and leading dimensions address.
    unsafe {
        cblas_sgemm(
            ROW_MAJOR,
            if trans_a { TRANS } else { NO_TRANS },
            if trans_b { TRANS } else { NO_TRANS },
            mi,
            ni,
            ki,
            alpha,
            a.as_ptr(),
            ldai,
            b.as_ptr(),
            ldbi,
            beta,
            c.as_mut_ptr(),
            ni,
        );
    }
    Ok(())
}

/// Row-major copy of a 2-D strided view.
fn gather(s: &[f32], l: &Layout) -> Vec<f32> {
    let dims = l.dims();
    let (r, c) = (dims[0], dims[1]);
    let st = l.stride();
    let o = l.start_offset();
    let mut v = Vec::with_capacity(r * c);
    for i in 0..r {
        for j in 0..c {
            v.push(s[o + i * st[0] + j * st[1]]);
        }
    }
    v
}

/// Custom op `A·B` through OpenBLAS sgemm (2-D f32, CPU).
pub struct Sgemm;

impl CustomOp2 for Sgemm {
    fn name(&self) -> &'static str {
        "lcd-sgemm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let a = f32_slice(s1, "lhs")?;
        let b = f32_slice(s2, "rhs")?;
        let (out, m, n) = sgemm_strided(a, l1, b, l2)?;
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Only operands that depend on a variable need a gradient (the
        // network input, e.g., does not): skip the other product.
        let da = if a.track_op() {
            Some(matmul_blas(g, &b.t()?)?)
        } else {
            None
        };
        let db = if b.track_op() {
            Some(matmul_blas(&a.t()?, g)?)
        } else {
            None
        };
        Ok((da, db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(shape: (usize, usize), seed: u64) -> candle_core::Result<Tensor> {
        let n = shape.0 * shape.1;
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn forward_matches_candle_for_all_layouts() -> candle_core::Result<()> {
        let a = rand((37, 19), 1)?;
        let b = rand((19, 23), 2)?;
        let at = rand((19, 37), 3)?; // used transposed
        let bt = rand((23, 19), 4)?;
        let cases = [
            (a.clone(), b.clone()),
            (at.t()?, b.clone()),
            (a.clone(), bt.t()?),
            (at.t()?, bt.t()?),
            // Offset view and gapped rows: a column slice of a wider matrix.
            (rand((37, 30), 5)?.narrow(1, 4, 19)?, b.clone()),
            // Row vector and column vector shapes.
            (rand((1, 19), 6)?, b.clone()),
            (a.clone(), rand((19, 1), 7)?),
            // Broadcast operand (stride 0): copied first.
            (rand((1, 19), 8)?.broadcast_as((37, 19))?, b.clone()),
        ];
        for (i, (x, y)) in cases.iter().enumerate() {
            let want = x.matmul(y)?;
            let got = matmul_blas(x, y)?;
            assert_eq!(got.dims(), want.dims(), "case {i}");
            let d = max_diff(&got, &want)?;
            assert!(d < 1e-5, "case {i}: max |Δ| = {d}");
        }
        Ok(())
    }

    #[test]
    fn gradients_match_candle() -> candle_core::Result<()> {
        let a = Var::from_tensor(&rand((16, 12), 11)?)?;
        let b = Var::from_tensor(&rand((12, 9), 12)?)?;
        let c = rand((16, 9), 13)?;
        let loss = |f: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>| {
            let y = f(a.as_tensor(), b.as_tensor())?.tanh()?;
            let l = (y * &c)?.sum_all()?;
            let g = l.backward()?;
            let ga = g.get(a.as_tensor()).cloned();
            let gb = g.get(b.as_tensor()).cloned();
            Ok::<_, candle_core::Error>((l, ga, gb))
        };
        let (l1, ga1, gb1) = loss(matmul_candle)?;
        let (l2, ga2, gb2) = loss(matmul_blas)?;
        let (l1, l2) = (l1.to_scalar::<f32>()?, l2.to_scalar::<f32>()?);
        assert!((l1 - l2).abs() < 1e-5, "{l1} vs {l2}");
        let (Some(ga1), Some(ga2), Some(gb1), Some(gb2)) = (ga1, ga2, gb1, gb2) else {
            panic!("missing gradient");
        };
        assert!(max_diff(&ga1, &ga2)? < 1e-5);
        assert!(max_diff(&gb1, &gb2)? < 1e-5);
        Ok(())
    }

    #[test]
    fn constant_operand_gets_no_gradient() -> candle_core::Result<()> {
        let x = rand((8, 5), 21)?; // data: no variable upstream
        let w = Var::from_tensor(&rand((5, 3), 22)?)?;
        let g = matmul_blas(&x, w.as_tensor())?.sum_all()?.backward()?;
        assert!(g.get(&x).is_none());
        let gw = g
            .get(w.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("no weight gradient".into()))?;
        // d(sum(xW))/dW = xᵀ·1.
        let want = x
            .t()?
            .matmul(&Tensor::ones((8, 3), DType::F32, &Device::Cpu)?)?;
        assert!(max_diff(gw, &want)? < 1e-5);
        Ok(())
    }

    #[test]
    fn rejects_non_f32() {
        let a = Tensor::zeros((2, 2), DType::F64, &Device::Cpu);
        let b = Tensor::zeros((2, 2), DType::F64, &Device::Cpu);
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("tensor creation");
        };
        let e = matmul_blas(&a, &b).err().map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("f32"));
        // The dispatching entry point falls back to candle instead.
        assert!(matmul(&a, &b).is_ok());
    }
}
