//! Bad input: every case returns an error naming the file, the HDF5 path and
//! what was expected; nothing panics.
use std::path::{Path, PathBuf};

use datasets::anndata::*;
use hdf5::types::VarLenUnicode;

fn small(dir: &Path) -> PathBuf {
    let n_obs = 4;
    let mut obs = DataFrame::new((0..n_obs).map(|i| format!("c{i}")).collect());
    obs.set_column(
        "perturbation",
        Column::categorical_from_labels(&[Some("control"), Some("G1"), None, Some("G1")]),
    );
    let var = DataFrame::new(vec!["G0".into(), "G1".into(), "G2".into()]);
    let x = SparseMatrix {
        format: SparseFormat::Csr,
        shape: (4, 3),
        data: SparseData::F32(vec![1.0, 2.0, 3.0, 4.0]),
        indices: SparseIndex::I32(vec![0, 2, 1, 2]),
        indptr: SparseIndex::I32(vec![0, 2, 3, 3, 4]),
    };
    let ad = AnnData {
        x: Some(Matrix::Sparse(x)),
        obs,
        var,
        ..Default::default()
    };
    let p = dir.join("ok.h5ad");
    write_h5ad(&ad, &p).unwrap();
    p
}

fn err_of(p: &Path) -> String {
    let e = read_h5ad(p).expect_err("bad input must be refused");
    let backed = H5adReader::open(p).and_then(|r| r.read_rows(&[0, 1]).map(|_| ()));
    let msg = e.to_string();
    assert!(
        msg.contains(&p.display().to_string()),
        "message names the file: {msg}"
    );
    let _ = backed; // must not panic either
                    // Reading everything through either backed reader fails alike (the lazy
                    // one may report it later, when the names are read).
    let whole = H5adReader::open(p).and_then(|r| r.read_subset(None, None).map(|_| ()));
    let lazy = H5adReader::open_lazy(p).and_then(|r| {
        r.read_rows(&[0, 1])?;
        r.obs.names()?;
        r.read_subset(None, None).map(|_| ())
    });
    assert_eq!(whole.is_err(), lazy.is_err(), "{whole:?} vs {lazy:?}");
    if let Err(e) = lazy {
        let m = e.to_string();
        assert!(m.contains(&p.display().to_string()), "lazy: {m}");
    }
    msg
}

fn set_attr(p: &Path, obj: &str, name: &str, value: Option<&str>) {
    let f = hdf5::File::open_rw(p).unwrap();
    let loc: hdf5::Location = if let Ok(g) = f.group(obj) {
        (*g).clone()
    } else {
        (**f.dataset(obj).unwrap()).clone()
    };
    loc.delete_attr(name).unwrap();
    if let Some(v) = value {
        let a = loc.new_attr::<VarLenUnicode>().create(name).unwrap();
        a.write_scalar(&v.parse::<VarLenUnicode>().unwrap())
            .unwrap();
    }
}

#[test]
fn not_hdf5() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("text.h5ad");
    std::fs::write(&p, "obs,var\n1,2\n").unwrap();
    let m = err_of(&p);
    assert!(m.contains("an HDF5 file"), "{m}");
    let p = d.path().join("empty.h5ad");
    std::fs::write(&p, "").unwrap();
    assert!(err_of(&p).contains("empty file"));
    let missing = d.path().join("missing.h5ad");
    assert!(read_h5ad(&missing)
        .unwrap_err()
        .to_string()
        .contains("missing.h5ad"));
}

#[test]
fn truncated() {
    let d = tempfile::tempdir().unwrap();
    let p = small(d.path());
    let bytes = std::fs::read(&p).unwrap();
    for keep in [bytes.len() / 2, bytes.len() - 100, 600] {
        std::fs::write(&p, &bytes[..keep]).unwrap();
        let m = err_of(&p);
        assert!(
            m.contains("truncated") || m.contains("corrupt") || m.contains("read failed"),
            "{m}"
        );
    }
}

#[test]
fn unknown_and_missing_encoding() {
    let d = tempfile::tempdir().unwrap();
    let p = small(d.path());
    set_attr(&p, "X", "encoding-type", Some("awkward-array"));
    let m = err_of(&p);
    assert!(m.contains("/X") && m.contains("awkward-array"), "{m}");

    let p = small(d.path());
    set_attr(&p, "obs", "encoding-type", None);
    let m = err_of(&p);
    assert!(m.contains("/obs") && m.contains("encoding-type"), "{m}");

    let p = small(d.path());
    set_attr(&p, "/", "encoding-type", Some("mudata"));
    let m = err_of(&p);
    assert!(m.contains("mudata") && m.contains("anndata"), "{m}");
}

