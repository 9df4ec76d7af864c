//! E(n)-equivariant graph network (Satorras, Hoogeboom, Welling 2021) in the
//! EDM variant (Hoogeboom et al. 2022): messages
//! `m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖², e_ij)` gated by a sigmoid attention,
//! node update `h_i ← h_i + φ_h(h_i, Σ_j m_ij / Z)`, and coordinate update
//! `x_i ← x_i + Σ_j (x_i − x_j)/(‖x_i − x_j‖ + 1) · r·tanh(φ_x(m_ij)) / Z`
//! (normalised differences, tanh-bounded range r). Edge features are the
//! one-hot bond classes.
//!
//! Scale: every layer reads its node features through a layer norm
//! (pre-norm residual, as in transformer / Semla practice) and the stack's
//! output is layer-normed, so the hidden state grows at most additively with
//! depth instead of geometrically (a 9 × 256 stack at Kaiming init otherwise
//! reaches |h| ~ 1e3 and pair logits ~ 1e8).
//!
//! Layout: node tensors are `[batch, n_atoms, …]` with a mask; the pair work
//! runs on the list of real ordered pairs `(i, j)`, `i ≠ j`, of every molecule
//! ([`Pairs`]), so no `[batch, n, n, hidden]` tensor is padded with absent
//! atoms. Positions are re-centred (masked mean) after every layer.
use candle_core::{DType, Module, Tensor, D};
use candle_nn::{ops, Init, Linear, VarBuilder};

use crate::error::Result;
use crate::fused;

/// Linear layer that flattens all leading dimensions into one GEMM.
#[derive(Debug, Clone)]
pub struct Lin {
    inner: Linear,
}

impl Lin {
    pub fn new(d_in: usize, d_out: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let inner = if bias {
            candle_nn::linear(d_in, d_out, vb)?
        } else {
            candle_nn::linear_no_bias(d_in, d_out, vb)?
        };
        Ok(Self { inner })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let d_in = dims[dims.len() - 1];
        let lead: usize = dims[..dims.len() - 1].iter().product();
        let y = self.inner.forward(&x.reshape((lead, d_in))?)?; // [lead, d_out]
        let mut out = dims.clone();
        let last = out.len() - 1;
        out[last] = y.dim(1)?;
        Ok(y.reshape(out)?)
    }
    /// `silu(forward(x))`, with the bias add and the SiLU as one fused pass
    /// on the CPU ([`fused::bias_silu`]).
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let d_in = dims[dims.len() - 1];
        let lead: usize = dims[..dims.len() - 1].iter().product();
        let z = x.reshape((lead, d_in))?.matmul(&self.inner.weight().t()?)?; // [lead, d_out]
        let y = match self.inner.bias() {
            Some(b) => fused::bias_silu(&z, b)?,
            None => fused::silu(&z)?,
        };
        let mut out = dims.clone();
        let last = out.len() - 1;
        out[last] = y.dim(1)?;
        Ok(y.reshape(out)?)
    }
    /// Weight `[d_out, d_in]`.
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }
}

/// Layer norm over the last axis with a learned gain (`weight`, init 1) and
/// shift (`bias`, init 0), written with differentiable tensor ops (candle's
/// fused layer-norm kernel has no backward pass).
#[derive(Debug, Clone)]
pub struct NodeNorm {
    weight: Tensor,
    bias: Tensor,
}

impl NodeNorm {
    pub fn new(size: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(size, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(size, "bias", Init::Const(0.0))?,
        })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(layer_norm(x)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)?)
    }
}

/// Layer norm over the last axis without affine parameters (ε = 1e-5).
pub fn layer_norm(x: &Tensor) -> Result<Tensor> {
    let xc = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let inv = (xc.sqr()?.mean_keepdim(D::Minus1)? + 1e-5)?
        .sqrt()?
        .recip()?;
    Ok(xc.broadcast_mul(&inv)?)
}

