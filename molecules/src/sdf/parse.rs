//! Parsing of one SDF/MOL record (V2000 or V3000 connection table plus data
//! fields) from a byte slice. Format: BIOVIA "CTfile Formats" (2020), sections
//! "Molfile (V2000)", "Extended (V3000) Molfile", "SDfile". Charge semantics
//! follow RDKit's MolFileParser: the first `M  CHG` (or `M  RAD`) line resets
//! the charges (radicals) from the atom block.
use ndarray::Array2;

use super::lines::{field, parse_f64, parse_i64, show, tokens, trim, Lines};
use crate::element::Element;
use crate::error::MolError;
use crate::molecule::{BondOrder, BondStereo, Molecule};

/// Where a record sits, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub source: &'a str,
    pub record: usize,
}

impl Ctx<'_> {
    pub fn err(&self, line: usize, what: impl Into<String>) -> MolError {
        MolError::Parse {
            source_name: self.source.to_string(),
            record: self.record,
            line,
            what: what.into(),
        }
    }
}

/// True when the record contains only whitespace (e.g. after the last `$$$$`).
pub(crate) fn is_blank(rec: &[u8]) -> bool {
    rec.iter().all(|c| c.is_ascii_whitespace())
}

/// Parse one record. `first_line` is the 1-based file line of `rec[0]`.
/// A trailing `$$$$` line, if present, is ignored.
pub(crate) fn parse_record(
    rec: &[u8],
    first_line: usize,
    ctx: Ctx<'_>,
) -> Result<Molecule, MolError> {
    let mut lines = Lines::new(rec, first_line);
    let title = lines
        .next()
        .ok_or_else(|| ctx.err(first_line, "empty record"))?;
    let title = String::from_utf8_lossy(trim_end(title)).into_owned();
    let header2 = lines
        .next()
        .ok_or_else(|| ctx.err(lines.line_no + 1, "truncated record: missing header line 2"))?;
    let dim = field(header2, 20, 22);
    let dim3 = match dim {
        b"3D" | b"3d" => Some(true),
        b"2D" | b"2d" => Some(false),
        _ => None,
    };
    lines
        .next()
        .ok_or_else(|| ctx.err(lines.line_no + 1, "truncated record: missing comment line"))?;
    let counts = lines
        .next()
        .ok_or_else(|| ctx.err(lines.line_no + 1, "truncated record: missing counts line"))?;
    let counts_line = lines.line_no;
    let is_v3000 = counts.windows(5).any(|w| w == b"V3000");
    let mut mol = if is_v3000 {
        super::v3000::parse_ctab(&mut lines, ctx)?
    } else {
        parse_v2000_ctab(counts, counts_line, &mut lines, ctx)?
    };
    mol.title = title;
    mol.is_3d = dim3.unwrap_or_else(|| mol.positions.column(2).iter().any(|&z| z != 0.0));
    parse_data_fields(&mut lines, &mut mol, ctx)?;
    Ok(mol)
}

