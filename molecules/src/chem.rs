//! RDKit bridge (feature `rdkit`): sanitisation verdicts and canonical SMILES.
//!
//! Our `Molecule` is handed to RDKit as a V2000/V3000 mol block written by
//! [`crate::sdf::mol_block`] (atoms, charges, isotopes, radicals, bonds, wedges,
//! 2D/3D flag). The block is parsed without sanitisation, then
//! `MolOps::detectChemistryProblems` (which runs the sanitisation steps —
//! valence, kekulisation, ring perception — inside RDKit's own `try`) gives
//! the verdict without letting a C++ exception cross into Rust. Only when it
//! reports no problem is the block parsed again with sanitisation to produce
//! `MolToSmiles` (canonical, isomeric), as Python's `Chem.MolToSmiles` does.
use cxx::let_cxx_string;
use rdkit_sys::{ro_mol_ffi, rw_mol_ffi};

use crate::molecule::{BondOrder, Molecule};
use crate::sdf::mol_block;

/// Outcome of sanitising one molecule with RDKit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sanitized {
    /// `SanitizeMol` would succeed.
    pub ok: bool,
    /// Problems reported by RDKit (`AtomValenceException@3`, ...); empty when ok.
    pub problems: Vec<String>,
    /// Canonical SMILES (explicit H atoms removed as `Chem.MolFromMolBlock`
    /// does by default), when ok.
    pub smiles: Option<String>,
}

/// Switch off RDKit's stderr logging (warnings and errors) for this process.
/// RDKit would otherwise print one line per failed sanitisation.
pub fn quiet_rdkit_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[allow(unsafe_code)]
        // SAFETY: `boost::logging::disable_logs(const char*)` from librdkit's
        // RDGeneral takes a NUL-terminated C string and only flips logger
        // flags; the argument outlives the call.
        unsafe {
            rdkit_disable_logs(c"rdApp.*".as_ptr());
        }
    });
}

#[allow(unsafe_code)]
#[link(name = "RDKitRDGeneral")]
extern "C" {
    #[link_name = "_ZN5boost7logging12disable_logsEPKc"]
    fn rdkit_disable_logs(spec: *const std::ffi::c_char);
}

/// Sanitise `m` as Python's `Chem.SanitizeMol` would (all atoms, explicit
/// hydrogens kept); `remove_hs` removes explicit hydrogens afterwards, before
/// writing the canonical SMILES (`Chem.MolToSmiles(Chem.RemoveHs(m))`).
pub fn sanitize(m: &Molecule, remove_hs: bool) -> Sanitized {
    if remove_hs {
        // Fast exact route for plain molecules (EDM protocol views): RDKit's
        // SMILES parser, whose C++ exceptions cxx turns into `Err`.
        if let Some(smi) = crate::smiles_write::plain_smiles(m) {
            let_cxx_string!(s = &smi);
            return match ro_mol_ffi::smiles_to_mol(&s) {
                Ok(p) if !p.is_null() => Sanitized {
                    ok: true,
                    problems: Vec::new(),
                    smiles: Some(ro_mol_ffi::mol_to_smiles(&p)),
                },
                Ok(_) => Sanitized {
                    ok: false,
                    problems: vec!["SmilesParseError".into()],
                    smiles: None,
                },
                Err(e) => Sanitized {
                    ok: false,
                    problems: vec![e.what().to_string()],
                    smiles: None,
                },
            };
        }
    }
    let aromatic = m.bonds.edge_weights().any(|&o| o == BondOrder::Aromatic);
    sanitize_impl(&mol_block(m), remove_hs, !aromatic)
}

/// Sanitise a mol block (same semantics as [`sanitize`]).
pub fn sanitize_block(block: &str, remove_hs: bool) -> Sanitized {
    sanitize_impl(block, remove_hs, false)
}

