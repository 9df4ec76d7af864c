//! Training targets (`design/morph.md`, "Prior", "Matching", "Interpolant"):
//! draw a prior molecule, match it to a data molecule by unbalanced OT,
//! rotate the prior onto its matches (Kabsch), sample a time t and per-atom
//! event times τ, and build the noisy molecule at t with every target the
//! losses need: clean positions and classes, deletion flags, insertion counts
//! of spawn atoms, and the atoms still to be inserted (position, type, charge,
//! bonds to present atoms). Host-side data preparation (one molecule at a
//! time, parallel over the batch with rayon); [`collate`] pads a batch into
//! device tensors.
use candle_core::{Device, Tensor};
use datasets::molbatch::{MolRecord, MolStats};
use rand::distr::{weighted::WeightedIndex, Distribution};
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::assign::{kabsch, rotate, unbalanced_match, MatchCosts};
use crate::config::{kappa, FlowConfig};
use crate::error::{MorphError, Result};

/// Samplers of prior classes from training frequencies.
#[derive(Debug, Clone)]
pub struct Prior {
    types: WeightedIndex<f64>,
    charges: WeightedIndex<f64>,
    bonds: WeightedIndex<f64>,
    pub n_lo: usize,
    pub n_hi: usize,
}

impl Prior {
    pub fn new(stats: &MolStats, extra: usize) -> Result<Self> {
        let w = |v: &[f64], what: &str| {
            WeightedIndex::new(v.iter().map(|x| x.max(0.0) + 1e-12)).map_err(|e| {
                MorphError::data("training statistics", format!("{what} frequencies: {e}"))
            })
        };
        Ok(Self {
            types: w(&stats.type_freq, "element")?,
            charges: w(&stats.charge_freq, "charge")?,
            bonds: w(&stats.bond_freq, "bond")?,
            n_lo: stats.n_min.saturating_sub(extra).max(3),
            n_hi: (stats.n_max + extra).max(3),
        })
    }
    pub fn n_atoms<R: Rng>(&self, rng: &mut R) -> usize {
        rng.random_range(self.n_lo..=self.n_hi)
    }
    pub fn atom_type<R: Rng>(&self, rng: &mut R) -> usize {
        self.types.sample(rng)
    }
    pub fn charge<R: Rng>(&self, rng: &mut R) -> usize {
        self.charges.sample(rng)
    }
    pub fn bond<R: Rng>(&self, rng: &mut R) -> usize {
        self.bonds.sample(rng)
    }
    /// Centred N(0, I) positions.
    pub fn positions<R: Rng>(&self, n: usize, rng: &mut R) -> Vec<[f64; 3]> {
        let mut x: Vec<[f64; 3]> = (0..n)
            .map(|_| [0; 3].map(|_| rng.sample::<f64, _>(StandardNormal)))
            .collect();
        centre3(&mut x);
        x
    }
}

pub fn centre3(x: &mut [[f64; 3]]) -> [f64; 3] {
    let n = x.len().max(1) as f64;
    let mu = [0, 1, 2].map(|d| x.iter().map(|p| p[d]).sum::<f64>() / n);
    x.iter_mut()
        .for_each(|p| (0..3).for_each(|d| p[d] -= mu[d]));
    mu
}

/// One noisy training molecule with its targets (present atoms first).
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub t: f64,
    /// Present atoms.
    pub x: Vec<[f64; 3]>,
    pub a: Vec<usize>,
    pub c: Vec<usize>,
    /// `[n, n]` row-major bond classes at t.
    pub e: Vec<usize>,
    pub x1: Vec<[f64; 3]>,
    pub a1: Vec<usize>,
    pub c1: Vec<usize>,
    /// `[n, n]` target bond classes.
    pub e1: Vec<usize>,
    /// 1 = present atom scheduled for deletion.
    pub del: Vec<bool>,
    /// Remaining insertions spawned by each present atom.
    pub ins_count: Vec<usize>,
    /// Atoms still to insert: spawn index, position, type, charge, bonds to present atoms.
    pub q_spawn: Vec<usize>,
    pub q_pos: Vec<[f64; 3]>,
    pub q_type: Vec<usize>,
    pub q_charge: Vec<usize>,
    pub q_bonds: Vec<Vec<usize>>,
    pub cond: f64,
    pub cond_on: bool,
    /// Present atoms that belong to the scaffold (empty without one).
    pub pinned: Vec<bool>,
}

