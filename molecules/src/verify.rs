//! Verifiers: yes/no predicates on a [`Molecule`] used by flow expansion
//! (Flow Expander / ActFlow: a generator is steered toward samples a verifier
//! accepts) and by conditional-generation reports. Verifiers are object-safe,
//! `Send + Sync`, and compose with [`AllOf`] / [`AnyOf`] / [`Not`].
use crate::metrics::{protocol_view, Protocol};
use crate::molecule::Molecule;
use crate::stability::{check_stability, ValenceTable};

/// A named predicate over molecules.
pub trait Verifier: Send + Sync {
    /// Short, stable name for reports (e.g. `validity(edm, single-fragment)`).
    fn name(&self) -> String;
    /// Whether `m` passes.
    fn verify(&self, m: &Molecule) -> bool;
}

/// RDKit sanitisation succeeds (after the protocol's bond handling); with
/// `single_fragment` also requires one connected component ("strong" validity).
#[cfg(feature = "rdkit")]
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub protocol: Protocol,
    pub single_fragment: bool,
}

#[cfg(feature = "rdkit")]
impl Verifier for Validity {
    fn name(&self) -> String {
        format!(
            "validity({}, {})",
            proto_name(self.protocol),
            if self.single_fragment {
                "single-fragment"
            } else {
                "largest-fragment"
            }
        )
    }
    fn verify(&self, m: &Molecule) -> bool {
        if self.protocol == Protocol::Edm {
            // RDKit-free verdict for plain elements (crate::plain), the same
            // as RDKit's; RDKit settles the cases its cleanUp step may rewrite.
            if let Some(p) = crate::plain::evaluate_edm(&m.elements, &m.positions) {
                let p = crate::plain::settle(p, || protocol_view(m, self.protocol));
                return p.valid && (!self.single_fragment || p.n_fragments == 1);
            }
        }
        let v = protocol_view(m, self.protocol);
        if self.single_fragment && v.fragments().len() != 1 {
            return false;
        }
        crate::chem::sanitize(&v, false).ok
    }
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Edm => "edm",
        Protocol::Bonds => "bonds",
    }
}

/// Every atom has an allowed valence (EDM table under `Edm`, charge-aware under `Bonds`).
#[derive(Debug, Clone, Copy)]
pub struct Stability {
    pub protocol: Protocol,
}

impl Verifier for Stability {
    fn name(&self) -> String {
        format!("stability({})", proto_name(self.protocol))
    }
    fn verify(&self, m: &Molecule) -> bool {
        let v = protocol_view(m, self.protocol);
        let table = match self.protocol {
            Protocol::Edm => ValenceTable::Edm,
            Protocol::Bonds => ValenceTable::ChargeAware,
        };
        check_stability(&v, table).0
    }
}

/// Passes when all inner verifiers pass (empty: passes).
pub struct AllOf(pub Vec<Box<dyn Verifier>>);
/// Passes when any inner verifier passes (empty: fails).
pub struct AnyOf(pub Vec<Box<dyn Verifier>>);
/// Negation.
pub struct Not(pub Box<dyn Verifier>);

