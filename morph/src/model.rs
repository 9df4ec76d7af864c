//! The Morph network (`design/morph.md`, "Network"): input embedding (one-hot
//! type and charge, time, atom count, optional scalar condition), the EGNN
//! backbone, and all heads: clean positions x̂1, type / charge / bond logits,
//! substitution and deletion logits, Poisson insertion rate, an equivariant
//! Gaussian mixture for an inserted atom relative to its spawn atom, and an
//! insertion-bond head. Invariant outputs depend on positions only through
//! distances; the mixture means are x̂1_i + Σ_j φ_k(i, j)(x̂1_i − x̂1_j), so
//! they rotate with the input.
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;

use crate::egnn::{centre, Egnn, Lin, Pairs};
use crate::error::Result;
use crate::fused;
use crate::semla::{BackboneSpec, Semla};

/// Sizes the network is built for (vocabularies and widths).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetDims {
    pub n_types: usize,
    pub n_charges: usize,
    pub n_bonds: usize,
    pub hidden: usize,
    pub n_layers: usize,
    pub n_mix: usize,
    pub coords_range: f64,
    pub agg_norm: f64,
    /// `tanh` on the mixture-mean weights.
    pub bounded_mixture: bool,
}

/// Network input for a padded batch of noisy molecules.
#[derive(Debug, Clone)]
pub struct NetInput {
    /// `[b, n, 3]` positions (normalised units).
    pub x: Tensor,
    /// `[b, n]` u32 element classes.
    pub a: Tensor,
    /// `[b, n]` u32 charge classes.
    pub c: Tensor,
    /// `[b, n, n]` u32 bond classes.
    pub e: Tensor,
    /// `[b, n]` f32 atom mask.
    pub mask: Tensor,
    /// `[b]` f32 time.
    pub t: Tensor,
    /// `[b]` f32 normalised condition value (0 when absent).
    pub cond: Tensor,
    /// `[b]` f32 1 = condition given, 0 = unconditional.
    pub cond_on: Tensor,
}

/// Raw network outputs (logits before activations).
#[derive(Debug, Clone)]
pub struct NetOutput {
    /// `[b, n, 3]` predicted clean positions (centred).
    pub x1: Tensor,
    /// `[b, n, H]` final node features (for the insertion-bond head).
    pub h: Tensor,
    /// `[b, n, A]`
    pub type_logits: Tensor,
    /// `[b, n, C]`
    pub charge_logits: Tensor,
    /// `[b, n, n, E]` (symmetric)
    pub bond_logits: Tensor,
    /// `[b, n]` logit that the atom type still has to change.
    pub sub_a: Tensor,
    /// `[b, n]` logit that the atom will be deleted.
    pub del: Tensor,
    /// `[b, n, n]` logit that the bond still has to change.
    pub sub_e: Tensor,
    /// `[b, n]` pre-softplus Poisson rate (expected remaining insertions).
    pub ins_raw: Tensor,
    /// `[b, n, K]` mixture weight logits.
    pub mix_logits: Tensor,
    /// `[b, n, K, 3]` mixture means (absolute, normalised units).
    pub mix_mean: Tensor,
    /// `[b, n, K]` mixture log std.
    pub mix_logstd: Tensor,
    /// `[b, n, K, A]` per-component type logits.
    pub mix_type: Tensor,
    /// `[b, n, K, C]` per-component charge logits.
    pub mix_charge: Tensor,
}

