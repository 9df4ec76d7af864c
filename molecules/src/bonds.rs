//! Bond inference from 3D coordinates, EDM protocol (Hoogeboom et al. 2022,
//! "Equivariant Diffusion for Molecule Generation in 3D", `bond_analyze.py`).
//! With `d` the distance in pm and margins m1 = 10, m2 = 5, m3 = 3: a pair is
//! bonded if `d < b1 + m1`; double if it has a double length and
//! `d < b2 + m2`; inside that test, triple if it has a triple length and
//! `d < b3 + m3`. Lengths (pm) are EDM's tables, which cover H, C, N, O, F and
//! the GEOM elements B, Si, P, S, Cl, As, Br, I (Al, Hg, Bi have no entries in
//! EDM, so they are never bonded). Tables are symmetrised: a pair listed in
//! either order counts. Neighbour search uses a uniform grid whose cell is the
//! largest single-bond cutoff among the elements present, so the cost is
//! O(n) for molecules of bounded density instead of O(n²).
use std::sync::OnceLock;

use petgraph::graph::NodeIndex;

use crate::element::Element;
use crate::molecule::{BondOrder, Molecule};

/// Molecules up to this many atoms are checked pair by pair (faster than
/// the grid at these sizes); larger ones use the spatial grid.
const ALL_PAIRS_MAX: usize = 192;

/// Margins in pm (EDM defaults).
pub const MARGINS_PM: [f64; 3] = [10.0, 5.0, 3.0];

const SINGLE: &[(&str, &str, u16)] = &[
    ("H", "H", 74),
    ("H", "C", 109),
    ("H", "N", 101),
    ("H", "O", 96),
    ("H", "F", 92),
    ("H", "B", 119),
    ("H", "Si", 148),
    ("H", "P", 144),
    ("H", "As", 152),
    ("H", "S", 134),
    ("H", "Cl", 127),
    ("H", "Br", 141),
    ("H", "I", 161),
    ("C", "C", 154),
    ("C", "N", 147),
    ("C", "O", 143),
    ("C", "F", 135),
    ("C", "Si", 185),
    ("C", "P", 184),
    ("C", "S", 182),
    ("C", "Cl", 177),
    ("C", "Br", 194),
    ("C", "I", 214),
    ("N", "N", 145),
    ("N", "O", 140),
    ("N", "F", 136),
    ("N", "Cl", 175),
    ("N", "Br", 214),
    ("N", "S", 168),
    ("N", "I", 222),
    ("N", "P", 177),
    ("O", "O", 148),
    ("O", "F", 142),
    ("O", "Br", 172),
    ("O", "S", 151),
    ("O", "P", 163),
    ("O", "Si", 163),
    ("O", "Cl", 164),
    ("O", "I", 194),
    ("F", "F", 142),
    ("F", "S", 158),
    ("F", "Si", 160),
    ("F", "Cl", 166),
    ("F", "Br", 178),
    ("F", "P", 156),
    ("F", "I", 187),
    ("B", "Cl", 175),
    ("Si", "Si", 233),
    ("Si", "S", 200),
    ("Si", "Cl", 202),
    ("Si", "Br", 215),
    ("Si", "I", 243),
    ("Cl", "Cl", 199),
    ("Cl", "P", 203),
    ("Cl", "S", 207),
    ("Cl", "Br", 214),
    ("S", "S", 204),
    ("S", "Br", 225),
    ("S", "P", 210),
    ("S", "I", 234),
    ("Br", "Br", 228),
    ("Br", "P", 222),
    ("P", "P", 221),
    ("I", "I", 266),
];
const DOUBLE: &[(&str, &str, u16)] = &[
    ("C", "C", 134),
    ("C", "N", 129),
    ("C", "O", 120),
    ("C", "S", 160),
    ("N", "N", 125),
    ("N", "O", 121),
    ("O", "O", 121),
    ("O", "P", 150),
    ("P", "S", 186),
];
const TRIPLE: &[(&str, &str, u16)] = &[
    ("C", "C", 120),
    ("C", "N", 116),
    ("C", "O", 113),
    ("N", "N", 110),
];

/// Symmetric bond-length tables indexed by atomic number (0 = no entry).
pub struct BondTables {
    single: Vec<[u16; 119]>,
    double: Vec<[u16; 119]>,
    triple: Vec<[u16; 119]>,
}

fn fill(list: &[(&str, &str, u16)]) -> Vec<[u16; 119]> {
    let mut t = vec![[0u16; 119]; 119];
    for &(a, b, l) in list {
        let (Some(a), Some(b)) = (Element::from_symbol(a), Element::from_symbol(b)) else {
            continue;
        };
        t[a.0 as usize][b.0 as usize] = l;
        t[b.0 as usize][a.0 as usize] = l;
    }
    t
}

