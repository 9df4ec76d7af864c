//! RDKit-free evaluation of *plain* molecules: neutral, no isotopes or
//! radicals, no aromatic bonds, no stereo, every element among H, B, C, N, O,
//! F, P, S, Cl, Br, I. EDM-protocol views are plain whenever their elements
//! are, which covers QM9 and almost all generated QM9/GEOM samples.
//!
//! For such molecules RDKit's `SanitizeMol` can only fail on a valence error
//! (kekulisation has nothing to do without aromatic input bonds; ring and
//! aromaticity perception never fail), so validity is "every atom's explicit
//! valence is at most the largest of RDKit's allowed valences for its
//! element" (RDKit 2022.09 `PeriodicTable`: H 1, B 3, C 4, N 3, O 2, F 1,
//! P 3/5/7, S 2/4/6, Cl 1, Br 1, I 1/3/5). The exception is RDKit's `cleanUp`
//! step, which charge-separates nitro-like N, P and halogen oxides before the
//! check: molecules with such atoms are flagged `uncertain` and settled by
//! RDKit ([`settle`]).
//!
//! Uniqueness and novelty compare canonical SMILES, which is the expensive
//! part. `class_key` is a cheap isomorphism invariant of the molecule RDKit
//! writes the SMILES of (the largest fragment, hydrogens folded into their
//! heavy atom): per heavy atom (element, total H count = explicit H
//! neighbours + RDKit's implicit H, heavy-atom degree), refined by a few
//! Weisfeiler–Lehman rounds over the heavy-atom graph. Bond orders are left
//! out on purpose: two Kekulé structures of one aromatic system have
//! different bond orders but the same canonical SMILES, while per-atom
//! valences (hence H counts) agree. So equal canonical SMILES imply equal
//! keys; molecules whose key is unique in a set are therefore unique by
//! SMILES, and RDKit is only asked for the SMILES inside key collisions
//! (`metrics::compute_metrics`). Tests compare this against the all-RDKit
//! path molecule by molecule.
use crate::bonds::infer_bonds_into;
use crate::element::Element;
use crate::molecule::{BondOrder, BondStereo, Molecule};
use crate::stability::edm_allowed;

/// RDKit's allowed valences for neutral atoms of the plain elements.
pub(crate) fn rdkit_valences(z: u8) -> Option<&'static [u32]> {
    Some(match z {
        1 => &[1],
        5 => &[3],
        6 => &[4],
        7 => &[3],
        8 => &[2],
        9 => &[1],
        15 => &[3, 5, 7],
        16 => &[2, 4, 6],
        17 => &[1],
        35 => &[1],
        53 => &[1, 3, 5],
        _ => return None,
    })
}

/// Whether every element is one of the plain elements.
pub fn plain_elements(elements: &[Element]) -> bool {
    elements.iter().all(|e| rdkit_valences(e.0).is_some())
}

/// Per-molecule outcome of the RDKit-free path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainEval {
    pub n_atoms: usize,
    /// Atoms whose bond-order sum is in the EDM valence table.
    pub stable_atoms: usize,
    pub stable: bool,
    /// RDKit sanitisation of the whole molecule would succeed.
    pub valid: bool,
    pub n_fragments: usize,
    /// SMILES class key of the largest fragment (see module docs), when valid
    /// or uncertain.
    pub key: Option<u64>,
    /// RDKit's `cleanUp` step may rewrite some atom (hypervalent N, P with a
    /// multiple bond, Cl/Br/I above valence 1 — nitro groups, halogen oxides)
    /// before the valence check: `valid` is then only this module's guess and
    /// must be settled with RDKit ([`settle`]).
    pub uncertain: bool,
}

/// Settle an uncertain verdict with RDKit on `view()`, the molecule whose
/// bonds the evaluation used (hydrogens explicit, no charges); certain
/// verdicts are returned as they are.
#[cfg(feature = "rdkit")]
pub fn settle(p: PlainEval, view: impl FnOnce() -> Molecule) -> PlainEval {
    if !p.uncertain {
        return p;
    }
    let valid = crate::chem::sanitize(&view(), true).ok;
    PlainEval {
        valid,
        key: if valid { p.key } else { None },
        uncertain: false,
        ..p
    }
}

/// Buffers reused across molecules on one thread (the metrics loop would
/// otherwise allocate a dozen small vectors per molecule).
#[derive(Default)]
struct Scratch {
    bonds: Vec<(u32, u32, u8)>,
    sums: Vec<u32>,
    off: Vec<u32>,
    fill: Vec<u32>,
    nbr: Vec<u32>,
    comp: Vec<u32>,
    sizes: Vec<usize>,
    stack: Vec<usize>,
    heavy: Vec<usize>,
    label: Vec<u64>,
    next: Vec<u64>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        // Re-entered on this thread (not done by this module): fresh buffers.
        Err(_) => f(&mut Scratch::default()),
    })
}

