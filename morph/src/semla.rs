//! Semla-style equivariant transformer, the second Morph backbone
//! (`net.backbone = "semla"`). The architecture follows the ideas of Semla
//! (Irwin, Tibo, Janet, Olsson 2024, "Efficient 3D molecular generation with
//! flow matching and scale optimal transport", arXiv:2406.07266): invariant
//! node features `h` next to a *set* of equivariant vector channels `v` per
//! atom, attention whose logits are biased by cheap pairwise invariants (no
//! `n² × hidden` message tensors), equivariant updates that are attention-
//! weighted sums of relative vectors, a gated equivariant feed-forward, and an
//! equivariant norm. The code is our own and a simplified variant, not a
//! reproduction of the paper's layer (its exact message functions, sizes and
//! bond-refinement head are not copied; Morph's heads in `model.rs` stay). The
//! equations are:
//!
//! **State.** `h_i ∈ ℝ^H` (invariant), `v_i ∈ ℝ^{3×C}` (C vector channels,
//! stored `[b, n, 3, C]`), input positions `x_i` (centred, fixed through the
//! layers). Initially `v_i^c = x_i − x̄` for every channel `c`.
//!
//! **Norms.** `LN(h)` is a layer norm without affine parameters (the linear
//! maps after it absorb them). The equivariant norm divides by the masked RMS
//! of the channel norms over the molecule,
//! `EN(v)_i^c = v_i^c / sqrt(Σ_i m_i Σ_c ‖v_i^c‖² / (C Σ_i m_i) + ε)`, one
//! scalar per molecule, so the relative geometry of the channels survives.
//!
//! **Pair invariants.** `p_ij = [ln(1 + ‖x_i − x_j‖²), ln(1 + ‖ṽ_i^c − ṽ_j^c‖²)_c, e_ij]`
//! with `ṽ = EN(v)` (channel distances from the Gram matrix) and `e_ij` the
//! one-hot bond classes; a small MLP maps them to one logit bias per head:
//! `[B_ij^1..B_ij^K, B̃_ij^1..B̃_ij^C] = W₂ silu(W₁ p_ij)` (width `2 (K + C)`).
//!
//! **(a) Invariant attention** (K heads, width `H / K`, pre-norm):
//! `α_ij^k = softmax_j(q_i^k·k_j^k / √d + B_ij^k)` over real atoms `j`
//! (padding gets −10⁹), `h_i ← h_i + W_o ⊕_k Σ_j α_ij^k u_j^k` with
//! `q, k, u = W_{qkv} LN(h)`.
//!
//! **(b) Equivariant attention** (one head per vector channel):
//! `β_ij^c = softmax_j(q̃_i^c·k̃_j^c / √d + B̃_ij^c)`,
//! `Δv_i^c = a_i^c Σ_j β_ij^c (ṽ_j^c − ṽ_i^c) + b_i^c Σ_j β_ij^c (x_j − x_i)` with
//! invariant gates `[a_i, b_i] = tanh(W_g LN(h)_i)`, then mixed over channels
//! only, `v_i ← v_i + s Δv_i W_m` (no bias: a linear map of vectors stays
//! equivariant). Both vector updates are scaled by `s = 1 / L` (L layers), as
//! the EGNN divides its coordinate range by L, so the drift of `v` — and the
//! initial position error — does not grow with depth.
//! The weights sum to one, so `Σ_j β (y_j − y_i) = (β y)_i − y_i` is one
//! batched matmul per channel.
//!
//! **(c) Feed-forward** on `[LN(h)_i, ‖EN(v)_i^c‖_c]` (vector norms are extra
//! invariant input): `[Δh_i, γ_i] = W₂ silu(W₁ [LN(h)_i, ‖ṽ_i‖])`,
//! `h_i ← h_i + Δh_i`, and the equivariant feed-forward
//! `v_i ← v_i + s ((ṽ_i W_in) ⊙ σ(γ_i)) W_out` (channel mixing only, gated by
//! invariants).
//!
//! **Positions out.** `x̂_i = x_i + Σ_c w_c (v_i^{c,L} − v_i^{c,0})`, re-centred
//! (masked mean), as the EGNN returns them; node features leave through a
//! final `LN`. Every update is multiplied by the
//! atom mask, so padded atoms stay zero and never enter a softmax.
//!
//! Rotations act on `x` and `v` alike and leave every `p_ij`, norm, `LN(h)`
//! and attention weight unchanged; translations vanish in the centring;
//! every sum over atoms is permutation-symmetric. Fully batched over padded
//! `[b, n, …]` tensors, no loop over atoms.
use candle_core::{Tensor, D};
use candle_nn::{ops, VarBuilder};