impl BondTables {
    /// The EDM tables.
    pub fn edm() -> &'static BondTables {
        static T: OnceLock<BondTables> = OnceLock::new();
        T.get_or_init(|| BondTables {
            single: fill(SINGLE),
            double: fill(DOUBLE),
            triple: fill(TRIPLE),
        })
    }
    /// Single-bond length in pm, if tabulated.
    pub fn single_pm(&self, a: Element, b: Element) -> Option<u16> {
        Self::get(&self.single, a, b)
    }
    /// Double-bond length in pm, if tabulated.
    pub fn double_pm(&self, a: Element, b: Element) -> Option<u16> {
        Self::get(&self.double, a, b)
    }
    /// Triple-bond length in pm, if tabulated.
    pub fn triple_pm(&self, a: Element, b: Element) -> Option<u16> {
        Self::get(&self.triple, a, b)
    }
    fn get(t: &[[u16; 119]], a: Element, b: Element) -> Option<u16> {
        let v = *t.get(a.0 as usize)?.get(b.0 as usize)?;
        (v > 0).then_some(v)
    }
    /// EDM `get_bond_order`: 0 (none), 1, 2 or 3 for distance `d_ang` in Å.
    pub fn order(&self, a: Element, b: Element, d_ang: f64) -> u8 {
        let (ia, ib) = (a.0 as usize, b.0 as usize);
        if ia >= 119 || ib >= 119 {
            return 0;
        }
        let d = 100.0 * d_ang;
        let b1 = self.single[ia][ib];
        // NaN distances are never bonded (EDM's `distance < b1 + m1` is false).
        if b1 == 0 || d.is_nan() || d >= f64::from(b1) + MARGINS_PM[0] {
            return 0;
        }
        let b2 = self.double[ia][ib];
        if b2 > 0 && d < f64::from(b2) + MARGINS_PM[1] {
            let b3 = self.triple[ia][ib];
            if b3 > 0 && d < f64::from(b3) + MARGINS_PM[2] {
                return 3;
            }
            return 2;
        }
        1
    }
    /// Largest single-bond cutoff (Å) among pairs of the given elements.
    pub fn max_cutoff_ang(&self, elements: &[Element]) -> f64 {
        let mut present = [false; 119];
        for e in elements {
            if let Some(p) = present.get_mut(e.0 as usize) {
                *p = true;
            }
        }
        let zs: Vec<usize> = (0..119).filter(|&z| present[z]).collect();
        let mut m = 0u16;
        for &a in &zs {
            for &b in &zs {
                m = m.max(self.single[a][b]);
            }
        }
        (f64::from(m) + MARGINS_PM[0]) / 100.0
    }
}

fn order_of(o: u8) -> BondOrder {
    match o {
        3 => BondOrder::Triple,
        2 => BondOrder::Double,
        _ => BondOrder::Single,
    }
}

/// All bonded pairs `(i, j, order)` with `i < j`, ordered by `(i, j)`.
pub fn infer_bond_list(
    elements: &[Element],
    positions: &ndarray::Array2<f64>,
) -> Vec<(usize, usize, BondOrder)> {
    let mut raw = Vec::with_capacity(elements.len() + elements.len() / 2);
    infer_bonds_into(elements, positions, &mut raw);
    raw.into_iter()
        .map(|(i, j, o)| (i as usize, j as usize, order_of(o)))
        .collect()
}

