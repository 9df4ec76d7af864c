//! Fused CPU path of the stage-2 score network (f32): the DSM training step
//! with a hand-written backward pass, and the no-gradient drift used by the
//! sampler. Products go through OpenBLAS ([`crate::blas::gemm`]); every
//! elementwise stage (noise + preconditioning + target, bias + level +
//! condition + tanh, residual + loss, tanh′, column sums) is one
//! multi-threaded pass instead of candle's one-op-per-pass graph, and tanh
//! is a vectorisable polynomial/exponential form ([`tanh_f`], |error| ≲ 2e-7)
//! instead of libm's scalar call.
//!
//! Used by [`crate::stage2::ScoreNet`] only on the CPU with f32 parameters
//! (and [`crate::blas::enabled`]); the training step covers the paper network
//! and the output path ([`crate::config::ConditionPath::None`] /
//! [`crate::config::ConditionPath::Output`]), the drift every path. The small
//! parts (level table, condition embedding) stay candle graphs: their
//! gradients come from one backward pass of the surrogate
//! `Σ table ⊙ ∂L/∂table + Σ c_l ⊙ ∂L/∂c_l`, whose gradient equals the loss's.
//!
//! Determinism: elementwise passes are per element; reductions (column
//! sums, per-level sums, the loss) run over rows in a fixed order inside
//! fixed column blocks, so results do not depend on the thread count.
#![allow(unsafe_code)]

use std::collections::HashMap;

use candle_core::{CpuStorage, DType, Storage, StorageRef, Tensor};
use rayon::prelude::*;

use crate::blas::{gemm, gemm_scaled};
use crate::rng::TensorRng;
use crate::stage2::ScoreNet;
use crate::{LcdError, Result};
use datasets::simd::exp_f32;

/// Rows per parallel task of the row-wise passes.
const ROW_BLOCK: usize = 32;
/// Columns per parallel task of the column reductions.
const COL_BLOCK: usize = 64;

/// Read access to a CPU tensor's f32 values: borrowed from the storage when
/// contiguous, copied otherwise.
pub(crate) enum Host<'a> {
    Borrowed(StorageRef<'a>, usize, usize),
    Owned(Vec<f32>),
}

impl<'a> Host<'a> {
    pub(crate) fn new(t: &'a Tensor) -> Result<Self> {
        {
            let (st, l) = t.storage_and_layout();
            if let (Storage::Cpu(CpuStorage::F32(_)), Some((a, b))) = (&*st, l.contiguous_offsets())
            {
                return Ok(Host::Borrowed(st, a, b));
            }
        }
        Ok(Host::Owned(
            t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        ))
    }
    pub(crate) fn s(&self) -> &[f32] {
        match self {
            Host::Borrowed(st, a, b) => match &**st {
                Storage::Cpu(CpuStorage::F32(v)) => &v[*a..*b],
                // `new` only borrows f32 CPU storage.
                _ => &[],
            },
            Host::Owned(v) => v,
        }
    }
}

fn host_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Whether the fused path applies to this network's parameters.
pub(crate) fn supported(net: &ScoreNet) -> bool {
    crate::blas::enabled()
        && net
            .params
            .vars()
            .iter()
            .all(|v| v.as_tensor().device().is_cpu() && v.as_tensor().dtype() == DType::F32)
}

// ---------------------------------------------------------------- scratch

thread_local! {
    /// Buffers of earlier steps on this thread: large allocations are fresh
    /// mappings each time (page faults + kernel zeroing of ~200 MB per
    /// training step), reuse skips that.
    static SCRATCH: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer of `len` values with unspecified (initialised) contents: every
/// caller overwrites it completely (sgemm with β = 0, full-row passes).
fn scratch(len: usize) -> Vec<f32> {
    let mut v = SCRATCH
        .with(|s| {
            let mut s = s.borrow_mut();
            let best = (0..s.len())
                .filter(|&i| s[i].capacity() >= len)
                .min_by_key(|&i| s[i].capacity());
            best.map(|i| s.swap_remove(i))
        })
        .unwrap_or_default();
    if v.len() > len {
        v.truncate(len);
    } else {
        v.resize(len, 0.0);
    }
    v
}

/// Return buffers to this thread's pool (at most 8 kept).
fn give_back(bufs: impl IntoIterator<Item = Vec<f32>>) {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        for b in bufs {
            if s.len() < 8 {
                s.push(b);
            }
        }
    });
}

