//! E(n)-equivariant graph network (Satorras, Hoogeboom, Welling 2021) in the
//! EDM variant (Hoogeboom et al. 2022): messages
//! `m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖², e_ij)` gated by a sigmoid attention,
//! node update `h_i ← h_i + φ_h(h_i, Σ_j m_ij / Z)`, and coordinate update
//! `x_i ← x_i + Σ_j (x_i − x_j)/(‖x_i − x_j‖ + 1) · r·tanh(φ_x(m_ij)) / Z`
//! (normalised differences, tanh-bounded range r). Edge features are the
//! one-hot bond classes. Fully batched over padded molecules: every tensor is
//! `[batch, n_atoms, …]` or `[batch, n_atoms, n_atoms, …]` with masks, no loop
//! over atoms. Positions are re-centred (masked mean) after every layer.
use candle_core::{DType, Module, Tensor, D};
use candle_nn::{ops, Linear, VarBuilder};

use crate::error::Result;

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

/// One EGNN layer.
#[derive(Debug, Clone)]
pub struct EgnnLayer {
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

    /// `h` `[b, n, H]`, `x` `[b, n, 3]`, `edge` `[b, n, n, E]`, `mask` `[b, n]`,
    /// `pmask` `[b, n, n, 1]` → updated `(h, x)`.
    pub fn forward(
        &self,
        h: &Tensor,
        x: &Tensor,
        edge: &Tensor,
        mask: &Tensor,
        pmask: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (_diff, d2) = pair_geometry(x)?;
        let hs = self.src.forward(h)?.unsqueeze(2)?; // [b, n, 1, H]
        let hd = self.dst.forward(h)?.unsqueeze(1)?; // [b, 1, n, H]
                                                     // Message distance feature: d² (EDM) or ln(1 + d²) (bounded sensitivity).
        let df = if self.log_dist {
            d2.affine(1.0, 1.0)?.log()?
        } else {
            d2.clone()
        };
        let pre = self
            .edge
            .forward(edge)?
            .add(&self.dist.forward(&df)?)?
            .broadcast_add(&hs)?
            .broadcast_add(&hd)?; // [b, n, n, H]
        let m = ops::silu(&self.msg.forward(&ops::silu(&pre)?)?)?; // [b, n, n, H]
        let (b, n, _, hd) = m.dims4()?;
        let gate = ops::sigmoid(&self.att.forward(&m)?)?.mul(pmask)?; // [b, n, n, 1]
                                                                      // Σ_j gate_ij m_ij as a batched GEMM: [b n, 1, n] @ [b n, n, H].
        let agg = (gate
            .reshape((b * n, 1, n))?
            .matmul(&m.reshape((b * n, n, hd))?)?
            .reshape((b, n, hd))?
            / self.agg_norm)?; // [b, n, H]
        let dh = self.node2.forward(&ops::silu(
            &self.node1.forward(&Tensor::cat(&[h, &agg], 2)?)?,
        )?)?;
        let mk = mask.unsqueeze(2)?; // [b, n, 1]
        let h = h.add(&dh)?.broadcast_mul(&mk)?;
        let phi = (self
            .coord2
            .forward(&ops::silu(&self.coord1.forward(&m)?)?)?
            .tanh()?
            * self.coords_range)?; // [b, n, n, 1]
        let w = phi
            .mul(pmask)?
            .div(&(d2 + 1e-8)?.sqrt()?.affine(1.0, 1.0)?)?
            .reshape((b, n, n))?; // [b, n, n]
                                  // Σ_j w_ij (x_i − x_j) = x_i Σ_j w_ij − Σ_j w_ij x_j.
        let dx = x.broadcast_mul(&w.sum_keepdim(2)?)?.sub(&w.matmul(x)?)?; // [b, n, 3]
        let dx = (dx / self.agg_norm)?;
        let x = centre(&x.add(&dx)?, mask)?;
        Ok((h, x))
    }
}

/// Stack of EGNN layers; as in EDM, each layer's coordinate range is
/// `coords_range / n_layers`.
#[derive(Debug, Clone)]
pub struct Egnn {
    layers: Vec<EgnnLayer>,
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
        Ok(Self { layers })
    }

    pub fn forward(
        &self,
        h: &Tensor,
        x: &Tensor,
        edge: &Tensor,
        mask: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let pmask = pair_mask(mask)?;
        let (mut h, mut x) = (h.clone(), centre(x, mask)?);
        for l in &self.layers {
            (h, x) = l.forward(&h, &x, edge, mask, &pmask)?;
        }
        Ok((h, x))
    }
}

/// Sum over the last axis keeping the rank (helper for heads).
pub fn last_sum(x: &Tensor) -> Result<Tensor> {
    Ok(x.sum_keepdim(D::Minus1)?)
}