use crate::egnn::{centre, layer_norm, pair_geometry, Lin};
use crate::error::{MorphError, Result};

/// Semla-specific sizes (`net.n_heads`, `net.n_vec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemlaDims {
    /// Invariant attention heads; must divide the hidden width.
    pub n_heads: usize,
    /// Equivariant vector channels per atom.
    pub n_vec: usize,
}

/// Which backbone a [`crate::model::MorphNet`] is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackboneSpec {
    Egnn,
    Semla(SemlaDims),
}

/// Logit added for padded keys.
const NEG: f64 = 1e9;
/// Guards square roots of (near-)zero norms.
const EPS: f64 = 1e-6;

/// Equivariant norm: `v` `[b, n, 3, C]` divided by the masked RMS of its
/// channel norms over each molecule.
fn equi_norm(v: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let c = v.dim(3)?;
    let sq = v.sqr()?.sum(3)?.sum(2)?; // [b, n]
    let tot = sq.mul(mask)?.sum_keepdim(1)?; // [b, 1]
    let cnt = (mask.sum_keepdim(1)?.clamp(1.0, f64::MAX)? * c as f64)?;
    let s = (tot.div(&cnt)? + EPS)?.sqrt()?; // [b, 1]
    Ok(v.broadcast_div(&s.unsqueeze(2)?.unsqueeze(3)?)?)
}

/// Channel norms `‖v_i^c‖` `[b, n, C]` of `v` `[b, n, 3, C]`.
fn channel_norms(v: &Tensor) -> Result<Tensor> {
    Ok((v.sqr()?.sum(2)? + EPS)?.sqrt()?)
}

/// Softmax over the last axis after adding `key_bias` (0 for real atoms,
/// −10⁹ for padding); candle's composed `softmax` has a backward pass.
fn masked_softmax(logits: &Tensor, key_bias: &Tensor) -> Result<Tensor> {
    Ok(ops::softmax(&logits.broadcast_add(key_bias)?, D::Minus1)?)
}

/// One Semla layer: attention (a, b) then feed-forward (c).
#[derive(Debug, Clone)]
pub struct SemlaLayer {
    qkv: Lin,
    vqk: Lin,
    pair1: Lin,
    pair2: Lin,
    att_out: Lin,
    vgate: Lin,
    vmix: Lin,
    ff1: Lin,
    ff2: Lin,
    ff_vin: Lin,
    ff_vout: Lin,
    n_heads: usize,
    n_vec: usize,
    v_scale: f64,
}

impl SemlaLayer {
    /// `v_scale` multiplies both vector updates (the stack uses `1 / n_layers`).
    pub fn new(
        hidden: usize,
        n_edge: usize,
        d: SemlaDims,
        v_scale: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (k, c) = (d.n_heads, d.n_vec);
        if k == 0 || c == 0 || hidden % k != 0 {
            return Err(MorphError::config(
                "net.n_heads",
                format!(
                    "Semla needs n_heads >= 1 dividing hidden ({hidden}) and n_vec >= 1, but n_heads = {k}, n_vec = {c}"
                ),
            ));
        }
        let dh = hidden / k;
        let dp = 2 * (k + c);
        Ok(Self {
            qkv: Lin::new(hidden, 3 * hidden, true, vb.pp("qkv"))?,
            vqk: Lin::new(hidden, 2 * c * dh, true, vb.pp("vqk"))?,
            pair1: Lin::new(1 + c + n_edge, dp, true, vb.pp("pair1"))?,
            pair2: Lin::new(dp, k + c, true, vb.pp("pair2"))?,
            att_out: Lin::new(hidden, hidden, true, vb.pp("att_out"))?,
            vgate: Lin::new(hidden, 2 * c, true, vb.pp("vgate"))?,
            vmix: Lin::new(c, c, false, vb.pp("vmix"))?,
            ff1: Lin::new(hidden + c, 2 * hidden, true, vb.pp("ff1"))?,
            ff2: Lin::new(2 * hidden, hidden + c, true, vb.pp("ff2"))?,
            ff_vin: Lin::new(c, c, false, vb.pp("ff_vin"))?,
            ff_vout: Lin::new(c, c, false, vb.pp("ff_vout"))?,
            n_heads: k,
            n_vec: c,
            v_scale,
        })
    }