/// Drops this thread's buffers when it goes out of scope (end of training).
pub(crate) struct ScratchGuard;

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        SCRATCH.with(|s| s.borrow_mut().clear());
    }
}

// ---------------------------------------------------------------- kernels

/// tanh without a libm call, so loops over it vectorise: odd Taylor
/// polynomial below |x| = 0.25, `1 − 2/(e^{2|x|} + 1)` above (|x| clamped
/// at 10, where tanh rounds to 1). NaN stays NaN.
#[inline(always)]
pub fn tanh_f(x: f32) -> f32 {
    let a = x.abs().min(10.0);
    let a2 = a * a;
    let small = a
        * (1.0
            + a2 * (-1.0 / 3.0
                + a2 * (2.0 / 15.0
                    + a2 * (-17.0 / 315.0 + a2 * (62.0 / 2835.0 + a2 * (-1382.0 / 155_925.0))))));
    let big = 1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0);
    let t = if a < 0.25 { small } else { big };
    let t = t.copysign(x);
    if x.is_nan() {
        x
    } else {
        t
    }
}

datasets::simd_kernels! {
    // `row[j] = tanh(row[j] + add[j])`
    add_tanh_row(row: &mut [f32], add: &[f32]) {
        for (o, a) in row.iter_mut().zip(add) {
            *o = tanh_f(*o + *a);
        }
    }
}