#[test]
fn indptr_inconsistent_with_shape() {
    let d = tempfile::tempdir().unwrap();
    let p = small(d.path());
    {
        let f = hdf5::File::open_rw(&p).unwrap();
        let g = f.group("X").unwrap();
        g.delete_attr("shape").unwrap();
        g.new_attr_builder()
            .with_data(&[5i64, 3])
            .create("shape")
            .unwrap();
    }
    let m = err_of(&p);
    assert!(m.contains("/X/indptr") && m.contains("6 entries"), "{m}");

    let p = small(d.path());
    {
        let f = hdf5::File::open_rw(&p).unwrap();
        f.dataset("X/indptr")
            .unwrap()
            .write_raw(&[0i32, 3, 2, 3, 4])
            .unwrap();
    }
    let m = err_of(&p);
    assert!(
        m.contains("/X/indptr") && m.contains("non-decreasing"),
        "{m}"
    );
}

#[test]
fn index_out_of_range() {
    let d = tempfile::tempdir().unwrap();
    let p = small(d.path());
    {
        let f = hdf5::File::open_rw(&p).unwrap();
        f.dataset("X/indices")
            .unwrap()
            .write_raw(&[0i32, 2, 7, 2])
            .unwrap();
    }
    let m = err_of(&p);
    assert!(
        m.contains("/X/indices") && m.contains("[0, 3)") && m.contains("= 7"),
        "{m}"
    );
    // categorical codes out of range
    let p = small(d.path());
    {
        let f = hdf5::File::open_rw(&p).unwrap();
        f.dataset("obs/perturbation/codes")
            .unwrap()
            .write_raw(&[0i8, 1, 5, 1])
            .unwrap();
    }
    let m = err_of(&p);
    assert!(m.contains("/obs/perturbation/codes"), "{m}");
}

