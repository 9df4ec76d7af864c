//! Fused element-wise kernels for the CPU training step.
//!
//! candle differentiates `silu(x·Wᵀ + b)` as a chain of tensor ops: the bias
//! add, the SiLU, and in the backward pass about ten full passes for the SiLU
//! derivative (`neg`, `exp`, `+1`, `recip`, products, sums) plus a strided
//! column reduction for the bias gradient. On the EGNN's `[pairs, H]`
//! message tensors those passes were a quarter of a training step
//! (issue 6 profile). Here each is one pass over the data:
//!
//! * [`silu`]: `x σ(x)`; backward `g σ(x) (1 + x (1 − σ(x)))`.
//! * [`bias_silu`]: `silu(z + b)` for `z` `[R, C]`, `b` `[C]`; backward gives
//!   `g_z = g silu'(z + b)` and `g_b = Σ_rows g_z` (fixed row blocks summed in
//!   order, so the result does not depend on the thread count).
//!
//! Other devices and dtypes (CUDA, f64) take candle's own ops, so results
//! there are unchanged; on the CPU the values agree with candle's to float
//! rounding (tests in `morph/tests/fused.rs`).
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};
use datasets::simd::exp_f32;
use rayon::prelude::*;

/// Elements per parallel block (below this, one thread).
const BLOCK: usize = 1 << 14;
/// Rows per block of the bias-gradient column sum.
const ROW_BLOCK: usize = 64;

fn fast_path(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &'static str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("{op}: expected f32 storage"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: expected a contiguous tensor"),
    }
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

#[inline(always)]
fn silu_grad(x: f32, g: f32) -> f32 {
    let s = sigmoid(x);
    g * s * (1.0 + x * (1.0 - s))
}

// The element loops, written over slices so that LLVM vectorises them, each
// compiled for baseline, AVX2 + FMA and AVX-512 (chosen at run time).
datasets::simd_kernels! {
    k_silu(x: &[f32], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v * sigmoid(v);
        }
    }
    k_silu_grad(x: &[f32], g: &[f32], out: &mut [f32]) {
        for ((o, &v), &d) in out.iter_mut().zip(x).zip(g) {
            *o = silu_grad(v, d);
        }
    }
    k_bias_silu(z: &[f32], b: &[f32], out: &mut [f32]) {
        for (zr, or) in z.chunks_exact(b.len()).zip(out.chunks_exact_mut(b.len())) {
            for ((o, &v), &c) in or.iter_mut().zip(zr).zip(b) {
                let u = v + c;
                *o = u * sigmoid(u);
            }
        }
    }
    k_bias_silu_grad(z: &[f32], b: &[f32], g: &[f32], out: &mut [f32]) {
        let c = b.len();
        for ((zr, gr), or) in z.chunks_exact(c).zip(g.chunks_exact(c)).zip(out.chunks_exact_mut(c)) {
            for (((o, &v), &d), &bb) in or.iter_mut().zip(zr).zip(gr).zip(b) {
                *o = silu_grad(v + bb, d);
            }
        }
    }
    k_add_rows(x: &[f32], acc: &mut [f32]) {
        for r in x.chunks_exact(acc.len()) {
            for (a, &v) in acc.iter_mut().zip(r) {
                *a += v;
            }
        }
    }
    k_gather_add_silu(a: &[f32], s: &[f32], d: &[f32], src: &[u32], dst: &[u32], h: usize, out: &mut [f32]) {
        for (k, (ar, or)) in a.chunks_exact(h).zip(out.chunks_exact_mut(h)).enumerate() {
            let (i, j) = (src[k] as usize * h, dst[k] as usize * h);
            let (sr, dr) = (&s[i..i + h], &d[j..j + h]);
            for (((o, &x), &y), &z) in or.iter_mut().zip(ar).zip(sr).zip(dr) {
                let u = x + y + z;
                *o = u * sigmoid(u);
            }
        }
    }
    k_gather_add_silu_grad(a: &[f32], sd: &[f32], g: &[f32], src: &[u32], dst: &[u32], h: usize, out: &mut [f32]) {
        // `sd` rows are `[s_i | d_i]` (width 2H)
        for (k, ((ar, gr), or)) in a.chunks_exact(h).zip(g.chunks_exact(h)).zip(out.chunks_exact_mut(h)).enumerate() {
            let (i, j) = (src[k] as usize * 2 * h, dst[k] as usize * 2 * h + h);
            let (sr, dr) = (&sd[i..i + h], &sd[j..j + h]);
            for ((((o, &x), &y), &z), &gg) in or.iter_mut().zip(ar).zip(sr).zip(dr).zip(gr) {
                *o = silu_grad(x + y + z, gg);
            }
        }
    }
    k_scatter_rows(v: &[f32], idx: &[u32], h: usize, out: &mut [f32]) {
        for (k, vr) in v.chunks_exact(h).enumerate() {
            let i = idx[k] as usize * h;
            for (o, &x) in out[i..i + h].iter_mut().zip(vr) {
                *o += x;
            }
        }
    }
}