/// Something added to every row of a `[rows, cols]` pre-activation.
pub(crate) enum RowAdd<'a> {
    /// One row for all (`[1, cols]`).
    Shared(&'a [f32]),
    /// One row each (`[rows, cols]`).
    PerRow(&'a [f32]),
    /// Row `idx[i]` of a table (`[L, cols]`).
    Table(&'a [f32], &'a [u32]),
}

/// `buf = tanh(buf + Σ adds)` row by row, in parallel.
pub(crate) fn add_tanh(buf: &mut [f32], cols: usize, adds: &[RowAdd<'_>]) {
    let mut shared = vec![0f32; cols];
    for a in adds {
        if let RowAdd::Shared(s) = a {
            for (o, v) in shared.iter_mut().zip(s.iter()) {
                *o += *v;
            }
        }
    }
    let varying = adds.iter().any(|a| !matches!(a, RowAdd::Shared(_)));
    buf.par_chunks_mut(cols * ROW_BLOCK)
        .enumerate()
        .for_each(|(blk, chunk)| {
            let mut add = shared.clone();
            for (r, row) in chunk.chunks_mut(cols).enumerate() {
                let i = blk * ROW_BLOCK + r;
                if varying {
                    add.copy_from_slice(&shared);
                    for a in adds {
                        let src = match a {
                            RowAdd::Shared(_) => continue,
                            RowAdd::PerRow(v) => &v[i * cols..(i + 1) * cols],
                            RowAdd::Table(t, idx) => {
                                let l = idx[i] as usize;
                                &t[l * cols..(l + 1) * cols]
                            }
                        };
                        for (o, v) in add.iter_mut().zip(src) {
                            *o += *v;
                        }
                    }
                }
                add_tanh_row(row, &add);
            }
        });
}

/// `g ← g ⊙ (1 − h²)` (backward of tanh with output `h`), in parallel.
fn tanh_backward(g: &mut [f32], h: &[f32], cols: usize) {
    g.par_chunks_mut(cols * ROW_BLOCK)
        .zip(h.par_chunks(cols * ROW_BLOCK))
        .for_each(|(gc, hc)| {
            for (o, y) in gc.iter_mut().zip(hc) {
                *o *= 1.0 - *y * *y;
            }
        });
}

/// Column sums of `[rows, cols]`, in parallel over column blocks (each sums
/// its rows in order: the result does not depend on the thread count).
fn col_sum(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; cols];
    out.par_chunks_mut(COL_BLOCK)
        .enumerate()
        .for_each(|(cb, o)| {
            let c0 = cb * COL_BLOCK;
            let mut acc = vec![0f64; o.len()];
            for i in 0..rows {
                let r = &a[i * cols + c0..i * cols + c0 + o.len()];
                for (s, v) in acc.iter_mut().zip(r) {
                    *s += f64::from(*v);
                }
            }
            for (d, s) in o.iter_mut().zip(acc) {
                *d = s as f32;
            }
        });
    out
}

/// Per-level sums `out[l] = Σ_{i: idx[i] = l} a[i]` (`[n_levels, cols]`),
/// parallel over column blocks, rows in order.
fn level_sum(a: &[f32], idx: &[u32], n_levels: usize, cols: usize) -> Vec<f32> {
    let blocks: Vec<Vec<f64>> = (0..cols.div_ceil(COL_BLOCK))
        .into_par_iter()
        .map(|cb| {
            let c0 = cb * COL_BLOCK;
            let w = COL_BLOCK.min(cols - c0);
            let mut acc = vec![0f64; n_levels * w];
            for (i, &l) in idx.iter().enumerate() {
                let r = &a[i * cols + c0..i * cols + c0 + w];
                let dst = &mut acc[l as usize * w..(l as usize + 1) * w];
                for (s, v) in dst.iter_mut().zip(r) {
                    *s += f64::from(*v);
                }
            }
            acc
        })
        .collect();
    let mut out = vec![0f32; n_levels * cols];
    for (cb, acc) in blocks.iter().enumerate() {
        let c0 = cb * COL_BLOCK;
        let w = COL_BLOCK.min(cols - c0);
        for l in 0..n_levels {
            for j in 0..w {
                out[l * cols + c0 + j] = acc[l * w + j] as f32;
            }
        }
    }
    out
}

fn gemm_err(e: String) -> LcdError {
    LcdError::Data(format!("sgemm: {e}"))
}

// ---------------------------------------------------------------- training

/// One DSM step of the paper / output-path network on rows `rows` of
/// `state` (`[n_q, d]`) under condition `multi_hot` (`[1, V]`): the loss
/// (as [`ScoreNet::dsm_loss`], same random draws in the same order) and
/// the gradient of every parameter by name.
pub(crate) fn dsm_step(
    net: &ScoreNet,
    state: &Tensor,
    rows: &[u32],
    multi_hot: &Tensor,
    rng: &mut TensorRng,
) -> Result<(f64, HashMap<String, Tensor>)> {
    let dev = state.device().clone();
    let (nq, d) = state.dims2()?;
    let (h, nl) = (net.hidden, net.sigmas.len());
    let b = rows.len();
    if d != net.d {
        return Err(LcdError::Data(format!(
            "stage-2 states have {d} genes, the network {}",
            net.d
        )));
    }
    if let Some(&r) = rows.iter().find(|&&r| r as usize >= nq) {
        return Err(LcdError::Data(format!(
            "batch row {r} out of range ({nq} states)"
        )));
    }
    // Random draws exactly as `dsm_loss`: levels, then noise.
    let lv: Vec<u32> = rng.indices(b, nl).into_iter().map(|v| v as u32).collect();
    let eps_t = rng.normal(&[b, d])?;
    let sig: Vec<f32> = lv.iter().map(|&l| net.sigmas[l as usize] as f32).collect();

    // Small graphs (level table, condition terms) with autograd.
    let w = net.params.live();
    let table = net.level_table(&w)?; // [L, H]
    let e = net.condition_embedding(&w, multi_hot)?; // [1, H]
    let cond = net.condition_terms(&w, &e)?;
    if cond.shift.is_some() {
        return Err(LcdError::Data(
            "the fused CPU step does not cover the shift condition path".into(),
        ));
    }
    let row1 = |t: &Option<Tensor>, n: usize| -> Result<Option<Vec<f32>>> {
        match t {
            Some(t) if t.dims() == [1, n] => Ok(Some(host_vec(t)?)),
            Some(t) => Err(LcdError::Data(format!(
                "condition term has shape {:?}, expected [1, {n}]",
                t.dims()
            ))),
            None => Ok(None),
        }
    };
    let tab_h = host_vec(&table)?;
    let c0 = row1(&cond.l0, h)?;
    let c1 = row1(&cond.l1, h)?;
    let cout = row1(&cond.out, d)?;

    let pw = |n: &str| net.params.get(n);
    let (w0t, b0t, w1t, b1t, wot, bot) = (
        pw("l0.w")?,
        pw("l0.b")?,
        pw("l1.w")?,
        pw("l1.b")?,
        pw("out.w")?,
        pw("out.b")?,
    );
    let (w0, b0, w1, b1, wo, bo) = (
        Host::new(&w0t)?,
        Host::new(&b0t)?,
        Host::new(&w1t)?,
        Host::new(&b1t)?,
        Host::new(&wot)?,
        Host::new(&bot)?,
    );
    let (w0, b0, w1, b1, wo, bo) = (w0.s(), b0.s(), w1.s(), b1.s(), wo.s(), bo.s());
    if !shapes_ok([w0, b0, w1, b1, wo, bo], d, h) {
        return Err(LcdError::Data(
            "score network weights do not match its dimensions".into(),
        ));
    }
    let st = Host::new(state)?;
    let st = st.s();
    let eps_h = Host::new(&eps_t)?;
    let eps = eps_h.s();

    // P1: x̃ = x + σε, x̂ = x̃/√(1+σ²), target T = (x̂ − x̃)/σ + ε.
    let mut xh = scratch(b * d);
    let mut tgt = scratch(b * d);
    xh.par_chunks_mut(d * ROW_BLOCK)
        .zip(tgt.par_chunks_mut(d * ROW_BLOCK))
        .enumerate()
        .for_each(|(blk, (xc, tc))| {
            for (r, (xr, tr)) in xc.chunks_mut(d).zip(tc.chunks_mut(d)).enumerate() {
                let i = blk * ROW_BLOCK + r;
                let s = sig[i];
                let sc = 1.0 / (s * s + 1.0).sqrt();
                let inv_s = 1.0 / s;
                let src = &st[rows[i] as usize * d..(rows[i] as usize + 1) * d];
                let er = &eps[i * d..(i + 1) * d];
                for j in 0..d {
                    let xt = src[j] + s * er[j];
                    let x_hat = xt * sc;
                    xr[j] = x_hat;
                    tr[j] = (x_hat - xt) * inv_s + er[j];
                }
            }
        });
    drop(eps_h);

    // Forward.
    let mut h0 = scratch(b * h);
    gemm(false, false, b, h, d, &xh, w0, 0.0, &mut h0).map_err(gemm_err)?;
    {
        let mut adds = vec![RowAdd::Shared(b0), RowAdd::Table(&tab_h, &lv)];
        if let Some(c) = &c0 {
            adds.push(RowAdd::Shared(c));
        }
        add_tanh(&mut h0, h, &adds);
    }
    let mut h1 = scratch(b * h);
    gemm(false, false, b, h, h, &h0, w1, 0.0, &mut h1).map_err(gemm_err)?;
    {
        let mut adds = vec![RowAdd::Shared(b1)];
        if let Some(c) = &c1 {
            adds.push(RowAdd::Shared(c));
        }
        add_tanh(&mut h1, h, &adds);
    }
    let mut gf = scratch(b * d);
    gemm(false, false, b, d, h, &h1, wo, 0.0, &mut gf).map_err(gemm_err)?;
    // P4: F += b_out (+ e·W_out); residual r = F − T; loss ½ mean Σ r²; ∂L/∂F = r / B.
    let mut bias_out = bo.to_vec();
    if let Some(c) = &cout {
        for (o, v) in bias_out.iter_mut().zip(c) {
            *o += *v;
        }
    }
    let inv_b = 1.0 / b as f32;
    let row_sq: Vec<f64> = gf
        .par_chunks_mut(d)
        .zip(tgt.par_chunks(d))
        .map(|(fr, tr)| {
            let mut acc = 0f64;
            for j in 0..d {
                let r = fr[j] + bias_out[j] - tr[j];
                acc += f64::from(r * r);
                fr[j] = r * inv_b;
            }
            acc
        })
        .collect();
    give_back([tgt]);
    let loss = 0.5 * row_sq.iter().sum::<f64>() / b as f64;

    // Backward.
    let mut grads = HashMap::new();
    let put = |g: &mut HashMap<String, Tensor>, n: &str, v: Vec<f32>, shape: (usize, usize)| {
        Tensor::from_vec(v, shape, &dev).map(|t| g.insert(n.to_string(), t))
    };
    let db_out = col_sum(&gf, b, d);
    let mut dwo = vec![0f32; h * d];
    gemm(true, false, h, d, b, &h1, &gf, 0.0, &mut dwo).map_err(gemm_err)?;
    let mut g1 = scratch(b * h);
    gemm(false, true, b, h, d, &gf, wo, 0.0, &mut g1).map_err(gemm_err)?;
    give_back([gf]);
    tanh_backward(&mut g1, &h1, h);
    give_back([h1]);
    let db1 = col_sum(&g1, b, h);
    let mut dw1 = vec![0f32; h * h];
    gemm(true, false, h, h, b, &h0, &g1, 0.0, &mut dw1).map_err(gemm_err)?;
    let mut g0 = scratch(b * h);
    gemm(false, true, b, h, h, &g1, w1, 0.0, &mut g0).map_err(gemm_err)?;
    give_back([g1]);
    tanh_backward(&mut g0, &h0, h);
    give_back([h0]);
    let dtab = level_sum(&g0, &lv, nl, h);
    let mut db0 = vec![0f32; h];
    for l in 0..nl {
        for (o, v) in db0.iter_mut().zip(&dtab[l * h..(l + 1) * h]) {
            *o += *v;
        }
    }
    let mut dw0 = vec![0f32; d * h];
    gemm(true, false, d, h, b, &xh, &g0, 0.0, &mut dw0).map_err(gemm_err)?;
    give_back([g0, xh]);

    // Small graphs: gradient of the surrogate Σ table ⊙ ∂table + Σ c ⊙ ∂c.
    let mut surrogate = (&table * Tensor::from_vec(dtab, (nl, h), &dev)?)?.sum_all()?;
    let terms = [
        (&cond.l0, &db0, h),
        (&cond.l1, &db1, h),
        (&cond.out, &db_out, d),
    ];
    for (t, g, n) in terms {
        if let Some(t) = t {
            let gt = Tensor::from_vec(g.clone(), (1, n), &dev)?;
            surrogate = (surrogate + (t * gt)?.sum_all()?)?;
        }
    }
    let small = surrogate.backward()?;
    for (name, var) in net.params.names().iter().zip(net.params.vars()) {
        if let Some(g) = small.get(var.as_tensor()) {
            grads.insert(name.clone(), g.detach());
        }
    }
    put(&mut grads, "l0.w", dw0, (d, h))?;
    put(&mut grads, "l0.b", db0, (1, h))?;
    put(&mut grads, "l1.w", dw1, (h, h))?;
    put(&mut grads, "l1.b", db1, (1, h))?;
    put(&mut grads, "out.w", dwo, (h, d))?;
    put(&mut grads, "out.b", db_out, (1, d))?;
    Ok((loss, grads))
}

// ---------------------------------------------------------------- drift

/// Lengths of `[l0.w, l0.b, l1.w, l1.b, out.w, out.b]` for `d` genes and
/// width `h` (a bad weights file must be an error, not a panic or a silently
/// shortened row).
fn shapes_ok(w: [&[f32]; 6], d: usize, h: usize) -> bool {
    w.iter().map(|v| v.len()).eq([d * h, h, h * h, h, h * d, d])
}

/// A `[N|1, cols]` tensor as host values (borrowed when it is contiguous
/// CPU f32: no copy per sampler step) plus whether it has one row per sample.
fn rows_of<'a>(t: &'a Tensor, n: usize, cols: usize, what: &str) -> Result<(Host<'a>, bool)> {
    let (r, c) = t.dims2()?;
    if c != cols || (r != 1 && r != n) {
        return Err(LcdError::Data(format!(
            "{what} has shape [{r}, {c}], expected [1, {cols}] or [{n}, {cols}]"
        )));
    }
    Ok((Host::new(t)?, r == n && n != 1))
}