/// Masked mean over atoms: `x` `[b, n, d]`, `mask` `[b, n]` → `[b, 1, d]`.
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.unsqueeze(2)?; // [b, n, 1]
    let s = x.broadcast_mul(&m)?.sum_keepdim(1)?; // [b, 1, d]
    let c = m.sum_keepdim(1)?.clamp(1.0, f64::MAX)?; // [b, 1, 1]
    Ok(s.broadcast_div(&c)?)
}

/// Subtract the masked centre of mass and zero padded atoms. `x` `[b, n, 3]`.
pub fn centre(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mu = masked_mean(x, mask)?;
    Ok(x.broadcast_sub(&mu)?.broadcast_mul(&mask.unsqueeze(2)?)?)
}

/// Pairwise differences `x_i − x_j` `[b, n, n, 3]` and squared distances `[b, n, n, 1]`.
pub fn pair_geometry(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let diff = x.unsqueeze(2)?.broadcast_sub(&x.unsqueeze(1)?)?; // [b, n, n, 3]
    let d2 = diff.sqr()?.sum_keepdim(3)?; // [b, n, n, 1]
    Ok((diff, d2))
}

/// Pair mask `m_i m_j (1 − δ_ij)` `[b, n, n, 1]`.
pub fn pair_mask(mask: &Tensor) -> Result<Tensor> {
    let (_, n) = mask.dims2()?;
    let mm = mask.unsqueeze(2)?.broadcast_mul(&mask.unsqueeze(1)?)?; // [b, n, n]
    let eye = Tensor::eye(n, DType::F32, mask.device())?;
    let off = (1.0 - eye)?; // [n, n]
    Ok(mm.broadcast_mul(&off)?.unsqueeze(3)?)
}

/// The real ordered atom pairs `(i, j)`, `i ≠ j`, both present, of a padded
/// batch with mask `[b, n]`, in (molecule, i, j) order. Indices are flat:
/// `src = b·n + i`, `dst = b·n + j`, `pair = (b·n + i)·n + j`.
#[derive(Debug, Clone)]
pub struct Pairs {
    pub batch: usize,
    pub n: usize,
    pub len: usize,
    /// `[P]` u32 flat index of atom i.
    pub src: Tensor,
    /// `[P]` u32 flat index of atom j.
    pub dst: Tensor,
    /// `[P]` u32 flat index of the pair in a `[b, n, n]` tensor.
    pub pair: Tensor,
    /// Host copies of `src` / `dst` for the fused CPU kernels.
    pub host: fused::PairIndex,
}

impl Pairs {
    pub fn from_mask(mask: &Tensor) -> Result<Self> {
        let (b, n) = mask.dims2()?;
        let m = mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let (mut src, mut dst, mut pair) = (Vec::new(), Vec::new(), Vec::new());
        for (k, row) in m.iter().enumerate() {
            let real: Vec<usize> = (0..n).filter(|&i| row[i] > 0.5).collect();
            for &i in &real {
                for &j in &real {
                    if i != j {
                        src.push((k * n + i) as u32);
                        dst.push((k * n + j) as u32);
                        pair.push(((k * n + i) * n + j) as u32);
                    }
                }
            }
        }
        let len = src.len();
        let dev = mask.device();
        Ok(Self {
            batch: b,
            n,
            len,
            src: Tensor::from_slice(&src, len, dev)?,
            dst: Tensor::from_slice(&dst, len, dev)?,
            pair: Tensor::from_vec(pair, len, dev)?,
            host: fused::PairIndex {
                src: std::sync::Arc::new(src),
                dst: std::sync::Arc::new(dst),
            },
        })
    }

    /// Rows of a `[b, n, n, …]` tensor at the pairs → `[P, …]`.
    pub fn take(&self, t: &Tensor) -> Result<Tensor> {
        let dims = t.dims();
        let inner: usize = dims[3..].iter().product();
        Ok(t.reshape((self.batch * self.n * self.n, inner))?
            .index_select(&self.pair, 0)?)
    }

    /// Sum `[P, d]` rows into their atom i → `[b·n, d]`.
    pub fn sum_to_src(&self, v: &Tensor) -> Result<Tensor> {
        let d = v.dim(1)?;
        let z = Tensor::zeros((self.batch * self.n, d), v.dtype(), v.device())?;
        Ok(z.index_add(&self.src, v, 0)?)
    }

