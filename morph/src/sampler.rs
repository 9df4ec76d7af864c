//! The rate integrator (`design/morph.md`, "Sampler"): `t_k = 1 −
//! logspace(0, −3, K)`; each step moves positions `x ← x + dt (x̂1 − x)/(1 − t)`,
//! fires per-atom edits with probability `[σ(sub) λ_sub + σ(del) λ_del] dt`
//! (split into deletion vs substitution in proportion), substitutes bonds with
//! `σ(sub_e) λ_sub dt`, sets charges to the prediction, and inserts atoms with
//! probability `rate · λ_ins · dt` per atom, drawn from the spawn atom's
//! Gaussian mixture (position relative to the spawn atom, type, charge; bonds
//! from the insertion-bond head). Sizes stay in `[min_atoms, cap]`, positions
//! are re-centred every step. The network runs batched over all molecules of
//! different and changing sizes; the edits are applied on the host.
//! Scaffold atoms (`pinned`) are never deleted or substituted and keep their
//! positions and mutual bonds; insertions grow the decorations.
use candle_core::{Device, Tensor};
use candle_nn::ops;
use rand::distr::{weighted::WeightedIndex, Distribution};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::config::{hazard, FlowConfig};
use crate::error::Result;
use crate::interpolant::{centre3, Prior};
use crate::model::{MorphNet, NetInput, NetOutput};

/// A molecule being generated (normalised units).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub x: Vec<[f64; 3]>,
    pub a: Vec<usize>,
    pub c: Vec<usize>,
    /// `[n, n]` row-major bond classes.
    pub e: Vec<usize>,
    pub pinned: Vec<bool>,
}

