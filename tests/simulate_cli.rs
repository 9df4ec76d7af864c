//! End-to-end tests of `cellmol simulate screen`.
use std::process::Command;

use datasets::anndata::{read_h5ad, Column, Matrix, Value};
use datasets::simulate::{Drift, TrueSystem};

fn cellmol() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellmol"))
}

#[test]
fn simulate_linear_screen_writes_h5ad_with_truth() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("screen.h5ad");
    let st = cellmol()
        .args([
            "simulate",
            "screen",
            "--kind",
            "linear",
            "--genes",
            "20",
            "--perturbed",
            "5",
            "--doubles",
            "4",
        ])
        .args([
            "--cells-per-condition",
            "30",
            "--graph",
            "sf",
            "--degree",
            "2",
            "--seed",
            "7",
            "-o",
        ])
        .arg(&out)
        .output()?;
    assert!(
        st.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let ad = read_h5ad(&out)?;
    assert_eq!((ad.n_obs(), ad.n_vars()), (10 * 30, 20));
    let labels = ad
        .obs
        .column("perturbation")
        .map(Column::labels)
        .expect("perturbation column");
    assert_eq!(labels[0].as_deref(), Some("control"));
    assert!(labels.iter().flatten().any(|l| l.contains('+')));
    assert!(matches!(ad.x, Some(Matrix::Dense(_))));
    assert!(ad.varp.contains_key("true_effects"));
    assert!(matches!(ad.uns.get("simulation"), Some(Value::Dict(_))));
    let sys = TrueSystem::from_anndata(&ad)?;
    assert_eq!(sys.n_genes(), 20);
    // Same seed, same file content.
    let out2 = dir.path().join("again.h5ad");
    let st = cellmol()
        .args([
            "-q",
            "simulate",
            "screen",
            "--genes",
            "20",
            "--perturbed",
            "5",
            "--doubles",
            "4",
            "--cells-per-condition",
            "30",
        ])
        .args(["--graph", "sf", "--degree", "2", "--seed", "7", "-o"])
        .arg(&out2)
        .output()?;
    assert!(st.status.success());
    assert!(
        st.stderr.is_empty(),
        "--quiet should print nothing: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(read_h5ad(&out2)?.x, ad.x);
    Ok(())
}

#[test]
fn simulate_nonlinear_counts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("nl.h5ad");
    let st = cellmol()
        .args([
            "-q",
            "simulate",
            "screen",
            "--kind",
            "nonlinear",
            "--genes",
            "15",
            "--perturbed",
            "4",
            "--doubles",
            "2",
        ])
        .args([
            "--cells-per-condition",
            "20",
            "--counts",
            "--seed",
            "1",
            "-o",
        ])
        .arg(&out)
        .output()?;
    assert!(
        st.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let ad = read_h5ad(&out)?;
    assert!(
        matches!(ad.x, Some(Matrix::Sparse(_))),
        "counts should be sparse"
    );
    assert!(ad.layers.contains_key("latent"));
    assert!(matches!(
        TrueSystem::from_anndata(&ad)?,
        TrueSystem::Nonlinear(_)
    ));
    Ok(())
}

#[test]
fn simulate_rejects_bad_options() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("x.h5ad");
    for (args, needle) in [
        (vec!["--genes", "5", "--perturbed", "6"], "perturbed"),
        (
            vec!["--genes", "10", "--perturbed", "3", "--doubles", "4"],
            "doubles",
        ),
        (
            vec![
                "--genes",
                "10",
                "--perturbed",
                "3",
                "--cells-per-condition",
                "0",
            ],
            "cells-per-condition",
        ),
    ] {
        let st = cellmol()
            .args(["simulate", "screen"])
            .args(&args)
            .arg("-o")
            .arg(&out)
            .output()?;
        assert!(!st.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&st.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!out.exists(), "no output on failure");
    }
    Ok(())
}