fn opt_rows<'a>(
    t: &'a Option<Tensor>,
    n: usize,
    cols: usize,
    what: &str,
) -> Result<Option<(Host<'a>, bool)>> {
    t.as_ref().map(|t| rows_of(t, n, cols, what)).transpose()
}

/// Whether any of these tensors needs a gradient (then the fused drift,
/// which builds no graph, must not be used).
pub(crate) fn any_tracked(ts: &[Option<&Tensor>]) -> bool {
    ts.iter().flatten().any(|t| t.track_op())
}

/// One Euler–Maruyama step `x + ε f + scale · ξ` fused into the drift's last
/// pass; `noise = Some((key, scale))` draws row `i` of ξ from the generator
/// `(key, i)` ([`crate::rng::normal_row`]) where it is used, so the values do
/// not depend on how rows are split between threads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Langevin {
    pub eps: f32,
    pub noise: Option<(u64, f32)>,
}

/// Rows below which a Langevin step is not split between threads.
const SPLIT_MIN_ROWS: usize = 128;

/// A `(values, per-row?)` view of host rows.
fn view<'a>(v: &'a (Host<'_>, bool)) -> (&'a [f32], bool) {
    (v.0.s(), v.1)
}

/// Rows `lo..hi` of a `(values, per-row?)` view.
fn sub_rows(v: (&[f32], bool), lo: usize, hi: usize, cols: usize) -> (&[f32], bool) {
    if v.1 {
        (&v.0[lo * cols..hi * cols], true)
    } else {
        v
    }
}