impl NetOutput {
    /// Classifier-free guidance `u + w (c − u)` on every raw output.
    pub fn guide(u: &NetOutput, c: &NetOutput, w: f64) -> Result<NetOutput> {
        let g = |a: &Tensor, b: &Tensor| -> Result<Tensor> { Ok(a.add(&(b.sub(a)? * w)?)?) };
        Ok(NetOutput {
            x1: g(&u.x1, &c.x1)?,
            h: c.h.clone(),
            type_logits: g(&u.type_logits, &c.type_logits)?,
            charge_logits: g(&u.charge_logits, &c.charge_logits)?,
            bond_logits: g(&u.bond_logits, &c.bond_logits)?,
            sub_a: g(&u.sub_a, &c.sub_a)?,
            del: g(&u.del, &c.del)?,
            sub_e: g(&u.sub_e, &c.sub_e)?,
            ins_raw: g(&u.ins_raw, &c.ins_raw)?,
            mix_logits: g(&u.mix_logits, &c.mix_logits)?,
            mix_mean: g(&u.mix_mean, &c.mix_mean)?,
            mix_logstd: g(&u.mix_logstd, &c.mix_logstd)?,
            mix_type: g(&u.mix_type, &c.mix_type)?,
            mix_charge: g(&u.mix_charge, &c.mix_charge)?,
        })
    }
}

/// Number of time / count / condition features fed to the embedding.
const N_TIME: usize = 9;
const N_COUNT: usize = 3;
const N_COND: usize = 2;

/// The equivariant backbone (`net.backbone`); both map `(h, x, edge, mask)`
/// to masked node features and centred positions.
#[derive(Debug, Clone)]
enum Backbone {
    Egnn(Egnn),
    Semla(Semla),
}

/// The Morph network.
#[derive(Debug, Clone)]
pub struct MorphNet {
    pub dims: NetDims,
    embed: Lin,
    backbone: Backbone,
    node1: Lin,
    node_out: Lin,
    pair_a: Lin,
    pair_p: Lin,
    pair_d: Lin,
    pair_e: Lin,
    pair_out: Lin,
    mix_src: Lin,
    mix_dst: Lin,
    mix_d: Lin,
    mix_out: Lin,
    ib_src: Lin,
    ib_dst: Lin,
    ib_type: Lin,
    ib_d: Lin,
    ib_out: Lin,
}

/// Time features `[t, sin(2πkt), cos(2πkt)]_{k=1..4}` → `[b, 9]`.
fn time_features(t: &Tensor) -> Result<Tensor> {
    let t1 = t.unsqueeze(1)?; // [b, 1]
    let mut f = vec![t1.clone()];
    for k in 1..=4 {
        let a = (&t1 * (2.0 * std::f64::consts::PI * k as f64))?;
        f.push(a.sin()?);
        f.push(a.cos()?);
    }
    Ok(Tensor::cat(&f, 1)?)
}

/// Atom-count features `[ln n, n / 10, 1/n]` `[b, 3]`: linear and logarithmic
/// terms extrapolate past the training sizes.
fn count_features(mask: &Tensor) -> Result<Tensor> {
    let n = mask.sum_keepdim(1)?.clamp(1.0, f64::MAX)?; // [b, 1]
    Ok(Tensor::cat(&[n.log()?, (&n / 10.0)?, n.recip()?], 1)?)
}

impl MorphNet {
    /// The distance feature the heads see: ln(1 + d²) with bounded mixtures
    /// (bounded sensitivity keeps the invariants exact in f32), else d².
    fn head_distance(&self, d2: &Tensor) -> Result<Tensor> {
        Ok(if self.dims.bounded_mixture {
            d2.affine(1.0, 1.0)?.log()?
        } else {
            d2.clone()
        })
    }

    /// The network with the EGNN backbone.
    pub fn new(dims: NetDims, vb: VarBuilder) -> Result<Self> {
        Self::with_backbone(dims, BackboneSpec::Egnn, vb)
    }