enum Kind {
    Sub(usize),
    Del,
    Ins(usize),
}

/// Build one training sample from a (centred, normalised) data molecule.
pub fn make_sample<R: Rng>(
    data: &MolRecord,
    prior: &Prior,
    cfg: &FlowConfig,
    t: f64,
    rng: &mut R,
) -> Sample {
    let m = data.n_atoms();
    let x1d: Vec<[f64; 3]> = (0..m)
        .map(|i| [data.pos[[i, 0]], data.pos[[i, 1]], data.pos[[i, 2]]])
        .collect();
    let bm = data.bond_matrix();
    // Scaffold: drawn only when enabled, so runs without one keep their
    // random stream.
    let scaffold = if cfg.scaffold_frac > 0.0 && m >= 2 && rng.random::<f64>() < cfg.scaffold_frac {
        scaffold_atoms(&bm, m, rng)
    } else {
        Vec::new()
    };
    let n0 = prior.n_atoms(rng);
    let mut x0 = prior.positions(n0, rng);
    let mut a0: Vec<usize> = (0..n0).map(|_| prior.atom_type(rng)).collect();
    // Scaffold atoms join the prior at their data values, pinned to their data atom.
    let pins: Vec<(usize, usize)> = scaffold
        .iter()
        .enumerate()
        .map(|(k, &j)| (n0 + k, j))
        .collect();
    for &j in &scaffold {
        x0.push(x1d[j]);
        a0.push(data.types[j]);
    }
    let costs = MatchCosts {
        c_move: cfg.c_move,
        c_sub: cfg.c_sub,
        c_ins: cfg.c_ins,
        c_del: cfg.c_del,
    };
    let mt = unbalanced_match(&x0, &a0, &x1d, &data.types, &costs, &pins);
    // Align the free prior atoms to their targets (scaffold atoms stay put).
    let (p, q): (Vec<[f64; 3]>, Vec<[f64; 3]>) = mt
        .prior_to_data
        .iter()
        .enumerate()
        .take(n0)
        .filter_map(|(i, j)| j.map(|j| (x0[i], x1d[j])))
        .unzip();
    if !p.is_empty() {
        let r = kabsch(&p, &q);
        x0.iter_mut().take(n0).for_each(|xi| *xi = rotate(&r, xi));
    }
    // Items: (kind, x0, a0, c0, tau).
    let mut items: Vec<(Kind, [f64; 3], usize, usize, f64)> =
        Vec::with_capacity(x0.len() + mt.inserted.len());
    for (i, j) in mt.prior_to_data.iter().enumerate().take(n0) {
        let kind = match j {
            Some(j) => Kind::Sub(*j),
            None => Kind::Del,
        };
        items.push((kind, x0[i], a0[i], prior.charge(rng), rng.random::<f64>()));
    }
    let mut pinned_data = vec![false; m];
    for &j in &scaffold {
        pinned_data[j] = true;
        items.push((Kind::Sub(j), x1d[j], data.types[j], data.charges[j], 0.0));
    }
    for &j in &mt.inserted {
        let xs =
            [0, 1, 2].map(|d| x1d[j][d] + cfg.ins_noise * rng.sample::<f64, _>(StandardNormal));
        items.push((
            Kind::Ins(j),
            xs,
            prior.atom_type(rng),
            prior.charge(rng),
            rng.random::<f64>(),
        ));
    }
    let (k_del, k_ins, k_sub) = (
        kappa(t, cfg.p_indel),
        kappa(t, cfg.p_indel),
        kappa(t, cfg.p_sub),
    );
    let mut s = Sample {
        t,
        ..Sample::default()
    };
    let mut data_of: Vec<Option<usize>> = Vec::new();
    let mut absent: Vec<usize> = Vec::new();
    for (kind, x0i, a0i, c0i, tau) in &items {
        let (present, dj, deleting) = match kind {
            Kind::Sub(j) => (true, Some(*j), false),
            Kind::Del => (k_del < *tau, None, true),
            Kind::Ins(j) => (k_ins > *tau, Some(*j), false),
        };
        if !present {
            if let Some(j) = dj {
                absent.push(j);
            }
            continue;
        }
        match dj {
            Some(j) if matches!(kind, Kind::Sub(_)) && pinned_data[j] => {
                // scaffold atom: clean at every t
                s.x.push(x1d[j]);
                s.a.push(data.types[j]);
                s.c.push(data.charges[j]);
                s.x1.push(x1d[j]);
                s.a1.push(data.types[j]);
                s.c1.push(data.charges[j]);
            }
            Some(j) => {
                let x = [0, 1, 2].map(|d| {
                    (1.0 - t) * x0i[d]
                        + t * x1d[j][d]
                        + cfg.pos_noise * rng.sample::<f64, _>(StandardNormal)
                });
                let flip = rng.random::<f64>() < k_sub;
                s.x.push(x);
                s.a.push(if flip { data.types[j] } else { *a0i });
                s.c.push(if rng.random::<f64>() < k_sub {
                    data.charges[j]
                } else {
                    *c0i
                });
                s.x1.push(x1d[j]);
                s.a1.push(data.types[j]);
                s.c1.push(data.charges[j]);
            }
            None => {
                s.x.push(*x0i);
                s.a.push(*a0i);
                s.c.push(*c0i);
                s.x1.push(*x0i);
                s.a1.push(*a0i);
                s.c1.push(*c0i);
            }
        }
        s.del.push(deleting);
        s.pinned
            .push(matches!(kind, Kind::Sub(_)) && dj.is_some_and(|j| pinned_data[j]));
        data_of.push(dj);
    }
    if scaffold.is_empty() {
        s.pinned.clear();
    }
    let n = s.x.len();
    s.e = vec![0; n * n];
    s.e1 = vec![0; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let e1 = match (data_of[i], data_of[j]) {
                (Some(a), Some(b)) => bm[[a, b]],
                _ => 0,
            };
            let e0 = prior.bond(rng);
            let both_pinned = !s.pinned.is_empty() && s.pinned[i] && s.pinned[j];
            let et = if both_pinned || (!s.del[i] && !s.del[j] && rng.random::<f64>() < k_sub) {
                e1
            } else {
                e0
            };
            s.e[i * n + j] = et;
            s.e[j * n + i] = et;
            s.e1[i * n + j] = e1;
            s.e1[j * n + i] = e1;
        }
    }
    // Centre on the present atoms; targets share the frame.
    let mu = centre3(&mut s.x);
    s.x1.iter_mut()
        .for_each(|p| (0..3).for_each(|d| p[d] -= mu[d]));
    s.ins_count = vec![0; n];
    let cand: Vec<usize> = if s.del.iter().all(|&d| d) {
        (0..n).collect()
    } else {
        (0..n).filter(|&i| !s.del[i]).collect()
    };
    for j in absent {
        let pos = [0, 1, 2].map(|d| x1d[j][d] - mu[d]);
        let spawn = cand
            .iter()
            .copied()
            .min_by(|&u, &v| dist2(&s.x[u], &pos).total_cmp(&dist2(&s.x[v], &pos)))
            .unwrap_or(0);
        s.ins_count[spawn] += 1;
        s.q_spawn.push(spawn);
        s.q_pos.push(pos);
        s.q_type.push(data.types[j]);
        s.q_charge.push(data.charges[j]);
        s.q_bonds.push(
            (0..n)
                .map(|p| data_of[p].map_or(0, |dp| bm[[j, dp]]))
                .collect(),
        );
    }
    s
}

