//! Molecule batches for Morph (`design/morph.md`, "Representation"):
//! vocabularies of elements / formal charges / bond types, molecules encoded
//! as class indices, padded arrays with node masks, the atom-count histogram,
//! the coordinate normalisation (one global std), property columns and splits.
//!
//! Everything is `ndarray` so that this crate does not depend on candle; the
//! `morph` crate converts the padded arrays to device tensors.
use std::collections::BTreeMap;

use ndarray::{Array2, Array3};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{DatasetsError, Result};

/// Bond class names; class 0 is "no bond" (every atom pair carries a class).
pub const BOND_CLASSES: [&str; 5] = ["none", "single", "double", "triple", "aromatic"];

/// Vocabularies: element symbols, formal charges and bond classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MolVocab {
    /// Element symbols, class index = position.
    pub elements: Vec<String>,
    /// Formal charges, class index = position.
    pub charges: Vec<i32>,
    /// Bond class names (`BOND_CLASSES`), class 0 = no bond.
    pub bonds: Vec<String>,
}

impl MolVocab {
    /// Vocabulary with the given elements and charges and the standard bond classes.
    pub fn new(elements: Vec<String>, charges: Vec<i32>) -> Self {
        Self {
            elements,
            charges,
            bonds: BOND_CLASSES.iter().map(|s| s.to_string()).collect(),
        }
    }
    pub fn n_types(&self) -> usize {
        self.elements.len()
    }
    pub fn n_charges(&self) -> usize {
        self.charges.len()
    }
    pub fn n_bonds(&self) -> usize {
        self.bonds.len()
    }
    pub fn element_index(&self, symbol: &str) -> Option<usize> {
        self.elements
            .iter()
            .position(|e| e.eq_ignore_ascii_case(symbol))
    }
    pub fn charge_index(&self, charge: i32) -> Option<usize> {
        self.charges.iter().position(|&c| c == charge)
    }
}

/// One molecule as class indices and coordinates (Å, or normalised units after
/// [`MolSet::normalise`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MolRecord {
    /// Element class per atom.
    pub types: Vec<usize>,
    /// Charge class per atom.
    pub charges: Vec<usize>,
    /// `[n_atoms, 3]` coordinates.
    pub pos: Array2<f64>,
    /// Bonds `(i, j, class)` with `i < j` and class ≥ 1.
    pub bonds: Vec<(usize, usize, usize)>,
    /// Scalar properties (SDF data fields that parse as numbers).
    pub properties: BTreeMap<String, f64>,
}

impl MolRecord {
    pub fn n_atoms(&self) -> usize {
        self.types.len()
    }
    /// Dense `[n, n]` bond-class matrix (symmetric, 0 = no bond).
    pub fn bond_matrix(&self) -> Array2<usize> {
        let n = self.n_atoms();
        let mut m = Array2::zeros((n, n));
        for &(i, j, c) in &self.bonds {
            m[[i, j]] = c;
            m[[j, i]] = c;
        }
        m
    }
    /// Subtract the centre of mass (unweighted mean over atoms).
    pub fn centre(&mut self) {
        let n = self.n_atoms();
        if n == 0 {
            return;
        }
        for d in 0..3 {
            let m = self.pos.column(d).sum() / n as f64;
            self.pos.column_mut(d).mapv_inplace(|v| v - m);
        }
    }
    /// Check that indices are inside the vocabulary and shapes agree.
    pub fn check(&self, vocab: &MolVocab, context: &str) -> Result<()> {
        let n = self.n_atoms();
        let bad = |what: &str, found: String| DatasetsError::Shape {
            context: context.to_string(),
            expected: what.to_string(),
            found,
        };
        if self.charges.len() != n || self.pos.dim() != (n, 3) {
            return Err(bad(
                &format!("{n} charges and [{n}, 3] positions"),
                format!(
                    "{} charges and {:?} positions",
                    self.charges.len(),
                    self.pos.dim()
                ),
            ));
        }
        if let Some(&t) = self.types.iter().find(|&&t| t >= vocab.n_types()) {
            return Err(bad(
                &format!("element class < {}", vocab.n_types()),
                t.to_string(),
            ));
        }
        if let Some(&c) = self.charges.iter().find(|&&c| c >= vocab.n_charges()) {
            return Err(bad(
                &format!("charge class < {}", vocab.n_charges()),
                c.to_string(),
            ));
        }
        for &(i, j, c) in &self.bonds {
            if i >= n || j >= n || i == j || c == 0 || c >= vocab.n_bonds() {
                return Err(bad(
                    "bond (i < n, j < n, i != j, 1 <= class < n_bonds)",
                    format!("({i}, {j}, {c})"),
                ));
            }
        }
        Ok(())
    }
}

