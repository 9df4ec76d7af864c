//! End-to-end tests of `cellmol clipr` on simulated screens (true drifts).
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cellmol");
const PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");

fn cellmol(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run cellmol")
}

fn simulate(dir: &Path, kind: &str, genes: usize, perturbed: usize) -> String {
    let path = dir.join(format!("{kind}_{genes}_{perturbed}.h5ad"));
    let p = path.to_str().expect("utf-8 path").to_string();
    let out = cellmol(&[
        "simulate",
        "screen",
        "--kind",
        kind,
        "--genes",
        &genes.to_string(),
        "--perturbed",
        &perturbed.to_string(),
        "--cells-per-condition",
        "10",
        "--seed",
        "3",
        "-o",
        &p,
        "-q",
    ]);
    assert!(
        out.status.success(),
        "simulate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    p
}

#[test]
fn clipr_on_true_linear_drift_prints_scores_and_writes_outputs() {
    let dir = tempfile::tempdir().expect("tmp");
    let screen = simulate(dir.path(), "linear", 20, 20);
    let out_dir = dir.path().join("out");
    let out = cellmol(&[
        "clipr",
        &screen,
        "-o",
        out_dir.to_str().expect("utf-8"),
        "--estimator",
        "published,direction-aware",
        "--truth",
        &screen,
        "--json",
        "-q",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    for est in ["published", "direction-aware"] {
        let m = &v[est];
        for key in ["auroc3", "directed_auprc", "pearson", "sign_f1"] {
            let x = m[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{est}.{key} missing in {v}"));
            assert!(x > 0.99, "{est}.{key} = {x} on the true linear drift");
        }
        for f in [
            "effects.tsv",
            "edges.tsv",
            "graph.graphml",
            "graph.dot",
            "modules.tsv",
            "heatmap.png",
            "summary.json",
        ] {
            assert!(out_dir.join(est).join(f).is_file(), "{est}/{f} missing");
        }
    }
    assert_eq!(v.as_object().map(|o| o.len()), Some(2));
    let edges = std::fs::read_to_string(out_dir.join("published/edges.tsv")).expect("edges");
    assert_eq!(edges.lines().next(), Some("source\ttarget\teffect"));
    let png = std::fs::read(out_dir.join("published/heatmap.png")).expect("png");
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn clipr_into_writes_anndata_keys_that_anndata_reads() {
    assert!(
        Path::new(PY).is_file(),
        "project venv missing at {PY}: run scripts/setup.sh first"
    );
    let dir = tempfile::tempdir().expect("tmp");
    // half of the genes perturbed: the output must say "NOT IDENTIFIED"
    let screen = simulate(dir.path(), "nonlinear", 16, 8);
    let out_dir = dir.path().join("out");
    let out = cellmol(&[
        "clipr",
        &screen,
        "-o",
        out_dir.to_str().expect("utf-8"),
        "--into",
        &screen,
        "--min-module-size",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT IDENTIFIED"));
    let script = r#"
import sys, anndata as ad, numpy as np
a = ad.read_h5ad(sys.argv[1])
e = a.varp["clipr_effects"]
assert e.shape == (16, 16) and e.dtype == np.float64, e.shape
assert str(a.var["clipr_module"].dtype) == "category"
p = a.uns["clipr"]["params"]
assert p["estimator"] == "published" and abs(p["lambda"] - 1e-4) < 1e-12 and not p["identified"], dict(p)
assert "true_effects" in a.varp and "simulation" in a.uns
print("ok", float(np.abs(e).sum()))
"#;
    let py = Command::new(PY)
        .args(["-c", script, &screen])
        .output()
        .expect("python");
    assert!(
        py.status.success(),
        "anndata check failed: {}",
        String::from_utf8_lossy(&py.stderr)
    );
}

#[test]
fn clipr_top_lists_regulators_and_targets() {
    let dir = tempfile::tempdir().expect("tmp");
    let screen = simulate(dir.path(), "linear", 12, 12);
    let out = cellmol(&["clipr", "top", &screen, "G3", "-k", "4", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        v["published"]["regulators"].as_array().map(|a| a.len()),
        Some(4)
    );
    assert_eq!(
        v["published"]["targets"].as_array().map(|a| a.len()),
        Some(4)
    );
    let text = cellmol(&["clipr", "top", &screen, "G3"]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("regulators of G3"));
}

#[test]
fn clipr_bad_input_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let screen = simulate(dir.path(), "linear", 8, 8);
    let o = dir.path().join("o");
    let o = o.to_str().expect("utf-8");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["clipr", "top", &screen, "NOPE"], "NOPE"),
        (vec!["clipr", &screen, "-o", o, "--json"], "--truth"),
        (
            vec!["clipr", &screen, "-o", o, "--estimator", "magic"],
            "magic",
        ),
        (vec!["clipr", &screen, "-o", o, "--lambda=-1"], "lambda"),
        (vec!["clipr", "/nonexistent/model", "-o", o], "nonexistent"),
    ];
    for (args, needle) in cases {
        let out = cellmol(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn clipr_implication_test_runs_inline_and_as_a_subcommand() {
    let dir = tempfile::tempdir().expect("tmp");
    let screen = simulate(dir.path(), "linear", 20, 20);
    let out_dir = dir.path().join("out");
    let od = out_dir.to_str().expect("utf-8");
    let out = cellmol(&[
        "clipr",
        &screen,
        "-o",
        od,
        "--estimator",
        "published,direction-aware",
        "--implication",
        &screen,
        "--bootstrap",
        "200",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("implication test over 20 perturbations"),
        "{err}"
    );
    for est in ["published", "direction-aware"] {
        let f = out_dir.join(est).join("implication.json");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&f).expect("implication.json")).expect("json");
        assert_eq!(v["n_perturbations"], 20, "{v}");
        assert_eq!(v["levels"].as_array().map(|l| l.len()), Some(3), "{v}");
    }
    // the subcommand on the whole output directory: one entry per estimator
    let out = cellmol(&[
        "clipr",
        "implication",
        od,
        "--screen",
        &screen,
        "--quantiles",
        "0.8,0.9",
        "--json",
        "-q",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    for est in ["published", "direction-aware"] {
        let r = &v[est];
        let base = r["baseline_rate"].as_f64().expect("baseline_rate");
        assert!((0.0..=1.0).contains(&base), "{r}");
        for l in r["levels"].as_array().expect("levels") {
            let p = l["precision"].as_f64().expect("precision");
            let (lo, hi) = (
                l["ci_low"].as_f64().expect("ci_low"),
                l["ci_high"].as_f64().expect("ci_high"),
            );
            assert!(lo <= p && p <= hi, "{l}");
            // dense graph (degree 10 of 20 genes): most pairs are DE; the
            // discrimination itself is tested in clipr/tests/implication.rs
            assert!(p > 0.5, "{est}: precision {p} (baseline {base})");
        }
    }
    // one estimator directory, as a table
    let out = cellmol(&[
        "clipr",
        "implication",
        out_dir.join("published").to_str().expect("utf-8"),
        "--screen",
        &screen,
        "-q",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("precision"));
    // bad input
    for (args, needle) in [
        (
            vec![
                "clipr",
                "implication",
                od,
                "--screen",
                &screen,
                "--quantiles",
                "1.5",
            ],
            "quantiles",
        ),
        (
            vec![
                "clipr",
                "implication",
                od,
                "--screen",
                "/nonexistent/s.h5ad",
            ],
            "nonexistent",
        ),
        (
            vec![
                "clipr",
                "implication",
                "/nonexistent/out",
                "--screen",
                &screen,
            ],
            "nonexistent",
        ),
        (
            vec![
                "clipr",
                "implication",
                od,
                "--screen",
                &screen,
                "--min-cells",
                "500",
            ],
            "control cells",
        ),
    ] {
        let out = cellmol(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