fn sanitize_impl(block: &str, remove_hs: bool, no_aromatic: bool) -> Sanitized {
    let fail = |p: Vec<String>| Sanitized {
        ok: false,
        problems: p,
        smiles: None,
    };
    let_cxx_string!(b = block);
    if !no_aromatic {
        // Kekulisation errors are not caught by the wrapper's sanitising
        // parse: ask detectChemistryProblems first (it catches internally).
        let rw = rw_mol_ffi::rw_mol_from_mol_block(&b, false, false, true);
        if rw.is_null() {
            return fail(vec!["MolBlockParseError".into()]);
        }
        let ro = rw_mol_ffi::rw_mol_to_ro_mol(rw);
        let probs = ro_mol_ffi::detect_chemistry_problems(&ro);
        if let Some(v) = probs.as_ref() {
            if !v.is_empty() {
                let list = v
                    .iter()
                    .map(|p| {
                        let t = ro_mol_ffi::mol_sanitize_exception_type(p);
                        if t.starts_with("Atom") {
                            format!(
                                "{t}@{}",
                                ro_mol_ffi::atom_sanitize_exception_get_atom_idx(p)
                            )
                        } else {
                            t
                        }
                    })
                    .collect();
                return fail(list);
            }
        }
    }
    // Sanitising parse, hydrogens kept: with no aromatic input bonds the only
    // possible sanitisation error is a valence error, which the wrapper
    // catches (null pointer).
    let rw = rw_mol_ffi::rw_mol_from_mol_block(&b, true, false, true);
    if rw.is_null() {
        return fail(vec![if no_aromatic {
            "AtomValenceException".into()
        } else {
            "SanitizeError".into()
        }]);
    }
    let mut ro = rw_mol_ffi::rw_mol_to_ro_mol(rw);
    if remove_hs {
        let params = rdkit_sys::mol_ops_ffi::new_remove_hs_parameters();
        ro = rdkit_sys::mol_ops_ffi::remove_hs_parameters(&ro, &params, false);
    }
    Sanitized {
        ok: true,
        problems: Vec::new(),
        smiles: Some(ro_mol_ffi::mol_to_smiles(&ro)),
    }
}

/// Canonical SMILES (H removed), or `None` if sanitisation fails.
pub fn canonical_smiles(m: &Molecule) -> Option<String> {
    sanitize(m, true).smiles
}

/// Canonicalise a SMILES string with RDKit (`None` if it does not parse/sanitise).
pub fn canonicalize_smiles(smiles: &str) -> Option<String> {
    let_cxx_string!(s = smiles);
    match ro_mol_ffi::smiles_to_mol(&s) {
        Ok(p) if !p.is_null() => Some(ro_mol_ffi::mol_to_smiles(&p)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Element;
    use crate::molecule::BondOrder;
    use ndarray::Array2;

    #[test]
    fn valid_and_invalid() {
        quiet_rdkit_logs();
        // ethanol heavy atoms, implicit H
        let mut m = Molecule::new(
            vec![Element::C, Element::C, Element::O],
            Array2::zeros((3, 3)),
        )
        .expect("ok");
        m.add_bond(0, 1, BondOrder::Single).expect("b");
        m.add_bond(1, 2, BondOrder::Single).expect("b");
        let s = sanitize(&m, true);
        assert!(s.ok);
        assert_eq!(s.smiles.as_deref(), Some("CCO"));
        // pentavalent carbon
        let mut c = Molecule::new(vec![Element::C; 6], Array2::zeros((6, 3))).expect("ok");
        for k in 1..6 {
            c.add_bond(0, k, BondOrder::Single).expect("b");
        }
        let s = sanitize(&c, true);
        assert!(!s.ok);
        assert!(
            s.problems[0].to_lowercase().contains("valence"),
            "{:?}",
            s.problems
        );
        // non-kekulisable aromatic ring (5 aromatic carbons)
        let mut r = Molecule::new(vec![Element::C; 5], Array2::zeros((5, 3))).expect("ok");
        for k in 0..5 {
            r.add_bond(k, (k + 1) % 5, BondOrder::Aromatic).expect("b");
        }
        assert!(!sanitize(&r, true).ok);
        assert_eq!(canonicalize_smiles("OCC").as_deref(), Some("CCO"));
        assert_eq!(canonicalize_smiles("C1CC"), None);
    }
}