    /// The network with the backbone `spec` (`NetConfig::backbone_spec`).
    pub fn with_backbone(dims: NetDims, spec: BackboneSpec, vb: VarBuilder) -> Result<Self> {
        let (h, a, c, e, k) = (
            dims.hidden,
            dims.n_types,
            dims.n_charges,
            dims.n_bonds,
            dims.n_mix,
        );
        let n_node_out = a + c + 3 + k * (2 + a + c);
        Ok(Self {
            dims,
            embed: Lin::new(a + c + N_TIME + N_COUNT + N_COND, h, true, vb.pp("embed"))?,
            backbone: match spec {
                BackboneSpec::Egnn => Backbone::Egnn(Egnn::new(
                    h,
                    dims.n_layers,
                    e,
                    dims.coords_range,
                    dims.agg_norm,
                    dims.bounded_mixture,
                    vb.pp("egnn"),
                )?),
                BackboneSpec::Semla(sd) => {
                    Backbone::Semla(Semla::new(h, dims.n_layers, e, sd, vb.pp("semla"))?)
                }
            },
            node1: Lin::new(h, h, true, vb.pp("node1"))?,
            node_out: Lin::new(h, n_node_out, true, vb.pp("node_out"))?,
            pair_a: Lin::new(h, h, true, vb.pp("pair_a"))?,
            pair_p: Lin::new(h, h, false, vb.pp("pair_p"))?,
            pair_d: Lin::new(1, h, false, vb.pp("pair_d"))?,
            pair_e: Lin::new(e, h, false, vb.pp("pair_e"))?,
            pair_out: Lin::new(h, e + 1, true, vb.pp("pair_out"))?,
            mix_src: Lin::new(h, h, true, vb.pp("mix_src"))?,
            mix_dst: Lin::new(h, h, false, vb.pp("mix_dst"))?,
            mix_d: Lin::new(1, h, false, vb.pp("mix_d"))?,
            mix_out: Lin::new(h, k, false, vb.pp("mix_out"))?,
            ib_src: Lin::new(h, h, true, vb.pp("ib_src"))?,
            ib_dst: Lin::new(h, h, false, vb.pp("ib_dst"))?,
            ib_type: Lin::new(a, h, false, vb.pp("ib_type"))?,
            ib_d: Lin::new(1, h, false, vb.pp("ib_d"))?,
            ib_out: Lin::new(h, e, true, vb.pp("ib_out"))?,
        })
    }