/// Runs `f(block_input_range, block_output)` over blocks of whole rows of
/// width `c` (about [`BLOCK`] elements each), in parallel when large.
fn map_blocks(
    n: usize,
    c: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; n];
    let c = c.max(1);
    let block = (BLOCK / c).max(1) * c;
    if n < 2 * BLOCK {
        f(0..n, &mut out);
    } else {
        out.par_chunks_mut(block).enumerate().for_each(|(k, ch)| {
            let a = k * block;
            f(a..a + ch.len(), ch);
        });
    }
    out
}

struct Silu;

impl CustomOp1 for Silu {
    fn name(&self) -> &'static str {
        "fused-silu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let y = map_blocks(x.len(), 1, |r, o| k_silu(&x[r], o));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&g, &SiluGrad)?))
    }
}

struct SiluGrad;

impl CustomOp2 for SiluGrad {
    fn name(&self) -> &'static str {
        "fused-silu-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
        );
        if x.len() != g.len() {
            candle_core::bail!(
                "{}: {} values vs {} gradients",
                self.name(),
                x.len(),
                g.len()
            );
        }
        let out = map_blocks(x.len(), 1, |r, o| k_silu_grad(&x[r.clone()], &g[r], o));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `silu(x) = x σ(x)`, one pass forward and one backward on the CPU (f32).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    if fast_path(x) {
        x.contiguous()?.apply_op1(Silu)
    } else {
        x.silu()
    }
}

struct BiasSilu;

fn rows_cols(l: &Layout, b: &Layout, op: &'static str) -> Result<(usize, usize)> {
    let (r, c) = l.shape().dims2()?;
    if b.shape().dims() != [c] {
        candle_core::bail!("{op}: bias shape {:?} for {c} columns", b.shape().dims());
    }
    Ok((r, c))
}

impl CustomOp2 for BiasSilu {
    fn name(&self) -> &'static str {
        "fused-bias-silu"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c) = rows_cols(l1, l2, self.name())?;
        let (z, b) = (
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
        );
        let y = map_blocks(z.len(), c, |r, o| k_bias_silu(&z[r], b, o));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        z: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let gz = z.apply_op3_no_bwd(b, &g, &BiasSiluGrad)?;
        let gb = gz.apply_op1_no_bwd(&ColSum)?;
        Ok((Some(gz), Some(gb)))
    }
}

struct BiasSiluGrad;