/// A random connected set of 1 ..= m/2 atoms (breadth-first over bonds from
/// a random atom; smaller when the start atom's component is smaller).
fn scaffold_atoms<R: Rng>(bm: &ndarray::Array2<usize>, m: usize, rng: &mut R) -> Vec<usize> {
    let k = rng.random_range(1..=(m / 2).max(1));
    let start = rng.random_range(0..m);
    let mut seen = vec![false; m];
    seen[start] = true;
    let mut out = vec![start];
    let mut head = 0;
    while head < out.len() && out.len() < k {
        let i = out[head];
        head += 1;
        for j in 0..m {
            if out.len() >= k {
                break;
            }
            if !seen[j] && bm[[i, j]] > 0 {
                seen[j] = true;
                out.push(j);
            }
        }
    }
    out
}

fn dist2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    (0..3).map(|d| (a[d] - b[d]).powi(2)).sum()
}

/// Build samples for a batch of data molecules in parallel (one RNG stream
/// per molecule, seeded from `seed`).
pub fn make_batch(
    data: &[&MolRecord],
    props: &[Option<f64>],
    prior: &Prior,
    cfg: &FlowConfig,
    cond_drop: f64,
    seed: u64,
) -> Vec<Sample> {
    use rand::SeedableRng;
    data.par_iter()
        .zip(props.par_iter())
        .enumerate()
        .map(|(k, (d, p))| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                seed.wrapping_mul(1_000_003).wrapping_add(k as u64),
            );
            let t = rng.random::<f64>() * 0.999;
            let mut s = make_sample(d, prior, cfg, t, &mut rng);
            if let Some(v) = p {
                s.cond = *v;
                s.cond_on = rng.random::<f64>() >= cond_drop;
            }
            s
        })
        .collect()
}