    pub fn forward(&self, inp: &NetInput) -> Result<NetOutput> {
        let d = self.dims;
        let (b, n) = inp.mask.dims2()?;
        let dev = inp.x.device();
        let (a, c, e, k) = (d.n_types, d.n_charges, d.n_bonds, d.n_mix);
        let mask = &inp.mask;
        let mk = mask.unsqueeze(2)?; // [b, n, 1]
        let oh_a = one_hot(&inp.a, a, dev)?; // [b, n, A]
        let oh_c = one_hot(&inp.c, c, dev)?; // [b, n, C]
        let oh_e = one_hot(&inp.e, e, dev)?; // [b, n, n, E]
        let glob = Tensor::cat(
            &[
                time_features(&inp.t)?,
                count_features(mask)?,
                Tensor::stack(&[inp.cond.mul(&inp.cond_on)?, inp.cond_on.clone()], 1)?,
            ],
            1,
        )?; // [b, G]
        let glob = glob
            .unsqueeze(1)?
            .broadcast_as((b, n, N_TIME + N_COUNT + N_COND))?;
        let h0 = self
            .embed
            .forward(&Tensor::cat(&[&oh_a, &oh_c, &glob.contiguous()?], 2)?)?
            .broadcast_mul(&mk)?; // [b, n, H]
                                  // The real atom pairs, shared by the EGNN and the pair heads.
        let pairs = Pairs::from_mask(mask)?;
        let (h, x1) = match &self.backbone {
            Backbone::Egnn(g) => g.forward_pairs(&h0, &inp.x, &oh_e, mask, &pairs)?,
            Backbone::Semla(s) => s.forward(&h0, &inp.x, &oh_e, mask)?,
        }; // [b, n, H], [b, n, 3]
        let x1 = centre(&x1, mask)?;
        // Node heads.
        let z = self.node_out.forward(&self.node1.forward_silu(&h)?)?; // [b, n, F]
        let mut off = 0;
        let mut take = |w: usize| -> Result<Tensor> {
            let t = z.narrow(2, off, w)?;
            off += w;
            Ok(t)
        };
        let type_logits = take(a)?;
        let charge_logits = take(c)?;
        let sub_a = take(1)?.squeeze(2)?;
        let del = take(1)?.squeeze(2)?;
        let ins_raw = take(1)?.squeeze(2)?;
        let mix_logits = take(k)?;
        let mix_logstd = take(k)?.clamp(-5.0, 3.0)?;
        let mix_type = take(k * a)?.reshape((b, n, k, a))?;
        let mix_charge = take(k * c)?.reshape((b, n, k, c))?;
        // Pair heads on the output geometry (symmetric in i, j), evaluated on
        // the real pairs only and scattered into `[b, n, n, ·]` (absent pairs
        // and the diagonal are 0).
        let hd = d.hidden;
        let hf = h.reshape((b * n, hd))?; // [b n, H]
        let (bond_logits, sub_e, mix_mean) = if pairs.len == 0 {
            (
                Tensor::zeros((b, n, n, e), DType::F32, dev)?,
                Tensor::zeros((b, n, n), DType::F32, dev)?,
                x1.unsqueeze(2)?.broadcast_as((b, n, k, 3))?.contiguous()?,
            )
        } else {
            let (diff, d2_raw) = pairs.geometry(&x1.reshape((b * n, 3))?)?; // [P, 3], [P, 1]
            let d2 = self.head_distance(&d2_raw)?;
            let hi = hf.index_select(&pairs.src, 0)?; // [P, H]
            let hj = hf.index_select(&pairs.dst, 0)?;
            let pa = self.pair_a.forward(&hf)?; // [b n, H]
            let pre = self
                .pair_p
                .forward(&hi.mul(&hj)?)?
                .add(&pa.index_select(&pairs.src, 0)?)?
                .add(&pa.index_select(&pairs.dst, 0)?)?
                .add(&self.pair_d.forward(&d2)?)?
                .add(&self.pair_e.forward(&pairs.take(&oh_e)?)?)?; // [P, H]
            let pz = pairs.to_dense(&self.pair_out.forward(&fused::silu(&pre)?)?)?; // [b, n, n, E + 1]
            let bond_logits = pz.narrow(3, 0, e)?;
            let sub_e = pz.narrow(3, e, 1)?.squeeze(3)?;
            // Equivariant mixture means: x̂1_i + Σ_j φ_k(i, j)(x̂1_i − x̂1_j)/(‖·‖ + 1).
            let g = self
                .mix_src
                .forward(&hf)?
                .index_select(&pairs.src, 0)?
                .add(&self.mix_dst.forward(&hf)?.index_select(&pairs.dst, 0)?)?
                .add(&self.mix_d.forward(&d2)?)?;
            let phi = self.mix_out.forward(&fused::silu(&g)?)?; // [P, K]
            let phi = if d.bounded_mixture { phi.tanh()? } else { phi };
            let w = phi.broadcast_div(&(d2_raw + 1e-8)?.sqrt()?.affine(1.0, 1.0)?)?; // [P, K]
            let contrib = w
                .unsqueeze(2)?
                .broadcast_mul(&diff.unsqueeze(1)?)?
                .reshape((pairs.len, k * 3))?; // [P, K·3]
            let mix_mean = pairs
                .sum_to_src(&contrib)?
                .reshape((b, n, k, 3))?
                .broadcast_add(&x1.unsqueeze(2)?)?; // [b, n, K, 3]
            (bond_logits, sub_e, mix_mean)
        };
        Ok(NetOutput {
            x1,
            h,
            type_logits,
            charge_logits,
            bond_logits,
            sub_a,
            del,
            sub_e,
            ins_raw,
            mix_logits,
            mix_mean,
            mix_logstd,
            mix_type,
            mix_charge,
        })
    }