impl CustomOp3 for BiasSiluGrad {
    fn name(&self) -> &'static str {
        "fused-bias-silu-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c) = rows_cols(l1, l2, self.name())?;
        let z = f32_slice(s1, l1, self.name())?;
        let b = f32_slice(s2, l2, self.name())?;
        let g = f32_slice(s3, l3, self.name())?;
        if g.len() != z.len() {
            candle_core::bail!(
                "{}: {} values vs {} gradients",
                self.name(),
                z.len(),
                g.len()
            );
        }
        let out = map_blocks(z.len(), c, |r, o| {
            k_bias_silu_grad(&z[r.clone()], b, &g[r], o)
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Column sums of a contiguous `[R, C]` f32 tensor → `[C]`.
struct ColSum;

impl CustomOp1 for ColSum {
    fn name(&self) -> &'static str {
        "fused-col-sum"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (r, c) = l.shape().dims2()?;
        let x = f32_slice(s, l, self.name())?;
        let partial = |rows: std::ops::Range<usize>| {
            let mut acc = vec![0f32; c];
            k_add_rows(&x[rows.start * c..rows.end * c], &mut acc);
            acc
        };
        let n_blocks = r.div_ceil(ROW_BLOCK).max(1);
        let parts: Vec<Vec<f32>> = if r * c < 2 * BLOCK {
            (0..n_blocks)
                .map(|k| partial(k * ROW_BLOCK..((k + 1) * ROW_BLOCK).min(r)))
                .collect()
        } else {
            (0..n_blocks)
                .into_par_iter()
                .map(|k| partial(k * ROW_BLOCK..((k + 1) * ROW_BLOCK).min(r)))
                .collect()
        };
        let mut out = vec![0f32; c];
        for p in &parts {
            for (o, v) in out.iter_mut().zip(p) {
                *o += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(c)))
    }
}

/// `silu(z + b)` for `z` `[R, C]` and `b` `[C]` in one pass (CPU, f32);
/// elsewhere candle's `broadcast_add` then `silu`.
pub fn bias_silu(z: &Tensor, b: &Tensor) -> Result<Tensor> {
    if fast_path(z) && fast_path(b) && z.rank() == 2 {
        z.contiguous()?.apply_op2(&b.contiguous()?, BiasSilu)
    } else {
        z.broadcast_add(b)?.silu()
    }
}

/// `silu(a_p + s_{src[p]} + d_{dst[p]})` for the pair rows `p` of a message
/// pre-activation: the two gathers, both adds and the SiLU in one pass.
/// `a` `[P, H]`, `s`, `d` `[N, H]`; the backward pass gives `g_a` and
/// scatters it into `g_s` / `g_d` (rows summed in pair order).
struct GatherAddSilu {
    src: std::sync::Arc<Vec<u32>>,
    dst: std::sync::Arc<Vec<u32>>,
}

fn check_gather(
    op: &'static str,
    la: &Layout,
    ls: &Layout,
    ld: &Layout,
    src: &[u32],
    dst: &[u32],
) -> Result<(usize, usize, usize)> {
    let (p, h) = la.shape().dims2()?;
    let (n, hs) = ls.shape().dims2()?;
    let (nd, hd) = ld.shape().dims2()?;
    if hs != h || hd != h || nd != n {
        candle_core::bail!(
            "{op}: shapes {:?}, {:?}, {:?} do not match",
            la.shape().dims(),
            ls.shape().dims(),
            ld.shape().dims()
        );
    }
    if src.len() != p || dst.len() != p {
        candle_core::bail!(
            "{op}: {p} rows but {} / {} pair indices",
            src.len(),
            dst.len()
        );
    }
    if let Some(&bad) = src.iter().chain(dst).find(|&&i| i as usize >= n) {
        candle_core::bail!("{op}: pair index {bad} out of range for {n} atoms");
    }
    Ok((p, h, n))
}

impl CustomOp3 for GatherAddSilu {
    fn name(&self) -> &'static str {
        "fused-gather-add-silu"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, h, _) = check_gather(self.name(), l1, l2, l3, &self.src, &self.dst)?;
        let a = f32_slice(s1, l1, self.name())?;
        let s = f32_slice(s2, l2, self.name())?;
        let d = f32_slice(s3, l3, self.name())?;
        let out = map_blocks(a.len(), h, |r, o| {
            let rows = r.start / h..r.end / h;
            k_gather_add_silu(&a[r], s, d, &self.src[rows.clone()], &self.dst[rows], h, o)
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        a: &Tensor,
        s: &Tensor,
        d: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        // the per-atom terms side by side (N ≪ P rows, so this copy is small)
        let sd = Tensor::cat(&[s, d], 1)?;
        let ga = a.apply_op3_no_bwd(
            &g,
            &sd,
            &GatherAddSiluGrad {
                src: self.src.clone(),
                dst: self.dst.clone(),
            },
        )?;
        let n = s.dim(0)?;
        let gs = ga.apply_op1_no_bwd(&ScatterRows {
            idx: self.src.clone(),
            n,
        })?;
        let gd = ga.apply_op1_no_bwd(&ScatterRows {
            idx: self.dst.clone(),
            n,
        })?;
        Ok((Some(ga), Some(gs), Some(gd)))
    }
}

/// Backward of [`GatherAddSilu`]: `a` `[P, H]`, the output gradient `g`
/// `[P, H]` and `[s | d]` `[N, 2H]` (a custom op takes at most three
/// tensors) → `g_a` `[P, H]`.
struct GatherAddSiluGrad {
    src: std::sync::Arc<Vec<u32>>,
    dst: std::sync::Arc<Vec<u32>>,
}

impl CustomOp3 for GatherAddSiluGrad {
    fn name(&self) -> &'static str {
        "fused-gather-add-silu-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (p, h) = l1.shape().dims2()?;
        let (_, h2) = l3.shape().dims2()?;
        if l2.shape().dims2()? != (p, h) || h2 != 2 * h {
            candle_core::bail!("{}: shapes do not match", self.name());
        }
        let a = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let sd = f32_slice(s3, l3, self.name())?;
        let out = map_blocks(p * h, h, |r, o| {
            let rows = r.start / h..r.end / h;
            k_gather_add_silu_grad(
                &a[r.clone()],
                sd,
                &g[r],
                &self.src[rows.clone()],
                &self.dst[rows],
                h,
                o,
            )
        });
        Ok((CpuStorage::F32(out), Shape::from((p, h))))
    }
}

/// `out[idx[p]] += v[p]` over the rows of `v` `[P, H]` → `[n, H]`.
struct ScatterRows {
    idx: std::sync::Arc<Vec<u32>>,
    n: usize,
}

impl CustomOp1 for ScatterRows {
    fn name(&self) -> &'static str {
        "fused-scatter-rows"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (p, h) = l.shape().dims2()?;
        if self.idx.len() != p {
            candle_core::bail!("{}: {p} rows but {} indices", self.name(), self.idx.len());
        }
        let v = f32_slice(s, l, self.name())?;
        let mut out = vec![0f32; self.n * h];
        k_scatter_rows(v, &self.idx, h, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((self.n, h))))
    }
}

