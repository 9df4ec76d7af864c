//! End-to-end tests of `cellmol plot expression | expansion`: pictures are
//! written (valid PNG / SVG), bad inputs fail with the file named and leave
//! no picture behind.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use datasets::anndata::{Column, DataFrame, DenseArray, Matrix};
use datasets::AnnData;

const BIN: &str = env!("CARGO_BIN_EXE_cellmol");
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

fn cellmol(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running cellmol")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn err_text(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, stdout {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!e.contains("panicked"), "panic: {e}");
    e
}

fn s(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

/// A valid picture of the kind its extension says.
fn assert_picture(p: &Path) {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        bytes.len() > 1000,
        "{} is only {} bytes",
        p.display(),
        bytes.len()
    );
    match p.extension().and_then(|e| e.to_str()) {
        Some("png") => assert_eq!(&bytes[..8], PNG_MAGIC, "{}", p.display()),
        Some("svg") => {
            let t = String::from_utf8_lossy(&bytes);
            assert!(t.contains("<svg"), "{}: no <svg> root", p.display());
            assert!(
                t.trim_end().ends_with("</svg>"),
                "{}: unterminated",
                p.display()
            );
        }
        other => panic!("unexpected extension {other:?}"),
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn anndata(labels: &[String], x: Vec<f32>, genes: &[&str]) -> AnnData {
    let n = labels.len();
    let d = genes.len();
    let mut obs = DataFrame::new((0..n).map(|i| format!("c{i}")).collect());
    let l: Vec<Option<&str>> = labels.iter().map(|s| Some(s.as_str())).collect();
    obs.set_column("perturbation", Column::categorical_from_labels(&l));
    let var = DataFrame::new(genes.iter().map(|g| g.to_string()).collect());
    let xa = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n, d]), x).expect("shape");
    AnnData {
        x: Some(Matrix::Dense(DenseArray::F32(xa))),
        obs,
        var,
        ..Default::default()
    }
}

const GENES: [&str; 5] = ["A", "B", "C", "D", "E"];

/// Deterministic pseudo-counts: gene g of a cell in condition `shift`.
fn count(i: usize, g: usize, shift: usize) -> f32 {
    ((i * 7 + g * 3) % 11 + shift * (g + 1)) as f32
}

/// A screen (control, A, B, A+B) and a predictions file ("B+A": the order
/// of targets must not matter, plus another condition).
fn fixtures(dir: &Path) -> (PathBuf, PathBuf) {
    let mut labels = Vec::new();
    let mut x = Vec::new();
    for (c, label) in ["control", "A", "B", "A+B"].iter().enumerate() {
        for i in 0..40 {
            labels.push(label.to_string());
            x.extend((0..GENES.len()).map(|g| count(i, g, c)));
        }
    }
    let screen = dir.join("screen.h5ad");
    datasets::anndata::write_h5ad(&anndata(&labels, x, &GENES), &screen).expect("screen");
    let mut labels = Vec::new();
    let mut x = Vec::new();
    for (c, label) in ["B+A", "A"].iter().enumerate() {
        for i in 0..30 {
            labels.push(label.to_string());
            x.extend((0..GENES.len()).map(|g| count(i + 5, g, 3 - 2 * c)));
        }
    }
    // the predictions hold the genes in another order
    let genes = ["E", "D", "C", "B", "A"];
    let pred = dir.join("pred.h5ad");
    datasets::anndata::write_h5ad(&anndata(&labels, x, &genes), &pred).expect("pred");
    (screen, pred)
}

