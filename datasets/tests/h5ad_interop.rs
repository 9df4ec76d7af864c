//! Interop with Python anndata (project venv): files written by anndata load
//! here with equal values, files written here load in anndata with equal
//! values, and scanpy's legacy-layout `10x_pbmc68k_reduced.h5ad` reads as
//! anndata reads it.
mod h5ad_common;

use datasets::anndata::{read_h5ad, write_h5ad};
use h5ad_common::*;

fn make_reference(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("reference.h5ad");
    run_python(&[
        script("h5ad_make_reference.py").as_os_str(),
        out.as_os_str(),
    ]);
    out
}

#[test]
fn anndata_written_file_reads_with_equal_values() {
    let dir = tempfile::tempdir().unwrap();
    let f = make_reference(dir.path());
    let ours = read_h5ad(&f).unwrap();
    assert_same(&summary(&ours), &python_summary(&f), "anndata-written file");
}

#[test]
fn legacy_pbmc68k_reads_like_anndata() {
    let f = pbmc68k();
    let ours = read_h5ad(&f).unwrap();
    assert_eq!((ours.n_obs(), ours.n_vars()), (700, 765));
    assert!(ours.raw.is_some(), "raw.X of the legacy file");
    assert_same(
        &summary(&ours),
        &python_summary(&f),
        "10x_pbmc68k_reduced.h5ad",
    );
}

/// The lazy backed reader gives the same obs (names read on demand) and var
/// as the whole-file reader, for an anndata-written file and for the legacy
/// layout (whose names are read at open).
#[test]
fn lazy_backed_obs_matches_whole_read() {
    use datasets::anndata::H5adReader;
    let dir = tempfile::tempdir().unwrap();
    for f in [make_reference(dir.path()), pbmc68k()] {
        let whole = read_h5ad(&f).unwrap();
        let r = H5adReader::open_lazy(&f).unwrap();
        assert_eq!(r.n_obs(), whole.n_obs(), "{}", f.display());
        assert_eq!(r.obs.columns(), &whole.obs.columns[..], "{}", f.display());
        assert_eq!(r.var, whole.var, "{}", f.display());
        // Selected names only (the anndata-written file: read from disk;
        // the legacy one: picked from the names read at open).
        let n = whole.n_obs();
        for rows in [vec![], vec![n - 1, 0, 7, 7], (0..n).step_by(3).collect()] {
            let want: Vec<String> = rows.iter().map(|&i| whole.obs.index[i].clone()).collect();
            assert_eq!(r.obs.names_of(&rows).unwrap(), want, "{}", f.display());
            assert_eq!(
                r.obs.select_rows(&rows).unwrap(),
                whole.obs.select_rows(&rows),
                "{}",
                f.display()
            );
        }
        assert!(r.obs.names_of(&[n]).is_err());
        assert_eq!(r.obs.to_frame().unwrap(), whole.obs, "{}", f.display());
    }
}

#[test]
fn files_written_here_load_in_anndata() {
    let dir = tempfile::tempdir().unwrap();
    for src in [make_reference(dir.path()), pbmc68k()] {
        let a = read_h5ad(&src).unwrap();
        let out = dir.path().join("ours.h5ad");
        write_h5ad(&a, &out).unwrap();
        assert_same(
            &summary(&a),
            &python_summary(&out),
            &format!("re-written {}", src.display()),
        );
        // and our own reader agrees with itself
        assert_same(
            &summary(&read_h5ad(&out).unwrap()),
            &summary(&a),
            "Rust re-read",
        );
    }
}

/// anndata writes a CSC X and `nullable-string-array` columns (pandas
/// "string" dtype): the strings read here as labels equal to anndata's
/// (missing → None), and the CSC X walked in row chunks equals anndata's X.
#[test]
fn anndata_csc_and_nullable_strings() {
    use datasets::anndata::{Column, H5adReader};
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("csc_nullable.h5ad");
    let out = run_python(&[
        script("h5ad_make_csc_nullable.py").as_os_str(),
        f.as_os_str(),
    ]);
    let want: serde_json::Value = serde_json::from_str(&out).unwrap();
    let labels = |v: &serde_json::Value| -> Vec<Option<String>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    let x_want: Vec<Vec<f64>> = want["X_dense"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();

    let a = read_h5ad(&f).unwrap();
    let guide = a.obs.column("guide").expect("obs guide");
    assert!(
        matches!(guide, Column::Categorical { .. }),
        "read as categorical"
    );
    assert_eq!(guide.labels(), labels(&want["guide"]));
    assert!(
        guide.labels().iter().any(Option::is_none),
        "fixture has missing labels"
    );
    assert_eq!(
        a.var.column("symbol").unwrap().labels(),
        labels(&want["symbol"])
    );
    let x = a.x.as_ref().unwrap();
    assert_eq!(x.encoding(), "csc_matrix");
    let xd = x.to_dense_f32().unwrap();
    for (i, row) in x_want.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            assert_eq!(f64::from(xd[[i, j]]), v, "X[{i}, {j}]");
        }
    }

    let r = H5adReader::open(&f).unwrap();
    assert_eq!(
        r.obs.column("guide").unwrap().labels(),
        labels(&want["guide"])
    );
    for chunk in [1, 10, 64, 257, 500] {
        let mut next = 0;
        for item in r.iter_chunks("X", chunk).unwrap() {
            let (rows, m) = item.unwrap();
            assert_eq!(rows.start, next);
            assert_eq!(m.encoding(), "csc_matrix");
            let md = m.to_dense_f32().unwrap();
            for (k, i) in rows.clone().enumerate() {
                for j in 0..x_want[i].len() {
                    assert_eq!(
                        f64::from(md[[k, j]]),
                        x_want[i][j],
                        "chunk {chunk}: X[{i}, {j}]"
                    );
                }
            }
            next = rows.end;
        }
        assert_eq!(next, 257, "chunks of {chunk} cover all cells");
    }
    // Written back here and re-read by anndata, the labels survive.
    let back = dir.path().join("back.h5ad");
    write_h5ad(&a, &back).unwrap();
    let s = python_summary(&back);
    let codes = s["obs"]["columns"]["guide"]["codes"]
        .as_array()
        .unwrap()
        .clone();
    let cats = s["obs"]["columns"]["guide"]["categorical"]["strings"]
        .as_array()
        .unwrap()
        .clone();
    let round: Vec<Option<String>> = codes
        .iter()
        .map(|c| {
            let c = c.as_i64().unwrap();
            (c >= 0).then(|| cats[c as usize].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(round, labels(&want["guide"]));
}
