//! End-to-end tests of `cellmol expand toy` (reduced sizes through --config).
use std::process::Command;

const SMALL: &str = r#"
n_data = 800
n_eval = 500
vendi_n = 120
[pretrain]
steps = 200
[actflow]
rounds = 1
n_candidates = 400
[actflow.train]
steps = 150
"#;

fn run(
    dir: &std::path::Path,
    cfg: &std::path::Path,
    seed: &str,
) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_cellmol"))
        .args([
            "expand", "toy", "--task", "ring", "--method", "rec-f", "--json", "--quiet", "--seed",
            seed, "--config",
        ])
        .arg(cfg)
        .arg("-o")
        .arg(dir)
        .output()?;
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn toy_json_contract_pictures_and_reproducibility() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let cfg = tmp.path().join("small.toml");
    std::fs::write(&cfg, SMALL)?;
    let (d1, d2) = (tmp.path().join("a"), tmp.path().join("b"));
    let j1 = run(&d1, &cfg, "3")?;
    for side in ["before", "after"] {
        let obj = j1[side]
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("missing {side}"))?;
        let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["coverage", "validity", "vendi"]);
        for k in keys {
            let v = obj[k]
                .as_f64()
                .ok_or_else(|| anyhow::anyhow!("{side}.{k} not a number"))?;
            assert!(v.is_finite() && v >= 0.0);
        }
    }
    for f in [
        "before.png",
        "after.png",
        "data.png",
        "compare.png",
        "metrics.json",
    ] {
        let p = d1.join(f);
        assert!(
            std::fs::metadata(&p)?.len() > 100,
            "{} missing or empty",
            p.display()
        );
    }
    let png = std::fs::read(d1.join("after.png"))?;
    assert_eq!(&png[1..4], b"PNG");
    let j2 = run(&d2, &cfg, "3")?;
    assert_eq!(j1, j2, "same seed must give the same numbers");
    Ok(())
}

#[test]
fn bad_task_is_rejected() {
    let out = Command::new(env!("CARGO_BIN_EXE_cellmol"))
        .args([
            "expand",
            "toy",
            "--task",
            "spiral",
            "--method",
            "fe",
            "-o",
            "/tmp/never",
        ])
        .output()
        .expect("run cellmol");
    assert!(!out.status.success());
}

#[path = "support/toy_mols.rs"]
mod toy_mols;

const FE_SMALL: &str = r#"
n_graphs = 2
n_graph_candidates = 6
n_eval = 8
ode_steps = 6
sample_steps = 6
[fe]
iterations = 1
[fe.expand]
n_samples = 8
batch = 8
n_steps = 5
[fe.project]
n_samples = 8
batch = 8
n_steps = 5
[fe.project_mode.smoothed]
scale = 0.1
n_draws = 2
floor = 0.05
"#;

const AF_SMALL: &str = r#"
n_candidates = 8
max_accept = 4
train_steps = 3
batch_size = 4
n_eval = 8
sample_steps = 6
"#;