    /// `h` `[b, n, H]`, `v` `[b, n, 3, C]`, `x` `[b, n, 3]` (centred),
    /// `dx2` `[b, n, n, 1]` = ln(1 + ‖x_i − x_j‖²), `edge` `[b, n, n, E]`,
    /// `mask` `[b, n]`, `key_bias` `[b, 1, 1, n]` → updated `(h, v)`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        h: &Tensor,
        v: &Tensor,
        x: &Tensor,
        dx2: &Tensor,
        edge: &Tensor,
        mask: &Tensor,
        key_bias: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (b, n, hd) = h.dims3()?;
        let (k, c) = (self.n_heads, self.n_vec);
        let dh = hd / k;
        let scale = 1.0 / (dh as f64).sqrt();
        let mk = mask.unsqueeze(2)?; // [b, n, 1]
        let mk4 = mk.unsqueeze(3)?; // [b, n, 1, 1]
        let hn = layer_norm(h)?;
        let vn = equi_norm(v, mask)?; // [b, n, 3, C]
                                      // Pair invariants: channel distances via the Gram matrix.
        let vc = vn.permute((0, 3, 1, 2))?.contiguous()?; // [b, C, n, 3]
        let gram = vc.matmul(&vc.t()?)?; // [b, C, n, n]
        let sq = vc.sqr()?.sum_keepdim(3)?; // [b, C, n, 1]
        let d2v = sq
            .broadcast_add(&sq.t()?)?
            .sub(&(gram * 2.0)?)?
            .relu()?
            .affine(1.0, 1.0)?
            .log()?
            .permute((0, 2, 3, 1))?; // [b, n, n, C]
        let pf = Tensor::cat(&[dx2, &d2v, edge], 3)?; // [b, n, n, 1 + C + E]
        let pb = self
            .pair2
            .forward(&self.pair1.forward_silu(&pf)?)?
            .permute((0, 3, 1, 2))?; // [b, K + C, n, n]
        let bias_h = pb.narrow(1, 0, k)?;
        let bias_v = pb.narrow(1, k, c)?;
        // (a) invariant multi-head attention.
        let qkv = self
            .qkv
            .forward(&hn)?
            .reshape((b, n, 3, k, dh))?
            .permute((2, 0, 3, 1, 4))?; // [3, b, K, n, dh]
        let q = qkv.get(0)?.contiguous()?;
        let kk = qkv.get(1)?.contiguous()?;
        let u = qkv.get(2)?.contiguous()?;
        let logits = (q.matmul(&kk.t()?)? * scale)?.add(&bias_h)?; // [b, K, n, n]
        let att = masked_softmax(&logits, key_bias)?;
        let o = att.matmul(&u)?.permute((0, 2, 1, 3))?.reshape((b, n, hd))?; // [b, n, H]
        let h = h.add(&self.att_out.forward(&o)?)?.broadcast_mul(&mk)?;
        // (b) equivariant attention, one head per vector channel.
        let vqk = self
            .vqk
            .forward(&hn)?
            .reshape((b, n, 2, c, dh))?
            .permute((2, 0, 3, 1, 4))?; // [2, b, C, n, dh]
        let qv = vqk.get(0)?.contiguous()?;
        let kv = vqk.get(1)?.contiguous()?;
        let beta = masked_softmax(&(qv.matmul(&kv.t()?)? * scale)?.add(&bias_v)?, key_bias)?; // [b, C, n, n]
        let mv = beta.matmul(&vc)?.sub(&vc)?; // Σ_j β (ṽ_j − ṽ_i)  [b, C, n, 3]
        let mx = beta
            .reshape((b, c * n, n))?
            .matmul(x)?
            .reshape((b, c, n, 3))?
            .broadcast_sub(&x.unsqueeze(1)?)?; // Σ_j β (x_j − x_i)  [b, C, n, 3]
        let g = self
            .vgate
            .forward(&hn)?
            .tanh()?
            .permute((0, 2, 1))?
            .unsqueeze(3)?; // [b, 2C, n, 1]
        let dv = mv
            .broadcast_mul(&g.narrow(1, 0, c)?)?
            .add(&mx.broadcast_mul(&g.narrow(1, c, c)?)?)?
            .permute((0, 2, 3, 1))?; // [b, n, 3, C]
        let v = v.add(&(self.vmix.forward(&dv)?.broadcast_mul(&mk4)? * self.v_scale)?)?;
        // (c) invariant and equivariant feed-forward.
        let hn = layer_norm(&h)?;
        let vn = equi_norm(&v, mask)?;
        let z = self.ff2.forward(
            &self
                .ff1
                .forward_silu(&Tensor::cat(&[&hn, &channel_norms(&vn)?], 2)?)?,
        )?; // [b, n, H + C]
        let h = h.add(&z.narrow(2, 0, hd)?)?.broadcast_mul(&mk)?;
        let gate = ops::sigmoid(&z.narrow(2, hd, c)?)?.unsqueeze(2)?; // [b, n, 1, C]
        let fv = self
            .ff_vout
            .forward(&self.ff_vin.forward(&vn)?.broadcast_mul(&gate)?)?;
        let v = v.add(&(fv.broadcast_mul(&mk4)? * self.v_scale)?)?;
        Ok((h, v))
    }
}

