//! SDF writer (V2000, or V3000 when asked or when a record exceeds 999 atoms
//! or bonds). Charges/isotopes/radicals go to `M  CHG`/`M  ISO`/`M  RAD`
//! (V2000) or `CHG=`/`MASS=`/`RAD=` (V3000); coordinates are `%10.4f`.
use std::fmt::Write as _;

use crate::molecule::Molecule;

/// Which connection-table version to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum CtabVersion {
    /// V2000 where it fits (≤ 999 atoms and bonds), V3000 otherwise.
    #[default]
    Auto,
    /// Always V3000.
    V3000,
}

fn header(out: &mut String, m: &Molecule) {
    // Title must be a single line.
    let title = m.title.lines().next().unwrap_or("");
    out.push_str(title);
    out.push('\n');
    let _ = writeln!(
        out,
        "  {:<8}{:10}{}",
        "cellmol",
        "",
        if m.is_3d { "3D" } else { "2D" }
    );
    out.push('\n');
}

/// Append one record (molfile + data fields + `$$$$`) to `out`.
pub fn write_record(out: &mut String, m: &Molecule, version: CtabVersion) {
    let v3000 = version == CtabVersion::V3000 || m.n_atoms() > 999 || m.n_bonds() > 999;
    header(out, m);
    if v3000 {
        write_v3000_ctab(out, m);
    } else {
        write_v2000_ctab(out, m);
    }
    for (k, v) in &m.properties {
        let _ = writeln!(out, ">  <{k}>");
        for line in v.lines() {
            // A blank line would end the value; keep a single space instead.
            out.push_str(if line.trim().is_empty() { " " } else { line });
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str("$$$$\n");
}

/// The molfile part only (header, CTAB, `M  END`), as RDKit's `MolBlockToMol` expects.
pub fn mol_block(m: &Molecule) -> String {
    let mut out = String::with_capacity(64 + 70 * (m.n_atoms() + m.n_bonds()));
    header(&mut out, m);
    if m.n_atoms() > 999 || m.n_bonds() > 999 {
        write_v3000_ctab(&mut out, m);
    } else {
        write_v2000_ctab(&mut out, m);
    }
    out
}

fn write_v2000_ctab(out: &mut String, m: &Molecule) {
    let _ = writeln!(
        out,
        "{:>3}{:>3}  0  0  0  0  0  0  0  0999 V2000",
        m.n_atoms(),
        m.n_bonds()
    );
    for (i, e) in m.elements.iter().enumerate() {
        let p = m.positions.row(i);
        let _ = writeln!(
            out,
            "{:>10.4}{:>10.4}{:>10.4} {:<3} 0  0  0  0  0  0  0  0  0  0  0  0",
            p[0],
            p[1],
            p[2],
            e.symbol()
        );
    }
    for (a, b, o, s) in m.bond_list() {
        let _ = writeln!(
            out,
            "{:>3}{:>3}{:>3}{:>3}",
            a + 1,
            b + 1,
            o.mdl_code(),
            s.v2000_code()
        );
    }
    let lists: [(&str, Vec<(usize, i64)>); 3] = [
        (
            "CHG",
            m.charges
                .iter()
                .enumerate()
                .filter(|(_, &c)| c != 0)
                .map(|(i, &c)| (i, i64::from(c)))
                .collect(),
        ),
        (
            "RAD",
            m.radicals
                .iter()
                .enumerate()
                .filter(|(_, &r)| r != 0)
                .map(|(i, &r)| (i, i64::from(r)))
                .collect(),
        ),
        (
            "ISO",
            m.isotopes
                .iter()
                .enumerate()
                .filter(|(_, &r)| r != 0)
                .map(|(i, &r)| (i, i64::from(r)))
                .collect(),
        ),
    ];
    for (tag, list) in lists {
        for chunk in list.chunks(8) {
            let _ = write!(out, "M  {tag}{:>3}", chunk.len());
            for (i, v) in chunk {
                let _ = write!(out, " {:>3} {:>3}", i + 1, v);
            }
            out.push('\n');
        }
    }
    out.push_str("M  END\n");
}

fn write_v3000_ctab(out: &mut String, m: &Molecule) {
    out.push_str("  0  0  0     0  0            999 V3000\n");
    out.push_str("M  V30 BEGIN CTAB\n");
    let _ = writeln!(out, "M  V30 COUNTS {} {} 0 0 0", m.n_atoms(), m.n_bonds());
    out.push_str("M  V30 BEGIN ATOM\n");
    for (i, e) in m.elements.iter().enumerate() {
        let p = m.positions.row(i);
        let _ = write!(
            out,
            "M  V30 {} {} {:.4} {:.4} {:.4} 0",
            i + 1,
            e.symbol(),
            p[0],
            p[1],
            p[2]
        );
        if m.charges[i] != 0 {
            let _ = write!(out, " CHG={}", m.charges[i]);
        }
        if m.radicals[i] != 0 {
            let _ = write!(out, " RAD={}", m.radicals[i]);
        }
        if m.isotopes[i] != 0 {
            let _ = write!(out, " MASS={}", m.isotopes[i]);
        }
        out.push('\n');
    }
    out.push_str("M  V30 END ATOM\n");
    if m.n_bonds() > 0 {
        out.push_str("M  V30 BEGIN BOND\n");
        for (k, (a, b, o, s)) in m.bond_list().enumerate() {
            let _ = write!(out, "M  V30 {} {} {} {}", k + 1, o.mdl_code(), a + 1, b + 1);
            use crate::molecule::BondStereo as S;
            let cfg = match s {
                S::Up => 1,
                S::Down => 3,
                S::Either | S::CisTransEither => 2,
                S::None => 0,
            };
            if cfg != 0 {
                let _ = write!(out, " CFG={cfg}");
            }
            out.push('\n');
        }
        out.push_str("M  V30 END BOND\n");
    }
    out.push_str("M  V30 END CTAB\nM  END\n");
}
