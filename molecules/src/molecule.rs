//! The `Molecule` type: atoms (element, formal charge, isotope, radical),
//! 3D positions `[n_atoms, 3]` in Å, bonds as a petgraph undirected graph whose
//! node `i` is atom `i` and whose edge weight is the bond order, ordered
//! key/value properties (SDF data fields) and a title. `ConformerSet` shares
//! one topology between several position arrays.
use ndarray::Array2;
use petgraph::graph::{EdgeIndex, NodeIndex, UnGraph};
use petgraph::visit::EdgeRef;

use crate::element::Element;
use crate::error::{MolError, Result};

/// Bond order (the edge weight of [`Molecule::bonds`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum BondOrder {
    Single,
    Double,
    Triple,
    Aromatic,
}

impl BondOrder {
    /// MDL bond type code (1, 2, 3, 4).
    pub fn mdl_code(self) -> u8 {
        match self {
            BondOrder::Single => 1,
            BondOrder::Double => 2,
            BondOrder::Triple => 3,
            BondOrder::Aromatic => 4,
        }
    }
    /// From an MDL bond type code; `None` for query types (5..=8) and others.
    pub fn from_mdl_code(c: u32) -> Option<BondOrder> {
        Some(match c {
            1 => BondOrder::Single,
            2 => BondOrder::Double,
            3 => BondOrder::Triple,
            4 => BondOrder::Aromatic,
            _ => return None,
        })
    }
    /// Integer order used by the EDM valence sum (aromatic counts 1.5 in
    /// [`BondOrder::valence_f64`]; EDM has no aromatic bonds).
    pub fn valence_f64(self) -> f64 {
        match self {
            BondOrder::Single => 1.0,
            BondOrder::Double => 2.0,
            BondOrder::Triple => 3.0,
            BondOrder::Aromatic => 1.5,
        }
    }
    /// Short label used in distribution reports.
    pub fn label(self) -> &'static str {
        match self {
            BondOrder::Single => "single",
            BondOrder::Double => "double",
            BondOrder::Triple => "triple",
            BondOrder::Aromatic => "aromatic",
        }
    }
}

/// Bond stereo flag as in the MDL bond block (V2000 codes; V3000 CFG maps onto
/// them). Only stored so that files round-trip and RDKit sees the wedges.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum BondStereo {
    #[default]
    None,
    /// V2000 1 (wedge up).
    Up,
    /// V2000 6 (hash down).
    Down,
    /// V2000 4 on single bonds (either).
    Either,
    /// V2000 3 on double bonds (cis/trans unknown).
    CisTransEither,
}

impl BondStereo {
    pub fn v2000_code(self) -> u8 {
        match self {
            BondStereo::None => 0,
            BondStereo::Up => 1,
            BondStereo::Down => 6,
            BondStereo::Either => 4,
            BondStereo::CisTransEither => 3,
        }
    }
    pub fn from_v2000(code: u32) -> BondStereo {
        match code {
            1 => BondStereo::Up,
            6 => BondStereo::Down,
            4 => BondStereo::Either,
            3 => BondStereo::CisTransEither,
            _ => BondStereo::None,
        }
    }
}

/// One molecule. Invariants (checked by [`Molecule::validate`]):
/// `elements`, `charges`, `isotopes`, `radicals` all have length `n_atoms`,
/// `positions` is `[n_atoms, 3]`, the graph has exactly `n_atoms` nodes and
/// `bond_stereo` is empty or has one entry per edge (by `EdgeIndex`).
#[derive(Debug, Clone)]
pub struct Molecule {
    /// First header line of an SDF record / XYZ comment line.
    pub title: String,
    /// Element of each atom.
    pub elements: Vec<Element>,
    /// Formal charge of each atom.
    pub charges: Vec<i8>,
    /// Isotope mass number per atom, 0 = natural abundance.
    pub isotopes: Vec<u16>,
    /// Radical state per atom (MDL `M  RAD`: 0 none, 1 singlet, 2 doublet, 3 triplet).
    pub radicals: Vec<u8>,
    /// Cartesian coordinates in Å. // [n_atoms, 3]
    pub positions: Array2<f64>,
    /// Bond graph: node `i` is atom `i`, edge weight is the bond order.
    pub bonds: UnGraph<(), BondOrder>,
    /// Stereo flag per edge (index = `EdgeIndex::index()`), or empty.
    pub bond_stereo: Vec<BondStereo>,
    /// Ordered data fields (`> <name>` blocks), name -> value (multi-line values joined by `\n`).
    pub properties: Vec<(String, String)>,
    /// Whether the coordinates are 3D (SDF header dimension code, else any z != 0).
    pub is_3d: bool,
}

