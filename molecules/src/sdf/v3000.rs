//! V3000 ("extended") connection tables: `M  V30 BEGIN CTAB` … `M  V30 END
//! CTAB`, `COUNTS`, `ATOM` and `BOND` blocks with `KEY=VALUE` atom/bond
//! properties (CHG, MASS, RAD, CFG) and `-` line continuations (CTfile
//! Formats 2020, "Extended (V3000) Molfile"). Other blocks (SGROUP,
//! COLLECTION, 3D) are skipped.
use std::borrow::Cow;

use ndarray::Array2;

use super::lines::{parse_f64, parse_i64, show, tokens, Lines};
use super::parse::{add_bond, alloc_checked, finish_stereo, Ctx};
use crate::element::Element;
use crate::error::MolError;
use crate::molecule::{BondOrder, BondStereo, Molecule};

/// Next logical `M  V30` line (continuations joined), without the prefix.
fn next_v30<'a>(lines: &mut Lines<'a>, ctx: Ctx<'_>) -> Result<(Cow<'a, [u8]>, usize), MolError> {
    let mut out: Option<Vec<u8>> = None;
    loop {
        let line = lines.next().ok_or_else(|| {
            ctx.err(
                lines.line_no + 1,
                "truncated V3000 record: missing 'M  V30 END CTAB'",
            )
        })?;
        let ln = lines.line_no;
        let body = line.strip_prefix(b"M  V30 ").ok_or_else(|| {
            ctx.err(
                ln,
                format!(
                    "expected an 'M  V30 ' line inside the V3000 CTAB, got '{}'",
                    show(line)
                ),
            )
        })?;
        let body = super::lines::trim(body);
        if let Some(head) = body.strip_suffix(b"-") {
            out.get_or_insert_with(Vec::new).extend_from_slice(head);
            continue;
        }
        return Ok(match out {
            Some(mut v) => {
                v.extend_from_slice(body);
                (Cow::Owned(v), ln)
            }
            None => (Cow::Borrowed(body), ln),
        });
    }
}

fn kv(tok: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = memchr::memchr(b'=', tok)?;
    Some((&tok[..i], &tok[i + 1..]))
}