#[test]
fn expression_png_and_svg_from_predictions_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (screen, pred) = fixtures(tmp.path());
    // default output: next to the predictions, genes chosen automatically
    let out = ok(&cellmol(&[
        "-q",
        "plot",
        "expression",
        &s(&pred),
        &s(&screen),
        "--perturbation",
        "A+B",
    ]));
    let default = tmp.path().join("expression_A+B.png");
    assert_eq!(out.trim(), s(&default));
    assert_picture(&default);
    // explicit genes and SVG
    let svg = tmp.path().join("e.svg");
    ok(&cellmol(&[
        "-q",
        "plot",
        "expression",
        &s(&pred),
        &s(&screen),
        "--perturbation",
        "B+A",
        "--genes",
        "C,A",
        "--scale",
        "raw",
        "-o",
        &s(&svg),
    ]));
    assert_picture(&svg);
    let text = std::fs::read_to_string(&svg).expect("svg");
    // panel titles name the chosen genes (text needs the DejaVu font of setup.sh)
    if datasets::train::plot::ensure_font() {
        assert!(text.contains("C: mean obs"), "gene C panel missing");
        assert!(text.contains("A (target)"), "target A not marked");
        assert!(!text.contains("E: mean obs"), "gene E was not asked for");
    }
    // a single perturbation also works
    ok(&cellmol(&[
        "-q",
        "plot",
        "expression",
        &s(&pred),
        &s(&screen),
        "--perturbation",
        "A",
        "-o",
        &s(&tmp.path().join("single.png")),
    ]));
    assert_picture(&tmp.path().join("single.png"));
    assert_eq!(
        names(tmp.path()),
        [
            "e.svg",
            "expression_A+B.png",
            "pred.h5ad",
            "screen.h5ad",
            "single.png"
        ]
    );
}

#[test]
fn expression_bad_inputs_name_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (screen, pred) = fixtures(tmp.path());
    let before = names(tmp.path());
    let o = s(&tmp.path().join("x.png"));
    let run = |p: &str, sc: &str, extra: &[&str]| {
        let mut a = vec!["plot", "expression", p, sc, "-o", &o];
        a.extend_from_slice(extra);
        err_text(&cellmol(&a))
    };
    let missing = s(&tmp.path().join("nope.h5ad"));
    let e = run(&missing, &s(&screen), &["--perturbation", "A+B"]);
    assert!(e.contains("nope.h5ad"), "{e}");
    let e = run(&s(&pred), &missing, &["--perturbation", "A+B"]);
    assert!(e.contains("nope.h5ad"), "{e}");
    // condition in the screen but not among the predictions
    let e = run(&s(&pred), &s(&screen), &["--perturbation", "B"]);
    assert!(
        e.contains("pred.h5ad") && e.contains("no predicted cells"),
        "{e}"
    );
    // condition not in the screen
    let e = run(&s(&pred), &s(&screen), &["--perturbation", "C+D"]);
    assert!(e.contains("screen.h5ad") && e.contains("C+D"), "{e}");
    let e = run(
        &s(&pred),
        &s(&screen),
        &["--perturbation", "A+B", "--genes", "A,ZZZ"],
    );
    assert!(e.contains("ZZZ") && e.contains("pred.h5ad"), "{e}");
    // not an h5ad at all
    let junk = tmp.path().join("junk.h5ad");
    std::fs::write(&junk, b"not hdf5").expect("junk");
    let e = run(&s(&junk), &s(&screen), &["--perturbation", "A+B"]);
    assert!(e.contains("junk.h5ad"), "{e}");
    std::fs::remove_file(&junk).expect("rm");
    // an output format plotters cannot write
    let e = err_text(&cellmol(&[
        "plot",
        "expression",
        &s(&pred),
        &s(&screen),
        "--perturbation",
        "A+B",
        "-o",
        &s(&tmp.path().join("x.jpg")),
    ]));
    assert!(e.contains("x.jpg") && e.contains(".png or .svg"), "{e}");
    // nothing was written by any failure
    assert_eq!(names(tmp.path()), before);
}

fn write_metrics(dir: &Path, method: &str, cov_after: f64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let js = serde_json::json!({
        "task": "ring",
        "method": method,
        "before": {"validity": 0.97, "coverage": 0.21, "vendi": 8.5},
        "after": {"validity": 0.96, "coverage": cov_after, "vendi": 19.0},
    });
    std::fs::write(dir.join("metrics.json"), js.to_string()).expect("metrics");
}

