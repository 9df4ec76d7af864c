//! Atom and molecule stability.
//!
//! - EDM protocol (Hoogeboom et al. 2022): an atom is stable when the sum of
//!   its bond orders is in the allowed set: H 1, C 4, N 3, O 2, F 1, B 3,
//!   Al 3, Si 4, P {3, 5}, S 4, Cl 1, As 3, Br 1, I 1, Hg {1, 2}, Bi {3, 5}.
//!   Charges are ignored (EDM has none).
//! - Model-bond protocol (MiDi, Vignac et al. 2023; SemlaFlow, Irwin et al.
//!   2024): the allowed set depends on the formal charge, e.g. C {0: [3, 4],
//!   ±1: 3}, N {0: [2, 3], +1: [2, 3, 4], −1: 2}, O {0: 2, +1: [2, 3], −1: 1};
//!   aromatic bonds count 1.5.
//!
//! Atom stability = stable atoms / atoms; molecule stability = molecules
//! whose atoms are all stable / molecules.
use crate::element::Element;
use crate::molecule::Molecule;

/// Which valence table to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ValenceTable {
    /// EDM, charge-blind.
    Edm,
    /// Charge-aware table for molecules with model/file bonds.
    ChargeAware,
}

/// Allowed bond-order sums for an element under EDM; empty if unknown.
pub fn edm_allowed(e: Element) -> &'static [u8] {
    match e.0 {
        1 => &[1],
        6 => &[4],
        7 => &[3],
        8 => &[2],
        9 => &[1],
        5 => &[3],
        13 => &[3],
        14 => &[4],
        15 => &[3, 5],
        16 => &[4],
        17 => &[1],
        33 => &[3],
        35 => &[1],
        53 => &[1],
        80 => &[1, 2],
        83 => &[3, 5],
        _ => &[],
    }
}

/// Allowed bond-order sums for (element, formal charge) in the charge-aware
/// table; empty if the combination is not allowed.
pub fn charge_aware_allowed(e: Element, charge: i8) -> &'static [u8] {
    match (e.0, charge) {
        (1, 0) => &[1],
        (1, 1) | (1, -1) => &[0],
        (6, 0) => &[3, 4],
        (6, 1) | (6, -1) => &[3],
        (7, 0) => &[2, 3],
        (7, 1) => &[2, 3, 4],
        (7, -1) => &[2],
        (8, 0) => &[2],
        (8, 1) => &[2, 3],
        (8, -1) => &[1],
        (9, 0) => &[1],
        (9, -1) => &[0],
        (5, 0) => &[3],
        (5, -1) => &[4],
        (13, 0) => &[3],
        (14, 0) => &[4],
        (15, 0) => &[3, 5],
        (15, 1) => &[4],
        (16, 0) => &[2, 6],
        (16, 1) => &[2, 3],
        (16, 2) => &[4],
        (16, 3) => &[5],
        (16, -1) => &[3],
        (17, 0) => &[1],
        (17, -1) => &[0],
        (33, 0) => &[3],
        (35, 0) => &[1],
        (35, 1) => &[2],
        (35, -1) => &[0],
        (53, 0) => &[1],
        (53, -1) => &[0],
        (80, 0) => &[1, 2],
        (83, 0) => &[3, 5],
        (34, 0) => &[2, 4, 6],
        _ => &[],
    }
}

/// Per-atom stability flags using the molecule's current bonds.
pub fn atom_stable_flags(m: &Molecule, table: ValenceTable) -> Vec<bool> {
    let sums = m.bond_order_sums();
    sums.iter()
        .enumerate()
        .map(|(i, &s)| {
            let allowed = match table {
                ValenceTable::Edm => edm_allowed(m.elements[i]),
                ValenceTable::ChargeAware => charge_aware_allowed(m.elements[i], m.charges[i]),
            };
            allowed.iter().any(|&a| (f64::from(a) - s).abs() < 1e-6)
        })
        .collect()
}

/// `(molecule stable, stable atoms, atoms)`.
pub fn check_stability(m: &Molecule, table: ValenceTable) -> (bool, usize, usize) {
    let f = atom_stable_flags(m, table);
    let k = f.iter().filter(|&&b| b).count();
    (k == f.len(), k, f.len())
}

/// Aggregate stability over many molecules.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StabilitySummary {
    pub n_molecules: usize,
    pub n_atoms: usize,
    pub stable_atoms: usize,
    pub stable_molecules: usize,
}

impl StabilitySummary {
    pub fn add(&mut self, (mol_ok, k, n): (bool, usize, usize)) {
        self.n_molecules += 1;
        self.n_atoms += n;
        self.stable_atoms += k;
        self.stable_molecules += usize::from(mol_ok);
    }
    /// Stable atoms / atoms (0 if no atoms).
    pub fn atom_stability(&self) -> f64 {
        ratio(self.stable_atoms, self.n_atoms)
    }
    /// Stable molecules / molecules (0 if none).
    pub fn mol_stability(&self) -> f64 {
        ratio(self.stable_molecules, self.n_molecules)
    }
}

pub(crate) fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::molecule::BondOrder;
    use ndarray::Array2;

    fn methane_like(extra_h: usize) -> Molecule {
        let n = 1 + extra_h;
        let mut els = vec![Element::C];
        els.extend(std::iter::repeat_n(Element::H, extra_h));
        let mut m = Molecule::new(els, Array2::zeros((n, 3))).expect("ok");
        for h in 1..n {
            m.add_bond(0, h, BondOrder::Single).expect("bond");
        }
        m
    }

    #[test]
    fn edm_and_charge_aware() {
        assert_eq!(
            check_stability(&methane_like(4), ValenceTable::Edm),
            (true, 5, 5)
        );
        assert_eq!(
            check_stability(&methane_like(3), ValenceTable::Edm),
            (false, 3, 4)
        );
        // CH3 radical-like carbon with 3 bonds is allowed by the charge-aware table
        assert!(check_stability(&methane_like(3), ValenceTable::ChargeAware).0);
        let mut m = methane_like(3);
        m.elements[0] = Element::N;
        m.charges[0] = 1;
        m.add_bond(0, 3, BondOrder::Single).expect("ok");
        let m4 = {
            let mut x = Molecule::new(
                vec![Element::N, Element::H, Element::H, Element::H, Element::H],
                Array2::zeros((5, 3)),
            )
            .expect("ok");
            for h in 1..5 {
                x.add_bond(0, h, BondOrder::Single).expect("ok");
            }
            x.charges[0] = 1;
            x
        };
        assert!(check_stability(&m4, ValenceTable::ChargeAware).0);
        assert!(!check_stability(&m4, ValenceTable::Edm).0);
        let mut s = StabilitySummary::default();
        s.add(check_stability(&methane_like(4), ValenceTable::Edm));
        s.add(check_stability(&methane_like(3), ValenceTable::Edm));
        assert_eq!(s.mol_stability(), 0.5);
        assert!((s.atom_stability() - 8.0 / 9.0).abs() < 1e-12);
    }
}