pub(crate) fn parse_ctab(lines: &mut Lines<'_>, ctx: Ctx<'_>) -> Result<Molecule, MolError> {
    let (l, ln) = next_v30(lines, ctx)?;
    if &*l != b"BEGIN CTAB" {
        return Err(ctx.err(
            ln,
            format!("expected 'M  V30 BEGIN CTAB', got '{}'", show(&l)),
        ));
    }
    let (l, ln) = next_v30(lines, ctx)?;
    let mut t = tokens(&l);
    if t.next() != Some(b"COUNTS") {
        return Err(ctx.err(
            ln,
            format!("expected 'M  V30 COUNTS na nb ...', got '{}'", show(&l)),
        ));
    }
    let na = t.next().and_then(parse_i64);
    let nb = t.next().and_then(parse_i64);
    let (n_atoms, n_bonds) = match (na, nb) {
        (Some(a), Some(b)) if a >= 0 && b >= 0 => (a as usize, b as usize),
        _ => return Err(ctx.err(ln, format!("bad V3000 counts '{}'", show(&l)))),
    };
    let counts_line = ln;
    let mut m = alloc_checked(n_atoms, n_bonds, lines, counts_line, ctx)?;
    let mut pos: Vec<f64> = Vec::with_capacity(3 * n_atoms);
    let mut idx_map: std::collections::HashMap<i64, usize> =
        std::collections::HashMap::with_capacity(n_atoms);
    let mut stereo = Vec::new();
    loop {
        let (l, ln) = next_v30(lines, ctx)?;
        match &*l {
            b"END CTAB" => break,
            b"BEGIN ATOM" => {
                for i in 0..n_atoms {
                    let (l, ln) = next_v30(lines, ctx)?;
                    if l.starts_with(b"END ATOM") {
                        return Err(ctx.err(
                            ln,
                            format!("COUNTS declares {n_atoms} atoms but the ATOM block has {i}"),
                        ));
                    }
                    let mut t = tokens(&l);
                    let idx = t.next().and_then(parse_i64).ok_or_else(|| {
                        ctx.err(ln, format!("atom line '{}': bad index", show(&l)))
                    })?;
                    let sym = t.next().unwrap_or(b"");
                    let (el, iso) = Element::from_symbol_bytes(sym).ok_or_else(|| {
                        ctx.err(ln, format!("atom {idx}: unknown element '{}'", show(sym)))
                    })?;
                    for k in 0..3 {
                        let tok = t.next().unwrap_or(b"");
                        let v = parse_f64(tok).ok_or_else(|| {
                            ctx.err(
                                ln,
                                format!(
                                    "atom {idx}: non-numeric {} coordinate '{}'",
                                    ["x", "y", "z"][k],
                                    show(tok)
                                ),
                            )
                        })?;
                        pos.push(v);
                    }
                    let _aamap = t.next();
                    let (mut chg, mut isotope, mut rad) = (0i8, iso, 0u8);
                    for tok in t {
                        if let Some((k, v)) = kv(tok) {
                            let val = parse_i64(v);
                            match (k, val) {
                                (b"CHG", Some(c)) => {
                                    chg = i8::try_from(c).map_err(|_| {
                                        ctx.err(ln, format!("atom {idx}: charge {c} out of range"))
                                    })?
                                }
                                (b"MASS", Some(c)) => isotope = c.clamp(0, 400) as u16,
                                (b"RAD", Some(c)) => rad = c.clamp(0, 3) as u8,
                                _ => {}
                            }
                        }
                    }
                    if idx_map.insert(idx, i).is_some() {
                        return Err(ctx.err(ln, format!("duplicate atom index {idx}")));
                    }
                    m.elements.push(el);
                    m.charges.push(chg);
                    m.isotopes.push(isotope);
                    m.radicals.push(rad);
                    m.bonds.add_node(());
                }
                let (l, ln) = next_v30(lines, ctx)?;
                if &*l != b"END ATOM" {
                    return Err(ctx.err(
                        ln,
                        format!(
                            "COUNTS declares {n_atoms} atoms but the ATOM block has more ('{}')",
                            show(&l)
                        ),
                    ));
                }
            }
            b"BEGIN BOND" => {
                for i in 0..n_bonds {
                    let (l, ln) = next_v30(lines, ctx)?;
                    if l.starts_with(b"END BOND") {
                        return Err(ctx.err(
                            ln,
                            format!("COUNTS declares {n_bonds} bonds but the BOND block has {i}"),
                        ));
                    }
                    let v: Vec<&[u8]> = tokens(&l).collect();
                    let nums: Vec<Option<i64>> = v.iter().take(4).map(|t| parse_i64(t)).collect();
                    let (t, a, b) = match nums.as_slice() {
                        [Some(_), Some(t), Some(a), Some(b)] => (*t, *a, *b),
                        _ => {
                            return Err(ctx.err(
                                ln,
                                format!("bond line '{}': expected 'idx type a1 a2'", show(&l)),
                            ))
                        }
                    };
                    let (ia, ib) = match (idx_map.get(&a), idx_map.get(&b)) {
                        (Some(&x), Some(&y)) if x != y => (x, y),
                        _ => {
                            return Err(ctx.err(
                                ln,
                                format!("bond {}: atoms {a}-{b} not in the ATOM block", i + 1),
                            ))
                        }
                    };
                    let order = BondOrder::from_mdl_code(t as u32).ok_or_else(|| {
                        ctx.err(
                            ln,
                            format!("bond {}: unsupported bond type {t} (query bond)", i + 1),
                        )
                    })?;
                    let mut st = BondStereo::None;
                    for tok in v.iter().skip(4) {
                        if let Some((b"CFG", val)) = kv(tok) {
                            st = match (parse_i64(val), order) {
                                (Some(1), _) => BondStereo::Up,
                                (Some(3), _) => BondStereo::Down,
                                (Some(2), BondOrder::Double) => BondStereo::CisTransEither,
                                (Some(2), _) => BondStereo::Either,
                                _ => BondStereo::None,
                            };
                        }
                    }
                    add_bond(&mut m, ia, ib, order, st, &mut stereo, ln, ctx)?;
                }
                let (l, ln) = next_v30(lines, ctx)?;
                if &*l != b"END BOND" {
                    return Err(ctx.err(
                        ln,
                        format!(
                            "COUNTS declares {n_bonds} bonds but the BOND block has more ('{}')",
                            show(&l)
                        ),
                    ));
                }
            }
            other if other.starts_with(b"BEGIN ") => {
                // Skip an unsupported block (SGROUP, COLLECTION, OBJ3D, ...).
                let end: Vec<u8> = [b"END ".as_slice(), &other[6..]].concat();
                loop {
                    let (l, _) = next_v30(lines, ctx)?;
                    if *l == *end {
                        break;
                    }
                }
            }
            _ => {
                return Err(ctx.err(ln, format!("unexpected V3000 line '{}'", show(&l))));
            }
        }
    }
    if m.elements.len() != n_atoms {
        return Err(ctx.err(
            counts_line,
            format!("COUNTS declares {n_atoms} atoms but no ATOM block held them"),
        ));
    }
    if m.bonds.edge_count() != n_bonds {
        return Err(ctx.err(
            counts_line,
            format!(
                "COUNTS declares {n_bonds} bonds but found {}",
                m.bonds.edge_count()
            ),
        ));
    }
    m.positions = Array2::from_shape_vec((n_atoms, 3), pos)
        .map_err(|e| ctx.err(counts_line, e.to_string()))?;
    finish_stereo(&mut m, stereo);
    // Properties block tail: expect M  END.
    loop {
        let line = lines
            .next()
            .ok_or_else(|| ctx.err(lines.line_no + 1, "truncated V3000 record: no 'M  END'"))?;
        if line.starts_with(b"M  END") {
            break;
        }
    }
    Ok(m)
}