impl State {
    pub fn n(&self) -> usize {
        self.x.len()
    }
    pub fn bond(&self, i: usize, j: usize) -> usize {
        self.e[i * self.n() + j]
    }
    /// Keep only atoms with `keep[i]`.
    pub fn retain(&mut self, keep: &[bool]) {
        let n = self.n();
        let idx: Vec<usize> = (0..n).filter(|&i| keep[i]).collect();
        let m = idx.len();
        let mut e = vec![0; m * m];
        for (p, &i) in idx.iter().enumerate() {
            for (q, &j) in idx.iter().enumerate() {
                e[p * m + q] = self.e[i * n + j];
            }
        }
        self.x = idx.iter().map(|&i| self.x[i]).collect();
        self.a = idx.iter().map(|&i| self.a[i]).collect();
        self.c = idx.iter().map(|&i| self.c[i]).collect();
        self.pinned = idx.iter().map(|&i| self.pinned[i]).collect();
        self.e = e;
    }
    /// Append one atom with bonds `bonds[j]` to the existing atoms.
    pub fn push(&mut self, x: [f64; 3], a: usize, c: usize, bonds: &[usize]) {
        let n = self.n();
        let mut e = vec![0; (n + 1) * (n + 1)];
        for i in 0..n {
            for j in 0..n {
                e[i * (n + 1) + j] = self.e[i * n + j];
            }
            e[i * (n + 1) + n] = bonds[i];
            e[n * (n + 1) + i] = bonds[i];
        }
        self.x.push(x);
        self.a.push(a);
        self.c.push(c);
        self.pinned.push(false);
        self.e = e;
    }
    /// Bonds `(i, j, class)` with i < j, class ≥ 1.
    pub fn bond_list(&self) -> Vec<(usize, usize, usize)> {
        let n = self.n();
        (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .filter_map(|(i, j)| (self.bond(i, j) > 0).then(|| (i, j, self.bond(i, j))))
            .collect()
    }
}

/// Network outputs copied to the host for one batch (`n` = padded size).
#[derive(Debug, Clone)]
pub struct HostOut {
    pub n: usize,
    pub dims: (usize, usize, usize, usize),
    pub x1: Vec<f32>,
    pub type_logits: Vec<f32>,
    pub charge_logits: Vec<f32>,
    pub bond_logits: Vec<f32>,
    pub sub_a: Vec<f32>,
    pub del: Vec<f32>,
    pub sub_e: Vec<f32>,
    pub ins_rate: Vec<f32>,
    pub mix_logits: Vec<f32>,
    pub mix_mean: Vec<f32>,
    pub mix_logstd: Vec<f32>,
    pub mix_type: Vec<f32>,
    pub mix_charge: Vec<f32>,
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

impl HostOut {
    pub fn from_output(o: &NetOutput, dims: (usize, usize, usize, usize)) -> Result<Self> {
        Ok(Self {
            n: o.x1.dim(1)?,
            dims,
            x1: flat(&o.x1)?,
            type_logits: flat(&o.type_logits)?,
            charge_logits: flat(&o.charge_logits)?,
            bond_logits: flat(&o.bond_logits)?,
            sub_a: flat(&o.sub_a)?,
            del: flat(&o.del)?,
            sub_e: flat(&o.sub_e)?,
            ins_rate: flat(&crate::loss::softplus(&o.ins_raw)?)?,
            mix_logits: flat(&o.mix_logits)?,
            mix_mean: flat(&o.mix_mean)?,
            mix_logstd: flat(&o.mix_logstd)?,
            mix_type: flat(&o.mix_type)?,
            mix_charge: flat(&o.mix_charge)?,
        })
    }
}

fn sigmoid(z: f32) -> f64 {
    1.0 / (1.0 + (-z as f64).exp())
}

/// Sample a class from logits (numerically stable softmax).
pub fn sample_logits<R: Rng>(logits: &[f32], rng: &mut R) -> usize {
    let mx = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f64> = logits.iter().map(|&l| ((l - mx) as f64).exp()).collect();
    WeightedIndex::new(&w)
        .map(|d| d.sample(rng))
        .unwrap_or_else(|_| argmax(logits))
}

pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// A pending insertion: spawn atom, proposed clean position (network frame),
/// position in the current frame, type, charge.
#[derive(Debug, Clone)]
pub struct Insertion {
    pub spawn: usize,
    pub clean: [f64; 3],
    pub x: [f64; 3],
    pub a: usize,
    pub c: usize,
}

/// Limits for one step.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub min_atoms: usize,
    pub cap: usize,
}

/// Plan and apply the edits of one step to molecule `m` of the batch
/// (positions, substitutions, charges, bond substitutions, deletion choice);
/// returns the deletions mask and the insertions to add (bonds are chosen by
/// the caller with the insertion-bond head, then [`finish_step`] applies them).
#[allow(clippy::too_many_arguments)]
pub fn plan_step<R: Rng>(
    s: &mut State,
    h: &HostOut,
    m: usize,
    t: f64,
    dt: f64,
    flow: &FlowConfig,
    lim: Limits,
    rng: &mut R,
) -> (Vec<bool>, Vec<Insertion>) {
    let (na, nc, ne, k) = h.dims;
    let np = h.n;
    let n = s.n();
    let (l_sub, l_del, l_ins) = (
        hazard(t, flow.p_sub),
        hazard(t, flow.p_indel),
        hazard(t, flow.p_indel),
    );
    let base = m * np;
    // Insertions are drawn first (relative to the current geometry).
    let mut ins = Vec::new();
    let mut room = lim.cap.saturating_sub(n);
    for i in 0..n {
        if room == 0 {
            break;
        }
        let p = (h.ins_rate[base + i] as f64 * l_ins * dt).min(1.0);
        if rng.random::<f64>() < p {
            let o = base + i;
            let comp = sample_logits(&h.mix_logits[o * k..(o + 1) * k], rng);
            let oc = o * k + comp;
            let sd = (h.mix_logstd[oc] as f64).exp();
            let clean = [0, 1, 2]
                .map(|d| h.mix_mean[oc * 3 + d] as f64 + sd * rng.sample::<f64, _>(StandardNormal));
            let xs = [0, 1, 2].map(|d| h.x1[o * 3 + d] as f64);
            let x = [0, 1, 2].map(|d| {
                s.x[i][d] + clean[d] - xs[d]
                    + (1.0 - t) * flow.ins_noise * rng.sample::<f64, _>(StandardNormal)
            });
            if !(clean.iter().chain(&x).all(|v| v.is_finite())) {
                continue;
            }
            let a = sample_logits(&h.mix_type[oc * na..(oc + 1) * na], rng);
            let c = argmax(&h.mix_charge[oc * nc..(oc + 1) * nc]);
            ins.push(Insertion {
                spawn: i,
                clean,
                x,
                a,
                c,
            });
            room -= 1;
        }
    }
    // Positions, types, charges, deletions.
    let mut keep = vec![true; n];
    let mut n_keep = n;
    for i in 0..n {
        let o = base + i;
        if s.pinned[i] {
            continue;
        }
        for d in 0..3 {
            s.x[i][d] += dt * (h.x1[o * 3 + d] as f64 - s.x[i][d]) / (1.0 - t).max(1e-6);
        }
        s.c[i] = argmax(&h.charge_logits[o * nc..(o + 1) * nc]);
        let ps = sigmoid(h.sub_a[o]) * l_sub * dt;
        let pd = sigmoid(h.del[o]) * l_del * dt;
        if ps + pd <= 0.0 {
            continue;
        }
        if rng.random::<f64>() < (ps + pd).min(1.0) {
            if rng.random::<f64>() < pd / (ps + pd) {
                if n_keep > lim.min_atoms {
                    keep[i] = false;
                    n_keep -= 1;
                }
            } else {
                s.a[i] = sample_logits(&h.type_logits[o * na..(o + 1) * na], rng);
            }
        }
    }
    // Bond substitutions (upper triangle, symmetric).
    for i in 0..n {
        for j in i + 1..n {
            if s.pinned[i] && s.pinned[j] {
                continue;
            }
            let o = (m * np + i) * np + j;
            if rng.random::<f64>() < (sigmoid(h.sub_e[o]) * l_sub * dt).min(1.0) {
                let o2 = (m * np + j) * np + i;
                let lg: Vec<f32> = (0..ne)
                    .map(|q| 0.5 * (h.bond_logits[o * ne + q] + h.bond_logits[o2 * ne + q]))
                    .collect();
                let v = sample_logits(&lg, rng);
                s.e[i * n + j] = v;
                s.e[j * n + i] = v;
            }
        }
    }
    (keep, ins)
}

/// Add insertions (with their bonds to the pre-step atoms), drop deleted
/// atoms, re-centre. New atoms never bond to atoms deleted in the same step.
pub fn finish_step(s: &mut State, keep: &[bool], ins: &[Insertion], bonds: &[Vec<usize>]) {
    let n = s.n();
    for (q, b) in ins.iter().zip(bonds) {
        let mut row: Vec<usize> = (0..s.n()).map(|j| if j < n { b[j] } else { 0 }).collect();
        (0..n).filter(|&j| !keep[j]).for_each(|j| row[j] = 0);
        s.push(q.x, q.a, q.c, &row);
    }
    let mut k = keep.to_vec();
    k.resize(s.n(), true);
    s.retain(&k);
    centre3(&mut s.x);
}

/// Build the padded network input from states.
pub fn states_input(states: &[State], t: f64, cond: Option<f64>, dev: &Device) -> Result<NetInput> {
    let b = states.len();
    let n = states.iter().map(|s| s.n()).max().unwrap_or(1).max(1);
    let mut x = vec![0f32; b * n * 3];
    let (mut a, mut c, mut e, mut mask) = (
        vec![0u32; b * n],
        vec![0u32; b * n],
        vec![0u32; b * n * n],
        vec![0f32; b * n],
    );
    for (k, s) in states.iter().enumerate() {
        let m = s.n();
        for i in 0..m {
            let o = k * n + i;
            (0..3).for_each(|d| x[o * 3 + d] = s.x[i][d] as f32);
            a[o] = s.a[i] as u32;
            c[o] = s.c[i] as u32;
            mask[o] = 1.0;
            for j in 0..m {
                e[o * n + j] = s.e[i * m + j] as u32;
            }
        }
    }
    Ok(NetInput {
        x: Tensor::from_vec(x, (b, n, 3), dev)?,
        a: Tensor::from_vec(a, (b, n), dev)?,
        c: Tensor::from_vec(c, (b, n), dev)?,
        e: Tensor::from_vec(e, (b, n, n), dev)?,
        mask: Tensor::from_vec(mask, (b, n), dev)?,
        t: Tensor::full(t as f32, b, dev)?,
        cond: Tensor::full(cond.unwrap_or(0.0) as f32, b, dev)?,
        cond_on: Tensor::full(if cond.is_some() { 1f32 } else { 0.0 }, b, dev)?,
    })
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    pub steps: usize,
    pub seed: u64,
    /// Normalised condition value and guidance weight `w` (`u + w (c − u)`).
    pub cond: Option<(f64, f64)>,
    /// Scaffold atoms (normalised, centred) kept in every sample.
    pub scaffold: Option<State>,
    pub limits: Limits,
}

/// Time grid `t_k = 1 − 10^{−3 k/(K−1)}`, k = 0..K−1.
pub fn time_grid(steps: usize) -> Vec<f64> {
    (0..steps)
        .map(|k| 1.0 - 10f64.powf(-3.0 * k as f64 / (steps - 1).max(1) as f64))
        .collect()
}

fn forward(
    net: &MorphNet,
    states: &[State],
    t: f64,
    spec: &SampleSpec,
    dev: &Device,
) -> Result<NetOutput> {
    match spec.cond {
        Some((v, w)) if (w - 1.0).abs() > 1e-12 => {
            let c = net.forward(&states_input(states, t, Some(v), dev)?)?;
            let u = net.forward(&states_input(states, t, None, dev)?)?;
            NetOutput::guide(&u, &c, w)
        }
        Some((v, _)) => net.forward(&states_input(states, t, Some(v), dev)?),
        None => net.forward(&states_input(states, t, None, dev)?),
    }
}

/// Initial states: prior molecules (plus pinned scaffold atoms). The prior's
/// size range (data range ± `prior_extra`) can exceed the sampling limits, so
/// the drawn size is clamped into `[min_atoms, cap]` (a scaffold larger than
/// the cap keeps all its atoms plus one free atom).
pub fn initial_states<R: Rng>(
    n_mol: usize,
    prior: &Prior,
    scaffold: Option<&State>,
    lim: Limits,
    rng: &mut R,
) -> Vec<State> {
    (0..n_mol)
        .map(|_| {
            let n0 = prior
                .n_atoms(rng)
                .clamp(lim.min_atoms.min(lim.cap), lim.cap.max(lim.min_atoms));
            let s0 = scaffold.map_or(0, |s| s.n());
            let n_free = n0
                .saturating_sub(s0)
                .max(if s0 == 0 { 3.min(lim.cap.max(1)) } else { 1 });
            let mut st = scaffold.cloned().unwrap_or_default();
            st.pinned = vec![true; st.n()];
            let x = prior.positions(n_free, rng);
            for xi in x {
                let bonds: Vec<usize> = (0..st.n())
                    .map(|j| if st.pinned[j] { 0 } else { prior.bond(rng) })
                    .collect();
                let (a, c) = (prior.atom_type(rng), prior.charge(rng));
                st.push(xi, a, c, &bonds);
            }
            centre3(&mut st.x);
            st
        })
        .collect()
}

/// Integrate a batch of molecules from the prior to t ≈ 1.
pub fn sample_batch(
    net: &MorphNet,
    prior: &Prior,
    flow: &FlowConfig,
    n_mol: usize,
    spec: &SampleSpec,
    dev: &Device,
    on_step: &mut dyn FnMut(usize),
) -> Result<Vec<State>> {
    sample_batch_tempered(net, prior, flow, n_mol, spec, 1.0, dev, on_step)
}

/// [`sample_batch`] with the prior positions of non-scaffold atoms scaled by
/// `temperature` (> 0; 1 = the trained prior): higher-temperature noise codes
/// for exploration (ActFlow).
#[allow(clippy::too_many_arguments)]
pub fn sample_batch_tempered(
    net: &MorphNet,
    prior: &Prior,
    flow: &FlowConfig,
    n_mol: usize,
    spec: &SampleSpec,
    temperature: f64,
    dev: &Device,
    on_step: &mut dyn FnMut(usize),
) -> Result<Vec<State>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
    let mut states = initial_states(n_mol, prior, spec.scaffold.as_ref(), spec.limits, &mut rng);
    if temperature != 1.0 {
        for s in &mut states {
            for (x, pinned) in s.x.iter_mut().zip(&s.pinned) {
                if !pinned {
                    x.iter_mut().for_each(|v| *v *= temperature);
                }
            }
        }
    }
    let grid = time_grid(spec.steps);
    let d = net.dims;
    let dims = (d.n_types, d.n_charges, d.n_bonds, d.n_mix);
    for k in 0..grid.len() - 1 {
        let (t, dt) = (grid[k], grid[k + 1] - grid[k]);
        let out = forward(net, &states, t, spec, dev)?;
        let h = HostOut::from_output(&out, dims)?;
        let mut plans = Vec::with_capacity(states.len());
        for (m, s) in states.iter_mut().enumerate() {
            plans.push(plan_step(s, &h, m, t, dt, flow, spec.limits, &mut rng));
        }
        let q = plans.iter().map(|p| p.1.len()).max().unwrap_or(0);
        let mut bonds: Vec<Vec<Vec<usize>>> =
            plans.iter().map(|p| vec![Vec::new(); p.1.len()]).collect();
        if q > 0 {
            let b = states.len();
            let (mut sp, mut pos, mut ty) =
                (vec![0u32; b * q], vec![0f32; b * q * 3], vec![0u32; b * q]);
            for (m, p) in plans.iter().enumerate() {
                for (r, ins) in p.1.iter().enumerate() {
                    sp[m * q + r] = ins.spawn as u32;
                    (0..3).for_each(|dd| pos[(m * q + r) * 3 + dd] = ins.clean[dd] as f32);
                    ty[m * q + r] = ins.a as u32;
                }
            }
            let ib = net.insertion_bonds(
                &out,
                &Tensor::from_vec(sp, (b, q), dev)?,
                &Tensor::from_vec(pos, (b, q, 3), dev)?,
                &Tensor::from_vec(ty, (b, q), dev)?,
            )?; // [b, q, n, E]
            let ib = flat(&ops::softmax_last_dim(&ib)?)?;
            let np = h.n;
            for (m, p) in plans.iter().enumerate() {
                for r in 0..p.1.len() {
                    bonds[m][r] = (0..states[m].n())
                        .map(|j| {
                            let o = ((m * q + r) * np + j) * d.n_bonds;
                            let lg: Vec<f32> = ib[o..o + d.n_bonds]
                                .iter()
                                .map(|p| p.max(1e-12).ln())
                                .collect();
                            sample_logits(&lg, &mut rng)
                        })
                        .collect();
                }
            }
        }
        for ((s, (keep, ins)), b) in states.iter_mut().zip(&plans).zip(&bonds) {
            finish_step(s, keep, ins, b);
        }
        on_step(k);
    }
    // Final clean-position estimate.
    let t = *grid.last().unwrap_or(&0.999);
    let out = forward(net, &states, t, spec, dev)?;
    let h = HostOut::from_output(&out, dims)?;
    for (m, s) in states.iter_mut().enumerate() {
        for i in 0..s.n() {
            if !s.pinned[i] {
                let o = m * h.n + i;
                s.x[i] = [0, 1, 2].map(|dd| h.x1[o * 3 + dd] as f64);
                s.c[i] = argmax(&h.charge_logits[o * d.n_charges..(o + 1) * d.n_charges]);
            }
        }
    }
    if let Some(m) = states
        .iter()
        .position(|s| s.x.iter().flatten().any(|v| !v.is_finite()))
    {
        return Err(crate::error::MorphError::data(
            format!("sampling (seed {})", spec.seed),
            format!("molecule {m} has non-finite coordinates"),
        ));
    }
    Ok(states)
}
