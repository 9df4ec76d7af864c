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