    /// Scatter `[P, d]` rows into a zero `[b, n, n, d]` tensor (absent pairs
    /// and the diagonal stay 0).
    pub fn to_dense(&self, v: &Tensor) -> Result<Tensor> {
        let d = v.dim(1)?;
        let z = Tensor::zeros((self.batch * self.n * self.n, d), v.dtype(), v.device())?;
        Ok(z.index_add(&self.pair, v, 0)?
            .reshape((self.batch, self.n, self.n, d))?)
    }

    /// `x_i − x_j` `[P, 3]` and `‖x_i − x_j‖²` `[P, 1]` of flat positions `[b·n, 3]`.
    pub fn geometry(&self, xf: &Tensor) -> Result<(Tensor, Tensor)> {
        let diff = xf
            .index_select(&self.src, 0)?
            .sub(&xf.index_select(&self.dst, 0)?)?;
        let d2 = diff.sqr()?.sum_keepdim(1)?;
        Ok((diff, d2))
    }
}

/// One EGNN layer.
#[derive(Debug, Clone)]
pub struct EgnnLayer {
    norm: NodeNorm,
    src: Lin,
    dst: Lin,
    dist: Lin,
    edge: Lin,
    msg: Lin,
    att: Lin,
    node1: Lin,
    node2: Lin,
    coord1: Lin,
    coord2: Lin,
    coords_range: f64,
    agg_norm: f64,
    log_dist: bool,
}

impl EgnnLayer {
    pub fn new(
        hidden: usize,
        n_edge: usize,
        coords_range: f64,
        agg_norm: f64,
        log_dist: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm: NodeNorm::new(hidden, vb.pp("norm"))?,
            src: Lin::new(hidden, hidden, true, vb.pp("src"))?,
            dst: Lin::new(hidden, hidden, false, vb.pp("dst"))?,
            dist: Lin::new(1, hidden, false, vb.pp("dist"))?,
            edge: Lin::new(n_edge, hidden, false, vb.pp("edge"))?,
            msg: Lin::new(hidden, hidden, true, vb.pp("msg"))?,
            att: Lin::new(hidden, 1, true, vb.pp("att"))?,
            node1: Lin::new(2 * hidden, hidden, true, vb.pp("node1"))?,
            node2: Lin::new(hidden, hidden, true, vb.pp("node2"))?,
            coord1: Lin::new(hidden, hidden, true, vb.pp("coord1"))?,
            coord2: Lin::new(hidden, 1, false, vb.pp("coord2"))?,
            coords_range,
            agg_norm,
            log_dist,
        })
    }

    /// `h` `[b·n, H]`, `x` `[b, n, 3]`, `edge` `[P, E]` (edge features of the
    /// pairs), `mask` `[b, n]`, `mk` `[b·n, 1]` → updated `(h, x)`.
    pub fn forward(
        &self,
        h: &Tensor,
        x: &Tensor,
        edge: &Tensor,
        mask: &Tensor,
        mk: &Tensor,
        pairs: &Pairs,
    ) -> Result<(Tensor, Tensor)> {
        let (bn, hid) = h.dims2()?;
        let hn = self.norm.forward(h)?.broadcast_mul(mk)?; // [b n, H]
        let xf = x.reshape((bn, 3))?;
        let (agg, dx) = if pairs.len == 0 {
            (
                Tensor::zeros((bn, hid), h.dtype(), h.device())?,
                Tensor::zeros((bn, 3), x.dtype(), x.device())?,
            )
        } else {
            let (diff, d2) = pairs.geometry(&xf)?; // [P, 3], [P, 1]
                                                   // Message distance feature: d² (EDM) or ln(1 + d²) (bounded sensitivity).
            let df = if self.log_dist {
                d2.affine(1.0, 1.0)?.log()?
            } else {
                d2.clone()
            };
            // edge(e) + dist(df) as one GEMM on [e, df].
            let w_ed = Tensor::cat(&[self.edge.weight(), self.dist.weight()], 1)?; // [H, E + 1]
            let pre = Tensor::cat(&[edge, &df], 1)?.matmul(&w_ed.t()?)?; // [P, H]
            let m1 = fused::gather_add_silu(
                &pre,
                &self.src.forward(&hn)?,
                &self.dst.forward(&hn)?,
                &pairs.host,
                &pairs.src,
                &pairs.dst,
            )?; // silu(pre + s_i + d_j) [P, H]
            let m = self.msg.forward_silu(&m1)?; // [P, H]
            let gate = ops::sigmoid(&self.att.forward(&m)?)?; // [P, 1]
            let agg =
                (fused::gated_scatter(&m, &gate, &pairs.host, &pairs.src, bn)? / self.agg_norm)?; // [b n, H]
            let phi = (self
                .coord2
                .forward(&self.coord1.forward_silu(&m)?)?
                .tanh()?
                * self.coords_range)?; // [P, 1]
            let w = phi.div(&(d2 + 1e-8)?.sqrt()?.affine(1.0, 1.0)?)?; // [P, 1]
            let dx = (pairs.sum_to_src(&diff.broadcast_mul(&w)?)? / self.agg_norm)?; // [b n, 3]
            (agg, dx)
        };
        let dh = self
            .node2
            .forward(&self.node1.forward_silu(&Tensor::cat(&[&hn, &agg], 1)?)?)?;
        let h = h.add(&dh)?.broadcast_mul(mk)?;
        let x = centre(&xf.add(&dx)?.reshape(x.dims())?, mask)?;
        Ok((h, x))
    }
}