impl Verifier for AllOf {
    fn name(&self) -> String {
        format!(
            "all({})",
            self.0
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
    fn verify(&self, m: &Molecule) -> bool {
        self.0.iter().all(|v| v.verify(m))
    }
}
impl Verifier for AnyOf {
    fn name(&self) -> String {
        format!(
            "any({})",
            self.0
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
    fn verify(&self, m: &Molecule) -> bool {
        self.0.iter().any(|v| v.verify(m))
    }
}
impl Verifier for Not {
    fn name(&self) -> String {
        format!("not({})", self.0.name())
    }
    fn verify(&self, m: &Molecule) -> bool {
        !self.0.verify(m)
    }
}

/// A scalar property of a molecule (bonds as stored in the molecule).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum MolProperty {
    AtomCount,
    HeavyAtomCount,
    BondCount,
    /// Cyclomatic number `E − V + C` (equals the SSSR ring count).
    RingCount,
    FragmentCount,
    TotalCharge,
    /// A numeric SDF data field; missing or non-numeric fails the window.
    DataField(String),
}

impl MolProperty {
    /// Value for `m`, `None` when undefined.
    pub fn value(&self, m: &Molecule) -> Option<f64> {
        Some(match self {
            MolProperty::AtomCount => m.n_atoms() as f64,
            MolProperty::HeavyAtomCount => m.elements.iter().filter(|e| e.0 != 1).count() as f64,
            MolProperty::BondCount => m.n_bonds() as f64,
            MolProperty::RingCount => m.ring_count() as f64,
            MolProperty::FragmentCount => m.fragments().len() as f64,
            MolProperty::TotalCharge => f64::from(m.total_charge()),
            MolProperty::DataField(k) => m.property(k)?.trim().parse().ok()?,
        })
    }
    fn label(&self) -> String {
        match self {
            MolProperty::DataField(k) => format!("field:{k}"),
            other => format!("{other:?}").to_lowercase(),
        }
    }
}

/// Passes when `min <= property <= max` (inclusive).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PropertyWindow {
    pub property: MolProperty,
    pub min: f64,
    pub max: f64,
}

impl PropertyWindow {
    /// Checked constructor: `min <= max`, both not NaN.
    pub fn new(property: MolProperty, min: f64, max: f64) -> crate::Result<Self> {
        if min.is_nan() || max.is_nan() || min > max {
            return Err(crate::MolError::Config {
                field: "window".into(),
                value: format!("[{min}, {max}]"),
                why: "min must be <= max and neither NaN".into(),
            });
        }
        Ok(PropertyWindow { property, min, max })
    }
}

impl Verifier for PropertyWindow {
    fn name(&self) -> String {
        format!("{} in [{}, {}]", self.property.label(), self.min, self.max)
    }
    fn verify(&self, m: &Molecule) -> bool {
        self.property
            .value(m)
            .is_some_and(|v| v >= self.min && v <= self.max)
    }
}

/// Fraction of `mols` that pass `v`, evaluated in parallel.
pub fn pass_rate(v: &dyn Verifier, mols: &[Molecule]) -> f64 {
    use rayon::prelude::*;
    if mols.is_empty() {
        return 0.0;
    }
    mols.par_iter().filter(|m| v.verify(m)).count() as f64 / mols.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Element;
    use ndarray::array;

    fn water() -> Molecule {
        Molecule::new(
            vec![Element::O, Element::H, Element::H],
            array![[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]],
        )
        .expect("ok")
    }

    #[test]
    fn compose() {
        let w = water();
        let st: Box<dyn Verifier> = Box::new(Stability {
            protocol: Protocol::Edm,
        });
        assert!(st.verify(&w));
        assert!(!Stability {
            protocol: Protocol::Bonds
        }
        .verify(&w)); // no file bonds
        let win = PropertyWindow::new(MolProperty::AtomCount, 1.0, 2.0).expect("ok");
        assert!(!win.verify(&w));
        let all = AllOf(vec![st, Box::new(win.clone())]);
        assert!(!all.verify(&w));
        let any = AnyOf(vec![
            Box::new(Stability {
                protocol: Protocol::Edm,
            }),
            Box::new(win),
        ]);
        assert!(any.verify(&w));
        assert!(any.name().starts_with("any(stability(edm)"));
        assert!(PropertyWindow::new(MolProperty::RingCount, 2.0, 1.0).is_err());
        assert!(Not(Box::new(any)).name().starts_with("not("));
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn Verifier>();
        #[cfg(feature = "rdkit")]
        {
            assert!(Validity {
                protocol: Protocol::Edm,
                single_fragment: true
            }
            .verify(&w));
            assert!(!Validity {
                protocol: Protocol::Bonds,
                single_fragment: true
            }
            .verify(&w));
        }
    }
}