/// EDM protocol on raw atoms: bonds inferred from `positions` (Å), then
/// [`evaluate_graph`]. `None` when an element is not plain.
pub fn evaluate_edm(elements: &[Element], positions: &ndarray::Array2<f64>) -> Option<PlainEval> {
    if !plain_elements(elements) {
        return None;
    }
    with_scratch(|s| {
        let mut bonds = std::mem::take(&mut s.bonds);
        infer_bonds_into(elements, positions, &mut bonds);
        let r = graph_eval(elements, &bonds, s);
        s.bonds = bonds;
        r
    })
}

/// A molecule's own bonds, if it is plain (see module docs).
pub fn evaluate_molecule(m: &Molecule) -> Option<PlainEval> {
    if m.charges.iter().any(|&c| c != 0)
        || m.isotopes.iter().any(|&c| c != 0)
        || m.radicals.iter().any(|&c| c != 0)
        || m.bond_stereo.iter().any(|&s| s != BondStereo::None)
    {
        return None;
    }
    let mut bonds = Vec::with_capacity(m.n_bonds());
    for (a, b, o, _) in m.bond_list() {
        if o == BondOrder::Aromatic {
            return None;
        }
        bonds.push((a as u32, b as u32, o.mdl_code()));
    }
    evaluate_graph(&m.elements, &bonds)
}

/// Stability (EDM table), validity and class key for plain atoms with bonds
/// `(i, j, order 1..=3)`, each pair at most once. `None` when an element is
/// not plain, an order is outside 1..=3 or an index is out of range.
pub fn evaluate_graph(elements: &[Element], bonds: &[(u32, u32, u8)]) -> Option<PlainEval> {
    if !plain_elements(elements) {
        return None;
    }
    with_scratch(|s| graph_eval(elements, bonds, s))
}

fn reset<T: Clone>(v: &mut Vec<T>, n: usize, x: T) {
    v.clear();
    v.resize(n, x);
}

fn graph_eval(
    elements: &[Element],
    bonds: &[(u32, u32, u8)],
    s: &mut Scratch,
) -> Option<PlainEval> {
    let n = elements.len();
    reset(&mut s.sums, n, 0);
    reset(&mut s.off, n + 1, 0);
    for &(i, j, o) in bonds {
        let (i, j) = (i as usize, j as usize);
        if i >= n || j >= n || i == j || !(1..=3).contains(&o) {
            return None;
        }
        s.sums[i] += u32::from(o);
        s.sums[j] += u32::from(o);
        s.off[i + 1] += 1;
        s.off[j + 1] += 1;
    }
    for k in 0..n {
        s.off[k + 1] += s.off[k];
    }
    s.fill.clear();
    s.fill.extend_from_slice(&s.off);
    reset(&mut s.nbr, 2 * bonds.len(), 0);
    for &(i, j, _) in bonds {
        s.nbr[s.fill[i as usize] as usize] = j;
        s.fill[i as usize] += 1;
        s.nbr[s.fill[j as usize] as usize] = i;
        s.fill[j as usize] += 1;
    }
    let mut stable_atoms = 0;
    let mut valid = true;
    let mut uncertain = false;
    for (i, (e, &v)) in elements.iter().zip(&s.sums).enumerate() {
        stable_atoms += usize::from(edm_allowed(*e).iter().any(|&a| u32::from(a) == v));
        let allowed = rdkit_valences(e.0).unwrap_or(&[]);
        valid &= allowed.last().is_some_and(|&m| v <= m);
        let degree = s.off[i + 1] - s.off[i];
        uncertain |= match e.0 {
            7 => v > 3,
            15 => v > degree,
            17 | 35 | 53 => v > 1,
            _ => false,
        };
    }
    // Connected components, numbered by their smallest atom.
    reset(&mut s.comp, n, u32::MAX);
    s.sizes.clear();
    for start in 0..n {
        if s.comp[start] != u32::MAX {
            continue;
        }
        let id = s.sizes.len() as u32;
        s.comp[start] = id;
        s.stack.clear();
        s.stack.push(start);
        let mut size = 0;
        while let Some(u) = s.stack.pop() {
            size += 1;
            for k in s.off[u] as usize..s.off[u + 1] as usize {
                let v = s.nbr[k] as usize;
                if s.comp[v] == u32::MAX {
                    s.comp[v] = id;
                    s.stack.push(v);
                }
            }
        }
        s.sizes.push(size);
    }
    let key = if (valid || uncertain) && n > 0 {
        // Largest fragment by atom count, first on ties (Python's `max`).
        let mut best = 0;
        for (c, &sz) in s.sizes.iter().enumerate() {
            if sz > s.sizes[best] {
                best = c;
            }
        }
        Some(class_key(elements, best as u32, s))
    } else {
        None
    };
    Some(PlainEval {
        n_atoms: n,
        stable_atoms,
        stable: stable_atoms == n,
        valid,
        n_fragments: s.sizes.len(),
        key,
        uncertain,
    })
}

