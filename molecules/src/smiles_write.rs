//! A plain (non-canonical) SMILES writer for RDKit input: DFS over the bond
//! graph with ring-closure digits, hydrogens as explicit `[H]` atoms. RDKit's
//! `SmilesToMol` then removes those hydrogens *keeping them as explicit H
//! counts* before sanitising, so valence errors are detected exactly as
//! `SanitizeMol` on the all-atom molecule would, and heavy atoms keep
//! implicit hydrogens (RDKit `Chem.Atom(symbol)` semantics). Used only for
//! molecules it represents exactly: organic-subset elements and H, no
//! charges/isotopes/radicals, no aromatic bonds, no stereo information.
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;

use crate::molecule::{BondOrder, Molecule};

fn organic(z: u8) -> Option<&'static str> {
    Some(match z {
        1 => "[H]",
        5 => "B",
        6 => "C",
        7 => "N",
        8 => "O",
        9 => "F",
        15 => "P",
        16 => "S",
        17 => "Cl",
        35 => "Br",
        53 => "I",
        _ => return None,
    })
}

fn bond_sym(o: BondOrder) -> &'static str {
    match o {
        BondOrder::Single => "",
        BondOrder::Double => "=",
        BondOrder::Triple => "#",
        BondOrder::Aromatic => ":",
    }
}

/// SMILES for `m`, or `None` when the molecule is outside the exact subset
/// (see module docs) or needs more than 99 simultaneous ring closures.
pub(crate) fn plain_smiles(m: &Molecule) -> Option<String> {
    let n = m.n_atoms();
    if n == 0
        || n > 2000
        || !m.bond_stereo.is_empty()
        || m.is_3d
        || m.positions.iter().any(|&x| x != 0.0)
    {
        return None;
    }
    if m.charges.iter().any(|&c| c != 0)
        || m.isotopes.iter().any(|&c| c != 0)
        || m.radicals.iter().any(|&c| c != 0)
    {
        return None;
    }
    if m.bonds.edge_weights().any(|&o| o == BondOrder::Aromatic) {
        return None;
    }
    // RDKit's SMILES parser folds a degree-1 `[H]` into its neighbour even
    // through a double or triple bond, hiding the hydrogen's valence error
    // that `SanitizeMol` on the all-atom molecule reports: leave such
    // molecules to the mol-block route.
    if m.bonds.edge_references().any(|e| {
        *e.weight() != BondOrder::Single
            && (m.elements[e.source().index()].0 == 1 || m.elements[e.target().index()].0 == 1)
    }) {
        return None;
    }
    let syms: Vec<&str> = m
        .elements
        .iter()
        .map(|e| organic(e.0))
        .collect::<Option<_>>()?;
    // Pass 1: iterative DFS -> preorder, tree children, ring-closure edges.
    let mut order = vec![usize::MAX; n];
    let mut parent = vec![usize::MAX; n];
    let mut children: Vec<Vec<(usize, BondOrder)>> = vec![Vec::new(); n];
    let mut rings: Vec<Vec<(usize, BondOrder)>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    let mut k = 0;
    for s in 0..n {
        if order[s] != usize::MAX {
            continue;
        }
        roots.push(s);
        let mut stack = vec![s];
        while let Some(u) = stack.pop() {
            if order[u] != usize::MAX {
                continue;
            }
            order[u] = k;
            k += 1;
            if parent[u] != usize::MAX {
                let p = parent[u];
                let o = m.bonds[m.bonds.find_edge(NodeIndex::new(p), NodeIndex::new(u))?];
                children[p].push((u, o));
            }
            let mut nb: Vec<(usize, BondOrder)> = m
                .bonds
                .edges(NodeIndex::new(u))
                .map(|e| (e.target().index() ^ e.source().index() ^ u, *e.weight()))
                .collect();
            nb.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
            for (v, _) in nb {
                if order[v] == usize::MAX {
                    parent[v] = u;
                    stack.push(v);
                }
            }
        }
    }
    // Non-tree edges become ring closures, opened at the earlier atom.
    for e in m.bonds.edge_references() {
        let (a, b) = (e.source().index(), e.target().index());
        if parent[a] == b || parent[b] == a {
            continue;
        }
        let (first, second) = if order[a] < order[b] { (a, b) } else { (b, a) };
        rings[first].push((second, *e.weight()));
        rings[second].push((first, *e.weight()));
    }
    // A child reached twice in pass 1 was re-parented; drop stale tree entries.
    for (p, ch) in children.iter_mut().enumerate() {
        ch.retain(|&(c, _)| parent[c] == p);
    }
    // Pass 2: write, iteratively.
    let mut out = String::with_capacity(6 * n);
    let mut open: Vec<Option<(usize, usize)>> = vec![None; 100]; // ring digit -> (from, to)
    enum Step {
        Atom(usize, BondOrder),
        Close,
        Open(usize, BondOrder),
    }
    for (ri, &r) in roots.iter().enumerate() {
        if ri > 0 {
            out.push('.');
        }
        let mut stack = vec![Step::Atom(r, BondOrder::Single)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Close => out.push(')'),
                Step::Open(v, o) => {
                    out.push('(');
                    stack.push(Step::Close);
                    stack.push(Step::Atom(v, o));
                }
                Step::Atom(u, o) => {
                    out.push_str(bond_sym(o));
                    out.push_str(syms[u]);
                    for &(w, bo) in &rings[u] {
                        let digit = if let Some(d) = open.iter().position(|x| *x == Some((w, u))) {
                            open[d] = None;
                            d
                        } else {
                            let d = (1..100).find(|&d| open[d].is_none())?;
                            open[d] = Some((u, w));
                            out.push_str(bond_sym(bo));
                            d
                        };
                        if digit < 10 {
                            out.push(char::from(b'0' + digit as u8));
                        } else {
                            out.push('%');
                            out.push_str(&digit.to_string());
                        }
                    }
                    let ch = &children[u];
                    if let Some((&(last, lo), rest)) = ch.split_last() {
                        stack.push(Step::Atom(last, lo));
                        for &(c, co) in rest.iter().rev() {
                            stack.push(Step::Open(c, co));
                        }
                    }
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Element;
    use ndarray::Array2;

    #[test]
    fn ring_and_branches() {
        // cyclopropanol-like: C1-C2-C3 ring, O on C1, H on O
        let mut m = Molecule::new(
            vec![Element::C, Element::C, Element::C, Element::O, Element::H],
            Array2::zeros((5, 3)),
        )
        .expect("ok");
        m.is_3d = false;
        for (a, b) in [(0, 1), (1, 2), (2, 0), (0, 3), (3, 4)] {
            m.add_bond(a, b, BondOrder::Single).expect("b");
        }
        let s = plain_smiles(&m).expect("subset");
        assert_eq!(s.matches('1').count(), 2, "{s}");
        assert!(s.contains("[H]"));
        m.charges[0] = 1;
        assert!(plain_smiles(&m).is_none());
    }
}
