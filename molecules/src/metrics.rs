//! Set-level metrics for generated molecules: stability, validity,
//! uniqueness, novelty (EDM protocol: Hoogeboom et al. 2022; model-bond
//! protocol: MiDi / SemlaFlow) and distribution distances.
//!
//! - `Protocol::Edm`: bonds are inferred from coordinates ([`crate::bonds`]),
//!   charges are ignored, stability uses the EDM valence table. Validity is
//!   "RDKit sanitisation of the whole molecule succeeds" and the SMILES used
//!   for uniqueness/novelty is the largest fragment's (EDM `rdkit_functions.py`).
//! - `Protocol::Bonds`: the file's bonds and charges are used, stability uses
//!   the charge-aware table.
//!
//! Both validity variants are reported: `validity` (EDM, largest fragment)
//! and `validity_single_fragment` (SemlaFlow: also requires one fragment).
//! Uniqueness = distinct canonical SMILES / valid molecules; novelty =
//! unique SMILES not in the training set / unique SMILES, with the training
//! set run through the same pipeline. Distribution distances are total
//! variation distances `½ Σ |p − q|` between normalised histograms.
use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;

use crate::molecule::Molecule;
use crate::stability::{check_stability, ratio, StabilitySummary, ValenceTable};

/// Evaluation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Bonds inferred from 3D coordinates (EDM).
    Edm,
    /// Bonds (and charges) taken from the input.
    Bonds,
}

/// Per-molecule evaluation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MolEval {
    pub n_atoms: usize,
    pub stable_atoms: usize,
    pub stable: bool,
    /// RDKit sanitisation succeeded (None without the `rdkit` feature).
    pub valid: Option<bool>,
    pub n_fragments: usize,
    /// Canonical SMILES of the largest fragment, when valid.
    pub smiles: Option<String>,
}

/// Prepare the molecule the protocol evaluates (EDM: bonds inferred from the
/// coordinates, then charges and coordinates dropped as in EDM's RDKit build).
pub fn protocol_view(m: &Molecule, protocol: Protocol) -> Molecule {
    match protocol {
        Protocol::Edm => {
            // Inferred bonds; no charges/isotopes/radicals/properties (EDM
            // builds `Chem.Atom(symbol)` atoms). EDM builds the RDKit molecule
            // without a conformer, so no stereo is perceived: positions are
            // zeroed after inference and the molecule is flagged 2D.
            let list = crate::bonds::infer_bond_list(&m.elements, &m.positions);
            let n = m.n_atoms();
            let mut c = Molecule::new(m.elements.clone(), ndarray::Array2::zeros((n, 3)))
                .unwrap_or_else(|_| unreachable!("shape (n, 3) by construction"));
            c.is_3d = false;
            for (i, j, o) in list {
                c.bonds.add_edge(
                    petgraph::graph::NodeIndex::new(i),
                    petgraph::graph::NodeIndex::new(j),
                    o,
                );
            }
            c
        }
        Protocol::Bonds => m.clone(),
    }
}

/// Evaluate one molecule under `protocol`.
pub fn evaluate(m: &Molecule, protocol: Protocol) -> MolEval {
    let v = protocol_view(m, protocol);
    let table = match protocol {
        Protocol::Edm => ValenceTable::Edm,
        Protocol::Bonds => ValenceTable::ChargeAware,
    };
    let (stable, k, n) = check_stability(&v, table);
    let frags = v.fragments();
    let (valid, smiles) = validity_and_smiles(&v, &frags);
    MolEval {
        n_atoms: n,
        stable_atoms: k,
        stable,
        valid,
        n_fragments: frags.len(),
        smiles,
    }
}

#[cfg(feature = "rdkit")]
fn validity_and_smiles(v: &Molecule, frags: &[Vec<usize>]) -> (Option<bool>, Option<String>) {
    let whole = crate::chem::sanitize(v, true);
    if !whole.ok {
        return (Some(false), None);
    }
    if frags.len() <= 1 {
        return (Some(true), whole.smiles);
    }
    // Largest fragment by atom count; first on ties (Python's max).
    let mut best = 0;
    for (i, f) in frags.iter().enumerate() {
        if f.len() > frags[best].len() {
            best = i;
        }
    }
    let smiles = v
        .subset(&frags[best])
        .ok()
        .and_then(|s| crate::chem::sanitize(&s, true).smiles);
    (Some(true), smiles)
}

#[cfg(not(feature = "rdkit"))]
fn validity_and_smiles(_v: &Molecule, _frags: &[Vec<usize>]) -> (Option<bool>, Option<String>) {
    (None, None)
}