/// splitmix64 finaliser.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Number of Weisfeiler–Lehman refinement rounds.
const WL_ROUNDS: usize = 4;

/// Class key of the fragment `frag` of a valid (or uncertain) molecule (see
/// module docs).
fn class_key(elements: &[Element], frag: u32, s: &mut Scratch) -> u64 {
    let n = elements.len();
    s.heavy.clear();
    s.heavy
        .extend((0..n).filter(|&i| s.comp[i] == frag && elements[i] != Element::H));
    if s.heavy.is_empty() {
        // Hydrogen only: "[H]" or "[H][H]", determined by the size.
        return mix(0x4859_4452_4F47_454E ^ s.sizes[frag as usize] as u64);
    }
    reset(&mut s.label, n, 0);
    reset(&mut s.next, n, 0);
    for &i in &s.heavy {
        let ns = &s.nbr[s.off[i] as usize..s.off[i + 1] as usize];
        let h_expl = ns
            .iter()
            .filter(|&&j| elements[j as usize] == Element::H)
            .count() as u64;
        let ev = s.sums[i];
        let target = rdkit_valences(elements[i].0)
            .and_then(|a| a.iter().copied().find(|&v| v >= ev))
            .unwrap_or(ev);
        let total_h = h_expl + u64::from(target - ev);
        let heavy_deg = ns.len() as u64 - h_expl;
        s.label[i] = mix(u64::from(elements[i].0) | (total_h << 8) | (heavy_deg << 24));
    }
    for round in 0..WL_ROUNDS {
        for &i in &s.heavy {
            let mut acc = 0u64;
            for &j in &s.nbr[s.off[i] as usize..s.off[i + 1] as usize] {
                if elements[j as usize] != Element::H {
                    acc = acc.wrapping_add(mix(s.label[j as usize]));
                }
            }
            s.next[i] = mix(s.label[i].rotate_left(17) ^ acc ^ round as u64);
        }
        std::mem::swap(&mut s.label, &mut s.next);
    }
    let mut key = mix(s.heavy.len() as u64);
    for &i in &s.heavy {
        key = key.wrapping_add(mix(s.label[i] ^ 0x5555));
    }
    mix(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn mol(els: &[Element], bonds: &[(usize, usize, BondOrder)]) -> Molecule {
        let mut m = Molecule::new(els.to_vec(), Array2::zeros((els.len(), 3))).expect("ok");
        m.is_3d = false;
        for &(a, b, o) in bonds {
            m.add_bond(a, b, o).expect("bond");
        }
        m
    }

    #[test]
    fn kekule_forms_share_a_key_and_isomers_differ() {
        use BondOrder::{Double as D, Single as S};
        let c6 = [Element::C; 6];
        let ring = |first: BondOrder, second: BondOrder| {
            (0..6)
                .map(|k| (k, (k + 1) % 6, if k % 2 == 0 { first } else { second }))
                .collect::<Vec<_>>()
        };
        // toluene-like heavy atoms only (implicit H): methyl on atom 0
        let mut a = ring(D, S);
        a.push((0, 6, S));
        let mut b = ring(S, D);
        b.push((0, 6, S));
        let els: Vec<Element> = c6.iter().copied().chain([Element::C]).collect();
        let ka = evaluate_molecule(&mol(&els, &a)).expect("plain");
        let kb = evaluate_molecule(&mol(&els, &b)).expect("plain");
        assert!(ka.valid && kb.valid);
        assert_eq!(ka.key, kb.key);
        // propene vs cyclopropane: same formula, different key
        let propene = mol(&[Element::C; 3], &[(0, 1, D), (1, 2, S)]);
        let cyclo = mol(&[Element::C; 3], &[(0, 1, S), (1, 2, S), (2, 0, S)]);
        assert_ne!(
            evaluate_molecule(&propene).expect("p").key,
            evaluate_molecule(&cyclo).expect("p").key
        );
        // pentavalent carbon is invalid and has no key
        let bad = mol(
            &[Element::C; 6],
            &(1..6).map(|k| (0, k, S)).collect::<Vec<_>>(),
        );
        let e = evaluate_molecule(&bad).expect("plain");
        assert!(!e.valid);
        assert_eq!(e.key, None);
        // charged or aromatic input is not plain
        let mut ch = propene.clone();
        ch.charges[0] = 1;
        assert!(evaluate_molecule(&ch).is_none());
        assert!(evaluate_molecule(&mol(&[Element::SI, Element::C], &[])).is_none());
    }

    /// Random plain graphs: validity must equal RDKit's verdict, equal RDKit
    /// SMILES must imply equal keys (checked on atom permutations, which RDKit
    /// must map to the same SMILES, and across all pairs of the sample).
    #[cfg(feature = "rdkit")]
    #[test]
    fn agrees_with_rdkit_on_random_graphs() {
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        crate::chem::quiet_rdkit_logs();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let pool = [
            Element::C,
            Element::C,
            Element::C,
            Element::N,
            Element::O,
            Element::H,
            Element::H,
            Element::F,
            Element::B,
            Element::P,
            Element::S,
            Element::CL,
            Element::BR,
            Element::I,
        ];
        let orders = [
            BondOrder::Single,
            BondOrder::Single,
            BondOrder::Single,
            BondOrder::Double,
            BondOrder::Triple,
        ];
        let mut by_smiles: std::collections::HashMap<String, u64> = Default::default();
        let (mut n_valid, mut n_invalid, mut n_uncertain) = (0, 0, 0);
        let (mut n_certain_valid, mut n_certain_invalid) = (0, 0);
        for _ in 0..3000 {
            let n = rng.random_range(1..10);
            let els: Vec<Element> = (0..n)
                .map(|_| pool[rng.random_range(0..pool.len())])
                .collect();
            let mut bonds = Vec::new();
            for i in 0..n {
                for j in i + 1..n {
                    if rng.random_bool(0.3) {
                        bonds.push((i, j, orders[rng.random_range(0..orders.len())]));
                    }
                }
            }
            let m = mol(&els, &bonds);
            let fast = evaluate_molecule(&m).expect("plain");
            if fast.uncertain {
                n_uncertain += 1;
            } else if fast.valid {
                n_certain_valid += 1;
            } else {
                n_certain_invalid += 1;
            }
            let fast = settle(fast, || m.clone());
            let frags = m.fragments();
            let mut best = 0;
            for (i, f) in frags.iter().enumerate() {
                if f.len() > frags[best].len() {
                    best = i;
                }
            }
            let whole = crate::chem::sanitize(&m, true);
            assert_eq!(fast.valid, whole.ok, "{els:?} {bonds:?}: {whole:?}");
            if !whole.ok {
                n_invalid += 1;
                continue;
            }
            n_valid += 1;
            let frag = m.subset(&frags[best]).expect("subset");
            let smi = crate::chem::sanitize(&frag, true)
                .smiles
                .expect("fragment smiles");
            let key = fast.key.expect("key");
            if let Some(&k) = by_smiles.get(&smi) {
                assert_eq!(k, key, "{smi}: keys differ");
            }
            by_smiles.insert(smi.clone(), key);
            // A random relabelling of the atoms: same SMILES, same key.
            let mut perm: Vec<usize> = (0..n).collect();
            perm.shuffle(&mut rng);
            let pels: Vec<Element> = (0..n)
                .map(|k| els[perm.iter().position(|&p| p == k).expect("perm")])
                .collect();
            let pbonds: Vec<_> = bonds
                .iter()
                .map(|&(a, b, o)| (perm[a], perm[b], o))
                .collect();
            let pm = mol(&pels, &pbonds);
            let pf = settle(evaluate_molecule(&pm).expect("plain"), || pm.clone());
            assert!(pf.valid);
            assert_eq!(pf.n_fragments, fast.n_fragments);
            assert_eq!(pf.stable_atoms, fast.stable_atoms);
            // Ties for the largest fragment may pick a different fragment.
            let sizes: Vec<usize> = frags.iter().map(Vec::len).collect();
            if sizes.iter().filter(|&&s| s == sizes[best]).count() == 1 {
                assert_eq!(pf.key, Some(key), "{smi}: permutation changed the key");
            }
        }
        eprintln!(
            "{n_valid} valid, {n_invalid} invalid; decided without RDKit: \
             {n_certain_valid} valid, {n_certain_invalid} invalid; {n_uncertain} settled by RDKit"
        );
        // Enough verdicts of each kind that this module decided on its own.
        assert!(
            n_valid > 300 && n_invalid > 300 && n_certain_valid > 300 && n_certain_invalid > 300,
            "{n_valid} valid, {n_invalid} invalid, {n_uncertain} uncertain, \
             {n_certain_valid}/{n_certain_invalid} certain valid/invalid"
        );
    }
}