/// Summary statistics of a training set, stored with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MolStats {
    /// `size_hist[n]` = number of molecules with `n` atoms.
    pub size_hist: Vec<usize>,
    pub n_min: usize,
    pub n_max: usize,
    /// Element class frequencies (sum 1).
    pub type_freq: Vec<f64>,
    /// Charge class frequencies (sum 1).
    pub charge_freq: Vec<f64>,
    /// Bond class frequencies over all unordered atom pairs, class 0 included (sum 1).
    pub bond_freq: Vec<f64>,
    /// Global coordinate std (Å) over all centred coordinates.
    pub coord_std: f64,
    /// Per property: (mean, std).
    pub properties: BTreeMap<String, (f64, f64)>,
}

/// A molecule data set: vocabulary + records.
#[derive(Debug, Clone)]
pub struct MolSet {
    pub vocab: MolVocab,
    pub records: Vec<MolRecord>,
}

/// Padded batch: `n_max` = largest molecule of the batch.
#[derive(Debug, Clone)]
pub struct PaddedBatch {
    /// `[batch, n_max, 3]`
    pub pos: Array3<f32>,
    /// `[batch, n_max]` element classes (0 on padding).
    pub types: Array2<u32>,
    /// `[batch, n_max]` charge classes (0 on padding).
    pub charges: Array2<u32>,
    /// `[batch, n_max, n_max]` bond classes (0 = none / padding).
    pub bonds: Array3<u32>,
    /// `[batch, n_max]` 1 for real atoms, 0 for padding.
    pub mask: Array2<f32>,
}

impl PaddedBatch {
    /// Pad `records` into one batch.
    pub fn from_records(records: &[&MolRecord]) -> Self {
        let b = records.len();
        let n = records.iter().map(|r| r.n_atoms()).max().unwrap_or(0);
        let mut out = Self {
            pos: Array3::zeros((b, n, 3)),
            types: Array2::zeros((b, n)),
            charges: Array2::zeros((b, n)),
            bonds: Array3::zeros((b, n, n)),
            mask: Array2::zeros((b, n)),
        };
        for (k, r) in records.iter().enumerate() {
            for i in 0..r.n_atoms() {
                out.types[[k, i]] = r.types[i] as u32;
                out.charges[[k, i]] = r.charges[i] as u32;
                out.mask[[k, i]] = 1.0;
                for d in 0..3 {
                    out.pos[[k, i, d]] = r.pos[[i, d]] as f32;
                }
            }
            for &(i, j, c) in &r.bonds {
                out.bonds[[k, i, j]] = c as u32;
                out.bonds[[k, j, i]] = c as u32;
            }
        }
        out
    }
}

impl MolSet {
    /// Validate every record against the vocabulary.
    pub fn new(vocab: MolVocab, records: Vec<MolRecord>) -> Result<Self> {
        for (k, r) in records.iter().enumerate() {
            r.check(&vocab, &format!("molecule {k}"))?;
        }
        Ok(Self { vocab, records })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Training-set statistics (computed on centred coordinates).
    pub fn stats(&self) -> Result<MolStats> {
        if self.records.is_empty() {
            return Err(DatasetsError::InvalidConfig {
                param: "molecules".into(),
                message: "empty data set".into(),
            });
        }
        let n_max = self.records.iter().map(|r| r.n_atoms()).max().unwrap_or(0);
        let n_min = self.records.iter().map(|r| r.n_atoms()).min().unwrap_or(0);
        let mut size_hist = vec![0usize; n_max + 1];
        let mut tf = vec![0f64; self.vocab.n_types()];
        let mut cf = vec![0f64; self.vocab.n_charges()];
        let mut bf = vec![0f64; self.vocab.n_bonds()];
        let (mut ss, mut cnt) = (0f64, 0f64);
        for r in &self.records {
            let n = r.n_atoms();
            size_hist[n] += 1;
            r.types.iter().for_each(|&t| tf[t] += 1.0);
            r.charges.iter().for_each(|&c| cf[c] += 1.0);
            let pairs = (n * n.saturating_sub(1) / 2) as f64;
            bf[0] += pairs - r.bonds.len() as f64;
            r.bonds.iter().for_each(|&(_, _, c)| bf[c] += 1.0);
            let mut c = r.clone();
            c.centre();
            ss += c.pos.iter().map(|v| v * v).sum::<f64>();
            cnt += (3 * n) as f64;
        }
        let norm = |v: &mut Vec<f64>| {
            let s: f64 = v.iter().sum();
            if s > 0.0 {
                v.iter_mut().for_each(|x| *x /= s);
            }
        };
        norm(&mut tf);
        norm(&mut cf);
        norm(&mut bf);
        let mut properties = BTreeMap::new();
        let names: std::collections::BTreeSet<&String> = self
            .records
            .iter()
            .flat_map(|r| r.properties.keys())
            .collect();
        for name in names {
            let vals: Vec<f64> = self
                .records
                .iter()
                .filter_map(|r| r.properties.get(name))
                .copied()
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|x| (x - m).powi(2)).sum::<f64>() / vals.len().max(1) as f64;
            properties.insert(name.clone(), (m, v.sqrt()));
        }
        let coord_std = if cnt > 0.0 { (ss / cnt).sqrt() } else { 1.0 };
        Ok(MolStats {
            size_hist,
            n_min,
            n_max,
            type_freq: tf,
            charge_freq: cf,
            bond_freq: bf,
            coord_std: if coord_std > 0.0 { coord_std } else { 1.0 },
            properties,
        })
    }

