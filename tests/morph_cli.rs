//! End-to-end tests of `cellmol morph fit | sample | evaluate` on real QM9
//! molecules (imported from the project venv's qm9pack with `cellmol mol
//! import-qm9`), with every sampled record re-read by RDKit.
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cellmol");
const PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");

fn qm9pack_dir() -> PathBuf {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let found = std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/qm9pack"))
        .find(|p| p.is_dir());
    found.unwrap_or_else(|| {
        panic!(
            "qm9pack not found under {} — run scripts/setup.sh first",
            lib.display()
        )
    })
}

fn run(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().expect("run cellmol");
    out
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "cellmol {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rdkit_reread(path: &Path) -> usize {
    assert!(
        Path::new(PY).exists(),
        "project venv python missing at {PY} — run scripts/setup.sh first"
    );
    let code = "import sys\nfrom rdkit import Chem\nms=list(Chem.SDMolSupplier(sys.argv[1], sanitize=False, removeHs=False))\nassert all(m is not None for m in ms), 'unreadable record'\nprint(len(ms))";
    let out = Command::new(PY)
        .args(["-c", code, path.to_str().expect("utf8 path")])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "RDKit could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("count")
}

#[test]
fn fit_sample_evaluate_scaffold() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let qm9 = qm9pack_dir();
    ok(&[
        "-q",
        "mol",
        "import-qm9",
        "--from",
        qm9.to_str().expect("utf8"),
        "-o",
        &d("data.sdf"),
        "--limit",
        "60",
    ]);
    // Fit a tiny conditional model for a few steps.
    ok(&[
        "-q",
        "morph",
        "fit",
        &d("data.sdf"),
        "-o",
        &d("model"),
        "--preset",
        "tiny",
        "--condition",
        "gap",
        "--steps",
        "3",
    ]);
    assert!(
        dir.path().join("model/config.json").exists()
            && dir.path().join("model/model.safetensors").exists()
    );
    // Conditional sampling with guidance.
    ok(&[
        "-q",
        "morph",
        "sample",
        &d("model"),
        "-n",
        "6",
        "-o",
        &d("out.sdf"),
        "--property",
        "gap=0.25",
        "--guidance",
        "2.0",
        "--steps",
        "6",
        "--seed",
        "3",
    ]);
    let mols = molecules::read_molecules_path(Path::new(&d("out.sdf"))).expect("read samples");
    assert_eq!(mols.len(), 6);
    for m in &mols {
        assert_eq!(m.property("morph_step_count"), Some("6"));
        assert_eq!(
            m.property("gap").map(|v| v.parse::<f64>().expect("number")),
            Some(0.25)
        );
        assert!(m.n_atoms() >= 2);
    }
    assert_eq!(rdkit_reread(Path::new(&d("out.sdf"))), 6);
    // Same seed → same output.
    ok(&[
        "-q",
        "morph",
        "sample",
        &d("model"),
        "-n",
        "6",
        "-o",
        &d("out2.sdf"),
        "--property",
        "gap=0.25",
        "--guidance",
        "2.0",
        "--steps",
        "6",
        "--seed",
        "3",
    ]);
    assert_eq!(
        std::fs::read(d("out.sdf")).expect("a"),
        std::fs::read(d("out2.sdf")).expect("b")
    );
    // Evaluation, both protocols labelled.
    let js: serde_json::Value = serde_json::from_str(&ok(&[
        "morph",
        "evaluate",
        &d("out.sdf"),
        "--train",
        &d("data.sdf"),
        "--json",
    ]))
    .expect("json");
    assert_eq!(js["n_samples"], 6);
    for key in ["edm", "model_bonds"] {
        assert!(js[key]["label"]
            .as_str()
            .expect("label")
            .contains("protocol"));
        let tv = js[key]["distances"]["atom_count"].as_f64().expect("tv");
        assert!((0.0..=1.0 + 1e-9).contains(&tv), "{key}: TV {tv}");
        assert!(js[key]["metrics"]["mol_stability"].is_number());
    }
    assert_eq!(js["conditional"]["property"], "gap");
    // Scaffold growth: the first training molecule with ≥ 4 atoms and a bond.
    let data = molecules::read_molecules_path(Path::new(&d("data.sdf"))).expect("data");
    let scaf = data
        .iter()
        .find(|m| m.n_atoms() >= 4 && m.n_bonds() >= 2)
        .expect("scaffold candidate")
        .clone();
    let mut buf = Vec::new();
    molecules::write_sdf(&mut buf, [&scaf]).expect("write");
    std::fs::write(d("scaffold.sdf"), buf).expect("write scaffold");
    ok(&[
        "-q",
        "morph",
        "sample",
        &d("model"),
        "-n",
        "4",
        "-o",
        &d("scaf_out.sdf"),
        "--scaffold",
        &d("scaffold.sdf"),
        "--steps",
        "6",
    ]);
    let grown = molecules::read_molecules_path(Path::new(&d("scaf_out.sdf"))).expect("read");
    assert_eq!(grown.len(), 4);
    let k = scaf.n_atoms();
    let sb: Vec<(usize, usize, molecules::BondOrder)> = scaf
        .bond_list()
        .map(|(i, j, o, _)| (i.min(j), i.max(j), o))
        .collect();
    for g in &grown {
        assert_eq!(&g.elements[..k], &scaf.elements[..]);
        let gb: Vec<(usize, usize, molecules::BondOrder)> = g
            .bond_list()
            .map(|(i, j, o, _)| (i.min(j), i.max(j), o))
            .filter(|&(i, j, _)| i < k && j < k)
            .collect();
        for b in &sb {
            assert!(gb.contains(b), "scaffold bond {b:?} lost");
        }
        assert_eq!(gb.len(), sb.len(), "bonds added between scaffold atoms");
    }
    assert_eq!(rdkit_reread(Path::new(&d("scaf_out.sdf"))), 4);
    // Errors name the problem.
    let out = run(&[
        "morph",
        "sample",
        &d("model"),
        "-n",
        "2",
        "-o",
        &d("x.sdf"),
        "--property",
        "mu=1.0",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("conditioned on `gap`"));
    let out = run(&[
        "morph",
        "fit",
        &d("data.sdf"),
        "-o",
        &d("m2"),
        "--preset",
        "huge",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("huge"));
    // Continued training from the model's weights (--init).
    let fit_from = |data: &str, out: &str, init: &str, extra: &[&str]| {
        let (data, out) = (d(data), d(out));
        let mut args = vec!["morph", "fit", &data, "-o", &out, "--preset", "tiny"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--steps", "2", "--init", init]);
        run(&args)
    };
    let model = d("model");
    let out = fit_from("data.sdf", "cont", &model, &["--condition", "gap"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rep: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("cont/fit_report.json")).expect("report"),
    )
    .expect("json");
    assert_eq!(rep["init_from"].as_str(), Some(model.as_str()));
    assert_eq!(rep["steps"].as_u64(), Some(2));
    // another network than the start model's
    std::fs::write(d("wide.toml"), "[net]\nhidden = 40\n").expect("toml");
    let wide = d("wide.toml");
    let out = fit_from("data.sdf", "cont2", &model, &["--config", &wide]);
    let e = stderr_of(&out);
    assert!(
        !out.status.success() && e.contains("--init") && e.contains("network"),
        "{e}"
    );
    assert!(!dir.path().join("cont2/model.safetensors").exists());
    // data with an element the start model has never seen
    let mut mols = molecules::read_molecules_path(Path::new(&d("data.sdf"))).expect("read");
    mols[3].elements[0] = molecules::Element::from_symbol("S").expect("S");
    let mut buf = Vec::new();
    molecules::write_sdf(&mut buf, mols.iter()).expect("sdf");
    std::fs::write(d("sulfur.sdf"), buf).expect("write");
    let out = fit_from("sulfur.sdf", "cont3", &model, &[]);
    let e = stderr_of(&out);
    assert!(
        !out.status.success() && e.contains("sulfur.sdf") && e.contains("vocabulary of"),
        "{e}"
    );
    // a directory that holds no model
    let out = fit_from("data.sdf", "cont4", &d("nowhere"), &[]);
    let e = stderr_of(&out);
    assert!(!out.status.success() && e.contains("nowhere"), "{e}");
}

#[path = "support/toy_mols.rs"]
mod toy_mols;

fn wait_for(path: &Path, what: &str) {
    let t0 = std::time::Instant::now();
    while !path.exists() {
        assert!(t0.elapsed().as_secs() < 180, "no {what} after 180 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// SIGTERM mid-training → checkpoint + exit 75; `sample` and a plain `fit`
/// refuse the interrupted directory; `fit --resume` continues from the
/// checkpoint and finishes (COMPLETE marker, metrics log without duplicated
/// steps); `--resume` on the finished model does nothing, a plain `fit` on it
/// is refused.
#[test]
fn sigterm_checkpoints_and_resume_finishes() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    toy_mols::write_toy_sdf(&dir.path().join("toy.sdf"), 24);
    std::fs::write(d("cfg.toml"), toy_mols::tiny_config(600, 5)).expect("cfg");
    let model = dir.path().join("model");
    let fit_args = [
        "morph",
        "fit",
        &d("toy.sdf"),
        "-o",
        &d("model"),
        "--config",
        &d("cfg.toml"),
    ];
    let child = Command::new(BIN)
        .args(fit_args)
        .arg("--resume")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&model.join("checkpoint/state.json"), "checkpoint");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert!(!model.join("COMPLETE").exists());
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("checkpoint/state.json")).expect("state"))
            .expect("json");
    let stopped_at = state["step"].as_u64().expect("step");
    assert!(stopped_at > 0 && stopped_at < 600, "{state}");
    // Loaders and a plain fit refuse the interrupted run.
    let out = run(&["morph", "sample", &d("model"), "-n", "2", "-o", &d("s.sdf")]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("interrupted"),
        "{}",
        stderr_of(&out)
    );
    assert!(!dir.path().join("s.sdf").exists());
    let out = run(&fit_args);
    assert!(!out.status.success());
    let e = stderr_of(&out);
    assert!(e.contains("interrupted") && e.contains("--resume"), "{e}");
    // Resume and finish.
    let mut args = fit_args.to_vec();
    args.push("--resume");
    let out = run(&args);
    let e = stderr_of(&out);
    assert!(out.status.success(), "{e}");
    assert!(
        e.contains(&format!("resuming from checkpoint at step {stopped_at}")),
        "{e}"
    );
    assert!(model.join("COMPLETE").is_file());
    assert!(!model.join("checkpoint").exists());
    assert!(model.join("model.safetensors").is_file());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("fit_report.json")).expect("report"))
            .expect("json");
    assert_eq!(report["steps"], 600);
    assert_eq!(report["resumed_from"], stopped_at);
    let steps: Vec<u64> = std::fs::read_to_string(model.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json line")["step"]
                .as_u64()
                .expect("step")
        })
        .collect();
    assert_eq!(steps, (1..=600).collect::<Vec<u64>>(), "metrics steps");
    // A finished model: --resume is a no-op, a plain fit is refused.
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("nothing to resume"));
    let out = run(&fit_args);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("finished model"),
        "{}",
        stderr_of(&out)
    );
    // The finished model samples.
    ok(&[
        "-q",
        "morph",
        "sample",
        &d("model"),
        "-n",
        "3",
        "-o",
        &d("s.sdf"),
        "--steps",
        "5",
    ]);
    assert_eq!(
        molecules::read_molecules_path(Path::new(&d("s.sdf")))
            .expect("samples")
            .len(),
        3
    );
}

