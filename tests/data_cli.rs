//! End-to-end tests of `cellmol data inspect|subset` on a committed fixture
//! (tests/data/small_screen.h5ad, made by tests/data/make_small_screen.py with
//! anndata), scanpy's legacy pbmc68k file, and bad input.
use std::path::PathBuf;
use std::process::{Command, Output};

use datasets::anndata::{read_h5ad, Matrix};

fn cellmol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellmol"))
        .args(args)
        .output()
        .expect("running cellmol")
}

fn fixture() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/small_screen.h5ad"
    ))
}

fn venv_python() -> PathBuf {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python"));
    assert!(
        p.exists(),
        "project venv missing ({}): run scripts/setup.sh first",
        p.display()
    );
    p
}

fn dense(m: &Matrix) -> ndarray::Array2<f32> {
    m.to_dense_f32().unwrap()
}

#[test]
fn inspect_json_reports_the_contract_fields() {
    let out = cellmol(&["data", "inspect", fixture().to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let ad = read_h5ad(fixture()).unwrap();
    let x = ad.x.as_ref().unwrap();
    assert_eq!(j["n_obs"], 60);
    assert_eq!(j["n_vars"], 8);
    assert_eq!(j["x_encoding"], "csr_matrix");
    assert_eq!(j["x_nnz"].as_u64().unwrap() as usize, x.nnz());
    assert!((j["x_sum"].as_f64().unwrap() - x.sum()).abs() < 1e-9);
    assert_eq!(j["obs_columns"]["perturbation"], "categorical");
    assert_eq!(j["var_columns"]["mean"], "f64");
    assert_eq!(j["layers"], serde_json::json!(["counts"]));
    assert_eq!(j["obsm"], serde_json::json!(["X_pca"]));
    assert_eq!(j["varm"], serde_json::json!(["loadings"]));
    assert_eq!(j["obsp"], serde_json::json!(["connectivities"]));
    assert_eq!(j["varp"], serde_json::json!(["true_effects"]));
    assert_eq!(j["uns"], serde_json::json!(["simulation"]));
    assert!(j["raw"].is_null());
    assert_eq!(j["perturbation_column"], "perturbation");
    assert_eq!(
        j["perturbation_counts"],
        serde_json::json!({"control": 12, "G1": 12, "G2": 12, "G1+G2": 12, "NaN": 12})
    );
    // the readable summary
    let out = cellmol(&["data", "inspect", fixture().to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("60 obs × 8 vars") && text.contains("csr_matrix") && text.contains("G1+G2"),
        "{text}"
    );
}

#[test]
fn inspect_legacy_pbmc68k() {
    let f = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.venv/lib/python3.11/site-packages/scanpy/datasets/10x_pbmc68k_reduced.h5ad"
    ));
    assert!(
        f.exists(),
        "scanpy's pbmc68k file missing ({}): run scripts/setup.sh",
        f.display()
    );
    let out = cellmol(&["data", "inspect", f.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (j["n_obs"].as_u64(), j["n_vars"].as_u64()),
        (Some(700), Some(765))
    );
    assert_eq!(j["x_encoding"], "array");
    assert_eq!(j["raw"]["n_vars"], 765);
    assert_eq!(j["raw"]["nnz"], 174400);
    assert_eq!(j["obs_columns"]["bulk_labels"], "categorical");
    assert_eq!(j["obsm"], serde_json::json!(["X_pca", "X_umap"]));
    assert_eq!(
        j["obsp"],
        serde_json::json!(["connectivities", "distances"])
    );
}

#[test]
fn subset_by_perturbations_and_genes() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("sub.h5ad");
    let out = cellmol(&[
        "data",
        "subset",
        fixture().to_str().unwrap(),
        "--perturbations",
        "G1,G1+G2",
        "--genes",
        "G5,G0,G3",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full = read_h5ad(fixture()).unwrap();
    let sub = read_h5ad(&out_path).unwrap();
    let labels = full.obs.column("perturbation").unwrap().labels();
    let rows: Vec<usize> = (0..60)
        .filter(|&i| matches!(labels[i].as_deref(), Some("G1") | Some("G1+G2")))
        .collect();
    let cols = [5usize, 0, 3];
    let want = full.subset(Some(&rows), Some(&cols));
    assert_eq!(sub.n_obs(), 24);
    assert_eq!(sub.var_names(), ["G5", "G0", "G3"]);
    assert_eq!(sub.obs, want.obs);
    assert_eq!(sub.var, want.var);
    assert_eq!(
        dense(sub.x.as_ref().unwrap()),
        dense(want.x.as_ref().unwrap())
    );
    assert_eq!(dense(&sub.layers["counts"]), dense(&want.layers["counts"]));
    assert_eq!(sub.obsm, want.obsm);
    assert_eq!(sub.varm, want.varm);
    assert_eq!(sub.varp, want.varp);
    assert_eq!(
        dense(&sub.obsp["connectivities"]),
        dense(&want.obsp["connectivities"])
    );
    assert_eq!(sub.uns, full.uns);
    // anndata reads the subset with the same shape and labels
    let check = Command::new(venv_python())
        .args([
            "-c",
            "import sys, anndata as ad; a = ad.read_h5ad(sys.argv[1]); \
             assert a.shape == (24, 3), a.shape; assert list(a.var_names) == ['G5', 'G0', 'G3']; \
             assert set(a.obs['perturbation'].astype(str)) == {'G1', 'G1+G2'}; print(a.X.sum())",
            out_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "anndata: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let py_sum: f64 = String::from_utf8_lossy(&check.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!((py_sum - sub.x.as_ref().unwrap().sum()).abs() < 1e-4);
}

#[test]
fn subset_errors_name_the_bad_labels() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("o.h5ad");
    let f = fixture();
    let out = cellmol(&[
        "data",
        "subset",
        f.to_str().unwrap(),
        "--genes",
        "G1,NOPE,ZZZ",
        "-o",
        o.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NOPE") && err.contains("ZZZ") && err.contains("gene"),
        "{err}"
    );
    let out = cellmol(&[
        "data",
        "subset",
        f.to_str().unwrap(),
        "--perturbations",
        "G1,G9+G2",
        "-o",
        o.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("G9+G2") && err.contains("perturbation"),
        "{err}"
    );
    assert!(!o.exists(), "no output on error");
}

#[test]
fn bad_input_exits_non_zero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.h5ad");
    std::fs::write(&bad, "not an hdf5 file").unwrap();
    let out = cellmol(&["data", "inspect", bad.to_str().unwrap(), "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.h5ad") && err.contains("HDF5"), "{err}");
    let trunc = dir.path().join("trunc.h5ad");
    let bytes = std::fs::read(fixture()).unwrap();
    std::fs::write(&trunc, &bytes[..bytes.len() / 3]).unwrap();
    let out = cellmol(&[
        "data",
        "subset",
        trunc.to_str().unwrap(),
        "--genes",
        "G1",
        "-o",
        dir.path().join("x.h5ad").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("trunc.h5ad"));
}

/// `cellmol data inspect … | head` must not panic when the reader goes away.
#[test]
fn closed_stdout_pipe_is_not_a_panic() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cellmol"))
        .args(["data", "inspect", fixture().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running cellmol");
    // Close the read end before the child writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("waiting for cellmol");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked"),
        "cellmol panicked on EPIPE: {err}"
    );
}
