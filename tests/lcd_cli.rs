//! End-to-end tests of `cellmol lcd fit | predict | evaluate` on small
//! simulated screens, plus the bad-input contract.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use datasets::anndata::{Column, DataFrame, DenseArray, Matrix};
use datasets::AnnData;

const BIN: &str = env!("CARGO_BIN_EXE_cellmol");

fn cellmol(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running cellmol")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn err_text(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, stdout {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

const TINY: &str = r#"
noise_model = true
[stage1]
steps = 20
batch_cells = 16
mc_samples = 64
mc_chunk = 64
warmup = 5
res_blocks = 1
out_blocks = 1
res_hidden = 32
envs_per_step = 4
latent_per_env = 200
[stage2]
hidden = 64
steps = 150
batch = 128
[sampler]
steps_per_level = 5
step_base = 1e-5
chains = 30
decodes_per_chain = 2
[eval]
max_cells = 60
"#;

fn simulate(dir: &Path, counts: bool) -> PathBuf {
    let p = dir.join(if counts { "counts.h5ad" } else { "linear.h5ad" });
    let mut args = vec![
        "-q",
        "simulate",
        "screen",
        "--genes",
        "10",
        "--perturbed",
        "6",
        "--doubles",
        "6",
        "--cells-per-condition",
        "40",
        "--seed",
        "3",
        "-o",
    ];
    let ps = p.to_string_lossy().to_string();
    args.push(&ps);
    if counts {
        args.push("--counts");
    }
    ok(&cellmol(&args));
    p
}

fn anndata(labels: &[&str], x: Vec<f32>, d: usize) -> AnnData {
    let n = labels.len();
    let mut obs = DataFrame::new((0..n).map(|i| format!("c{i}")).collect());
    let l: Vec<Option<&str>> = labels.iter().map(|s| Some(*s)).collect();
    obs.set_column("perturbation", Column::categorical_from_labels(&l));
    let var = DataFrame::new((0..d).map(|g| format!("G{g}")).collect());
    let xa = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n, d]), x).expect("shape");
    AnnData {
        x: Some(Matrix::Dense(DenseArray::F32(xa))),
        obs,
        var,
        ..Default::default()
    }
}