/// Set-level report (JSON field names are the CLI contract).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricsReport {
    pub protocol: Protocol,
    pub n_molecules: usize,
    pub atom_stability: f64,
    pub mol_stability: f64,
    /// EDM validity: sanitisation succeeds (largest fragment used for SMILES).
    pub validity: Option<f64>,
    /// SemlaFlow validity: sanitisation succeeds and one fragment.
    pub validity_single_fragment: Option<f64>,
    /// Distinct SMILES / valid molecules.
    pub uniqueness: Option<f64>,
    /// Unique SMILES not in training / unique SMILES (only with a training set).
    pub novelty: Option<f64>,
}

/// Evaluate all molecules in parallel.
pub fn evaluate_all(mols: &[Molecule], protocol: Protocol) -> Vec<MolEval> {
    #[cfg(feature = "rdkit")]
    crate::chem::quiet_rdkit_logs();
    mols.par_iter()
        .with_min_len(16)
        .map(|m| evaluate(m, protocol))
        .collect()
}

/// Training-set SMILES through the same pipeline (valid molecules only).
pub fn smiles_set(evals: &[MolEval]) -> HashSet<String> {
    evals.iter().filter_map(|e| e.smiles.clone()).collect()
}

/// Aggregate per-molecule evaluations.
pub fn summarize(
    evals: &[MolEval],
    protocol: Protocol,
    train: Option<&HashSet<String>>,
) -> MetricsReport {
    let unique: HashSet<&String> = evals.iter().filter_map(|e| e.smiles.as_ref()).collect();
    let novel = train.map(|t| unique.iter().filter(|s| !t.contains(s.as_str())).count());
    summarize_counts(evals, protocol, unique.len(), novel)
}

/// Report from per-molecule evaluations and the numbers of distinct and of
/// novel SMILES.
fn summarize_counts(
    evals: &[MolEval],
    protocol: Protocol,
    n_unique: usize,
    n_novel: Option<usize>,
) -> MetricsReport {
    let mut st = StabilitySummary::default();
    for e in evals {
        st.add((e.stable, e.stable_atoms, e.n_atoms));
    }
    let has_validity = evals.iter().all(|e| e.valid.is_some()) && !evals.is_empty();
    let n = evals.len();
    let n_valid = evals.iter().filter(|e| e.valid == Some(true)).count();
    let n_valid_single = evals
        .iter()
        .filter(|e| e.valid == Some(true) && e.n_fragments == 1)
        .count();
    MetricsReport {
        protocol,
        n_molecules: n,
        atom_stability: st.atom_stability(),
        mol_stability: st.mol_stability(),
        validity: has_validity.then(|| ratio(n_valid, n)),
        validity_single_fragment: has_validity.then(|| ratio(n_valid_single, n)),
        uniqueness: has_validity.then(|| ratio(n_unique, n_valid)),
        novelty: if has_validity {
            n_novel.map(|k| ratio(k, n_unique))
        } else {
            None
        },
    }
}

/// A per-molecule evaluation whose SMILES may be left for later: `key` is
/// the SMILES class key of [`crate::plain`] (equal SMILES imply equal keys),
/// set when the molecule went through the RDKit-free path.
struct Keyed {
    eval: MolEval,
    key: Option<u64>,
}

fn evaluate_keyed(m: &Molecule, protocol: Protocol) -> Keyed {
    #[cfg(feature = "rdkit")]
    if protocol == Protocol::Edm {
        if let Some(p) = crate::plain::evaluate_edm(&m.elements, &m.positions) {
            let p = crate::plain::settle(p, || protocol_view(m, protocol));
            return Keyed {
                eval: MolEval {
                    n_atoms: p.n_atoms,
                    stable_atoms: p.stable_atoms,
                    stable: p.stable,
                    valid: Some(p.valid),
                    n_fragments: p.n_fragments,
                    smiles: None,
                },
                key: p.key,
            };
        }
    }
    Keyed {
        eval: evaluate(m, protocol),
        key: None,
    }
}

fn evaluate_keyed_all(mols: &[Molecule], protocol: Protocol) -> Vec<Keyed> {
    mols.par_iter()
        .with_min_len(64)
        .map(|m| evaluate_keyed(m, protocol))
        .collect()
}

/// Fill in the largest-fragment SMILES of the molecules `pick` selects.
fn fill_smiles(
    mols: &[Molecule],
    k: &mut [Keyed],
    protocol: Protocol,
    pick: impl Fn(&Keyed) -> bool + Sync,
) {
    let idx: Vec<usize> = (0..k.len())
        .filter(|&i| k[i].eval.valid == Some(true) && k[i].eval.smiles.is_none() && pick(&k[i]))
        .collect();
    let smiles: Vec<Option<String>> = idx
        .par_iter()
        .map(|&i| evaluate(&mols[i], protocol).smiles)
        .collect();
    for (i, s) in idx.into_iter().zip(smiles) {
        k[i].eval.smiles = s;
    }
}