#[test]
fn expansion_bars_and_densities() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fe, act) = (tmp.path().join("fe"), tmp.path().join("act"));
    write_metrics(&fe, "fe", 0.7);
    write_metrics(&act, "actflow", 0.8);
    // samples for one run only: x,y with a header
    let ring = |n: usize, arc: f64| -> String {
        let mut t = String::from("x,y\n");
        for i in 0..n {
            let th = arc * i as f64 / n as f64;
            let r = 1.5 + 0.5 * ((i * 37) % 100) as f64 / 100.0;
            t.push_str(&format!("{},{}\n", r * th.cos(), r * th.sin()));
        }
        t
    };
    std::fs::write(fe.join("samples_data.csv"), ring(400, 1.57)).expect("data");
    std::fs::write(fe.join("samples_before.csv"), ring(400, 1.7)).expect("before");
    std::fs::write(fe.join("samples_after.csv"), ring(400, 6.2)).expect("after");
    let out = tmp.path().join("exp.svg");
    let stdout = ok(&cellmol(&[
        "-q",
        "plot",
        "expansion",
        &s(&fe),
        &s(&act),
        "-o",
        &s(&out),
    ]));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0], s(&out));
    assert_picture(&out);
    assert_picture(Path::new(lines[1]));
    // densities only for the run with samples, named after its directory
    assert_eq!(lines[1], s(&tmp.path().join("exp_fe.svg")));
    // default output in the first directory, PNG
    ok(&cellmol(&["-q", "plot", "expansion", &s(&act)]));
    assert_picture(&act.join("expansion.png"));
}

#[test]
fn expansion_of_a_real_toy_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("small.toml");
    std::fs::write(
        &cfg,
        "n_data = 400\nn_eval = 300\nvendi_n = 80\n[pretrain]\nsteps = 60\n[actflow]\nrounds = 1\nn_candidates = 200\n[actflow.train]\nsteps = 40\n",
    )
    .expect("cfg");
    let dir = tmp.path().join("run");
    ok(&cellmol(&[
        "-q",
        "expand",
        "toy",
        "--task",
        "boxes",
        "--method",
        "rec-f",
        "--config",
        &s(&cfg),
        "-o",
        &s(&dir),
    ]));
    for f in [
        "samples_data.csv",
        "samples_before.csv",
        "samples_after.csv",
    ] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_else(|_| panic!("{f} missing"));
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("x,y"), "{f} header");
        let rows: Vec<&str> = lines.collect();
        assert!(rows.len() >= 100, "{f}: {} rows", rows.len());
        for r in rows.iter().take(5) {
            let v: Vec<f64> = r.split(',').map(|x| x.parse().expect("number")).collect();
            assert!(v.len() == 2 && v.iter().all(|x| x.is_finite()), "{f}: {r}");
        }
    }
    let out = tmp.path().join("real.png");
    ok(&cellmol(&[
        "-q",
        "plot",
        "expansion",
        &s(&dir),
        "-o",
        &s(&out),
    ]));
    assert_picture(&out);
}

#[test]
fn expansion_bad_inputs_name_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let e = err_text(&cellmol(&["plot", "expansion", &s(&empty)]));
    assert!(e.contains("metrics.json") && e.contains("empty"), "{e}");
    let e = err_text(&cellmol(&[
        "plot",
        "expansion",
        &s(&tmp.path().join("gone")),
    ]));
    assert!(e.contains("gone"), "{e}");
    // metrics.json without the expected numbers
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    std::fs::write(bad.join("metrics.json"), r#"{"before": {"validity": 1}}"#).expect("w");
    let e = err_text(&cellmol(&["plot", "expansion", &s(&bad)]));
    assert!(
        e.contains("metrics.json") && e.contains("before.coverage"),
        "{e}"
    );
    std::fs::write(bad.join("metrics.json"), "{not json").expect("w");
    let e = err_text(&cellmol(&["plot", "expansion", &s(&bad)]));
    assert!(e.contains("metrics.json") && e.contains("JSON"), "{e}");
    // a malformed sample file: file and line named
    let run = tmp.path().join("run");
    write_metrics(&run, "fe", 0.5);
    std::fs::write(run.join("samples_after.csv"), "x,y\n0.1,0.2\n0.3,abc\n").expect("w");
    let e = err_text(&cellmol(&["plot", "expansion", &s(&run)]));
    assert!(
        e.contains("samples_after.csv") && e.contains("line 3"),
        "{e}"
    );
    // nothing was written by the failures
    assert_eq!(names(&run), ["metrics.json", "samples_after.csv"]);
    assert_eq!(names(&bad), ["metrics.json"]);
    assert_eq!(names(&empty), Vec::<String>::new());
}

const TINY_LCD: &str = r#"
noise_model = true
[stage1]
steps = 10
batch_cells = 16
mc_samples = 32
mc_chunk = 32
warmup = 2
res_blocks = 1
out_blocks = 1
res_hidden = 16
envs_per_step = 4
latent_per_env = 100
[stage2]
hidden = 32
steps = 40
batch = 64
[sampler]
steps_per_level = 2
step_base = 1e-5
chains = 10
decodes_per_chain = 2
"#;

