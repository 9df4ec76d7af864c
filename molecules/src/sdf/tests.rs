use super::*;
use crate::element::Element;
use crate::molecule::{BondOrder, BondStereo};

pub(crate) const ETHANOLATE: &str = "ethanolate
  test              3D

  3  2  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.5000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    2.0000    1.4000    0.0000 O   0  5  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  2  3  1  1
M  ISO  1   1  13
M  END
> <name>
ethanolate

> <multi> (1)
line one
line two

$$$$
";

#[test]
fn v2000_basic() {
    let b =
        parse_sdf_bytes(ETHANOLATE.as_bytes(), "t", &SdfReadOptions::default()).expect("parses");
    assert_eq!(b.molecules.len(), 1);
    let m = &b.molecules[0];
    assert_eq!(m.title, "ethanolate");
    assert_eq!(m.elements, vec![Element::C, Element::C, Element::O]);
    assert_eq!(m.charges, vec![0, 0, -1]);
    assert_eq!(m.isotopes, vec![13, 0, 0]);
    assert_eq!(m.n_bonds(), 2);
    assert!(m.is_3d);
    assert_eq!(
        m.bond_list().nth(1),
        Some((1, 2, BondOrder::Single, BondStereo::Up))
    );
    assert_eq!(m.property("name"), Some("ethanolate"));
    assert_eq!(m.property("multi"), Some("line one\nline two"));
    assert_eq!(m.positions[[2, 1]], 1.4);
}

#[test]
fn m_chg_overrides_atom_block() {
    let s = ETHANOLATE.replace("M  ISO  1   1  13\n", "M  CHG  1   1   1\n");
    let b = parse_sdf_bytes(s.as_bytes(), "t", &SdfReadOptions::default()).expect("parses");
    assert_eq!(b.molecules[0].charges, vec![1, 0, 0]);
}

#[test]
fn write_read_round_trip_v2000_v3000_crlf_gz() {
    let m = parse_sdf_bytes(ETHANOLATE.as_bytes(), "t", &SdfReadOptions::default())
        .expect("parses")
        .molecules;
    for v in [CtabVersion::Auto, CtabVersion::V3000] {
        let mut out = Vec::new();
        write_sdf_version(&mut out, &m, v).expect("write");
        let back = parse_sdf_bytes(&out, "w", &SdfReadOptions::default())
            .expect("reparse")
            .molecules;
        assert_eq!(back, m, "version {v:?}");
        let crlf = String::from_utf8(out.clone())
            .expect("utf8")
            .replace('\n', "\r\n");
        let back = parse_sdf_bytes(crlf.as_bytes(), "w", &SdfReadOptions::default())
            .expect("crlf")
            .molecules;
        assert_eq!(back, m);
        let streamed: Vec<_> = SdfReader::new(std::io::Cursor::new(crlf.into_bytes()), "s")
            .collect::<Result<_>>()
            .expect("stream");
        assert_eq!(streamed, m);
    }
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("x.sdf.gz");
    write_sdf_path(&p, &m, CtabVersion::Auto).expect("gz write");
    assert_eq!(read_sdf_path(&p).expect("gz read"), m);
    let raw = std::fs::read(&p).expect("read");
    assert_eq!(&raw[..2], &[0x1f, 0x8b]);
}

#[test]
fn multi_record_errors_and_skip() {
    let bad = ETHANOLATE.replace("    1.5000    0.0000", "    1.5000    0.0x00");
    let text = format!("{ETHANOLATE}{bad}{ETHANOLATE}");
    let e = parse_sdf_bytes(text.as_bytes(), "f.sdf", &SdfReadOptions::default())
        .expect_err("bad record");
    let msg = e.to_string();
    assert!(
        msg.contains("record 1") && msg.contains("line 25") && msg.contains("coordinate"),
        "{msg}"
    );
    let b = parse_sdf_bytes(
        text.as_bytes(),
        "f.sdf",
        &SdfReadOptions {
            skip_bad: true,
            parallel: false,
        },
    )
    .expect("skip");
    assert_eq!(b.molecules.len(), 2);
    assert_eq!(b.record_index, vec![0, 2]);
    assert_eq!(b.skipped.len(), 1);
    assert_eq!(b.skipped[0].record, 1);
    let mut rd =
        SdfReader::new(std::io::Cursor::new(text.clone().into_bytes()), "s").skip_bad(true);
    assert_eq!(rd.by_ref().count(), 2);
    assert_eq!(rd.skipped().len(), 1);
    let all: Vec<_> = SdfReader::new(std::io::Cursor::new(text.into_bytes()), "s").collect();
    assert!(all[0].is_ok() && all[1].is_err() && all[2].is_ok());
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let o = SdfReadOptions::default();
    // truncated
    let trunc = &ETHANOLATE[..ETHANOLATE.find("  1  2  1").expect("found")];
    assert!(parse_sdf_bytes(trunc.as_bytes(), "t", &o).is_err());
    // counts mismatch: declares 4 atoms
    let c = ETHANOLATE.replace("  3  2  0", "  4  2  0");
    let e = parse_sdf_bytes(c.as_bytes(), "t", &o)
        .expect_err("mismatch")
        .to_string();
    assert!(e.contains("atom"), "{e}");
    // unknown element
    let u = ETHANOLATE.replace(" O   0  5", " Xq  0  5");
    assert!(parse_sdf_bytes(u.as_bytes(), "t", &o)
        .expect_err("elem")
        .to_string()
        .contains("unknown element"));
    // 10^9 atoms, V3000
    let huge = "h\n\n\n  0  0  0     0  0            999 V3000\nM  V30 BEGIN CTAB\nM  V30 COUNTS 1000000000 0 0 0 0\nM  V30 BEGIN ATOM\nM  V30 END ATOM\nM  V30 END CTAB\nM  END\n$$$$\n";
    assert!(parse_sdf_bytes(huge.as_bytes(), "t", &o)
        .expect_err("huge")
        .to_string()
        .contains("1000000000"));
    let huge2 = "h\n\n\n999999  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n$$$$\n";
    assert!(parse_sdf_bytes(huge2.as_bytes(), "t", &o).is_err());
    // empty
    assert!(parse_sdf_bytes(b"", "t", &o)
        .expect("ok")
        .molecules
        .is_empty());
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("e.sdf");
    std::fs::write(&p, b"").expect("w");
    assert!(matches!(read_sdf_path(&p), Err(MolError::Empty { .. })));
    // bond to missing atom, query bond
    let b = ETHANOLATE.replace("  2  3  1  1", "  2  9  1  1");
    assert!(parse_sdf_bytes(b.as_bytes(), "t", &o).is_err());
}

#[test]
fn parallel_chunks_match_streaming() {
    let text: String = (0..500)
        .map(|i| ETHANOLATE.replacen("ethanolate", &format!("mol{i}"), 1))
        .collect();
    let par = parse_sdf_bytes(text.as_bytes(), "t", &SdfReadOptions::default())
        .expect("par")
        .molecules;
    let seq: Vec<_> = SdfReader::new(text.as_bytes(), "t")
        .collect::<Result<_>>()
        .expect("seq");
    assert_eq!(par.len(), 500);
    assert_eq!(par, seq);
    assert_eq!(par[499].title, "mol499");
}

#[test]
fn mol_file_without_terminator() {
    let s = ETHANOLATE.split("> <name>").next().expect("head");
    let b = parse_sdf_bytes(s.as_bytes(), "t", &SdfReadOptions::default()).expect("parses");
    assert_eq!(b.molecules.len(), 1);
    assert!(b.molecules[0].properties.is_empty());
}