    /// Insertion-bond logits `[b, q, n, E]` between new atoms (spawned by
    /// `spawn` `[b, q]` u32 at positions `pos` `[b, q, 3]` with types `types`
    /// `[b, q]` u32) and the present atoms (`h`, `x1` from `forward`).
    pub fn insertion_bonds(
        &self,
        out: &NetOutput,
        spawn: &Tensor,
        pos: &Tensor,
        types: &Tensor,
    ) -> Result<Tensor> {
        let (b, q) = spawn.dims2()?;
        let n = out.h.dim(1)?;
        let (dev, e) = (out.h.device(), self.dims.n_bonds);
        if b * q * n == 0 {
            return Ok(Tensor::zeros((b, q, n, e), DType::F32, dev)?);
        }
        // Every (new atom, atom) pair of the padded grid, in [b, q, n] order.
        let flat_spawn: Vec<u32> = spawn
            .to_vec2::<u32>()?
            .iter()
            .enumerate()
            .flat_map(|(k, row)| row.iter().map(move |&s| (k * n) as u32 + s))
            .collect();
        let qi: Vec<u32> = (0..b * q * n).map(|p| (p / n) as u32).collect();
        let dst: Vec<u32> = (0..b * q * n)
            .map(|p| ((p / (q * n)) * n + p % n) as u32)
            .collect();
        let logits = self.insertion_bond_pairs(
            out,
            &Tensor::from_vec(flat_spawn, b * q, dev)?,
            &pos.reshape((b * q, 3))?,
            &types.flatten_all()?,
            &Tensor::from_vec(qi, b * q * n, dev)?,
            &Tensor::from_vec(dst, b * q * n, dev)?,
        )?; // [b q n, E]
        Ok(logits.reshape((b, q, n, e))?)
    }

    /// [`MorphNet::insertion_bonds`] on listed (new atom, present atom) pairs
    /// only: `Q` new atoms with flat spawn index `spawn` `[Q]` u32 (`b·n + i`),
    /// positions `pos` `[Q, 3]` and types `types` `[Q]` u32; pair `p` joins new
    /// atom `qi[p]` to the present atom with flat index `dst[p]` → `[P, E]`.
    pub fn insertion_bond_pairs(
        &self,
        out: &NetOutput,
        spawn: &Tensor,
        pos: &Tensor,
        types: &Tensor,
        qi: &Tensor,
        dst: &Tensor,
    ) -> Result<Tensor> {
        let (b, n, hd) = out.h.dims3()?;
        let hf = out.h.reshape((b * n, hd))?;
        let xf = out.x1.reshape((b * n, 3))?;
        let oh = one_hot(types, self.dims.n_types, out.h.device())?; // [Q, A]
        let src = self
            .ib_src
            .forward(&hf.index_select(spawn, 0)?)?
            .add(&self.ib_type.forward(&oh)?)?; // [Q, H]
        let d2 = pos
            .index_select(qi, 0)?
            .sub(&xf.index_select(dst, 0)?)?
            .sqr()?
            .sum_keepdim(1)?; // [P, 1]
        let d2 = self.head_distance(&d2)?;
        let pre = self
            .ib_d
            .forward(&d2)?
            .add(&src.index_select(qi, 0)?)?
            .add(&self.ib_dst.forward(&hf)?.index_select(dst, 0)?)?; // [P, H]
        self.ib_out.forward(&fused::silu(&pre)?)
    }
}

/// One-hot encoding of u32 class indices: `[...]` → `[..., k]` f32.
pub fn one_hot(idx: &Tensor, k: usize, dev: &Device) -> Result<Tensor> {
    let classes = Tensor::arange(0u32, k as u32, dev)?;
    let mut shape = idx.dims().to_vec();
    shape.push(k);
    let oh = idx
        .unsqueeze(D::Minus1)?
        .broadcast_as(shape.as_slice())?
        .eq(&classes.broadcast_as(shape.as_slice())?)?;
    Ok(oh.to_dtype(DType::F32)?)
}