fn cellmol(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cellmol"))
        .args(args)
        .output()
        .expect("run cellmol")
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = cellmol(args);
    assert!(
        out.status.success(),
        "cellmol {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// The before/after contract: validity/coverage/vendi plus the molecule-level
/// distinct_valid / vendi_fp (and novel_valid exactly when a training set was
/// given), finite, rates in [0, 1], distinct valid designs never more than
/// valid ones.
fn check_contract(j: &serde_json::Value, with_train: bool) {
    let top: Vec<&String> = j.as_object().expect("object").keys().collect();
    assert_eq!(top, ["after", "before"]);
    for side in ["before", "after"] {
        let o = j[side].as_object().expect("side");
        let mut keys: Vec<&str> = o.keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        if with_train {
            assert_eq!(
                keys,
                [
                    "coverage",
                    "distinct_valid",
                    "novel_valid",
                    "validity",
                    "vendi",
                    "vendi_fp"
                ]
            );
        } else {
            assert_eq!(
                keys,
                [
                    "coverage",
                    "distinct_valid",
                    "validity",
                    "vendi",
                    "vendi_fp"
                ]
            );
        }
        let n_valid = o["validity"].as_f64().expect("validity") * 8.0;
        let distinct = o["distinct_valid"].as_u64().expect("distinct_valid");
        assert!(distinct as f64 <= n_valid + 1e-9, "{side}: {o:?}");
        let vfp = o["vendi_fp"].as_f64().expect("vendi_fp");
        assert!(
            vfp.is_finite() && vfp >= 0.0 && vfp <= n_valid + 1e-9,
            "{side}: {o:?}"
        );
        if with_train {
            assert!(o["novel_valid"].as_u64().expect("novel_valid") <= distinct);
        }
        let get = |k: &str| o[k].as_f64().unwrap_or_else(|| panic!("{side}.{k}"));
        let (v, c, ve) = (get("validity"), get("coverage"), get("vendi"));
        assert!(
            v.is_finite() && (0.0..=1.0).contains(&v),
            "{side} validity {v}"
        );
        assert!(
            c.is_finite() && (0.0..=1.0).contains(&c),
            "{side} coverage {c}"
        );
        assert!(c <= v + 1e-12, "{side}: coverage {c} > validity {v}");
        assert!(ve.is_finite() && ve >= 0.0, "{side} vendi {ve}");
        // Vendi is an effective count of valid samples (8 per set here)
        assert!(ve <= 8.0 + 1e-9, "{side} vendi {ve}");
        assert_eq!(ve == 0.0, v == 0.0, "{side}: vendi {ve} with validity {v}");
    }
}

fn weights(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).expect("weights");
    vec![("all".into(), bytes)]
}

/// A tiny Morph model trained for 30 steps on 24 toy molecules: writes
/// `toy.sdf`, `cfg.toml` and the model directory `model` into `dir`;
/// `net_extra` adds `[net]` keys (e.g. the backbone).
fn fit_tiny_model(dir: &std::path::Path, net_extra: &str) {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    toy_mols::write_toy_sdf(&dir.join("toy.sdf"), 24);
    let cfg = toy_mols::tiny_config(30, 0).replacen("[net]\n", &format!("[net]\n{net_extra}"), 1);
    std::fs::write(p("cfg.toml"), cfg).expect("cfg");
    let out = cellmol(&[
        "-q",
        "morph",
        "fit",
        &p("toy.sdf"),
        "-o",
        &p("model"),
        "--config",
        &p("cfg.toml"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `expand fe` and `expand actflow` on a tiny trained Morph model: JSON
/// contract, adapted model directory (finished, loadable, samples, changed
/// weights, report equal to stdout), reproducible from the seed, clear errors.
#[test]
fn morph_fe_and_actflow_contract() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = |n: &str| tmp.path().join(n).to_string_lossy().into_owned();
    fit_tiny_model(tmp.path(), "");
    std::fs::write(p("fe.toml"), FE_SMALL).expect("fe");
    std::fs::write(p("af.toml"), AF_SMALL).expect("af");
    let fe = |o: &str| {
        ok_json(&[
            "-q",
            "expand",
            "fe",
            &p("model"),
            "--verifier",
            "stability",
            "-o",
            &p(o),
            "--json",
            "--seed",
            "4",
            "--config",
            &p("fe.toml"),
            "--iterations",
            "1",
        ])
    };
    let j1 = fe("fe1");
    check_contract(&j1, false);
    let j2 = fe("fe2");
    assert_eq!(j1, j2, "same seed must give the same numbers");
    let af = |o: &str| {
        ok_json(&[
            "-q",
            "expand",
            "actflow",
            &p("model"),
            "--verifier",
            "validity",
            "-o",
            &p(o),
            "--json",
            "--seed",
            "2",
            "--config",
            &p("af.toml"),
            "--rounds",
            "2",
            "--data",
            &p("toy.sdf"),
        ])
    };
    let a1 = af("af1");
    check_contract(&a1, true);
    assert_eq!(a1, af("af2"), "same seed must give the same numbers");
    let src = weights(&tmp.path().join("model"));
    for (name, j, method) in [("fe1", &j1, "fe"), ("af1", &a1, "actflow")] {
        let dir = tmp.path().join(name);
        assert!(dir.join("COMPLETE").is_file(), "{name}: not finished");
        assert_ne!(weights(&dir), src, "{name}: weights unchanged");
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expand_report.json")).expect("report"))
                .expect("json");
        assert_eq!(rep["method"], method);
        assert_eq!(
            rep["before"], j["before"],
            "{name}: report differs from stdout"
        );
        assert_eq!(rep["after"], j["after"]);
        // the adapted model is a Morph model: it samples and evaluates
        let s = tmp.path().join(format!("{name}.sdf"));
        let out = cellmol(&[
            "-q",
            "morph",
            "sample",
            &dir.to_string_lossy(),
            "-n",
            "4",
            "-o",
            &s.to_string_lossy(),
            "--steps",
            "6",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ev = ok_json(&[
            "morph",
            "evaluate",
            &s.to_string_lossy(),
            "--train",
            &p("toy.sdf"),
            "--json",
        ]);
        assert_eq!(ev["n_samples"], 4);
    }
    let rep: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("af1/expand_report.json")).expect("report"),
    )
    .expect("json");
    let rounds = rep["details"]["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2);
    for r in rounds {
        let (c, v, acc) = (
            r["candidates"].as_u64().expect("c"),
            r["valid"].as_u64().expect("v"),
            r["accepted"].as_u64().expect("a"),
        );
        assert!(c == 8 && v <= c && acc <= v.min(4), "{r}");
    }
    let src_steps = |d: &str| -> u64 {
        let c: serde_json::Value = serde_json::from_slice(
            &std::fs::read(tmp.path().join(d).join("config.json")).expect("config"),
        )
        .expect("json");
        c["trained_steps"].as_u64().expect("trained_steps")
    };
    assert_eq!(src_steps("af1"), src_steps("model") + 6);
    // Errors: existing output, unknown verifier, not a model, bad settings.
    let e = cellmol(&[
        "expand",
        "fe",
        &p("model"),
        "--verifier",
        "stability",
        "-o",
        &p("fe1"),
    ]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("--force"));
    let e = cellmol(&[
        "expand",
        "fe",
        &p("model"),
        "--verifier",
        "magic",
        "-o",
        &p("x"),
    ]);
    assert!(!e.status.success());
    let e = cellmol(&[
        "expand",
        "actflow",
        &p("nope"),
        "--verifier",
        "validity",
        "-o",
        &p("x"),
    ]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("nope"));
    std::fs::write(p("bad.toml"), "n_graphs = 0\n").expect("bad");
    let e = cellmol(&[
        "expand",
        "fe",
        &p("model"),
        "--verifier",
        "stability",
        "-o",
        &p("x"),
        "--config",
        &p("bad.toml"),
    ]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("n_graphs"));
    assert!(
        !tmp.path().join("x").exists(),
        "a failed run left its output"
    );
}

/// `expand actflow --baseline rec-nf | rec-f` end to end on a tiny model: the
/// JSON contract (with novel_valid from --train), the report names the method
/// and shows the filter at work, reproducible, a loadable adapted model.
#[test]
fn morph_baselines_contract() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = |n: &str| tmp.path().join(n).to_string_lossy().into_owned();
    fit_tiny_model(tmp.path(), "");
    std::fs::write(p("af.toml"), AF_SMALL).expect("af");
    let run = |baseline: &str, o: &str| {
        ok_json(&[
            "-q",
            "expand",
            "actflow",
            &p("model"),
            "--verifier",
            "validity",
            "-o",
            &p(o),
            "--json",
            "--seed",
            "7",
            "--config",
            &p("af.toml"),
            "--rounds",
            "2",
            "--baseline",
            baseline,
            "--train",
            &p("toy.sdf"),
        ])
    };
    for baseline in ["rec-nf", "rec-f"] {
        let j = run(baseline, &format!("{baseline}1"));
        check_contract(&j, true);
        assert_eq!(
            j,
            run(baseline, &format!("{baseline}2")),
            "{baseline}: same seed must give the same numbers"
        );
        let dir = tmp.path().join(format!("{baseline}1"));
        assert!(dir.join("COMPLETE").is_file());
        morph::io::ModelDir::load(&dir, &candle_core::Device::Cpu).expect("loadable");
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expand_report.json")).expect("report"))
                .expect("json");
        assert_eq!(rep["method"], baseline);
        assert_eq!(rep["details"]["config"]["mode"], baseline);
        assert_eq!(rep["before"], j["before"]);
        assert_eq!(rep["after"], j["after"]);
        for r in rep["details"]["rounds"].as_array().expect("rounds") {
            let (c, v, acc, accv) = (
                r["candidates"].as_u64().expect("c"),
                r["valid"].as_u64().expect("v"),
                r["accepted"].as_u64().expect("a"),
                r["accepted_verified"].as_u64().expect("av"),
            );
            assert_eq!(c, 8, "{r}");
            if baseline == "rec-f" {
                assert_eq!((acc, accv), (v.min(4), v.min(4)), "{r}");
            } else {
                assert_eq!(acc, 4, "{r}");
            }
        }
    }
    // an unknown baseline is refused before any work
    let e = cellmol(&[
        "expand",
        "actflow",
        &p("model"),
        "--verifier",
        "validity",
        "-o",
        &p("x"),
        "--baseline",
        "rec-x",
    ]);
    assert!(!e.status.success());
    assert!(!tmp.path().join("x").exists());
}

/// A model with the Semla backbone expands too (the flow is rebuilt with the
/// backbone of the model's config, not the EGNN).
#[test]
fn morph_fe_and_actflow_on_a_semla_model() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = |n: &str| tmp.path().join(n).to_string_lossy().into_owned();
    fit_tiny_model(tmp.path(), "backbone = \"semla\"\nn_heads = 4\nn_vec = 4\n");
    std::fs::write(p("fe.toml"), FE_SMALL).expect("fe");
    std::fs::write(p("af.toml"), AF_SMALL).expect("af");
    for (method, cfg) in [("fe", "fe.toml"), ("actflow", "af.toml")] {
        let out = cellmol(&[
            "-q",
            "expand",
            method,
            &p("model"),
            "--verifier",
            "stability",
            "-o",
            &p(method),
            "--config",
            &p(cfg),
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        check_contract(&j, false);
        assert!(tmp.path().join(method).join("COMPLETE").is_file());
    }
}

/// `expand fe --graphs FILE`: the fixed graphs are molecules of the file
/// (index, atom count, formula recorded in the report), the JSON contract
/// holds, `--verifier graph-match` accepts the file's own conformers, and bad
/// input (missing file, no usable molecule, graph-match for actflow) fails
/// with a clear message and no output directory.
#[test]
fn morph_fe_graphs_from_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = |n: &str| tmp.path().join(n).to_string_lossy().into_owned();
    fit_tiny_model(tmp.path(), "");
    std::fs::write(p("fe.toml"), FE_SMALL).expect("fe");
    let file = molecules::read_molecules_path(&tmp.path().join("toy.sdf")).expect("toy.sdf");
    let toy_path = p("toy.sdf");
    let fe = |o: &str, verifier: &str, extra: &[&str]| {
        let (model, out, cfg, toy) = (p("model"), p(o), p("fe.toml"), p("toy.sdf"));
        let mut args = vec![
            "-q",
            "expand",
            "fe",
            &model,
            "--verifier",
            verifier,
            "-o",
            &out,
            "--json",
            "--seed",
            "4",
            "--config",
            &cfg,
            "--graphs",
            &toy,
        ];
        args.extend_from_slice(extra);
        ok_json(&args)
    };
    for (o, verifier) in [("g1", "stability"), ("g2", "graph-match")] {
        let j = fe(o, verifier, &["--train", &toy_path]);
        check_contract(&j, true);
        let dir = tmp.path().join(o);
        assert!(dir.join("COMPLETE").is_file(), "{o}: not finished");
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expand_report.json")).expect("report"))
                .expect("json");
        assert_eq!(rep["before"], j["before"]);
        assert_eq!(rep["after"], j["after"]);
        let d = &rep["details"];
        assert_eq!(d["graph_source"]["kind"], "file");
        assert_eq!(d["graph_source"]["path"], p("toy.sdf"));
        assert_eq!(d["graph_source"]["n_molecules"], 24);
        let graphs = d["graphs"].as_array().expect("graphs");
        assert_eq!(graphs.len(), 2, "n_graphs = 2 of the file");
        for g in graphs {
            let i = g["index"].as_u64().expect("index") as usize;
            assert!((1..=24).contains(&i), "{g}");
            let m = &file[i - 1];
            assert_eq!(g["n_atoms"].as_u64(), Some(m.n_atoms() as u64), "{g}");
            assert_eq!(g["formula"].as_str(), Some(m.formula().as_str()), "{g}");
            assert!(m.n_atoms() >= 3 && g["smiles"].is_string(), "{g}");
            if verifier == "graph-match" {
                assert_eq!(g["reference_verified"], true, "{g}");
            }
        }
        // verifiers that re-infer bonds get the gentle expansion default,
        // under the TOML (which leaves `[fe.expand] lr` out)
        assert_eq!(d["config"]["fe"]["expand"]["lr"], 1e-4, "{o}");
        assert_eq!(d["config"]["fe"]["expand"]["n_steps"], 5, "{o}: TOML lost");
        if verifier == "graph-match" {
            assert!(rep["verifier"]
                .as_str()
                .expect("verifier")
                .starts_with("graph-match"));
        }
    }
    // the same seed picks the same graphs
    let graphs_of = |o: &str| -> serde_json::Value {
        let rep: serde_json::Value = serde_json::from_slice(
            &std::fs::read(tmp.path().join(o).join("expand_report.json")).expect("report"),
        )
        .expect("json");
        rep["details"]["graphs"]
            .as_array()
            .expect("graphs")
            .iter()
            .map(|g| g["index"].clone())
            .collect()
    };
    assert_eq!(graphs_of("g1"), graphs_of("g2"));
    // the geometry verifier with a late start: same seed, same numbers
    let geo = |o: &str| fe(o, "geometry", &["--t-start", "0.7"]);
    let (j1, j2) = (geo("g3"), geo("g4"));
    check_contract(&j1, false);
    assert_eq!(j1["before"], j2["before"]);
    assert_eq!(j1["after"], j2["after"]);
    let rep: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("g3").join("expand_report.json")).expect("report"),
    )
    .expect("json");
    assert!(
        rep["verifier"]
            .as_str()
            .expect("verifier")
            .starts_with("geometry"),
        "{}",
        rep["verifier"]
    );
    assert_eq!(rep["details"]["t_start"], 0.7, "{}", rep["details"]);
    let expand = &rep["details"]["config"]["fe"]["expand"];
    assert_eq!(expand["lr"], 1e-3, "geometry keeps the table's expand lr");
    assert_eq!(expand["n_steps"], 5, "TOML lost");
    assert_eq!(graphs_of("g3"), graphs_of("g1"));
    // --guard: every try is in the report, an accepted one within the drop
    fe("g5", "geometry", &["--t-start", "0.7", "--guard", "0.05"]);
    let rep: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("g5").join("expand_report.json")).expect("report"),
    )
    .expect("json");
    let d = &rep["details"];
    assert_eq!(d["config"]["guard"]["enabled"], true);
    assert_eq!(d["config"]["guard"]["max_drop"], 0.05);
    let base_rate = d["guard"]["base_rate"].as_f64().expect("base_rate");
    let tries = d["guard"]["tries"].as_array().expect("tries");
    assert!(!tries.is_empty(), "{}", d["guard"]);
    for t in tries {
        let r = t["rate"].as_f64().expect("rate");
        assert_eq!(t["accepted"], r >= base_rate - 0.05 - 1e-12, "{t}");
    }
    assert!(d["guard"]["n_samples"].as_u64().expect("n") >= 2);
    // --help documents the flag and the verifier
    let h = cellmol(&["expand", "fe", "--help"]);
    let help = String::from_utf8_lossy(&h.stdout);
    assert!(
        help.contains("--graphs") && help.contains("graph-match") && help.contains("--guard"),
        "{help}"
    );
    // errors: missing file, no usable molecule, graph-match outside FE
    let fails = |args: &[&str], needles: &[&str]| {
        let e = cellmol(args);
        assert!(!e.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&e.stderr);
        for n in needles {
            assert!(err.contains(n), "{args:?}: `{n}` not in {err}");
        }
        assert!(
            !tmp.path().join("x").exists(),
            "a failed run left its output"
        );
    };
    let base = |verifier: &'static str, graphs: String| -> Vec<String> {
        [
            "expand",
            "fe",
            &p("model"),
            "--verifier",
            verifier,
            "-o",
            &p("x"),
            "--graphs",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([graphs])
        .collect()
    };
    let args = base("stability", p("missing.sdf"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(&args, &["missing.sdf"]);
    let args = base("stability", p("toy.sdf"));
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--guard", "1.5"]);
    fails(&args, &["--guard 1.5", "max_drop", "[0, 1]"]);
    // hydrogen sulfide: S is not in the toy model's vocabulary
    let mut h2s = molecules::Molecule::new(
        ["S", "H", "H"]
            .iter()
            .map(|s| molecules::Element::from_symbol(s).expect("el"))
            .collect(),
        ndarray::array![[0.0, 0.0, 0.0], [1.34, 0.0, 0.0], [-0.03, 1.34, 0.0]],
    )
    .expect("h2s");
    h2s.add_bond(0, 1, molecules::BondOrder::Single).expect("b");
    h2s.add_bond(0, 2, molecules::BondOrder::Single).expect("b");
    molecules::write_molecules_path(&tmp.path().join("h2s.sdf"), &[h2s.clone(), h2s])
        .expect("write");
    let args = base("stability", p("h2s.sdf"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(&args, &["h2s.sdf", "element S", "no usable molecule"]);
    fails(
        &[
            "expand",
            "actflow",
            &p("model"),
            "--verifier",
            "graph-match",
            "-o",
            &p("x"),
        ],
        &["graph-match", "expand fe"],
    );
    // a start time outside [0, 1), and a settings typo
    let mut args = base("geometry", p("toy.sdf"));
    args.extend(["--t-start".to_string(), "1.5".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(&args, &["t_start"]);
    std::fs::write(p("typo.toml"), "[fe]\nitrations = 2\n").expect("typo");
    let mut args = base("geometry", p("toy.sdf"));
    args.extend(["--config".to_string(), p("typo.toml")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(&args, &["itrations"]);
}