impl PartialEq for Molecule {
    /// Equal when every field matches and the bond lists (in edge order) match.
    fn eq(&self, o: &Self) -> bool {
        self.title == o.title
            && self.elements == o.elements
            && self.charges == o.charges
            && self.isotopes == o.isotopes
            && self.radicals == o.radicals
            && self.positions == o.positions
            && self.properties == o.properties
            && self.is_3d == o.is_3d
            && self.bond_list().eq(o.bond_list())
    }
}

impl Default for Molecule {
    fn default() -> Self {
        Molecule::new(Vec::new(), Array2::zeros((0, 3)))
            .unwrap_or_else(|_| unreachable!("empty molecule is valid"))
    }
}

impl Molecule {
    /// Atoms only (no bonds), neutral, natural isotopes.
    pub fn new(elements: Vec<Element>, positions: Array2<f64>) -> Result<Molecule> {
        let n = elements.len();
        if positions.dim() != (n, 3) {
            return Err(MolError::Invalid {
                title: String::new(),
                what: format!(
                    "positions have shape {:?}, expected ({n}, 3)",
                    positions.dim()
                ),
            });
        }
        let mut bonds = UnGraph::with_capacity(n, n + n / 2);
        for _ in 0..n {
            bonds.add_node(());
        }
        let is_3d = positions.column(2).iter().any(|&z| z != 0.0);
        Ok(Molecule {
            title: String::new(),
            elements,
            charges: vec![0; n],
            isotopes: vec![0; n],
            radicals: vec![0; n],
            positions,
            bonds,
            bond_stereo: Vec::new(),
            properties: Vec::new(),
            is_3d,
        })
    }

    /// Number of atoms.
    pub fn n_atoms(&self) -> usize {
        self.elements.len()
    }
    /// Number of bonds.
    pub fn n_bonds(&self) -> usize {
        self.bonds.edge_count()
    }
    /// Sum of formal charges.
    pub fn total_charge(&self) -> i32 {
        self.charges.iter().map(|&c| c as i32).sum()
    }

    /// Add (or overwrite the order of) the bond `a`–`b`. Errors on self-bonds
    /// or atom indices out of range.
    pub fn add_bond(&mut self, a: usize, b: usize, order: BondOrder) -> Result<EdgeIndex> {
        self.add_bond_stereo(a, b, order, BondStereo::None)
    }

    /// Add a bond with a stereo flag.
    pub fn add_bond_stereo(
        &mut self,
        a: usize,
        b: usize,
        order: BondOrder,
        stereo: BondStereo,
    ) -> Result<EdgeIndex> {
        let n = self.n_atoms();
        if a >= n || b >= n || a == b {
            return Err(MolError::Invalid {
                title: self.title.clone(),
                what: format!("bond {a}-{b} invalid for {n} atoms (0-based, no self-bonds)"),
            });
        }
        let (na, nb) = (NodeIndex::new(a), NodeIndex::new(b));
        if let Some(e) = self.bonds.find_edge(na, nb) {
            self.bonds[e] = order;
            if let Some(s) = self.bond_stereo.get_mut(e.index()) {
                *s = stereo;
            }
            return Ok(e);
        }
        let e = self.bonds.add_edge(na, nb, order);
        if stereo != BondStereo::None && self.bond_stereo.is_empty() {
            self.bond_stereo = vec![BondStereo::None; e.index()];
        }
        if !self.bond_stereo.is_empty() || stereo != BondStereo::None {
            self.bond_stereo.push(stereo);
        }
        Ok(e)
    }

    /// Remove every bond.
    pub fn clear_bonds(&mut self) {
        self.bonds.clear_edges();
        self.bond_stereo.clear();
    }

