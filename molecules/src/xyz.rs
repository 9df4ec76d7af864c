//! XYZ files (multi-record): `n_atoms`, a comment line (kept as the title),
//! then `n_atoms` lines `symbol x y z [extra columns ignored]`. The symbol may
//! also be an atomic number. Gzip input is detected by magic bytes.
use std::io::Write;
use std::path::Path;

use ndarray::Array2;

use crate::element::Element;
use crate::error::{MolError, Result};
use crate::molecule::Molecule;
use crate::sdf::open_input;

fn err(source: &str, record: usize, line: usize, what: impl Into<String>) -> MolError {
    MolError::Parse {
        source_name: source.to_string(),
        record,
        line,
        what: what.into(),
    }
}

/// Parse every record of an in-memory XYZ file.
pub fn parse_xyz_bytes(bytes: &[u8], source: &str) -> Result<Vec<Molecule>> {
    let mut out = Vec::new();
    let text = bytes;
    let mut lines = text
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .peekable();
    let total_lines = memchr::memchr_iter(b'\n', bytes).count() + 1;
    let mut record = 0;
    while let Some((i, l)) = lines.next() {
        let t = l.trim_ascii();
        if t.is_empty() {
            continue;
        }
        let ln = i + 1;
        let n: usize = std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                err(
                    source,
                    record,
                    ln,
                    format!(
                        "expected an atom count, got '{}'",
                        String::from_utf8_lossy(t)
                    ),
                )
            })?;
        if n > total_lines.saturating_sub(ln + 1) {
            return Err(err(
                source,
                record,
                ln,
                format!(
                    "atom count {n} exceeds the {} lines that follow",
                    total_lines - ln
                ),
            ));
        }
        let title = lines
            .next()
            .map(|(_, l)| String::from_utf8_lossy(l).trim_end().to_string())
            .ok_or_else(|| {
                err(
                    source,
                    record,
                    ln + 1,
                    "truncated record: missing comment line",
                )
            })?;
        let mut els = Vec::with_capacity(n);
        let mut pos = Vec::with_capacity(3 * n);
        for k in 0..n {
            let (j, l) = lines.next().ok_or_else(|| {
                err(
                    source,
                    record,
                    ln + 2 + k,
                    format!("truncated record: atom {} of {n} missing", k + 1),
                )
            })?;
            let mut tok = l
                .split(|c| c.is_ascii_whitespace())
                .filter(|t| !t.is_empty());
            let sym = tok.next().unwrap_or(b"");
            let el = Element::from_symbol_bytes(sym)
                .map(|(e, _)| e)
                .or_else(|| {
                    std::str::from_utf8(sym)
                        .ok()?
                        .parse::<u32>()
                        .ok()
                        .and_then(Element::from_z)
                })
                .ok_or_else(|| {
                    err(
                        source,
                        record,
                        j + 1,
                        format!("unknown element '{}'", String::from_utf8_lossy(sym)),
                    )
                })?;
            for c in 0..3 {
                let s = tok.next().unwrap_or(b"");
                let v = std::str::from_utf8(s)
                    .ok()
                    .and_then(|s| s.replace(['*'], "e").parse::<f64>().ok())
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        err(
                            source,
                            record,
                            j + 1,
                            format!(
                                "non-numeric {} coordinate '{}'",
                                ["x", "y", "z"][c],
                                String::from_utf8_lossy(s)
                            ),
                        )
                    })?;
                pos.push(v);
            }
            els.push(el);
        }
        let positions = Array2::from_shape_vec((n, 3), pos)
            .map_err(|e| err(source, record, ln, e.to_string()))?;
        let mut m = Molecule::new(els, positions)?;
        m.title = title;
        m.is_3d = true;
        out.push(m);
        record += 1;
    }
    Ok(out)
}

/// Read a (possibly gzipped) XYZ file; an empty file is an error.
pub fn read_xyz_path(path: impl AsRef<Path>) -> Result<Vec<Molecule>> {
    let path = path.as_ref();
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut open_input(path)?, &mut buf)
        .map_err(|e| MolError::io(path, e))?;
    let v = parse_xyz_bytes(&buf, &path.display().to_string())?;
    if v.is_empty() {
        return Err(MolError::Empty {
            source_name: path.display().to_string(),
        });
    }
    Ok(v)
}

/// Write molecules as multi-record XYZ (title on the comment line, 6 decimals).
pub fn write_xyz<'a, W: Write + ?Sized>(
    w: &mut W,
    mols: impl IntoIterator<Item = &'a Molecule>,
) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let mut s = String::new();
    for m in mols {
        let _ = writeln!(s, "{}", m.n_atoms());
        let _ = writeln!(s, "{}", m.title.lines().next().unwrap_or(""));
        for (i, e) in m.elements.iter().enumerate() {
            let p = m.positions.row(i);
            let _ = writeln!(
                s,
                "{:<2} {:>12.6} {:>12.6} {:>12.6}",
                e.symbol(),
                p[0],
                p[1],
                p[2]
            );
        }
        if s.len() > 1 << 20 {
            w.write_all(s.as_bytes())?;
            s.clear();
        }
    }
    w.write_all(s.as_bytes())
}

/// Write an XYZ file atomically (gzip on `.gz`).
pub fn write_xyz_path<'a>(
    path: impl AsRef<Path>,
    mols: impl IntoIterator<Item = &'a Molecule>,
) -> Result<()> {
    crate::io::write_atomic_with(path.as_ref(), |w| write_xyz(w, mols))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip_multi() {
        let text = b"3\nwater\nO 0 0 0.1\nH 0.7 0 -0.4\n1 -0.7 0 -0.4\n2\nH2 molecule\nH 0 0 0\nH 0 0 0.74\n";
        let v = parse_xyz_bytes(text, "t").expect("parses");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].title, "water");
        assert_eq!(v[0].elements, vec![Element::O, Element::H, Element::H]);
        assert_eq!(v[1].positions[[1, 2]], 0.74);
        let mut out = Vec::new();
        write_xyz(&mut out, &v).expect("write");
        let w = parse_xyz_bytes(&out, "t2").expect("reparse");
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].title, "H2 molecule");
        assert!((&w[0].positions - &v[0].positions)
            .iter()
            .all(|d| d.abs() < 1e-6));
    }
    #[test]
    fn bad_inputs() {
        assert!(parse_xyz_bytes(b"2\nx\nC 0 0 0\n", "t").is_err());
        assert!(parse_xyz_bytes(b"1\nx\nXx 0 0 0\n", "t").is_err());
        assert!(parse_xyz_bytes(b"1\nx\nC 0 a 0\n", "t").is_err());
        assert!(parse_xyz_bytes(b"1000000000\nx\nC 0 0 0\n", "t").is_err());
    }
}