    /// Centre every molecule and divide coordinates by `coord_std`.
    pub fn normalise(&mut self, coord_std: f64) {
        for r in &mut self.records {
            r.centre();
            r.pos.mapv_inplace(|v| v / coord_std);
        }
    }

    /// Values of one property column (`None` where a record lacks it).
    pub fn property(&self, name: &str) -> Vec<Option<f64>> {
        self.records
            .iter()
            .map(|r| r.properties.get(name).copied())
            .collect()
    }

    /// Random split into (train, validation) indices with `val_frac` in [0, 1).
    pub fn split(&self, val_frac: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
        if !(0.0..1.0).contains(&val_frac) {
            return Err(DatasetsError::InvalidConfig {
                param: "val_frac".into(),
                message: format!("should be in [0, 1), but is {val_frac}"),
            });
        }
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        let n_val = (self.len() as f64 * val_frac).round() as usize;
        let val = idx[..n_val].to_vec();
        Ok((idx[n_val..].to_vec(), val))
    }

    /// Pad the records at `idx` into one batch.
    pub fn batch(&self, idx: &[usize]) -> PaddedBatch {
        let recs: Vec<&MolRecord> = idx.iter().map(|&i| &self.records[i]).collect();
        PaddedBatch::from_records(&recs)
    }
}

/// Bond class of a molecules bond order (1 single, 2 double, 3 triple, 4 aromatic).
pub fn bond_class(o: molecules::BondOrder) -> usize {
    match o {
        molecules::BondOrder::Single => 1,
        molecules::BondOrder::Double => 2,
        molecules::BondOrder::Triple => 3,
        molecules::BondOrder::Aromatic => 4,
    }
}

/// Bond order of a class ≥ 1 (`None` for class 0 = no bond).
pub fn bond_order(class: usize) -> Option<molecules::BondOrder> {
    match class {
        1 => Some(molecules::BondOrder::Single),
        2 => Some(molecules::BondOrder::Double),
        3 => Some(molecules::BondOrder::Triple),
        4 => Some(molecules::BondOrder::Aromatic),
        _ => None,
    }
}

impl MolVocab {
    /// Vocabulary of a molecule list: elements sorted by atomic number,
    /// charges sorted (0 always included).
    pub fn from_molecules(mols: &[molecules::Molecule]) -> Self {
        let els: std::collections::BTreeSet<u8> = mols
            .iter()
            .flat_map(|m| m.elements.iter().map(|e| e.0))
            .collect();
        let mut ch: std::collections::BTreeSet<i32> = mols
            .iter()
            .flat_map(|m| m.charges.iter().map(|&c| i32::from(c)))
            .collect();
        ch.insert(0);
        let elements = els
            .into_iter()
            .filter_map(|z| molecules::Element::from_z(u32::from(z)))
            .map(|e| e.symbol().to_string())
            .collect();
        Self::new(elements, ch.into_iter().collect())
    }
}