/// MODEL_DIR instead of a predictions file: cells are predicted on the fly.
#[test]
fn expression_from_a_model_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let screen = tmp.path().join("screen.h5ad");
    ok(&cellmol(&[
        "-q",
        "simulate",
        "screen",
        "--kind",
        "nonlinear",
        "--genes",
        "8",
        "--perturbed",
        "4",
        "--doubles",
        "3",
        "--cells-per-condition",
        "120",
        "--counts",
        "--seed",
        "5",
        "-o",
        &s(&screen),
    ]));
    let cfg = tmp.path().join("tiny.toml");
    std::fs::write(&cfg, TINY_LCD).expect("cfg");
    let model = tmp.path().join("model");
    ok(&cellmol(&[
        "-q",
        "lcd",
        "fit",
        &s(&screen),
        "-o",
        &s(&model),
        "--preset",
        "quick",
        "--config",
        &s(&cfg),
    ]));
    // a double perturbation of the screen
    let ad = datasets::anndata::read_h5ad(&screen).expect("screen");
    let label = ad
        .obs
        .column("perturbation")
        .expect("labels")
        .labels()
        .into_iter()
        .flatten()
        .find(|l| l.contains('+'))
        .expect("a double");
    let out = ok(&cellmol(&[
        "-q",
        "plot",
        "expression",
        &s(&model),
        &s(&screen),
        "--perturbation",
        &label,
        "-n",
        "40",
    ]));
    let pic = PathBuf::from(out.trim());
    assert_eq!(
        pic.parent(),
        Some(model.as_path()),
        "default output in the model dir"
    );
    assert_picture(&pic);
    // an unknown gene is refused before anything is written
    let e = err_text(&cellmol(&[
        "plot",
        "expression",
        &s(&model),
        &s(&screen),
        "--perturbation",
        &label,
        "--genes",
        "NOPE",
        "-o",
        &s(&tmp.path().join("n.png")),
    ]));
    assert!(e.contains("NOPE") && e.contains("model"), "{e}");
    assert!(!tmp.path().join("n.png").exists());
}

/// `plot clipr` on a `clipr -o` directory with two estimators: one heat map
/// per estimator (PNG by default, SVG when asked), errors name the input.
#[test]
fn clipr_heatmaps_per_estimator() {
    let dir = tempfile::tempdir().expect("tmp");
    let screen = dir.path().join("s.h5ad");
    let s = screen.to_string_lossy().to_string();
    ok(&cellmol(&[
        "-q",
        "simulate",
        "screen",
        "--kind",
        "linear",
        "--genes",
        "12",
        "--perturbed",
        "12",
        "--doubles",
        "0",
        "--cells-per-condition",
        "10",
        "--seed",
        "2",
        "-o",
        &s,
    ]));
    let out_dir = dir.path().join("clipr");
    let o = out_dir.to_string_lossy().to_string();
    ok(&cellmol(&[
        "-q",
        "clipr",
        &s,
        "-o",
        &o,
        "--estimator",
        "published,direction-aware",
    ]));
    let svg = dir.path().join("maps.svg");
    ok(&cellmol(&[
        "-q",
        "plot",
        "clipr",
        &o,
        "-o",
        &svg.to_string_lossy(),
    ]));
    for est in ["published", "direction-aware"] {
        let p = dir.path().join(format!("maps_{est}.svg"));
        let text =
            std::fs::read_to_string(&p).unwrap_or_else(|_| panic!("{} missing", p.display()));
        assert!(text.contains("<svg"), "{} is not SVG", p.display());
    }
    let one = out_dir.join("published");
    let png = dir.path().join("one.png");
    ok(&cellmol(&[
        "-q",
        "plot",
        "clipr",
        &one.to_string_lossy(),
        "-o",
        &png.to_string_lossy(),
    ]));
    let bytes = std::fs::read(&png).expect("png");
    assert!(bytes.starts_with(PNG_MAGIC));
    let missing = dir.path().join("nope");
    let e = err_text(&cellmol(&[
        "-q",
        "plot",
        "clipr",
        &missing.to_string_lossy(),
    ]));
    assert!(e.contains("nope"), "{e}");
}
