//! Shared fixtures of the flow-expansion tests: a toy molecule set (chains of
//! 3–6 atoms, H/C/O) and a tiny Morph model trained on it for a few steps.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;
use datasets::molbatch::{MolRecord, MolSet, MolVocab};
use morph::MorphConfig;

pub fn toy_set() -> MolSet {
    let vocab = MolVocab::new(vec!["H".into(), "C".into(), "O".into()], vec![0]);
    let mk = |n: usize| {
        let mut pos = ndarray::Array2::zeros((n, 3));
        let mut types = vec![1; n];
        let mut bonds = Vec::new();
        for i in 0..n {
            pos[[i, 0]] = 1.4 * (i as f64 * 0.8).cos() * (1.0 + i as f64 * 0.3);
            pos[[i, 1]] = 1.4 * (i as f64 * 0.8).sin();
            if i % 3 == 2 {
                types[i] = 0;
            }
            if i > 0 {
                bonds.push((i - 1, i, 1));
            }
        }
        types[0] = 2;
        MolRecord {
            types,
            charges: vec![0; n],
            pos,
            bonds,
            properties: BTreeMap::new(),
        }
    };
    MolSet::new(vocab, (0..12).map(|k| mk(3 + k % 4)).collect()).expect("set")
}

/// The `tiny` preset trained on [`toy_set`] for `steps` steps into `dir`.
pub fn trained(dir: &Path, steps: usize) -> morph::io::ModelDir {
    let mut set = toy_set();
    let stats = set.stats().expect("stats");
    set.normalise(stats.coord_std);
    let mut cfg = MorphConfig::preset("tiny").expect("tiny");
    cfg.train.steps = steps;
    cfg.sample.steps = 6;
    morph::train::fit(&set, &stats, &cfg, &Device::Cpu, dir, &mut |_| {}).expect("fit");
    morph::io::ModelDir::load(dir, &Device::Cpu).expect("load")
}

/// `(element symbol, position in Å)` of one atom of a hand-written molecule.
pub type Atom = (&'static str, [f64; 3]);

/// A molecule from atoms and bonds (panics on a bad fixture).
pub fn mol(atoms: &[Atom], bonds: &[(usize, usize, molecules::BondOrder)]) -> molecules::Molecule {
    let els = atoms
        .iter()
        .map(|(s, _)| molecules::Element::from_symbol(s).expect("element"))
        .collect();
    let pos = ndarray::Array2::from_shape_fn((atoms.len(), 3), |(i, d)| atoms[i].1[d]);
    let mut m = molecules::Molecule::new(els, pos).expect("molecule");
    for &(a, b, o) in bonds {
        m.add_bond(a, b, o).expect("bond");
    }
    m
}