/// Evaluate and summarise in one call; `train` molecules go through the same
/// pipeline. Same numbers as [`summarize`] over [`evaluate_all`], but canonical
/// SMILES (RDKit) are computed only where the class keys of [`crate::plain`]
/// cannot decide uniqueness or novelty on their own.
pub fn compute_metrics(
    mols: &[Molecule],
    protocol: Protocol,
    train: Option<&[Molecule]>,
) -> MetricsReport {
    #[cfg(feature = "rdkit")]
    crate::chem::quiet_rdkit_logs();
    let mut gen = evaluate_keyed_all(mols, protocol);
    let tr = train.map(|t| evaluate_keyed_all(t, protocol));
    let unkeyed = |k: &[Keyed]| {
        k.iter()
            .any(|x| x.eval.valid == Some(true) && x.key.is_none())
    };
    let evals = |k: Vec<Keyed>| k.into_iter().map(|x| x.eval).collect::<Vec<_>>();
    if unkeyed(&gen) || tr.as_deref().is_some_and(unkeyed) {
        // Some valid molecule has SMILES but no key: compare SMILES throughout.
        fill_smiles(mols, &mut gen, protocol, |_| true);
        let train_set = match (train, tr) {
            (Some(t), Some(mut tk)) => {
                fill_smiles(t, &mut tk, protocol, |_| true);
                Some(smiles_set(&evals(tk)))
            }
            _ => None,
        };
        return summarize(&evals(gen), protocol, train_set.as_ref());
    }
    let valid_keys = |k: &[Keyed]| {
        k.iter()
            .filter(|x| x.eval.valid == Some(true))
            .filter_map(|x| x.key)
            .collect::<Vec<u64>>()
    };
    let mut gen_count: HashMap<u64, u32> = HashMap::new();
    for key in valid_keys(&gen) {
        *gen_count.entry(key).or_insert(0) += 1;
    }
    let train_keys: HashSet<u64> = tr
        .as_deref()
        .map(|t| valid_keys(t).into_iter().collect())
        .unwrap_or_default();
    // SMILES where a key is shared: inside the generated set, or with training.
    fill_smiles(mols, &mut gen, protocol, |x| {
        x.key
            .is_some_and(|k| gen_count.get(&k).is_some_and(|&c| c > 1) || train_keys.contains(&k))
    });
    let train_smiles: Option<HashSet<String>> = match (train, tr) {
        (Some(t), Some(mut tk)) => {
            fill_smiles(t, &mut tk, protocol, |x| {
                x.key.is_some_and(|k| gen_count.contains_key(&k))
            });
            Some(smiles_set(&evals(tk)))
        }
        _ => None,
    };
    // A valid molecule still without SMILES has a key no other molecule has:
    // its SMILES is distinct from all others and absent from training.
    let mut n_lone = 0;
    let mut shared: HashSet<&str> = HashSet::new();
    for x in &gen {
        if x.eval.valid != Some(true) {
            continue;
        }
        match &x.eval.smiles {
            Some(s) => {
                shared.insert(s);
            }
            None => n_lone += 1,
        }
    }
    let n_novel = train_smiles
        .as_ref()
        .map(|t| n_lone + shared.iter().filter(|s| !t.contains(**s)).count());
    let n_unique = n_lone + shared.len();
    summarize_counts(&evals(gen), protocol, n_unique, n_novel)
}

/// Total variation distances between two sets' histograms.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DistributionDistances {
    pub atom_count: f64,
    pub atom_type: f64,
    pub bond_type: f64,
    pub charge: f64,
}

/// Normalised histogram of keys.
pub fn histogram<K: Ord>(keys: impl IntoIterator<Item = K>) -> BTreeMap<K, f64> {
    let mut h = BTreeMap::new();
    let mut n = 0.0;
    for k in keys {
        *h.entry(k).or_insert(0.0) += 1.0;
        n += 1.0;
    }
    if n > 0.0 {
        h.values_mut().for_each(|v| *v /= n);
    }
    h
}

/// `½ Σ_k |p_k − q_k|` over the union of keys (1 if exactly one is empty).
pub fn total_variation<K: Ord>(p: &BTreeMap<K, f64>, q: &BTreeMap<K, f64>) -> f64 {
    if p.is_empty() != q.is_empty() {
        return 1.0;
    }
    let mut s = 0.0;
    for (k, &a) in p {
        s += (a - q.get(k).copied().unwrap_or(0.0)).abs();
    }
    for (k, &b) in q {
        if !p.contains_key(k) {
            s += b;
        }
    }
    0.5 * s
}

