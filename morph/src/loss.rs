//! Losses (`design/morph.md`, "Losses"; weights 1): MSE on positions of atoms
//! not being deleted; CE on charges; BCE on `do_sub_a` against [a_t ≠ a1] then
//! CE on atoms that need substitution (the same for bonds); BCE on `do_del`;
//! Poisson NLL on insertion counts; Gaussian-mixture NLL (position log-density
//! divided by the dimension) for atoms still to be inserted; CE on insertion
//! bonds. Every term is averaged per molecule first, then over the batch.
use candle_core::{DType, Tensor, D};
use candle_nn::ops;

use crate::error::Result;
use crate::interpolant::Batch;
use crate::model::{MorphNet, NetOutput};

/// Loss terms (scalars).
#[derive(Debug, Clone)]
pub struct Losses {
    pub total: Tensor,
    pub terms: Vec<(&'static str, Tensor)>,
}

impl Losses {
    /// Host values of the terms, for logging.
    pub fn values(&self) -> Result<Vec<(&'static str, f32)>> {
        self.terms
            .iter()
            .map(|(n, t)| Ok((*n, t.to_scalar::<f32>()?)))
            .collect()
    }
}

/// `sum(l · w) / max(sum(w), 1)` per molecule over all non-batch axes, mean over batch.
fn per_mol(l: &Tensor, w: &Tensor) -> Result<Tensor> {
    let b = l.dim(0)?;
    let lw = l.mul(w)?.reshape((b, ()))?.sum(1)?;
    let ws = w.reshape((b, ()))?.sum(1)?.clamp(1.0, f64::MAX)?;
    Ok(lw.div(&ws)?.mean_all()?)
}

/// Binary cross-entropy with logits, elementwise.
pub fn bce_logits(z: &Tensor, y: &Tensor) -> Result<Tensor> {
    let sp = z
        .relu()?
        .add(&z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    Ok(sp.sub(&z.mul(y)?)?)
}

/// softplus
pub fn softplus(z: &Tensor) -> Result<Tensor> {
    Ok(z.relu()?
        .add(&z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?)
}

/// Negative log-probability of `target` (u32, shape `[...]`) under `logits` `[..., k]`.
pub fn nll_classes(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let lp = ops::log_softmax(logits, D::Minus1)?;
    Ok(lp
        .gather(&target.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?
        .squeeze(D::Minus1)?
        .neg()?)
}

/// All loss terms of one batch.
pub fn compute(net: &MorphNet, out: &NetOutput, batch: &Batch) -> Result<Losses> {
    let mask = &batch.input.mask; // [b, n]
    let keep = &batch.keep;
    let (b, n) = mask.dims2()?;
    let k = net.dims.n_mix;
    // Positions.
    let se = out.x1.sub(&batch.x1)?.sqr()?.sum(2)?; // [b, n]
    let l_pos = per_mol(&se, keep)?;
    // Types: BCE on "needs substitution", CE where it does.
    let need_a = batch.input.a.ne(&batch.a1)?.to_dtype(DType::F32)?; // [b, n]
    let l_sub_a = per_mol(&bce_logits(&out.sub_a, &need_a)?, keep)?;
    let l_type = per_mol(
        &nll_classes(&out.type_logits, &batch.a1)?,
        &need_a.mul(keep)?,
    )?;
    let l_charge = per_mol(&nll_classes(&out.charge_logits, &batch.c1)?, keep)?;
    // Bonds over present pairs, i ≠ j.
    let pm = crate::egnn::pair_mask(mask)?.squeeze(3)?; // [b, n, n]
    let need_e = batch.input.e.ne(&batch.e1)?.to_dtype(DType::F32)?;
    let l_sub_e = per_mol(&bce_logits(&out.sub_e, &need_e)?, &pm)?;
    let l_bond = per_mol(
        &nll_classes(&out.bond_logits, &batch.e1)?,
        &need_e.mul(&pm)?,
    )?;
    // Deletion.
    let l_del = per_mol(&bce_logits(&out.del, &batch.del)?, mask)?;
    // Poisson NLL of remaining insertions: r − k log r.
    let rate = (softplus(&out.ins_raw)? + 1e-6)?;
    let l_ins = per_mol(&rate.sub(&batch.ins_count.mul(&rate.log()?)?)?, mask)?;
    // Mixture NLL for atoms still to insert.
    let (_, q) = batch.q_spawn.dims2()?;
    let gather = |t: &Tensor, inner: &[usize]| -> Result<Tensor> {
        // t: [b, n, inner...] → [b, q, inner...] at the spawn atoms.
        let flat: usize = inner.iter().product();
        let t2 = t.reshape((b, n, flat))?;
        let idx = batch
            .q_spawn
            .unsqueeze(2)?
            .broadcast_as((b, q, flat))?
            .contiguous()?;
        let mut shape = vec![b, q];
        shape.extend_from_slice(inner);
        Ok(t2.gather(&idx, 1)?.reshape(shape)?)
    };
    let na = net.dims.n_types;
    let nc = net.dims.n_charges;
    let logit = ops::log_softmax(&gather(&out.mix_logits, &[k])?, D::Minus1)?; // [b, q, K]
    let mean = gather(&out.mix_mean, &[k, 3])?; // [b, q, K, 3]
    let logstd = gather(&out.mix_logstd, &[k])?; // [b, q, K]
    let lt = ops::log_softmax(&gather(&out.mix_type, &[k, na])?, D::Minus1)?; // [b, q, K, A]
    let lc = ops::log_softmax(&gather(&out.mix_charge, &[k, nc])?, D::Minus1)?; // [b, q, K, C]
    let d2 = mean
        .broadcast_sub(&batch.q_pos.unsqueeze(2)?)?
        .sqr()?
        .sum(3)?; // [b, q, K]
    let var = (logstd.clone() * 2.0)?.exp()?;
    let log_n = ((d2.div(&var)? * -0.5)? - (logstd * 3.0)?)?
        .affine(1.0, -1.5 * (2.0 * std::f64::consts::PI).ln())?; // [b, q, K]
    let qt = batch
        .q_type
        .unsqueeze(2)?
        .unsqueeze(3)?
        .broadcast_as((b, q, k, 1))?
        .contiguous()?;
    let qc = batch
        .q_charge
        .unsqueeze(2)?
        .unsqueeze(3)?
        .broadcast_as((b, q, k, 1))?
        .contiguous()?;
    let lpt = lt.gather(&qt, 3)?.squeeze(3)?; // [b, q, K]
    let lpc = lc.gather(&qc, 3)?.squeeze(3)?;
    let comp = logit.add(&(log_n / 3.0)?)?.add(&lpt)?.add(&lpc)?; // [b, q, K]
    let mx = comp.max_keepdim(2)?.detach();
    let lse = comp
        .broadcast_sub(&mx)?
        .exp()?
        .sum_keepdim(2)?
        .log()?
        .add(&mx)?
        .squeeze(2)?; // [b, q]
    let l_mix = per_mol(&lse.neg()?, &batch.q_mask)?;
    // Insertion bonds (teacher forcing on the target position and type), on
    // the real (new atom, kept atom) pairs only.
    let l_ibond = insertion_bond_loss(net, out, batch)?;
    let terms = vec![
        ("pos", l_pos),
        ("sub_a", l_sub_a),
        ("type", l_type),
        ("charge", l_charge),
        ("sub_e", l_sub_e),
        ("bond", l_bond),
        ("del", l_del),
        ("ins", l_ins),
        ("mix", l_mix),
        ("ins_bond", l_ibond),
    ];
    let mut total = terms[0].1.clone();
    for (_, t) in &terms[1..] {
        total = total.add(t)?;
    }
    Ok(Losses { total, terms })
}

/// CE of the insertion-bond head on every (atom still to insert, present
/// non-deleting atom) pair, averaged per molecule then over the batch (the
/// same value as `per_mol` over the padded `[b, q, n]` grid with weight
/// `q_mask · keep`).
pub fn insertion_bond_loss(net: &MorphNet, out: &NetOutput, batch: &Batch) -> Result<Tensor> {
    let dev = batch.input.mask.device();
    let (b, n) = batch.input.mask.dims2()?;
    let (_, q) = batch.q_spawn.dims2()?;
    let qm = batch.q_mask.to_vec2::<f32>()?;
    let keep = batch.keep.to_vec2::<f32>()?;
    let spawn = batch.q_spawn.to_vec2::<u32>()?;
    let bonds = batch.q_bonds.to_vec3::<u32>()?;
    let (mut q_rows, mut q_spawn) = (Vec::new(), Vec::new());
    let (mut qi, mut dst, mut target, mut mol) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut count = vec![0f32; b];
    for k in 0..b {
        for r in 0..q {
            if qm[k][r] <= 0.5 {
                continue;
            }
            let row = q_rows.len() as u32;
            q_rows.push((k * q + r) as u32);
            q_spawn.push((k * n) as u32 + spawn[k][r]);
            for j in 0..n {
                if keep[k][j] > 0.5 {
                    qi.push(row);
                    dst.push((k * n + j) as u32);
                    target.push(bonds[k][r][j]);
                    mol.push(k as u32);
                    count[k] += 1.0;
                }
            }
        }
    }
    if qi.is_empty() {
        return Ok(Tensor::zeros((), DType::F32, dev)?);
    }
    let (nq, np) = (q_rows.len(), qi.len());
    let q_rows = Tensor::from_vec(q_rows, nq, dev)?;
    let pos = batch.q_pos.reshape((b * q, 3))?.index_select(&q_rows, 0)?;
    let types = batch.q_type.flatten_all()?.index_select(&q_rows, 0)?;
    let logits = net.insertion_bond_pairs(
        out,
        &Tensor::from_vec(q_spawn, nq, dev)?,
        &pos,
        &types,
        &Tensor::from_vec(qi, np, dev)?,
        &Tensor::from_vec(dst, np, dev)?,
    )?; // [P, E]
    let nll = nll_classes(&logits, &Tensor::from_vec(target, np, dev)?)?; // [P]
    let per =
        Tensor::zeros(b, DType::F32, dev)?.index_add(&Tensor::from_vec(mol, np, dev)?, &nll, 0)?;
    let cnt = Tensor::from_vec(count, b, dev)?.clamp(1.0, f64::MAX)?;
    Ok(per.div(&cnt)?.mean_all()?)
}
