//! QM9 importer (Ramakrishnan et al. 2014, "Quantum chemistry structures and
//! properties of 134 kilo molecules") from the `qm9pack` CSV files
//! (`qm9_part1.csv` … `qm9_part3.csv`, 130 831 molecules, coordinates in Å).
//!
//! Each row becomes a [`Molecule`] with data fields (units as in QM9):
//! `index`, `smiles` (GDB-17 SMILES), `inchi`, `A`/`B`/`C` (GHz), `mu` (D),
//! `alpha` (bohr³), `homo`/`lumo`/`gap` (Ha), `r2` (bohr²), `zpve`, `U0`, `U`,
//! `H`, `G` (Ha), `Cv` (cal/mol/K). QM9 has no bond table: the importer adds
//! EDM-inferred bonds ([`crate::bonds`]) by default, or leaves the molecule
//! atoms-only. Splits follow EDM/Cormorant sizes (100 000 / rest / 10 %),
//! assigned by a ChaCha8 shuffle with a fixed seed.
use std::path::{Path, PathBuf};

use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::element::Element;
use crate::error::{MolError, Result};
use crate::molecule::Molecule;

/// Importer options.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Qm9Config {
    /// Add EDM-inferred bonds (true) or write atoms only (false).
    pub infer_bonds: bool,
    /// Seed of the split shuffle.
    pub seed: u64,
    /// Read at most this many molecules (all when `None`), in file order.
    pub limit: Option<usize>,
}

impl Default for Qm9Config {
    fn default() -> Self {
        Qm9Config {
            infer_bonds: true,
            seed: 42,
            limit: None,
        }
    }
}

/// Which split a molecule belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

/// Find `qm9_part*.csv` under `dir` (searching up to 4 levels down), sorted.
pub fn find_csv_files(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(d: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && depth > 0 {
                walk(&p, depth - 1, out);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                if n.starts_with("qm9_part") && n.ends_with(".csv") {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, 4, &mut out);
    out.sort();
    if out.is_empty() {
        return Err(MolError::Qm9 {
            path: dir.to_path_buf(),
            row: 0,
            what: "no qm9_part*.csv found (pip install qm9pack; pass its data directory)".into(),
        });
    }
    Ok(out)
}

/// Split a CSV line into fields (double-quoted fields may contain commas).
fn csv_fields(line: &str) -> Vec<&str> {
    let mut out = Vec::with_capacity(25);
    let b = line.as_bytes();
    let mut i = 0;
    while i <= b.len() {
        if i < b.len() && b[i] == b'"' {
            let end = line[i + 1..].find('"').map_or(b.len(), |k| i + 1 + k);
            out.push(&line[i + 1..end]);
            i = end + 1;
            // skip to the comma
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            i += 1;
        } else {
            let end = line[i.min(b.len())..].find(',').map_or(b.len(), |k| i + k);
            out.push(&line[i.min(b.len())..end]);
            i = end + 1;
        }
    }
    out
}

fn numbers(s: &str) -> impl Iterator<Item = Option<f64>> + '_ {
    s.split(|c: char| c == '[' || c == ']' || c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<f64>().ok())
}

const PROPS: [(&str, &str); 17] = [
    ("RotA_GHz", "A"),
    ("RotB_GHz", "B"),
    ("RotC_GHz", "C"),
    ("Dipole_debye", "mu"),
    ("Polarizability_bohr3", "alpha"),
    ("HOMO_au", "homo"),
    ("LUMO_au", "lumo"),
    ("HOMO_LUMO_gap_au", "gap"),
    ("R2_bohr2", "r2"),
    ("ZPVE_au", "zpve"),
    ("InternalEnergy_0K_au", "U0"),
    ("InternalEnergy_298K_au", "U"),
    ("Enthalphy_298K_au", "H"),
    ("GibbsFreeEnergy_298K_au", "G"),
    ("Heatcapacity_Cv_cal_mol_K", "Cv"),
    ("SMILES", "smiles"),
    ("InChi", "inchi"),
];

/// Parse one qm9pack CSV file.
pub fn read_qm9_csv(path: &Path, cfg: &Qm9Config) -> Result<Vec<Molecule>> {
    let text = std::fs::read_to_string(path).map_err(|e| MolError::io(path, e))?;
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| MolError::Qm9 {
        path: path.into(),
        row: 0,
        what: "empty file".into(),
    })?;
    let cols: Vec<&str> = csv_fields(header);
    let col = |name: &str| -> Result<usize> {
        cols.iter()
            .position(|c| *c == name)
            .ok_or_else(|| MolError::Qm9 {
                path: path.into(),
                row: 0,
                what: format!("missing column '{name}' (have {cols:?})"),
            })
    };
    let (c_idx, c_el, c_xyz) = (col("Index")?, col("Elements")?, col("XYZ_Ang")?);
    let prop_cols: Vec<(usize, &str)> = PROPS
        .iter()
        .map(|(c, n)| Ok((col(c)?, *n)))
        .collect::<Result<_>>()?;
    let rows: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    let rows = match cfg.limit {
        Some(k) => &rows[..k.min(rows.len())],
        None => &rows[..],
    };
    rows.par_iter()
        .enumerate()
        .map(|(r, line)| {
            let bad = |what: String| MolError::Qm9 {
                path: path.into(),
                row: r + 1,
                what,
            };
            let f = csv_fields(line);
            if f.len() < cols.len() {
                return Err(bad(format!(
                    "{} fields, header has {}",
                    f.len(),
                    cols.len()
                )));
            }
            let els: Vec<Element> = f[c_el]
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|t| !t.is_empty())
                .map(|t| {
                    Element::from_symbol(t).ok_or_else(|| bad(format!("unknown element '{t}'")))
                })
                .collect::<Result<_>>()?;
            let xyz: Vec<f64> = numbers(f[c_xyz])
                .map(|v| v.ok_or_else(|| bad("non-numeric coordinate in XYZ_Ang".into())))
                .collect::<Result<_>>()?;
            if xyz.len() != 3 * els.len() {
                return Err(bad(format!(
                    "{} coordinates for {} atoms",
                    xyz.len(),
                    els.len()
                )));
            }
            let pos =
                Array2::from_shape_vec((els.len(), 3), xyz).map_err(|e| bad(e.to_string()))?;
            let mut m = Molecule::new(els, pos)?;
            m.is_3d = true;
            let idx = f[c_idx].trim();
            m.title = format!("gdb_{idx}");
            m.properties.push(("index".into(), idx.to_string()));
            for &(c, name) in &prop_cols {
                m.properties
                    .push((name.to_string(), f[c].trim().to_string()));
            }
            if cfg.infer_bonds {
                crate::bonds::infer_bonds(&mut m);
            }
            Ok(m)
        })
        .collect()
}