/// Stack of Semla layers with the position read-out.
#[derive(Debug, Clone)]
pub struct Semla {
    layers: Vec<SemlaLayer>,
    out: Lin,
    n_vec: usize,
}

impl Semla {
    pub fn new(
        hidden: usize,
        n_layers: usize,
        n_edge: usize,
        d: SemlaDims,
        vb: VarBuilder,
    ) -> Result<Self> {
        let layers = (0..n_layers)
            .map(|l| {
                SemlaLayer::new(
                    hidden,
                    n_edge,
                    d,
                    1.0 / n_layers.max(1) as f64,
                    vb.pp(format!("layer{l}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            out: Lin::new(d.n_vec, 1, false, vb.pp("out"))?,
            n_vec: d.n_vec,
        })
    }

    /// Same contract as [`crate::egnn::Egnn::forward`]: `h` `[b, n, H]`,
    /// `x` `[b, n, 3]`, `edge` `[b, n, n, E]`, `mask` `[b, n]` → masked `h`
    /// and centred positions `[b, n, 3]`.
    pub fn forward(
        &self,
        h: &Tensor,
        x: &Tensor,
        edge: &Tensor,
        mask: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (b, n, _) = x.dims3()?;
        let x = centre(x, mask)?;
        let v0 = x
            .unsqueeze(3)?
            .broadcast_as((b, n, 3, self.n_vec))?
            .contiguous()?; // [b, n, 3, C]
        let key_bias = ((mask - 1.0)? * NEG)?.reshape((b, 1, 1, n))?;
        let (_, d2) = pair_geometry(&x)?;
        let dx2 = d2.affine(1.0, 1.0)?.log()?; // [b, n, n, 1]
        let mut h = h.broadcast_mul(&mask.unsqueeze(2)?)?;
        let mut v = v0.clone();
        for l in &self.layers {
            (h, v) = l.forward(&h, &v, &x, &dx2, edge, mask, &key_bias)?;
        }
        let dx = self.out.forward(&v.sub(&v0)?)?.squeeze(3)?; // [b, n, 3]
        let h = layer_norm(&h)?.broadcast_mul(&mask.unsqueeze(2)?)?;
        Ok((h, centre(&x.add(&dx)?, mask)?))
    }
}