fn trim_end(s: &[u8]) -> &[u8] {
    let mut s = s;
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Allocate an atoms-only molecule of `n` atoms, refusing counts that cannot
/// fit in the remaining lines (guards against absurd headers like 10⁹).
pub(crate) fn alloc_checked(
    n_atoms: usize,
    n_bonds: usize,
    lines: &Lines<'_>,
    line: usize,
    ctx: Ctx<'_>,
) -> Result<Molecule, MolError> {
    let avail = lines.remaining_lines();
    if n_atoms.saturating_add(n_bonds) > avail {
        return Err(ctx.err(
            line,
            format!(
                "counts line declares {n_atoms} atoms and {n_bonds} bonds but only {avail} lines follow in this record"
            ),
        ));
    }
    let mut m = Molecule::new(Vec::with_capacity(n_atoms), Array2::zeros((0, 3)))
        .map_err(|e| ctx.err(line, e.to_string()))?;
    m.charges.reserve(n_atoms);
    m.isotopes.reserve(n_atoms);
    m.radicals.reserve(n_atoms);
    Ok(m)
}

fn parse_v2000_ctab(
    counts: &[u8],
    counts_line: usize,
    lines: &mut Lines<'_>,
    ctx: Ctx<'_>,
) -> Result<Molecule, MolError> {
    let n_atoms = parse_i64(field(counts, 0, 3));
    let n_bonds = parse_i64(field(counts, 3, 6));
    let (n_atoms, n_bonds) = match (n_atoms, n_bonds) {
        (Some(a), Some(b)) if a >= 0 && b >= 0 => (a as usize, b as usize),
        _ => {
            return Err(ctx.err(
                counts_line,
                format!(
                    "bad counts line '{}': expected 'aaabbb' atom and bond counts",
                    show(counts)
                ),
            ))
        }
    };
    let mut m = alloc_checked(n_atoms, n_bonds, lines, counts_line, ctx)?;
    let mut pos: Vec<f64> = Vec::with_capacity(3 * n_atoms);
    for i in 0..n_atoms {
        let line = lines.next().ok_or_else(|| {
            ctx.err(
                lines.line_no + 1,
                format!("truncated record: atom {} of {n_atoms} missing", i + 1),
            )
        })?;
        let ln = lines.line_no;
        if line.starts_with(b"M  ") || line.len() < 34 {
            return Err(ctx.err(
                ln,
                format!(
                    "counts line declares {n_atoms} atoms but the atom block has {i} (line '{}' is not an atom line)",
                    show(line)
                ),
            ));
        }
        for (k, (a, b)) in [(0, 10), (10, 20), (20, 30)].into_iter().enumerate() {
            let v = parse_f64(field(line, a, b)).ok_or_else(|| {
                ctx.err(
                    ln,
                    format!(
                        "atom {}: non-numeric {} coordinate '{}'",
                        i + 1,
                        ["x", "y", "z"][k],
                        show(field(line, a, b))
                    ),
                )
            })?;
            pos.push(v);
        }
        let sym = field(line, 31, 34);
        let (el, iso) = Element::from_symbol_bytes(sym).ok_or_else(|| {
            ctx.err(
                ln,
                format!("atom {}: unknown element '{}'", i + 1, show(sym)),
            )
        })?;
        let mut isotope = iso;
        let mdiff = parse_i64(field(line, 34, 36)).unwrap_or(0);
        if mdiff != 0 {
            let base = el.most_common_isotope().ok_or_else(|| {
                ctx.err(
                    ln,
                    format!(
                        "atom {}: mass difference on {el} (no isotope table entry)",
                        i + 1
                    ),
                )
            })?;
            isotope = (i64::from(base) + mdiff).clamp(1, 400) as u16;
        }
        let (charge, radical) = match parse_i64(field(line, 36, 39)).unwrap_or(0) {
            1 => (3, 0),
            2 => (2, 0),
            3 => (1, 0),
            4 => (0, 2),
            5 => (-1, 0),
            6 => (-2, 0),
            7 => (-3, 0),
            _ => (0, 0),
        };
        m.elements.push(el);
        m.charges.push(charge);
        m.isotopes.push(isotope);
        m.radicals.push(radical);
        m.bonds.add_node(());
    }
    m.positions = Array2::from_shape_vec((n_atoms, 3), pos)
        .map_err(|e| ctx.err(counts_line, e.to_string()))?;
    let mut stereo = Vec::with_capacity(n_bonds);
    for i in 0..n_bonds {
        let line = lines.next().ok_or_else(|| {
            ctx.err(
                lines.line_no + 1,
                format!("truncated record: bond {} of {n_bonds} missing", i + 1),
            )
        })?;
        let ln = lines.line_no;
        if line.starts_with(b"M  ") {
            return Err(ctx.err(
                ln,
                format!("counts line declares {n_bonds} bonds but the bond block has {i}"),
            ));
        }
        let a = parse_i64(field(line, 0, 3));
        let b = parse_i64(field(line, 3, 6));
        let t = parse_i64(field(line, 6, 9));
        let (a, b, t) = match (a, b, t) {
            (Some(a), Some(b), Some(t)) => (a, b, t),
            _ => {
                return Err(ctx.err(
                    ln,
                    format!(
                        "bond {}: expected '111222ttt' fields, got '{}'",
                        i + 1,
                        show(line)
                    ),
                ))
            }
        };
        if a < 1 || b < 1 || a as usize > n_atoms || b as usize > n_atoms || a == b {
            return Err(ctx.err(
                ln,
                format!("bond {}: atoms {a}-{b} out of range 1..={n_atoms}", i + 1),
            ));
        }
        let order = BondOrder::from_mdl_code(t as u32).ok_or_else(|| {
            ctx.err(
                ln,
                format!("bond {}: unsupported bond type {t} (query bond)", i + 1),
            )
        })?;
        let st = BondStereo::from_v2000(parse_i64(field(line, 9, 12)).unwrap_or(0).max(0) as u32);
        add_bond(
            &mut m,
            a as usize - 1,
            b as usize - 1,
            order,
            st,
            &mut stereo,
            ln,
            ctx,
        )?;
    }
    finish_stereo(&mut m, stereo);
    parse_v2000_props(lines, &mut m, ctx)?;
    Ok(m)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn add_bond(
    m: &mut Molecule,
    a: usize,
    b: usize,
    order: BondOrder,
    st: BondStereo,
    stereo: &mut Vec<BondStereo>,
    ln: usize,
    ctx: Ctx<'_>,
) -> Result<(), MolError> {
    use petgraph::graph::NodeIndex;
    if m.bonds
        .find_edge(NodeIndex::new(a), NodeIndex::new(b))
        .is_some()
    {
        return Err(ctx.err(ln, format!("duplicate bond {}-{}", a + 1, b + 1)));
    }
    m.bonds
        .add_edge(NodeIndex::new(a), NodeIndex::new(b), order);
    stereo.push(st);
    Ok(())
}

pub(crate) fn finish_stereo(m: &mut Molecule, stereo: Vec<BondStereo>) {
    m.bond_stereo = if stereo.iter().any(|&s| s != BondStereo::None) {
        stereo
    } else {
        Vec::new()
    };
}

/// Properties block up to `M  END`.
fn parse_v2000_props(
    lines: &mut Lines<'_>,
    m: &mut Molecule,
    ctx: Ctx<'_>,
) -> Result<(), MolError> {
    let n = m.n_atoms();
    let (mut chg_seen, mut rad_seen) = (false, false);
    loop {
        let line = lines
            .next()
            .ok_or_else(|| ctx.err(lines.line_no + 1, "truncated record: no 'M  END' line"))?;
        let ln = lines.line_no;
        if line.starts_with(b"M  END") {
            return Ok(());
        }
        if line.starts_with(b"$$$$") {
            return Err(ctx.err(ln, "truncated record: '$$$$' before 'M  END'"));
        }
        let kind = if line.starts_with(b"M  CHG") {
            0
        } else if line.starts_with(b"M  ISO") {
            1
        } else if line.starts_with(b"M  RAD") {
            2
        } else {
            if line.starts_with(b"A  ") || line.starts_with(b"V  ") || line.starts_with(b"G  ") {
                // Atom alias / value / group abbreviation: next line is text.
                if line.starts_with(b"A  ") || line.starts_with(b"G  ") {
                    lines.next();
                }
            }
            continue;
        };
        if kind == 0 && !chg_seen {
            chg_seen = true;
            m.charges.iter_mut().for_each(|c| *c = 0);
        }
        if kind == 2 && !rad_seen {
            rad_seen = true;
            m.radicals.iter_mut().for_each(|r| *r = 0);
        }
        let mut t = tokens(&line[6..]);
        let cnt = t
            .next()
            .and_then(parse_i64)
            .ok_or_else(|| ctx.err(ln, format!("bad property line '{}'", show(line))))?;
        for _ in 0..cnt {
            let (a, v) = match (t.next().and_then(parse_i64), t.next().and_then(parse_i64)) {
                (Some(a), Some(v)) => (a, v),
                _ => {
                    return Err(ctx.err(
                        ln,
                        format!("property line '{}' has fewer than {cnt} pairs", show(line)),
                    ))
                }
            };
            if a < 1 || a as usize > n {
                return Err(ctx.err(
                    ln,
                    format!("property line refers to atom {a}, record has {n} atoms"),
                ));
            }
            let i = a as usize - 1;
            match kind {
                0 => {
                    m.charges[i] = i8::try_from(v)
                        .map_err(|_| ctx.err(ln, format!("charge {v} on atom {a} out of range")))?
                }
                1 => {
                    m.isotopes[i] = u16::try_from(v)
                        .map_err(|_| ctx.err(ln, format!("isotope {v} on atom {a} out of range")))?
                }
                _ => m.radicals[i] = v.clamp(0, 3) as u8,
            }
        }
    }
}

/// SDF data items after `M  END`: `> <name>` then value lines up to a blank line.
pub(crate) fn parse_data_fields(
    lines: &mut Lines<'_>,
    m: &mut Molecule,
    ctx: Ctx<'_>,
) -> Result<(), MolError> {
    while let Some(line) = lines.next() {
        if line.starts_with(b"$$$$") {
            return Ok(());
        }
        if !line.starts_with(b">") {
            continue;
        }
        let ln = lines.line_no;
        let name = match memchr::memchr(b'<', line) {
            Some(s) => {
                let rest = &line[s + 1..];
                let e = memchr::memchr(b'>', rest).ok_or_else(|| {
                    ctx.err(
                        ln,
                        format!("data header '{}' lacks a closing '>'", show(line)),
                    )
                })?;
                &rest[..e]
            }
            None => return Err(ctx.err(ln, format!("data header '{}' lacks '<name>'", show(line)))),
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = String::new();
        let mut first = true;
        for v in lines.by_ref() {
            if v.is_empty() || trim(v).is_empty() || v.starts_with(b"$$$$") {
                break;
            }
            if !first {
                value.push('\n');
            }
            first = false;
            value.push_str(&String::from_utf8_lossy(v));
        }
        m.properties.push((name, value));
    }
    Ok(())
}