#[test]
fn fit_predict_evaluate_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let screen = simulate(dir.path(), true);
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(&cfg, TINY).expect("write config");
    let model = dir.path().join("model");
    let (s, m, c) = (
        screen.to_string_lossy().to_string(),
        model.to_string_lossy().to_string(),
        cfg.to_string_lossy().to_string(),
    );
    ok(&cellmol(&[
        "-q",
        "lcd",
        "fit",
        "--min-cells",
        "5",
        &s,
        "-o",
        &m,
        "--config",
        &c,
        "--fold",
        "0",
        "--folds",
        "3",
        "--seed",
        "1",
    ]));
    for f in [
        "model.json",
        "weights.safetensors",
        "config.toml",
        "curves.jsonl",
    ] {
        assert!(model.join(f).is_file(), "{f} missing");
    }
    // Refuse to overwrite a finished model.
    let e = err_text(&cellmol(&[
        "-q",
        "lcd",
        "fit",
        "--min-cells",
        "5",
        &s,
        "-o",
        &m,
        "--config",
        &c,
    ]));
    assert!(e.contains("--force"), "{e}");
    // Evaluate: JSON contract.
    let out = cellmol(&["-q", "lcd", "evaluate", &m, &s, "--json"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(!v["conditions"].as_array().expect("conditions").is_empty());
    for method in ["lcd", "additive", "control", "pooled"] {
        for metric in ["energy_distance", "mmd", "rmse", "pearson_delta", "w1"] {
            assert!(
                v["summary"][method][metric].is_number(),
                "{method}.{metric}"
            );
        }
    }
    // Predict twice with the same seed: identical; condition labels and layers present.
    let p1 = dir.path().join("p1.h5ad");
    let p2 = dir.path().join("p2.h5ad");
    for p in [&p1, &p2] {
        ok(&cellmol(&[
            "-q",
            "lcd",
            "predict",
            &m,
            "--perturbation",
            "G0+G1",
            "--perturbation",
            "ctrl",
            "-n",
            "25",
            "-o",
            &p.to_string_lossy(),
        ]));
    }
    let a = datasets::anndata::read_h5ad(&p1).expect("read p1");
    let b = datasets::anndata::read_h5ad(&p2).expect("read p2");
    assert_eq!(a.n_obs(), 50);
    assert_eq!(a.x, b.x);
    assert!(a.layers.contains_key("latent"));
    let labels = a.obs.column("perturbation").expect("perturbation").labels();
    assert_eq!(labels[0].as_deref(), Some("G0+G1"));
    // Unknown target: clear error, nothing written.
    let p3 = dir.path().join("p3.h5ad");
    let e = err_text(&cellmol(&[
        "-q",
        "lcd",
        "predict",
        &m,
        "--perturbation",
        "NOTAGENE",
        "-o",
        &p3.to_string_lossy(),
    ]));
    assert!(
        e.contains("NOTAGENE") && e.contains("unknown target"),
        "{e}"
    );
    assert!(!p3.exists());
    // Gene mismatch between model and screen.
    let other = dir.path().join("other.h5ad");
    let labels = ["control", "control", "X1", "X1"];
    let mut ad = anndata(&labels, vec![1.0; 4 * 3], 3);
    ad.var.index = vec!["A".into(), "B".into(), "C".into()];
    datasets::anndata::write_h5ad(&ad, &other).expect("write");
    let e = err_text(&cellmol(&[
        "-q",
        "lcd",
        "evaluate",
        &m,
        &other.to_string_lossy(),
        "--fold",
        "0",
    ]));
    assert!(e.contains("gene list mismatch"), "{e}");
    // A directory that is not a finished model (no COMPLETE marker).
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    let e = err_text(&cellmol(&[
        "-q",
        "lcd",
        "predict",
        &broken.to_string_lossy(),
        "--perturbation",
        "G0",
        "-o",
        &p3.to_string_lossy(),
    ]));
    assert!(e.contains("COMPLETE"), "{e}");
}

/// SIGTERM mid-training → checkpoint + exit 75; predict/evaluate refuse the
/// interrupted directory; plain `fit` refuses it too; `fit --resume`
/// continues from the checkpoint and finishes (COMPLETE marker, curves kept).
#[test]
fn sigterm_checkpoints_and_resume_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let screen = simulate(dir.path(), false);
    let cfg = dir.path().join("long.toml");
    let text = format!(
        "checkpoint_every = 20\n{}",
        TINY.replace("noise_model = true", "noise_model = false")
            .replace("steps = 150", "steps = 5000")
    );
    std::fs::write(&cfg, text).expect("write config");
    let model = dir.path().join("model");
    let (s, m, c) = (
        screen.to_string_lossy().to_string(),
        model.to_string_lossy().to_string(),
        cfg.to_string_lossy().to_string(),
    );
    let child = Command::new(BIN)
        .args([
            "lcd",
            "fit",
            "--min-cells",
            "5",
            &s,
            "-o",
            &m,
            "--config",
            &c,
            "--no-noise-model",
            "--resume",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cellmol");
    // Wait for the first periodic checkpoint, then ask the run to stop.
    let t0 = std::time::Instant::now();
    while !model.join("checkpoint").join("state.json").exists() {
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert!(!model.join("COMPLETE").exists());
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(model.join("checkpoint").join("state.json")).expect("state"),
    )
    .expect("json");
    let stopped_at = state["step"].as_u64().expect("step");
    assert!(stopped_at > 0 && stopped_at < 5000, "{state}");
    let logged = std::fs::read_to_string(model.join("curves.jsonl"))
        .expect("curves")
        .lines()
        .count();
    // Loaders and a plain fit refuse the interrupted run.
    let p = dir.path().join("p.h5ad").to_string_lossy().to_string();
    let e = err_text(&cellmol(&[
        "-q",
        "lcd",
        "predict",
        &m,
        "--perturbation",
        "G0",
        "-o",
        &p,
    ]));
    assert!(e.contains("interrupted"), "{e}");
    let e = err_text(&cellmol(&[
        "-q",
        "lcd",
        "fit",
        "--min-cells",
        "5",
        &s,
        "-o",
        &m,
        "--config",
        &c,
        "--no-noise-model",
    ]));
    assert!(e.contains("interrupted") && e.contains("--resume"), "{e}");
    // Resume with fewer remaining steps than a fresh run would need.
    let out = cellmol(&[
        "-q",
        "lcd",
        "fit",
        "--min-cells",
        "5",
        &s,
        "-o",
        &m,
        "--config",
        &c,
        "--no-noise-model",
        "--resume",
    ]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "resuming from checkpoint at stage2 step {stopped_at}"
        )),
        "{err}"
    );
    assert!(model.join("COMPLETE").is_file());
    assert!(!model.join("checkpoint").exists());
    let rows = std::fs::read_to_string(model.join("curves.jsonl"))
        .expect("curves")
        .lines()
        .count();
    assert!(
        rows > logged,
        "curves.jsonl was not appended ({rows} vs {logged})"
    );
    ok(&cellmol(&[
        "-q",
        "lcd",
        "predict",
        &m,
        "--perturbation",
        "G0",
        "-n",
        "10",
        "-o",
        &p,
    ]));
    // A requeued task whose model finished: `--resume` leaves it untouched and succeeds.
    let before = std::fs::read(model.join("weights.safetensors")).expect("weights");
    let out = cellmol(&[
        "-q",
        "lcd",
        "fit",
        "--min-cells",
        "5",
        &s,
        "-o",
        &m,
        "--config",
        &c,
        "--no-noise-model",
        "--resume",
    ]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to resume"));
    assert_eq!(
        std::fs::read(model.join("weights.safetensors")).expect("weights"),
        before
    );
}

#[test]
fn bad_screens_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(&cfg, TINY).expect("write config");
    let c = cfg.to_string_lossy().to_string();
    let model = dir.path().join("m");
    let m = model.to_string_lossy().to_string();
    // No controls.
    let p = dir.path().join("noctrl.h5ad");
    datasets::anndata::write_h5ad(&anndata(&["A", "A", "B", "B"], vec![1.0; 8], 2), &p)
        .expect("write");
    let e = err_text(&cellmol(&[
        "-q",
        "lcd",
        "fit",
        "--min-cells",
        "1",
        &p.to_string_lossy(),
        "-o",
        &m,
        "--config",
        &c,
    ]));
    assert!(e.contains("no control"), "{e}");
    // NaN and negative counts.
    for (name, bad) in [("nan", f32::NAN), ("neg", -1.0)] {
        let p = dir.path().join(format!("{name}.h5ad"));
        let mut x = vec![1.0f32; 8];
        x[5] = bad;
        datasets::anndata::write_h5ad(&anndata(&["control", "control", "G0", "G0"], x, 2), &p)
            .expect("write");
        let e = err_text(&cellmol(&[
            "-q",
            "lcd",
            "fit",
            "--min-cells",
            "1",
            &p.to_string_lossy(),
            "-o",
            &m,
            "--config",
            &c,
        ]));
        assert!(
            e.contains("cell 0") && (e.contains("non-finite") || e.contains("negative")),
            "{e}"
        );
    }
    assert!(!model.exists(), "nothing may be written on bad input");
    // Bad config value is named.
    std::fs::write(&cfg, "[stage2]\nsigma_min = -1.0\n").expect("write");
    let e = err_text(&cellmol(&[
        "-q",
        "lcd",
        "fit",
        "--min-cells",
        "1",
        &p.to_string_lossy(),
        "-o",
        &m,
        "--config",
        &c,
    ]));
    assert!(e.contains("stage2.sigma_min"), "{e}");
}