/// [`infer_bond_list`] into a reused buffer: `(i, j, order 1..=3)`, `i < j`,
/// ordered by `(i, j)`; `out` is cleared first.
pub fn infer_bonds_into(
    elements: &[Element],
    positions: &ndarray::Array2<f64>,
    out: &mut Vec<(u32, u32, u8)>,
) {
    out.clear();
    let t = BondTables::edm();
    let n = elements.len().min(positions.nrows());
    let p = |i: usize| [positions[[i, 0]], positions[[i, 1]], positions[[i, 2]]];
    let dist = |a: [f64; 3], b: [f64; 3]| {
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
    };
    // Exact EDM order for a pair, skipping the square root when the squared
    // distance is clearly beyond the single-bond cutoff (the 1e-9 Å slack is
    // far above rounding, so the verdict is the same as `order`).
    let pair = |i: usize, j: usize, a: [f64; 3], b: [f64; 3], out: &mut Vec<(u32, u32, u8)>| {
        let b1 = t.single_pm(elements[i], elements[j]).unwrap_or(0);
        if b1 == 0 {
            return;
        }
        let d2 = (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2);
        let c = (f64::from(b1) + MARGINS_PM[0]) * 0.01 + 1e-9;
        if d2 >= c * c {
            return;
        }
        let o = t.order(elements[i], elements[j], dist(a, b));
        if o > 0 {
            out.push((i as u32, j as u32, o));
        }
    };
    if n <= ALL_PAIRS_MAX {
        // Small molecules: all pairs, with the squared cutoffs of the (at most
        // 8) element kinds present in a small table; a negative cutoff marks
        // an untabulated pair (never bonded). NaN distances fall through to
        // `order`, which rejects them.
        let mut pts_s = [[0.0f64; 3]; 64];
        let mut kind_s = [0u8; 64];
        let (mut pts_v, mut kind_v) = (Vec::new(), Vec::new());
        let (pts, kind): (&mut [[f64; 3]], &mut [u8]) = if n <= 64 {
            (&mut pts_s[..n], &mut kind_s[..n])
        } else {
            pts_v.resize(n, [0.0; 3]);
            kind_v.resize(n, 0);
            (&mut pts_v[..], &mut kind_v[..])
        };
        let mut zs = [0u8; 8];
        let mut nk = 0;
        let mut few_kinds = true;
        for i in 0..n {
            pts[i] = p(i);
            let z = elements[i].0;
            if let Some(k) = zs[..nk].iter().position(|&x| x == z) {
                kind[i] = k as u8;
            } else if nk < zs.len() {
                zs[nk] = z;
                kind[i] = nk as u8;
                nk += 1;
            } else {
                few_kinds = false;
            }
        }
        if few_kinds {
            let mut cut2 = [[-1.0f64; 8]; 8];
            for a in 0..nk {
                for b in 0..nk {
                    if let Some(b1) = t.single_pm(Element(zs[a]), Element(zs[b])) {
                        let c = (f64::from(b1) + MARGINS_PM[0]) * 0.01 + 1e-9;
                        cut2[a][b] = c * c;
                    }
                }
            }
            for i in 0..n {
                let a = pts[i];
                let row = &cut2[kind[i] as usize];
                let rest = pts[i + 1..].iter().zip(&kind[i + 1..]);
                for (j, (b, &kj)) in (i + 1..).zip(rest) {
                    let d2 = (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2);
                    if d2 >= row[kj as usize] {
                        continue;
                    }
                    let o = t.order(elements[i], elements[j], dist(a, *b));
                    if o > 0 {
                        out.push((i as u32, j as u32, o));
                    }
                }
            }
        } else {
            for i in 0..n {
                for j in i + 1..n {
                    pair(i, j, pts[i], pts[j], out);
                }
            }
        }
        return;
    }
    // Uniform grid; cell = max cutoff so neighbours lie in the 27 adjacent
    // cells. Atoms with non-finite coordinates bond to nothing here.
    let cell = t.max_cutoff_ang(elements).max(1e-3);
    let pts: Vec<[f64; 3]> = (0..n).map(p).collect();
    let finite = |q: &[f64; 3]| q.iter().all(|v| v.is_finite());
    let mut lo = [f64::INFINITY; 3];
    for q in pts.iter().filter(|q| finite(q)) {
        for k in 0..3 {
            lo[k] = lo[k].min(q[k]);
        }
    }
    let key = |q: &[f64; 3]| -> [i64; 3] {
        [
            ((q[0] - lo[0]) / cell) as i64,
            ((q[1] - lo[1]) / cell) as i64,
            ((q[2] - lo[2]) / cell) as i64,
        ]
    };
    let mut dims = [1i64; 3];
    for q in pts.iter().filter(|q| finite(q)) {
        let k = key(q);
        for a in 0..3 {
            dims[a] = dims[a].max(k[a].saturating_add(1));
        }
    }
    let n_cells = dims
        .iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(d.max(1) as u64));
    if n_cells <= 16 * n as u64 + 64 {
        // Dense cell array: atoms sorted by cell (counting sort, ascending
        // atom index inside a cell), `start[c]..start[c + 1]` per cell.
        let n_cells = n_cells as usize;
        let lin = |k: [i64; 3]| ((k[0] * dims[1] + k[1]) * dims[2] + k[2]) as usize;
        let mut start = vec![0u32; n_cells + 1];
        for q in pts.iter().filter(|q| finite(q)) {
            start[lin(key(q)) + 1] += 1;
        }
        for c in 0..n_cells {
            start[c + 1] += start[c];
        }
        let mut fill = start.clone();
        let mut sorted = vec![0u32; start[n_cells] as usize];
        for (i, q) in pts.iter().enumerate().filter(|(_, q)| finite(q)) {
            let c = lin(key(q));
            sorted[fill[c] as usize] = i as u32;
            fill[c] += 1;
        }
        for (i, q) in pts.iter().enumerate().filter(|(_, q)| finite(q)) {
            let k = key(q);
            for x in (k[0] - 1).max(0)..=(k[0] + 1).min(dims[0] - 1) {
                for y in (k[1] - 1).max(0)..=(k[1] + 1).min(dims[1] - 1) {
                    for z in (k[2] - 1).max(0)..=(k[2] + 1).min(dims[2] - 1) {
                        let c = lin([x, y, z]);
                        for &j in &sorted[start[c] as usize..start[c + 1] as usize] {
                            let j = j as usize;
                            if j > i {
                                pair(i, j, *q, pts[j], out);
                            }
                        }
                    }
                }
            }
        }
    } else {
        // Sparse (far-flung atoms): hash map of occupied cells.
        let mut grid: std::collections::HashMap<[i64; 3], Vec<usize>> =
            std::collections::HashMap::new();
        for (i, q) in pts.iter().enumerate() {
            if finite(q) {
                grid.entry(key(q)).or_default().push(i);
            }
        }
        for (i, q) in pts.iter().enumerate() {
            if !finite(q) {
                continue;
            }
            let k = key(q);
            for dx in -1..=1 {
                for dy in -1..=1 {
                    for dz in -1..=1 {
                        if let Some(v) = grid.get(&[k[0] + dx, k[1] + dy, k[2] + dz]) {
                            for &j in v {
                                if j > i {
                                    pair(i, j, *q, pts[j], out);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out.sort_unstable_by_key(|&(i, j, _)| (i, j));
}

/// Replace the molecule's bonds with EDM-inferred ones.
pub fn infer_bonds(m: &mut Molecule) {
    let list = infer_bond_list(&m.elements, &m.positions);
    m.clear_bonds();
    for (i, j, o) in list {
        m.bonds.add_edge(NodeIndex::new(i), NodeIndex::new(j), o);
    }
}

/// A copy of `m` with EDM-inferred bonds.
pub fn with_inferred_bonds(m: &Molecule) -> Molecule {
    let mut c = m.clone();
    infer_bonds(&mut c);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn bond_lengths_by_order() {
        let e = |s| Element::from_symbol(s).unwrap();
        let t = BondTables::edm();
        assert_eq!(t.single_pm(e("C"), e("O")), Some(143));
        assert_eq!(t.double_pm(e("O"), e("C")), Some(120));
        assert_eq!(t.triple_pm(e("N"), e("C")), Some(116));
        assert_eq!(t.triple_pm(e("C"), e("S")), None);
        assert_eq!(t.double_pm(e("H"), e("H")), None);
    }

    #[test]
    fn edm_rule() {
        let t = BondTables::edm();
        // C-C: single < 1.64, double < 1.39, triple < 1.23
        assert_eq!(t.order(Element::C, Element::C, 1.63), 1);
        assert_eq!(t.order(Element::C, Element::C, 1.65), 0);
        assert_eq!(t.order(Element::C, Element::C, 1.38), 2);
        assert_eq!(t.order(Element::C, Element::C, 1.22), 3);
        // H-F has no double length
        assert_eq!(t.order(Element::H, Element::F, 0.5), 1);
        // absent pair
        assert_eq!(t.order(Element::HG, Element::C, 1.0), 0);
        // symmetric
        assert_eq!(
            t.order(Element::S, Element::C, 1.6),
            t.order(Element::C, Element::S, 1.6)
        );
        assert_eq!(t.order(Element::CL, Element::B, 1.8), 1);
    }

    #[test]
    fn grid_equals_all_pairs() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let t = BondTables::edm();
        let many = [
            Element::C,
            Element::H,
            Element::N,
            Element::O,
            Element::F,
            Element::S,
            Element::CL,
            Element::BR,
            Element::P,
            Element::I,
        ];
        // (atoms, kinds, box edge Å, far outlier): all-pairs with few and with
        // many kinds, dense grid, sparse grid.
        for (n, kinds, edge, outlier) in [
            (30, 4, 4.0, false),
            (150, 4, 9.0, false),
            (150, 10, 9.0, false),
            (400, 4, 12.0, false),
            (400, 10, 12.0, true),
        ] {
            let els: Vec<Element> = (0..n).map(|i| many[i % kinds]).collect();
            let mut pos = Array2::from_shape_fn((n, 3), |_| rng.random_range(0.0..edge));
            if outlier {
                pos[[n - 1, 0]] = 1e6;
            }
            pos[[3, 1]] = f64::NAN;
            let fast = infer_bond_list(&els, &pos);
            let mut slow = Vec::new();
            for i in 0..n {
                for j in i + 1..n {
                    let d = (&pos.row(i) - &pos.row(j)).mapv(|x| x * x).sum().sqrt();
                    let o = t.order(els[i], els[j], d);
                    if o > 0 {
                        slow.push((i, j, order_of(o)));
                    }
                }
            }
            assert!(slow.len() > n / 4, "{n} atoms: {} bonds", slow.len());
            assert!(
                slow.iter().all(|&(i, j, _)| i != 3 && j != 3),
                "NaN atom bonded"
            );
            assert_eq!(fast, slow, "{n} atoms, {kinds} kinds, outlier {outlier}");
        }
    }
}