/// Stack of EGNN layers; as in EDM, each layer's coordinate range is
/// `coords_range / n_layers`. The output node features are layer-normed.
#[derive(Debug, Clone)]
pub struct Egnn {
    layers: Vec<EgnnLayer>,
    out_norm: NodeNorm,
}

impl Egnn {
    pub fn new(
        hidden: usize,
        n_layers: usize,
        n_edge: usize,
        coords_range: f64,
        agg_norm: f64,
        log_dist: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let layers = (0..n_layers)
            .map(|l| {
                EgnnLayer::new(
                    hidden,
                    n_edge,
                    coords_range / n_layers as f64,
                    agg_norm,
                    log_dist,
                    vb.pp(format!("layer{l}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            out_norm: NodeNorm::new(hidden, vb.pp("out_norm"))?,
        })
    }

    /// `h` `[b, n, H]`, `x` `[b, n, 3]`, `edge` `[b, n, n, E]`, `mask` `[b, n]`
    /// → `(h [b, n, H], x [b, n, 3])`, padded atoms zero.
    pub fn forward(
        &self,
        h: &Tensor,
        x: &Tensor,
        edge: &Tensor,
        mask: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let pairs = Pairs::from_mask(mask)?;
        self.forward_pairs(h, x, edge, mask, &pairs)
    }

    /// [`Egnn::forward`] with the pair list given.
    pub fn forward_pairs(
        &self,
        h: &Tensor,
        x: &Tensor,
        edge: &Tensor,
        mask: &Tensor,
        pairs: &Pairs,
    ) -> Result<(Tensor, Tensor)> {
        let (b, n, hid) = h.dims3()?;
        let mk = mask.reshape((b * n, 1))?;
        let ep = if pairs.len == 0 {
            Tensor::zeros((0, edge.dim(3)?), edge.dtype(), edge.device())?
        } else {
            pairs.take(edge)?
        };
        let (mut h, mut x) = (h.reshape((b * n, hid))?, centre(x, mask)?);
        for l in &self.layers {
            (h, x) = l.forward(&h, &x, &ep, mask, &mk, pairs)?;
        }
        let h = self.out_norm.forward(&h)?.broadcast_mul(&mk)?;
        Ok((h.reshape((b, n, hid))?, x))
    }
}

/// Sum over the last axis keeping the rank (helper for heads).
pub fn last_sum(x: &Tensor) -> Result<Tensor> {
    Ok(x.sum_keepdim(D::Minus1)?)
}