impl MolRecord {
    /// Encode a molecule with `vocab`; numeric SDF properties become property
    /// columns. `context` names the record in errors.
    pub fn from_molecule(m: &molecules::Molecule, vocab: &MolVocab, context: &str) -> Result<Self> {
        let bad = |expected: String, found: String| DatasetsError::Shape {
            context: context.to_string(),
            expected,
            found,
        };
        let types = m
            .elements
            .iter()
            .map(|e| {
                vocab.element_index(e.symbol()).ok_or_else(|| {
                    bad(
                        format!("an element of {:?}", vocab.elements),
                        e.symbol().to_string(),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let charges = m
            .charges
            .iter()
            .map(|&c| {
                vocab
                    .charge_index(i32::from(c))
                    .ok_or_else(|| bad(format!("a charge of {:?}", vocab.charges), c.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let bonds = m
            .bond_list()
            .map(|(i, j, o, _)| (i.min(j), i.max(j), bond_class(o)))
            .collect();
        let properties = m
            .properties
            .iter()
            .filter_map(|(k, v)| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(|x| (k.clone(), x))
            })
            .collect();
        let r = Self {
            types,
            charges,
            pos: m.positions.clone(),
            bonds,
            properties,
        };
        r.check(vocab, context)?;
        Ok(r)
    }

    /// Decode into a molecule, multiplying coordinates by `scale` (the coordinate std).
    pub fn to_molecule(&self, vocab: &MolVocab, scale: f64) -> Result<molecules::Molecule> {
        let els = self
            .types
            .iter()
            .map(|&t| {
                vocab
                    .elements
                    .get(t)
                    .and_then(|s| molecules::Element::from_symbol(s))
                    .ok_or_else(|| DatasetsError::Shape {
                        context: "decoding a generated molecule".into(),
                        expected: format!("element class < {}", vocab.n_types()),
                        found: t.to_string(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let err = |e: molecules::MolError| DatasetsError::Shape {
            context: "decoding a generated molecule".into(),
            expected: "a valid molecule".into(),
            found: e.to_string(),
        };
        let mut m = molecules::Molecule::new(els, self.pos.mapv(|v| v * scale)).map_err(err)?;
        m.is_3d = true;
        m.charges = self
            .charges
            .iter()
            .map(|&c| vocab.charges.get(c).copied().unwrap_or(0) as i8)
            .collect();
        for &(i, j, c) in &self.bonds {
            if let Some(o) = bond_order(c) {
                m.add_bond(i, j, o).map_err(err)?;
            }
        }
        for (k, v) in &self.properties {
            m.set_property(k.clone(), format!("{v}"));
        }
        Ok(m)
    }
}

impl MolSet {
    /// Encode molecules; builds the vocabulary from them unless one is given.
    pub fn from_molecules(mols: &[molecules::Molecule], vocab: Option<MolVocab>) -> Result<Self> {
        let vocab = vocab.unwrap_or_else(|| MolVocab::from_molecules(mols));
        let records = mols
            .iter()
            .enumerate()
            .map(|(k, m)| {
                MolRecord::from_molecule(m, &vocab, &format!("molecule {} ({})", k + 1, m.title))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { vocab, records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn water() -> MolRecord {
        MolRecord {
            types: vec![1, 0, 0],
            charges: vec![0, 0, 0],
            pos: array![[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]],
            bonds: vec![(0, 1, 1), (0, 2, 1)],
            properties: BTreeMap::from([("gap".to_string(), 0.3)]),
        }
    }

    #[test]
    fn stats_and_padding() {
        let vocab = MolVocab::new(vec!["H".into(), "O".into()], vec![0]);
        let mut m2 = water();
        m2.types.push(0);
        m2.charges.push(0);
        m2.pos = ndarray::concatenate![ndarray::Axis(0), m2.pos, array![[0.0, 0.0, 1.0]]];
        let set = MolSet::new(vocab, vec![water(), m2]).unwrap();
        let s = set.stats().unwrap();
        assert_eq!(s.size_hist, vec![0, 0, 0, 1, 1]);
        assert!((s.type_freq[0] - 5.0 / 7.0).abs() < 1e-12);
        // pairs: 3 + 6 = 9, bonds 4 -> none 5/9
        assert!((s.bond_freq[0] - 5.0 / 9.0).abs() < 1e-12);
        let b = set.batch(&[0, 1]);
        assert_eq!(b.pos.dim(), (2, 4, 3));
        assert_eq!(b.mask.row(0).to_vec(), vec![1.0, 1.0, 1.0, 0.0]);
        assert_eq!(b.bonds[[0, 1, 0]], 1);
        assert_eq!(b.bonds[[1, 0, 2]], 1);
    }

    #[test]
    fn bad_records_are_rejected() {
        let vocab = MolVocab::new(vec!["H".into(), "O".into()], vec![0]);
        let mut m = water();
        m.bonds.push((0, 7, 1));
        let err = MolSet::new(vocab, vec![m]).unwrap_err().to_string();
        assert!(err.contains("molecule 0"), "{err}");
    }
}