    /// Bonds as `(a, b, order, stereo)` with `a`, `b` 0-based, in edge order.
    pub fn bond_list(&self) -> impl Iterator<Item = (usize, usize, BondOrder, BondStereo)> + '_ {
        self.bonds.edge_references().map(move |e| {
            let st = self
                .bond_stereo
                .get(e.id().index())
                .copied()
                .unwrap_or_default();
            (e.source().index(), e.target().index(), *e.weight(), st)
        })
    }

    /// Sum of bond orders at each atom (aromatic = 1.5).
    pub fn bond_order_sums(&self) -> Vec<f64> {
        let mut s = vec![0.0; self.n_atoms()];
        for e in self.bonds.edge_references() {
            let v = e.weight().valence_f64();
            s[e.source().index()] += v;
            s[e.target().index()] += v;
        }
        s
    }

    /// Look up a property by name.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// Set (replace or append) a property.
    pub fn set_property(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.properties.iter_mut().find(|(k, _)| *k == name) {
            Some(kv) => kv.1 = value,
            None => self.properties.push((name, value)),
        }
    }

    /// Connected components as atom-index lists (components ordered by their
    /// smallest atom index, atoms ascending).
    pub fn fragments(&self) -> Vec<Vec<usize>> {
        let n = self.n_atoms();
        let mut comp = vec![usize::MAX; n];
        let mut out: Vec<Vec<usize>> = Vec::new();
        let mut stack = Vec::new();
        for s in 0..n {
            if comp[s] != usize::MAX {
                continue;
            }
            let id = out.len();
            let mut atoms = Vec::new();
            comp[s] = id;
            stack.push(s);
            while let Some(u) = stack.pop() {
                atoms.push(u);
                for v in self.bonds.neighbors(NodeIndex::new(u)) {
                    if comp[v.index()] == usize::MAX {
                        comp[v.index()] = id;
                        stack.push(v.index());
                    }
                }
            }
            atoms.sort_unstable();
            out.push(atoms);
        }
        out
    }

    /// Number of rings (cyclomatic number / SSSR size): `E - V + C`.
    pub fn ring_count(&self) -> usize {
        (self.n_bonds() + self.fragments().len()).saturating_sub(self.n_atoms())
    }

    /// The sub-molecule induced by `atoms` (in the given order), with bonds,
    /// charges, isotopes, positions; properties and title are copied.
    pub fn subset(&self, atoms: &[usize]) -> Result<Molecule> {
        let n = self.n_atoms();
        let mut map = vec![usize::MAX; n];
        for (new, &old) in atoms.iter().enumerate() {
            if old >= n {
                return Err(MolError::Invalid {
                    title: self.title.clone(),
                    what: format!("subset atom {old} >= {n}"),
                });
            }
            map[old] = new;
        }
        let pos = self.positions.select(ndarray::Axis(0), atoms);
        let mut m = Molecule::new(atoms.iter().map(|&i| self.elements[i]).collect(), pos)?;
        m.title = self.title.clone();
        m.charges = atoms.iter().map(|&i| self.charges[i]).collect();
        m.isotopes = atoms.iter().map(|&i| self.isotopes[i]).collect();
        m.radicals = atoms.iter().map(|&i| self.radicals[i]).collect();
        m.properties = self.properties.clone();
        m.is_3d = self.is_3d;
        for (a, b, o, s) in self.bond_list() {
            if map[a] != usize::MAX && map[b] != usize::MAX {
                m.add_bond_stereo(map[a], map[b], o, s)?;
            }
        }
        Ok(m)
    }

    /// Check the invariants listed on the type.
    pub fn validate(&self) -> Result<()> {
        let n = self.n_atoms();
        let bad = |what: String| {
            Err(MolError::Invalid {
                title: self.title.clone(),
                what,
            })
        };
        if self.charges.len() != n || self.isotopes.len() != n || self.radicals.len() != n {
            return bad(format!(
                "per-atom arrays disagree: elements {n}, charges {}, isotopes {}, radicals {}",
                self.charges.len(),
                self.isotopes.len(),
                self.radicals.len()
            ));
        }
        if self.positions.dim() != (n, 3) {
            return bad(format!(
                "positions shape {:?}, expected ({n}, 3)",
                self.positions.dim()
            ));
        }
        if self.bonds.node_count() != n {
            return bad(format!(
                "bond graph has {} nodes, expected {n}",
                self.bonds.node_count()
            ));
        }
        if !self.bond_stereo.is_empty() && self.bond_stereo.len() != self.n_bonds() {
            return bad(format!(
                "bond_stereo has {} entries for {} bonds",
                self.bond_stereo.len(),
                self.n_bonds()
            ));
        }
        Ok(())
    }

    /// Molecular formula in Hill order (C, H, then alphabetical) over explicit atoms.
    pub fn formula(&self) -> String {
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for e in &self.elements {
            *counts.entry(e.symbol()).or_default() += 1;
        }
        let mut out = String::new();
        let mut push = |s: &str, c: usize| {
            out.push_str(s);
            if c > 1 {
                out.push_str(&c.to_string());
            }
        };
        let has_c = counts.contains_key("C");
        if has_c {
            for s in ["C", "H"] {
                if let Some(c) = counts.remove(s) {
                    push(s, c);
                }
            }
        }
        for (s, c) in counts {
            push(s, c);
        }
        out
    }
}