/// The sbatch script of `cellmol slurm morph`, run by bash as SLURM would:
/// TERM to the batch shell is forwarded, cellmol checkpoints and the script
/// exits 75 (SLURM requeues); the requeued script (`--resume`) continues from
/// the checkpoint and finishes.
#[test]
fn slurm_morph_script_requeues_and_resumes() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    toy_mols::write_toy_sdf(&dir.path().join("toy.sdf"), 24);
    std::fs::write(d("cfg.toml"), toy_mols::tiny_config(600, 5)).expect("cfg");
    ok(&[
        "-q",
        "slurm",
        "morph",
        &d("toy.sdf"),
        "-o",
        &d("model"),
        "--preset",
        "tiny",
        "--config",
        &d("cfg.toml"),
        "--device",
        "cpu",
        "--cellmol",
        BIN,
        "--cpus-per-task",
        "1",
    ]);
    let script = dir.path().join("model.sbatch");
    let text = std::fs::read_to_string(&script).expect("script");
    assert!(
        text.contains("--resume") && text.contains("#SBATCH --requeue"),
        "{text}"
    );
    let model = dir.path().join("model");
    let child = Command::new("bash")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash");
    wait_for(&model.join("checkpoint/state.json"), "checkpoint");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
    assert_eq!(out.status.code(), Some(75), "{log}");
    assert!(log.contains("TERM: checkpointing"), "{log}");
    assert!(!model.join("COMPLETE").exists());
    // the requeued job: same script again
    let out = Command::new("bash").arg(&script).output().expect("bash");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resuming from checkpoint at step"), "{log}");
    assert!(model.join("COMPLETE").is_file());
}