/// Host copies of pair indices for [`gather_add_silu`].
#[derive(Debug, Clone)]
pub struct PairIndex {
    pub src: std::sync::Arc<Vec<u32>>,
    pub dst: std::sync::Arc<Vec<u32>>,
}

/// `silu(a + s[src] + d[dst])` (rows of `a` `[P, H]` are pairs, `s`, `d`
/// `[N, H]` per-atom terms): one fused pass forward and backward on the CPU
/// (f32); elsewhere `index_select`, `add` and `silu` with candle's ops.
pub fn gather_add_silu(
    a: &Tensor,
    s: &Tensor,
    d: &Tensor,
    idx: &PairIndex,
    src: &Tensor,
    dst: &Tensor,
) -> Result<Tensor> {
    if fast_path(a) && fast_path(s) && fast_path(d) && a.rank() == 2 {
        a.contiguous()?.apply_op3(
            &s.contiguous()?,
            &d.contiguous()?,
            GatherAddSilu {
                src: idx.src.clone(),
                dst: idx.dst.clone(),
            },
        )
    } else {
        a.add(&s.index_select(src, 0)?)?
            .add(&d.index_select(dst, 0)?)?
            .silu()
    }
}

/// `out[src[p]] += gate[p] · m[p]` for pair rows `m` `[P, H]` and gates
/// `[P, 1]` → `[N, H]` (the EGNN's gated message sum), one pass each way:
/// the backward gives `g_m[p] = gate[p] · g[src[p]]` and
/// `g_gate[p] = ⟨g[src[p]], m[p]⟩`. Pairs come in (molecule, i, j) order, so
/// `src` is non-decreasing and output rows are split between threads at
/// changes of `src`; an unsorted `src` is summed on one thread.
struct GatedScatter {
    src: std::sync::Arc<Vec<u32>>,
    n: usize,
}

fn gated_scatter_rows(
    m: &[f32],
    gate: &[f32],
    src: &[u32],
    h: usize,
    out: &mut [f32],
    row0: usize,
) {
    for (p, mr) in m.chunks_exact(h).enumerate() {
        let i = (src[p] as usize - row0) * h;
        let gp = gate[p];
        for (o, &x) in out[i..i + h].iter_mut().zip(mr) {
            *o += gp * x;
        }
    }
}

