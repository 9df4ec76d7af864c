//! Chemical elements as atomic numbers (`Element(Z)`), with symbols and the
//! most common isotope (needed for the V2000 atom-block mass difference).

/// An element, stored as its atomic number `Z` (1..=118). `Element(0)` is a
/// dummy atom (`*`), which the readers never produce unless asked.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Element(pub u8);

const SYMBOLS: [&str; 119] = [
    "*", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S",
    "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge",
    "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd",
    "In", "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd",
    "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg",
    "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm",
    "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn",
    "Nh", "Fl", "Mc", "Lv", "Ts", "Og",
];

/// Mass number of the most common isotope (RDKit's `getMostCommonIsotope`),
/// for Z = 0..=86; 0 where not tabulated.
const COMMON_ISOTOPE: [u16; 87] = [
    0, 1, 4, 7, 9, 11, 12, 14, 16, 19, 20, 23, 24, 27, 28, 31, 32, 35, 40, 39, 40, 45, 48, 51, 52,
    55, 56, 59, 58, 63, 64, 69, 74, 75, 80, 79, 84, 85, 88, 89, 90, 93, 98, 98, 102, 103, 106, 107,
    114, 115, 120, 121, 130, 127, 132, 133, 138, 139, 140, 141, 142, 145, 152, 153, 158, 159, 164,
    165, 166, 169, 174, 175, 180, 181, 184, 187, 192, 193, 195, 197, 202, 205, 208, 209, 209, 210,
    222,
];

#[allow(missing_docs)]
impl Element {
    pub const H: Element = Element(1);
    pub const B: Element = Element(5);
    pub const C: Element = Element(6);
    pub const N: Element = Element(7);
    pub const O: Element = Element(8);
    pub const F: Element = Element(9);
    pub const AL: Element = Element(13);
    pub const SI: Element = Element(14);
    pub const P: Element = Element(15);
    pub const S: Element = Element(16);
    pub const CL: Element = Element(17);
    pub const AS: Element = Element(33);
    pub const BR: Element = Element(35);
    pub const I: Element = Element(53);
    pub const HG: Element = Element(80);
    pub const BI: Element = Element(83);
}

impl Element {
    /// Atomic number.
    pub fn z(self) -> u8 {
        self.0
    }
    /// Element symbol (`"C"`, `"Cl"`); `"*"` for Z = 0 or out of range.
    pub fn symbol(self) -> &'static str {
        SYMBOLS.get(self.0 as usize).copied().unwrap_or("*")
    }
    /// Element from an atomic number, `None` outside 1..=118.
    pub fn from_z(z: u32) -> Option<Element> {
        (1..=118).contains(&z).then_some(Element(z as u8))
    }
    /// Parse a symbol (case-sensitive first letter as in files, second letter
    /// lower case; `D`/`T` are hydrogen and return their isotope).
    pub fn from_symbol_bytes(s: &[u8]) -> Option<(Element, u16)> {
        match s {
            b"D" => return Some((Element::H, 2)),
            b"T" => return Some((Element::H, 3)),
            _ => {}
        }
        if s.is_empty() || s.len() > 2 {
            return None;
        }
        // Fast path for the organic subset.
        let e = match s {
            b"H" => 1,
            b"C" => 6,
            b"N" => 7,
            b"O" => 8,
            b"F" => 9,
            b"S" => 16,
            b"P" => 15,
            b"Cl" => 17,
            b"Br" => 35,
            _ => SYMBOLS
                .iter()
                .skip(1)
                .position(|sym| sym.as_bytes() == s)
                .map(|p| p + 1)? as u8,
        };
        Some((Element(e), 0))
    }
    /// Parse a symbol string.
    pub fn from_symbol(s: &str) -> Option<Element> {
        Self::from_symbol_bytes(s.as_bytes()).map(|(e, _)| e)
    }
    /// Most common isotope's mass number, if tabulated.
    pub fn most_common_isotope(self) -> Option<u16> {
        COMMON_ISOTOPE
            .get(self.0 as usize)
            .copied()
            .filter(|&m| m > 0)
    }
}

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.symbol())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn symbols_round_trip() {
        for z in 1..=118u32 {
            let e = Element::from_z(z).expect("in range");
            assert_eq!(Element::from_symbol(e.symbol()), Some(e));
        }
        assert_eq!(Element::from_symbol("Xx"), None);
        assert_eq!(Element::from_symbol_bytes(b"D"), Some((Element::H, 2)));
        assert_eq!(Element::C.most_common_isotope(), Some(12));
        assert_eq!(Element::BR.most_common_isotope(), Some(79));
    }
}