/// Padded training batch on a device.
#[derive(Debug, Clone)]
pub struct Batch {
    pub input: crate::model::NetInput,
    /// `[b, n, 3]`
    pub x1: Tensor,
    /// `[b, n]` u32
    pub a1: Tensor,
    pub c1: Tensor,
    /// `[b, n, n]` u32
    pub e1: Tensor,
    /// `[b, n]` f32: present and not being deleted.
    pub keep: Tensor,
    /// `[b, n]` f32: present and being deleted.
    pub del: Tensor,
    /// `[b, n]` f32 remaining insertions per spawn atom.
    pub ins_count: Tensor,
    /// `[b, q]` u32, `[b, q, 3]`, `[b, q]` u32 ×2, `[b, q, n]` u32, `[b, q]` f32.
    pub q_spawn: Tensor,
    pub q_pos: Tensor,
    pub q_type: Tensor,
    pub q_charge: Tensor,
    pub q_bonds: Tensor,
    pub q_mask: Tensor,
}

/// Pad samples into device tensors.
pub fn collate(samples: &[Sample], dev: &Device) -> Result<Batch> {
    let b = samples.len();
    let n = samples.iter().map(|s| s.x.len()).max().unwrap_or(1).max(1);
    let q = samples
        .iter()
        .map(|s| s.q_spawn.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut x = vec![0f32; b * n * 3];
    let mut x1 = vec![0f32; b * n * 3];
    let (mut a, mut c, mut a1, mut c1) = (
        vec![0u32; b * n],
        vec![0u32; b * n],
        vec![0u32; b * n],
        vec![0u32; b * n],
    );
    let (mut e, mut e1) = (vec![0u32; b * n * n], vec![0u32; b * n * n]);
    let (mut mask, mut keep, mut del, mut ins) = (
        vec![0f32; b * n],
        vec![0f32; b * n],
        vec![0f32; b * n],
        vec![0f32; b * n],
    );
    let (mut qs, mut qp, mut qt, mut qc) = (
        vec![0u32; b * q],
        vec![0f32; b * q * 3],
        vec![0u32; b * q],
        vec![0u32; b * q],
    );
    let (mut qb, mut qm) = (vec![0u32; b * q * n], vec![0f32; b * q]);
    let (mut t, mut cond, mut con) = (vec![0f32; b], vec![0f32; b], vec![0f32; b]);
    for (k, s) in samples.iter().enumerate() {
        t[k] = s.t as f32;
        cond[k] = s.cond as f32;
        con[k] = if s.cond_on { 1.0 } else { 0.0 };
        let m = s.x.len();
        for i in 0..m {
            let o = k * n + i;
            for d in 0..3 {
                x[o * 3 + d] = s.x[i][d] as f32;
                x1[o * 3 + d] = s.x1[i][d] as f32;
            }
            a[o] = s.a[i] as u32;
            c[o] = s.c[i] as u32;
            a1[o] = s.a1[i] as u32;
            c1[o] = s.c1[i] as u32;
            mask[o] = 1.0;
            keep[o] = if s.del[i] { 0.0 } else { 1.0 };
            del[o] = if s.del[i] { 1.0 } else { 0.0 };
            ins[o] = s.ins_count[i] as f32;
            for j in 0..m {
                e[(k * n + i) * n + j] = s.e[i * m + j] as u32;
                e1[(k * n + i) * n + j] = s.e1[i * m + j] as u32;
            }
        }
        for (r, &sp) in s.q_spawn.iter().enumerate() {
            let o = k * q + r;
            qs[o] = sp as u32;
            (0..3).for_each(|d| qp[o * 3 + d] = s.q_pos[r][d] as f32);
            qt[o] = s.q_type[r] as u32;
            qc[o] = s.q_charge[r] as u32;
            qm[o] = 1.0;
            for j in 0..m {
                qb[o * n + j] = s.q_bonds[r][j] as u32;
            }
        }
    }
    let input = crate::model::NetInput {
        x: Tensor::from_vec(x, (b, n, 3), dev)?,
        a: Tensor::from_vec(a, (b, n), dev)?,
        c: Tensor::from_vec(c, (b, n), dev)?,
        e: Tensor::from_vec(e, (b, n, n), dev)?,
        mask: Tensor::from_vec(mask, (b, n), dev)?,
        t: Tensor::from_vec(t, b, dev)?,
        cond: Tensor::from_vec(cond, b, dev)?,
        cond_on: Tensor::from_vec(con, b, dev)?,
    };
    Ok(Batch {
        input,
        x1: Tensor::from_vec(x1, (b, n, 3), dev)?,
        a1: Tensor::from_vec(a1, (b, n), dev)?,
        c1: Tensor::from_vec(c1, (b, n), dev)?,
        e1: Tensor::from_vec(e1, (b, n, n), dev)?,
        keep: Tensor::from_vec(keep, (b, n), dev)?,
        del: Tensor::from_vec(del, (b, n), dev)?,
        ins_count: Tensor::from_vec(ins, (b, n), dev)?,
        q_spawn: Tensor::from_vec(qs, (b, q), dev)?,
        q_pos: Tensor::from_vec(qp, (b, q, 3), dev)?,
        q_type: Tensor::from_vec(qt, (b, q), dev)?,
        q_charge: Tensor::from_vec(qc, (b, q), dev)?,
        q_bonds: Tensor::from_vec(qb, (b, q, n), dev)?,
        q_mask: Tensor::from_vec(qm, (b, q), dev)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::molbatch::{MolSet, MolVocab};
    use ndarray::array;
    use rand::SeedableRng;
    use std::collections::BTreeMap;

    pub(crate) fn toy() -> MolSet {
        let vocab = MolVocab::new(vec!["H".into(), "C".into(), "O".into()], vec![0, 1]);
        let r = MolRecord {
            types: vec![1, 2, 0, 0, 0, 0],
            charges: vec![0; 6],
            pos: array![
                [0.0, 0.0, 0.0],
                [1.4, 0.0, 0.0],
                [-0.5, 0.9, 0.0],
                [-0.5, -0.9, 0.0],
                [-0.4, 0.0, 1.0],
                [1.8, 0.9, 0.0]
            ],
            bonds: vec![(0, 1, 1), (0, 2, 1), (0, 3, 1), (0, 4, 1), (1, 5, 1)],
            properties: BTreeMap::new(),
        };
        MolSet::new(vocab, vec![r]).unwrap()
    }

    #[test]
    fn sample_targets_are_consistent() {
        let set = toy();
        let mut stats = set.stats().unwrap();
        stats.n_min = 6;
        stats.n_max = 6;
        let prior = Prior::new(&stats, 3).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let cfg = FlowConfig::default();
        let mut saw_ins = false;
        let mut saw_del = false;
        for k in 0..200 {
            let t = (k as f64 + 0.5) / 200.0;
            let s = make_sample(&set.records[0], &prior, &cfg, t, &mut rng);
            let n = s.x.len();
            // every data atom is present (non-deleting) or queued for insertion.
            let kept = s.del.iter().filter(|&&d| !d).count();
            assert_eq!(kept + s.q_spawn.len(), 6, "t={t}");
            assert_eq!(s.ins_count.iter().sum::<usize>(), s.q_spawn.len());
            let mu: Vec<f64> = (0..3)
                .map(|d| s.x.iter().map(|p| p[d]).sum::<f64>() / n as f64)
                .collect();
            assert!(mu.iter().all(|m| m.abs() < 1e-9));
            assert!(s.q_spawn.iter().all(|&sp| sp < n && !s.del[sp]));
            saw_ins |= !s.q_spawn.is_empty();
            saw_del |= s.del.iter().any(|&d| d);
            let dev = Device::Cpu;
            let b = collate(&[s.clone()], &dev).unwrap();
            assert_eq!(
                b.input.mask.sum_all().unwrap().to_scalar::<f32>().unwrap() as usize,
                n
            );
        }
        assert!(saw_ins && saw_del);
    }

    /// Scaffold training: the pinned atoms form a connected set of data atoms,
    /// sit exactly at their (centred) targets with clean types, charges and
    /// bonds at every t, are never deleted, and every data atom is still
    /// accounted for; without a scaffold nothing is pinned.
    #[test]
    fn scaffold_atoms_stay_clean() {
        let set = toy();
        let rec = &set.records[0];
        let mut stats = set.stats().unwrap();
        stats.n_min = 6;
        stats.n_max = 6;
        let prior = Prior::new(&stats, 3).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let cfg = FlowConfig {
            scaffold_frac: 1.0,
            ..FlowConfig::default()
        };
        let mut sizes = std::collections::BTreeSet::new();
        for k in 0..100 {
            let t = (k as f64 + 0.5) / 100.0;
            let s = make_sample(rec, &prior, &cfg, t, &mut rng);
            let n = s.x.len();
            assert_eq!(s.pinned.len(), n);
            let pins: Vec<usize> = (0..n).filter(|&i| s.pinned[i]).collect();
            assert!(!pins.is_empty() && pins.len() <= 3, "t={t}: {pins:?}");
            sizes.insert(pins.len());
            let kept = s.del.iter().filter(|&&d| !d).count();
            assert_eq!(kept + s.q_spawn.len(), 6, "t={t}");
            for &i in &pins {
                assert!(!s.del[i]);
                assert_eq!((s.a[i], s.c[i]), (s.a1[i], s.c1[i]));
                assert!(
                    (0..3).all(|d| (s.x[i][d] - s.x1[i][d]).abs() < 1e-12),
                    "pinned atom not at its target: t={t}"
                );
                for &j in &pins {
                    assert_eq!(s.e[i * n + j], s.e1[i * n + j], "scaffold bond changed");
                }
            }
            // connected through the target (= data) bonds among pinned atoms
            let mut reach = vec![pins[0]];
            let mut h = 0;
            while h < reach.len() {
                let u = reach[h];
                h += 1;
                for &v in &pins {
                    if !reach.contains(&v) && s.e1[u * n + v] > 0 {
                        reach.push(v);
                    }
                }
            }
            assert_eq!(reach.len(), pins.len(), "scaffold not connected: t={t}");
        }
        assert!(sizes.len() > 1, "scaffold sizes never vary: {sizes:?}");
        let s = make_sample(rec, &prior, &FlowConfig::default(), 0.3, &mut rng);
        assert!(s.pinned.is_empty());
    }
}