/// Import all CSV parts found under `dir`, in file order.
pub fn import_qm9(dir: &Path, cfg: &Qm9Config) -> Result<Vec<Molecule>> {
    let mut out = Vec::new();
    for p in find_csv_files(dir)? {
        let rest = cfg.limit.map(|l| l.saturating_sub(out.len()));
        if rest == Some(0) {
            break;
        }
        let c = Qm9Config {
            limit: rest,
            ..cfg.clone()
        };
        out.extend(read_qm9_csv(&p, &c)?);
    }
    Ok(out)
}

/// Split assignment for `n` molecules: EDM/Cormorant sizes (test = 10 %,
/// train = 100 000 of 130 831 scaled to `n`, valid = rest), shuffled with `seed`.
pub fn split_assignment(n: usize, seed: u64) -> Vec<Split> {
    let n_test = n / 10;
    let n_train = ((n as f64) * 100_000.0 / 130_831.0).round() as usize;
    let n_train = n_train.min(n - n_test);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut out = vec![Split::Valid; n];
    for (k, &i) in idx.iter().enumerate() {
        out[i] = if k < n_train {
            Split::Train
        } else if k < n_train + n_test {
            Split::Test
        } else {
            Split::Valid
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn csv_and_splits() {
        let f = csv_fields(r#""a.xyz",1,"C","[[1,2],[3,4]]",0.5,"#);
        assert_eq!(f, vec!["a.xyz", "1", "C", "[[1,2],[3,4]]", "0.5", ""]);
        let s = split_assignment(130_831, 42);
        assert_eq!(s.iter().filter(|&&x| x == Split::Train).count(), 100_000);
        assert_eq!(s.iter().filter(|&&x| x == Split::Test).count(), 13_083);
        assert_eq!(s.iter().filter(|&&x| x == Split::Valid).count(), 17_748);
        assert_eq!(s, split_assignment(130_831, 42));
        assert_ne!(s, split_assignment(130_831, 43));
    }
}