#[test]
fn duplicated_obs_names() {
    let d = tempfile::tempdir().unwrap();
    let p = small(d.path());
    {
        let f = hdf5::File::open_rw(&p).unwrap();
        let v: Vec<VarLenUnicode> = ["c0", "c1", "c1", "c3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        f.dataset("obs/_index").unwrap().write_raw(&v).unwrap();
    }
    let m = err_of(&p);
    assert!(
        m.contains("/obs") && m.contains("unique obs names") && m.contains("`c1`"),
        "{m}"
    );
    // The lazy reader does not read the names to select and read cells, but
    // every path that returns names refuses them.
    let r = H5adReader::open_lazy(&p).unwrap();
    let rows = r
        .obs
        .column("perturbation")
        .unwrap()
        .rows_with_labels(&["G1"]);
    assert_eq!(rows, vec![1, 3]);
    assert_eq!(r.read_rows(&rows).unwrap().shape2(), (2, 3));
    // Selected names are checked among themselves only: rows 0 and 3 pass
    // (the duplicate is elsewhere), a repeated row is no duplicate, but the
    // two rows holding `c1` are refused.
    assert_eq!(r.obs.names_of(&[3, 0]).unwrap(), ["c3", "c0"]);
    assert_eq!(r.obs.names_of(&[1, 1]).unwrap(), ["c1", "c1"]);
    for e in [
        r.obs.names_of(&[2, 0, 1]).map(|_| ()).unwrap_err(),
        r.obs.select_rows(&[1, 2]).map(|_| ()).unwrap_err(),
        r.obs.names().map(|_| ()).unwrap_err(),
        r.obs.to_frame().map(|_| ()).unwrap_err(),
        r.read_subset(Some(&rows), None).map(|_| ()).unwrap_err(),
    ] {
        let m = e.to_string();
        assert!(
            m.contains(&p.display().to_string())
                && m.contains("/obs")
                && m.contains("unique obs names")
                && m.contains("`c1` at rows 1 and 2"),
            "{m}"
        );
    }
    // the writer refuses too
    let mut a = read_h5ad(small(d.path())).unwrap();
    a.obs.index[3] = "c0".into();
    assert!(write_h5ad(&a, d.path().join("dup.h5ad")).is_err());
    assert!(!d.path().join("dup.h5ad").exists(), "no partial output");
}

#[test]
fn non_utf8_strings() {
    let d = tempfile::tempdir().unwrap();
    let p = small(d.path());
    {
        // Replace var/_index by fixed-length strings holding invalid UTF-8.
        let f = hdf5::File::open_rw(&p).unwrap();
        let g = f.group("var").unwrap();
        g.unlink("_index").unwrap();
        // SAFETY (test only): deliberately invalid bytes to exercise UTF-8 validation.
        #[allow(unsafe_code)]
        let bad: Vec<hdf5::types::FixedAscii<4>> = [&b"\xff\xfe"[..], b"G1", b"G2"]
            .iter()
            .map(|s| unsafe { hdf5::types::FixedAscii::from_ascii_unchecked(s) })
            .collect();
        let ds = g
            .new_dataset_builder()
            .with_data(&bad)
            .create("_index")
            .unwrap();
        let a = ds
            .new_attr::<VarLenUnicode>()
            .create("encoding-type")
            .unwrap();
        a.write_scalar(&"string-array".parse::<VarLenUnicode>().unwrap())
            .unwrap();
    }
    let m = err_of(&p);
    assert!(m.contains("/var/_index") && m.contains("UTF-8"), "{m}");
}

/// Invalid UTF-8 in obs names: refused at open, or by the lazy reader when
/// the names are read.
#[test]
fn non_utf8_obs_names() {
    let d = tempfile::tempdir().unwrap();
    let p = small(d.path());
    {
        let f = hdf5::File::open_rw(&p).unwrap();
        let g = f.group("obs").unwrap();
        g.unlink("_index").unwrap();
        // SAFETY (test only): deliberately invalid bytes to exercise UTF-8 validation.
        #[allow(unsafe_code)]
        let bad: Vec<hdf5::types::FixedAscii<4>> = [&b"c0"[..], b"c1", b"\xc3(", b"c3"]
            .iter()
            .map(|s| unsafe { hdf5::types::FixedAscii::from_ascii_unchecked(s) })
            .collect();
        let ds = g
            .new_dataset_builder()
            .with_data(&bad)
            .create("_index")
            .unwrap();
        let a = ds
            .new_attr::<VarLenUnicode>()
            .create("encoding-type")
            .unwrap();
        a.write_scalar(&"string-array".parse::<VarLenUnicode>().unwrap())
            .unwrap();
    }
    let m = err_of(&p);
    assert!(m.contains("/obs/_index") && m.contains("UTF-8"), "{m}");
    let r = H5adReader::open_lazy(&p).unwrap();
    assert_eq!(r.n_obs(), 4);
    // Selected names: only what is read is checked (fixed-length strings,
    // point selection); the error names the row.
    assert_eq!(r.obs.names_of(&[3, 0, 1]).unwrap(), ["c3", "c0", "c1"]);
    for rows in [&[2][..], &[3, 2, 0]] {
        let e = r.obs.names_of(rows).unwrap_err().to_string();
        assert!(
            e.contains(&p.display().to_string())
                && e.contains("/obs/_index")
                && e.contains("UTF-8")
                && e.contains("at row 2"),
            "{e}"
        );
    }
    assert!(r.obs.select_rows(&[1, 2]).is_err());
    let e = r.obs.names().unwrap_err().to_string();
    assert!(e.contains("/obs/_index") && e.contains("UTF-8"), "{e}");
}

/// Invalid UTF-8 in variable-length obs names (stored as ASCII strings, which
/// HDF5 does not check), few names (HDF5 path) and many (direct path):
/// `names_of` reports the row, `names` refuses the file.
#[test]
fn non_utf8_vlen_obs_names_of() {
    for n in [4usize, 3000] {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(format!("vlen{n}.h5ad"));
        let ad = AnnData {
            obs: DataFrame::new((0..n).map(|i| format!("c{i}")).collect()),
            var: DataFrame::new(vec!["G0".into()]),
            ..Default::default()
        };
        write_h5ad(&ad, &p).unwrap();
        let bad_row = n - 2;
        {
            let f = hdf5::File::open_rw(&p).unwrap();
            let g = f.group("obs").unwrap();
            g.unlink("_index").unwrap();
            let bytes: Vec<Vec<u8>> = (0..n)
                .map(|i| match i == bad_row {
                    true => b"bad\xff\xfe".to_vec(),
                    false => format!("c{i}").into_bytes(),
                })
                .collect();
            // SAFETY (test only): deliberately invalid bytes to exercise UTF-8 validation.
            #[allow(unsafe_code)]
            let v: Vec<hdf5::types::VarLenAscii> = bytes
                .iter()
                .map(|b| unsafe { hdf5::types::VarLenAscii::from_ascii_unchecked(b) })
                .collect();
            let ds = g
                .new_dataset_builder()
                .with_data(&v)
                .create("_index")
                .unwrap();
            let a = ds
                .new_attr::<VarLenUnicode>()
                .create("encoding-type")
                .unwrap();
            a.write_scalar(&"string-array".parse::<VarLenUnicode>().unwrap())
                .unwrap();
        }
        let r = H5adReader::open_lazy(&p).unwrap();
        assert_eq!(r.n_obs(), n);
        assert_eq!(
            r.obs.names_of(&[n - 1, 0]).unwrap(),
            [format!("c{}", n - 1), "c0".to_string()]
        );
        let e = r.obs.names_of(&[0, bad_row]).unwrap_err().to_string();
        assert!(
            e.contains(&p.display().to_string())
                && e.contains("/obs/_index")
                && e.contains("UTF-8")
                && e.contains(&format!("at row {bad_row}")),
            "n={n}: {e}"
        );
        let e = r.obs.names().unwrap_err().to_string();
        assert!(
            e.contains("/obs/_index") && e.contains("UTF-8"),
            "n={n}: {e}"
        );
    }
}

#[test]
fn shape_mismatch_between_x_and_obs() {
    let d = tempfile::tempdir().unwrap();
    let mut a = read_h5ad(small(d.path())).unwrap();
    a.var.index.pop();
    let e = write_h5ad(&a, d.path().join("bad.h5ad"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/X"), "{e}");
}