impl CustomOp2 for GatedScatter {
    fn name(&self) -> &'static str {
        "fused-gated-scatter"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (p, h) = l1.shape().dims2()?;
        if l2.shape().dims2()? != (p, 1) || self.src.len() != p {
            candle_core::bail!("{}: shapes do not match", self.name());
        }
        if let Some(&bad) = self.src.iter().find(|&&i| i as usize >= self.n) {
            candle_core::bail!(
                "{}: pair index {bad} out of range for {} atoms",
                self.name(),
                self.n
            );
        }
        let m = f32_slice(s1, l1, self.name())?;
        let gate = f32_slice(s2, l2, self.name())?;
        let src = &self.src[..];
        let mut out = vec![0f32; self.n * h];
        let sorted = src.windows(2).all(|w| w[0] <= w[1]);
        if !sorted || p * h < 2 * BLOCK {
            gated_scatter_rows(m, gate, src, h, &mut out, 0);
        } else {
            // split pair rows into blocks of ~BLOCK elements, cut where src changes
            let per = (BLOCK / h).max(1);
            let mut cuts = vec![0usize];
            let mut k = per;
            while k < p {
                while k < p && src[k] == src[k - 1] {
                    k += 1;
                }
                if k < p {
                    cuts.push(k);
                }
                k += per;
            }
            cuts.push(p);
            // output rows of block b: [src[cuts[b]], src[cuts[b + 1]]) (last: to n)
            let mut rest: &mut [f32] = &mut out;
            let mut row = 0usize;
            let mut jobs = Vec::with_capacity(cuts.len() - 1);
            for b in 0..cuts.len() - 1 {
                let (lo, hi) = (cuts[b], cuts[b + 1]);
                let r0 = src[lo] as usize;
                let r1 = if hi < p { src[hi] as usize } else { self.n };
                let (_, tail) = rest.split_at_mut((r0 - row) * h);
                let (mine, tail) = tail.split_at_mut((r1 - r0) * h);
                rest = tail;
                row = r1;
                jobs.push((lo..hi, r0, mine));
            }
            jobs.into_par_iter().for_each(|(r, r0, o)| {
                gated_scatter_rows(
                    &m[r.start * h..r.end * h],
                    &gate[r.clone()],
                    &src[r],
                    h,
                    o,
                    r0,
                )
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((self.n, h))))
    }
    fn bwd(
        &self,
        m: &Tensor,
        gate: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let gm = gate.apply_op2_no_bwd(
            &g,
            &GatherScale {
                src: self.src.clone(),
            },
        )?;
        let gg = m.apply_op2_no_bwd(
            &g,
            &GatherDot {
                src: self.src.clone(),
            },
        )?;
        Ok((Some(gm), Some(gg)))
    }
}

/// `out[p] = gate[p] · g[src[p]]` → `[P, H]`.
struct GatherScale {
    src: std::sync::Arc<Vec<u32>>,
}

impl CustomOp2 for GatherScale {
    fn name(&self) -> &'static str {
        "fused-gather-scale"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let p = l1.shape().dims2()?.0;
        let h = l2.shape().dims2()?.1;
        let gate = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let src = &self.src[..];
        let out = map_blocks(p * h, h, |r, o| {
            let rows = r.start / h..r.end / h;
            for ((orow, &s), &gp) in o
                .chunks_exact_mut(h)
                .zip(&src[rows.clone()])
                .zip(&gate[rows])
            {
                let gr = &g[s as usize * h..(s as usize + 1) * h];
                for (x, &y) in orow.iter_mut().zip(gr) {
                    *x = gp * y;
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((p, h))))
    }
}

/// `out[p] = ⟨g[src[p]], m[p]⟩` → `[P, 1]`.
struct GatherDot {
    src: std::sync::Arc<Vec<u32>>,
}

impl CustomOp2 for GatherDot {
    fn name(&self) -> &'static str {
        "fused-gather-dot"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (p, h) = l1.shape().dims2()?;
        let m = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let src = &self.src[..];
        let out = map_blocks(p, 1, |r, o| {
            for (k, ok) in r.zip(o.iter_mut()) {
                let s = src[k] as usize;
                *ok = m[k * h..(k + 1) * h]
                    .iter()
                    .zip(&g[s * h..(s + 1) * h])
                    .map(|(a, b)| a * b)
                    .sum();
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((p, 1))))
    }
}

/// `Σ_{p: src[p] = i} gate[p] · m[p]` for every atom `i < n`: `m` `[P, H]`,
/// `gate` `[P, 1]` → `[n, H]`; one fused pass each way on the CPU (f32),
/// elsewhere candle's `broadcast_mul` and `index_add`.
pub fn gated_scatter(
    m: &Tensor,
    gate: &Tensor,
    idx: &PairIndex,
    src: &Tensor,
    n: usize,
) -> Result<Tensor> {
    if fast_path(m) && fast_path(gate) && m.rank() == 2 {
        m.contiguous()?.apply_op2(
            &gate.contiguous()?,
            GatedScatter {
                src: idx.src.clone(),
                n,
            },
        )
    } else {
        let h = m.dim(1)?;
        Tensor::zeros((n, h), m.dtype(), m.device())?.index_add(src, &m.broadcast_mul(gate)?, 0)
    }
}