#[test]
fn no_noise_model_on_linear_screen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let screen = simulate(dir.path(), false);
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(
        &cfg,
        TINY.replace("noise_model = true", "noise_model = false"),
    )
    .expect("write config");
    let model = dir.path().join("model");
    let (s, m, c) = (
        screen.to_string_lossy().to_string(),
        model.to_string_lossy().to_string(),
        cfg.to_string_lossy().to_string(),
    );
    ok(&cellmol(&[
        "-q",
        "lcd",
        "fit",
        "--min-cells",
        "5",
        &s,
        "-o",
        &m,
        "--config",
        &c,
        "--fold",
        "1",
        "--folds",
        "3",
        "--no-noise-model",
    ]));
    let out = cellmol(&["-q", "lcd", "evaluate", &m, &s]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("additive") && text.contains("energy_distance"),
        "{text}"
    );
}

/// `--genes N` keeps the perturbed genes and fills up with HVGs; `--min-cells`
/// leaves out small conditions; `evaluate` rebuilds the same genes and split.
#[test]
fn gene_selection_and_min_cells() {
    let dir = tempfile::tempdir().expect("tempdir");
    let screen = simulate(dir.path(), true); // 10 genes, G0..G5 perturbed, 40 cells each
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(&cfg, TINY).expect("write config");
    let model = dir.path().join("model");
    let (s, m, c) = (
        screen.to_string_lossy().to_string(),
        model.to_string_lossy().to_string(),
        cfg.to_string_lossy().to_string(),
    );
    // Every condition has 40 cells: --min-cells 41 leaves nothing to train on.
    let e = err_text(&cellmol(&[
        "-q",
        "lcd",
        "fit",
        &s,
        "-o",
        &m,
        "--config",
        &c,
        "--min-cells",
        "41",
    ]));
    assert!(e.contains("--min-cells"), "{e}");
    assert!(!model.exists(), "nothing may be written on bad input");
    ok(&cellmol(&[
        "-q",
        "lcd",
        "fit",
        &s,
        "-o",
        &m,
        "--config",
        &c,
        "--min-cells",
        "10",
        "--genes",
        "8",
        "--fold",
        "0",
        "--folds",
        "3",
    ]));
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("model.json")).expect("model.json"),
    )
    .expect("json");
    let genes: Vec<String> = meta["genes"]
        .as_array()
        .expect("genes")
        .iter()
        .map(|g| g.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(genes.len(), 8, "{genes:?}");
    let perturbed: Vec<String> = meta["vocabulary"]
        .as_array()
        .expect("vocabulary")
        .iter()
        .map(|g| g.as_str().unwrap_or_default().to_string())
        .collect();
    assert!(!perturbed.is_empty());
    for t in &perturbed {
        assert!(
            genes.contains(t),
            "perturbed gene {t} not selected: {genes:?}"
        );
    }
    assert_eq!(meta["info"]["screen_spec"]["n_genes"], 8);
    let out = cellmol(&["-q", "lcd", "evaluate", &m, &s, "--json"]);
    ok(&out);
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let tested: Vec<&str> = ev["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| c["condition"].as_str().unwrap_or_default())
        .collect();
    let held_out: Vec<&str> = meta["info"]["test_conditions"]
        .as_array()
        .expect("test_conditions")
        .iter()
        .map(|c| c.as_str().unwrap_or_default())
        .collect();
    assert_eq!(tested, held_out);
}