fn opt_view<'a>(v: &'a Option<(Host<'_>, bool)>) -> Option<(&'a [f32], bool)> {
    v.as_ref().map(view)
}

fn as_add<'a>(v: (&'a [f32], bool)) -> RowAdd<'a> {
    if v.1 {
        RowAdd::PerRow(v.0)
    } else {
        RowAdd::Shared(v.0)
    }
}

/// Host views of everything the drift of a block of rows reads.
struct DriftIn<'a> {
    d: usize,
    h: usize,
    x: &'a [f32],
    temb: (&'a [f32], bool),
    sigma: (&'a [f32], bool),
    c0: Option<(&'a [f32], bool)>,
    c1: Option<(&'a [f32], bool)>,
    shift: Option<(&'a [f32], bool)>,
    out: Option<(&'a [f32], bool)>,
    w: [&'a [f32]; 6],
}

impl DriftIn<'_> {
    /// Rows `lo..hi` of the drift (or of the Langevin update, `step`) into
    /// `f` (`(hi − lo)·d` values); `z` are the noise rows of the block.
    fn rows(&self, lo: usize, hi: usize, f: &mut [f32], step: Option<Langevin>) -> Result<()> {
        let (d, h, n) = (self.d, self.h, hi - lo);
        let [w0, b0, w1, b1, wo, bo] = self.w;
        let sub = |v, cols| sub_rows(v, lo, hi, cols);
        let row = |v: (&[f32], bool), i: usize, cols: usize| -> std::ops::Range<usize> {
            if v.1 {
                i * cols..(i + 1) * cols
            } else {
                0..cols
            }
        };
        let xs = &self.x[lo * d..hi * d];
        let sig = sub(self.sigma, 1);
        let sig_at = |i: usize| sig.0[row(sig, i, 1).start];
        let shift = self.shift.map(|m| sub(m, d));
        let out = self.out.map(|o| sub(o, d));
        // x' = x − m(e) (shift path), x̂ = x'/√(1+σ²). With no shift and
        // one σ for all rows (the sampler) x̂ is not stored: the first
        // product scales x itself and the last pass recomputes x̂.
        let shared_scale =
            (shift.is_none() && !sig.1).then(|| 1.0 / (sig.0[0] * sig.0[0] + 1.0).sqrt());
        let mut xh = scratch(if shared_scale.is_some() { 0 } else { n * d });
        xh.par_chunks_mut(d).enumerate().for_each(|(i, xr)| {
            let s = sig_at(i);
            let sc = 1.0 / (s * s + 1.0).sqrt();
            let src = &xs[i * d..(i + 1) * d];
            match shift {
                Some(m) => {
                    let mr = &m.0[row(m, i, d)];
                    for j in 0..d {
                        xr[j] = (src[j] - mr[j]) * sc;
                    }
                }
                None => {
                    for j in 0..d {
                        xr[j] = src[j] * sc;
                    }
                }
            }
        });
        let mut h0 = scratch(n * h);
        match shared_scale {
            Some(sc) => gemm_scaled(false, false, n, h, d, sc, xs, w0, 0.0, &mut h0),
            None => gemm(false, false, n, h, d, &xh, w0, 0.0, &mut h0),
        }
        .map_err(gemm_err)?;
        {
            let mut adds = vec![RowAdd::Shared(b0), as_add(sub(self.temb, h))];
            if let Some(c) = self.c0 {
                adds.push(as_add(sub(c, h)));
            }
            add_tanh(&mut h0, h, &adds);
        }
        let mut h1 = scratch(n * h);
        gemm(false, false, n, h, h, &h0, w1, 0.0, &mut h1).map_err(gemm_err)?;
        give_back([h0]);
        {
            let mut adds = vec![RowAdd::Shared(b1)];
            if let Some(c) = self.c1 {
                adds.push(as_add(sub(c, h)));
            }
            add_tanh(&mut h1, h, &adds);
        }
        gemm(false, false, n, d, h, &h1, wo, 0.0, f).map_err(gemm_err)?;
        give_back([h1]);
        // drift = (x̂ − σ(F + b_out + out) − x')/σ²; a step writes
        // x + ε·drift (+ scale·ξ).
        f.par_chunks_mut(d).enumerate().for_each(|(i, fr)| {
            let s = sig_at(i);
            let inv_s2 = 1.0 / (s * s);
            let src = &xs[i * d..(i + 1) * d];
            let mr = shift.map(|m| &m.0[row(m, i, d)]);
            let or = out.map(|o| &o.0[row(o, i, d)]);
            // x̂ stored, or recomputed from x with the shared scale
            let xr = match shared_scale {
                None => Ok(&xh[i * d..(i + 1) * d]),
                Some(sc) => Err(sc),
            };
            for j in 0..d {
                let mut fo = fr[j] + bo[j];
                if let Some(o) = or {
                    fo += o[j];
                }
                let xp = match mr {
                    Some(m) => src[j] - m[j],
                    None => src[j],
                };
                let xhat = match xr {
                    Ok(xr) => xr[j],
                    Err(sc) => src[j] * sc,
                };
                fr[j] = (xhat - s * fo - xp) * inv_s2;
            }
            if let Some(st) = step {
                for j in 0..d {
                    fr[j] = src[j] + fr[j] * st.eps;
                }
                if let Some((key, sc)) = st.noise {
                    crate::rng::add_normal_row(fr, sc, key, (lo + i) as u64);
                }
            }
        });
        give_back([xh]);
        Ok(())
    }
}

/// Drift `f(x, σ, e)` without a graph (see [`ScoreNet::drift_pre`]):
/// `x` `[N, d]`, `temb` `[N|1, H]`, `sigma` `[N|1, 1]`, condition terms
/// `[N|1, H]` / `[N|1, d]`. With `step`, the result is the Langevin update
/// of `x` instead of the drift; a step on many chains runs as one block of
/// rows per OpenBLAS thread, each with single-threaded products (no
/// synchronisation inside a step; the rows' values are the same either way
/// up to the products' rounding).
pub(crate) fn drift(
    net: &ScoreNet,
    w: &crate::params::Weights,
    x: &Tensor,
    temb: &Tensor,
    sigma: &Tensor,
    cond: &crate::stage2::CondTerms,
    step: Option<Langevin>,
) -> Result<Tensor> {
    let (n, d) = x.dims2()?;
    let h = net.hidden;
    let temb = rows_of(temb, n, h, "level embedding")?;
    let sigma = rows_of(sigma, n, 1, "sigma")?;
    let c0 = opt_rows(&cond.l0, n, h, "layer-0 condition term")?;
    let c1 = opt_rows(&cond.l1, n, h, "layer-1 condition term")?;
    let shift = opt_rows(&cond.shift, n, d, "condition shift")?;
    let out = opt_rows(&cond.out, n, d, "condition output term")?;
    let hw = [
        Host::new(w.get("l0.w")?)?,
        Host::new(w.get("l0.b")?)?,
        Host::new(w.get("l1.w")?)?,
        Host::new(w.get("l1.b")?)?,
        Host::new(w.get("out.w")?)?,
        Host::new(w.get("out.b")?)?,
    ];
    let ws = [
        hw[0].s(),
        hw[1].s(),
        hw[2].s(),
        hw[3].s(),
        hw[4].s(),
        hw[5].s(),
    ];
    if !shapes_ok(ws, d, h) {
        return Err(LcdError::Data(format!(
            "drift input has {d} genes; the network's weights do not match"
        )));
    }
    let xs = Host::new(x)?;
    let input = DriftIn {
        d,
        h,
        x: xs.s(),
        temb: view(&temb),
        sigma: view(&sigma),
        c0: opt_view(&c0),
        c1: opt_view(&c1),
        shift: opt_view(&shift),
        out: opt_view(&out),
        w: ws,
    };
    let mut f = vec![0f32; n * d];
    let parts = crate::blas::blas_threads().min(rayon::current_num_threads());
    if step.is_some() && parts > 1 && n >= SPLIT_MIN_ROWS * parts {
        let per = n.div_ceil(parts);
        crate::blas::single_threaded(|| {
            f.par_chunks_mut(per * d)
                .enumerate()
                .map(|(k, fk)| {
                    let lo = k * per;
                    let hi = lo + fk.len() / d;
                    input.rows(lo, hi, fk, step)
                })
                .collect::<Result<Vec<()>>>()
        })?;
    } else {
        input.rows(0, n, &mut f, step)?;
    }
    Ok(Tensor::from_vec(f, (n, d), x.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_matches_libm() {
        let mut worst = 0f32;
        let mut x = -12.0f32;
        while x < 12.0 {
            let e = (tanh_f(x) - x.tanh()).abs();
            worst = worst.max(e / x.tanh().abs().max(1e-3));
            x += 0.000_37;
        }
        assert!(worst < 1e-6, "max relative error {worst}");
        assert_eq!(tanh_f(0.0), 0.0);
        assert_eq!(tanh_f(30.0), 1.0);
        assert_eq!(tanh_f(-30.0), -1.0);
        assert!(tanh_f(f32::NAN).is_nan());
        assert_eq!(tanh_f(f32::INFINITY), 1.0);
    }

    #[test]
    fn reductions_are_exact_sums() {
        let (rows, cols) = (70, 130);
        let a: Vec<f32> = (0..rows * cols).map(|k| (k % 17) as f32 - 8.0).collect();
        let cs = col_sum(&a, rows, cols);
        for j in [0, 63, 64, 129] {
            let want: f32 = (0..rows).map(|i| a[i * cols + j]).sum();
            assert_eq!(cs[j], want);
        }
        let idx: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
        let ls = level_sum(&a, &idx, 3, cols);
        for l in 0..3 {
            let want: f32 = (0..rows)
                .filter(|i| i % 3 == l)
                .map(|i| a[i * cols + 100])
                .sum();
            assert_eq!(ls[l * cols + 100], want);
        }
    }
}