/// Distances between sets `a` and `b` (bonds as stored; infer first for EDM).
pub fn distribution_distances(a: &[Molecule], b: &[Molecule]) -> DistributionDistances {
    let tv = |f: &dyn Fn(&[Molecule]) -> BTreeMap<i64, f64>| total_variation(&f(a), &f(b));
    DistributionDistances {
        atom_count: tv(&|s| histogram(s.iter().map(|m| m.n_atoms() as i64))),
        atom_type: tv(&|s| {
            histogram(
                s.iter()
                    .flat_map(|m| m.elements.iter().map(|e| i64::from(e.0))),
            )
        }),
        bond_type: tv(&|s| {
            histogram(
                s.iter()
                    .flat_map(|m| m.bonds.edge_weights().map(|o| i64::from(o.mdl_code()))),
            )
        }),
        charge: tv(&|s| {
            histogram(
                s.iter()
                    .flat_map(|m| m.charges.iter().map(|&c| i64::from(c))),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Element;
    use ndarray::array;

    fn water(shift: f64) -> Molecule {
        Molecule::new(
            vec![Element::O, Element::H, Element::H],
            array![[0.0, 0.0, shift], [0.96, 0.0, shift], [-0.24, 0.93, shift]],
        )
        .expect("ok")
    }

    #[test]
    fn tv_distance() {
        let p = histogram([1, 1, 2, 2]);
        let q = histogram([1, 1, 1, 1]);
        assert!((total_variation(&p, &q) - 0.5).abs() < 1e-12);
        assert_eq!(total_variation(&p, &p), 0.0);
        let d = distribution_distances(&[water(0.0)], &[water(1.0)]);
        assert_eq!(d.atom_type, 0.0);
        assert_eq!(d.atom_count, 0.0);
    }

    #[cfg(feature = "rdkit")]
    fn methanol() -> Molecule {
        Molecule::new(
            vec![
                Element::C,
                Element::O,
                Element::H,
                Element::H,
                Element::H,
                Element::H,
            ],
            array![
                [0.0, 0.0, 0.0],
                [1.43, 0.0, 0.0],
                [1.75, 0.91, 0.0],
                [-0.36, 1.03, 0.0],
                [-0.36, -0.51, 0.89],
                [-0.36, -0.51, -0.89]
            ],
        )
        .expect("ok")
    }

    #[cfg(feature = "rdkit")]
    fn silane() -> Molecule {
        let mut els = vec![Element::SI];
        els.extend([Element::H; 4]);
        Molecule::new(
            els,
            array![
                [0.0, 0.0, 0.0],
                [1.48, 0.0, 0.0],
                [-1.48, 0.0, 0.0],
                [0.0, 1.48, 0.0],
                [0.0, -1.48, 0.0]
            ],
        )
        .expect("ok")
    }

    /// compute_metrics (SMILES only inside class-key collisions, or for all
    /// molecules once one is outside the plain elements) equals summarize over
    /// the all-RDKit evaluate_all.
    #[cfg(feature = "rdkit")]
    #[test]
    fn keyed_metrics_equal_full_path() {
        let p = Protocol::Edm;
        let mut stretched = methanol();
        stretched.positions[[1, 0]] = 3.0; // C and O apart: two fragments
        let sets = [
            vec![water(0.0), water(3.0), methanol()],
            vec![water(0.0), methanol(), silane()],
            vec![stretched.clone(), methanol(), water(1.0)],
        ];
        let trains = [vec![], vec![methanol()], vec![silane(), water(2.0)]];
        for set in &sets {
            for train in &trains {
                let ts = smiles_set(&evaluate_all(train, p));
                let full = summarize(&evaluate_all(set, p), p, Some(&ts));
                assert_eq!(compute_metrics(set, p, Some(train)), full);
                let full = summarize(&evaluate_all(set, p), p, None);
                assert_eq!(compute_metrics(set, p, None), full);
            }
        }
        let r = compute_metrics(&sets[0], p, Some(&[methanol()]));
        assert_eq!(r.uniqueness, Some(2.0 / 3.0));
        assert_eq!(r.novelty, Some(0.5));
    }

    #[test]
    fn edm_water() {
        let r = compute_metrics(&[water(0.0), water(3.0)], Protocol::Edm, None);
        assert_eq!(r.n_molecules, 2);
        assert_eq!(r.atom_stability, 1.0);
        assert_eq!(r.mol_stability, 1.0);
        #[cfg(feature = "rdkit")]
        {
            assert_eq!(r.validity, Some(1.0));
            assert_eq!(r.uniqueness, Some(0.5));
            let t = compute_metrics(&[water(0.0)], Protocol::Edm, Some(&[water(5.0)]));
            assert_eq!(t.novelty, Some(0.0));
        }
    }
}