/// Several conformers (position arrays) sharing one topology.
#[derive(Debug, Clone, PartialEq)]
pub struct ConformerSet {
    /// Topology; its own `positions` is the first conformer.
    pub molecule: Molecule,
    /// All conformers, each `[n_atoms, 3]` in Å (includes the first).
    pub conformers: Vec<Array2<f64>>,
}

impl ConformerSet {
    /// A set holding one conformer: the molecule's own positions.
    pub fn from_molecule(molecule: Molecule) -> ConformerSet {
        let conformers = vec![molecule.positions.clone()];
        ConformerSet {
            molecule,
            conformers,
        }
    }
    /// Add a conformer; errors if the shape does not match.
    pub fn push(&mut self, positions: Array2<f64>) -> Result<()> {
        let n = self.molecule.n_atoms();
        if positions.dim() != (n, 3) {
            return Err(MolError::Invalid {
                title: self.molecule.title.clone(),
                what: format!("conformer shape {:?}, expected ({n}, 3)", positions.dim()),
            });
        }
        self.conformers.push(positions);
        Ok(())
    }
    /// Number of conformers.
    pub fn len(&self) -> usize {
        self.conformers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.conformers.is_empty()
    }
    /// Conformer `i` as a full molecule.
    pub fn conformer(&self, i: usize) -> Option<Molecule> {
        let pos = self.conformers.get(i)?;
        let mut m = self.molecule.clone();
        m.positions = pos.clone();
        Some(m)
    }
    /// Group consecutive molecules with identical topology (elements, charges
    /// and bonds) into conformer sets — e.g. a multi-conformer SDF.
    pub fn group(molecules: Vec<Molecule>) -> Vec<ConformerSet> {
        let mut out: Vec<ConformerSet> = Vec::new();
        for m in molecules {
            if let Some(last) = out.last_mut() {
                let t = &last.molecule;
                if t.elements == m.elements
                    && t.charges == m.charges
                    && t.bond_list()
                        .map(|(a, b, o, _)| (a, b, o))
                        .eq(m.bond_list().map(|(a, b, o, _)| (a, b, o)))
                {
                    last.conformers.push(m.positions);
                    continue;
                }
            }
            out.push(ConformerSet::from_molecule(m));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn build_and_fragments() {
        let mut m = Molecule::new(
            vec![Element::C, Element::O, Element::N],
            array![[0.0, 0.0, 0.0], [1.2, 0.0, 0.0], [5.0, 0.0, 0.0]],
        )
        .expect("shape ok");
        m.add_bond(0, 1, BondOrder::Double).expect("valid");
        assert!(m.add_bond(0, 0, BondOrder::Single).is_err());
        assert!(m.add_bond(0, 7, BondOrder::Single).is_err());
        assert_eq!(m.n_bonds(), 1);
        assert_eq!(m.fragments(), vec![vec![0, 1], vec![2]]);
        assert_eq!(m.bond_order_sums(), vec![2.0, 2.0, 0.0]);
        assert_eq!(m.ring_count(), 0);
        m.validate().expect("valid");
        let s = m.subset(&[1, 0]).expect("ok");
        assert_eq!(s.elements, vec![Element::O, Element::C]);
        assert_eq!(s.n_bonds(), 1);
        assert_eq!(m.formula(), "CNO");
    }

    #[test]
    fn shape_mismatch_is_error() {
        assert!(Molecule::new(vec![Element::C], Array2::zeros((2, 3))).is_err());
    }
}
