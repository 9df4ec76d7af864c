//! End-to-end tests of `cellmol mol inspect|metrics|convert|import-qm9` on
//! real files (Debian rdkit-data SDFs, qm9pack from the venv), a bad-input
//! fixture (tests/data/mol_bad.sdf, made by tests/data/make_mol_bad.py) and
//! an empty file. Python RDKit from the venv is the oracle.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cellmol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellmol"))
        .args(args)
        .output()
        .expect("running cellmol")
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

fn bzr() -> PathBuf {
    let p = PathBuf::from("/usr/share/RDKit/Projects/DbCLI/testData/bzr.sdf");
    assert!(
        p.exists(),
        "{} missing: apt-get install rdkit-data (scripts/setup.sh)",
        p.display()
    );
    p
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    assert!(
        o.status.success(),
        "cellmol failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn inspect_per_record_matches_python_rdkit() {
    let f = bzr();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/molecules/tests/oracle/rdkit_dump.py"
    );
    let o = Command::new(venv_python())
        .arg(script)
        .arg(&f)
        .output()
        .expect("python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let oracle: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let recs = oracle[f.to_str().expect("utf8")]
        .as_array()
        .expect("records")
        .clone();
    let rows = json_lines(&cellmol(&[
        "mol",
        "inspect",
        f.to_str().expect("utf8"),
        "--per-record",
        "--json",
    ]));
    assert_eq!(rows.len(), recs.len());
    let mut smiles_eq = 0;
    for (row, r) in rows.iter().zip(&recs) {
        assert_eq!(row["index"], r["index"]);
        assert_eq!(
            row["n_atoms"].as_u64(),
            r["atoms"].as_array().map(|a| a.len() as u64)
        );
        assert_eq!(
            row["n_bonds"].as_u64(),
            r["bonds"].as_array().map(|a| a.len() as u64)
        );
        let charge: i64 = r["charges"]
            .as_array()
            .expect("charges")
            .iter()
            .filter_map(|c| c.as_i64())
            .sum();
        assert_eq!(row["charge"].as_i64(), Some(charge));
        let mut names: Vec<String> = r["props"]
            .as_object()
            .expect("props")
            .keys()
            .cloned()
            .collect();
        names.sort();
        let ours: Vec<String> = row["props"]
            .as_array()
            .expect("props")
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(ours, names);
        assert_eq!(row["sanitize_ok"], r["sanitize_ok"]);
        assert_eq!(
            row["title"].as_str(),
            r["title"].as_str().map(str::trim_end)
        );
        smiles_eq += usize::from(row["smiles"] == r["smiles"]);
    }
    assert!(
        smiles_eq as f64 >= 0.98 * rows.len() as f64,
        "SMILES agree on {smiles_eq}/{}",
        rows.len()
    );
}

#[test]
fn bad_records_are_reported_not_fatal_and_empty_is_an_error() {
    let f = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mol_bad.sdf");
    let o = cellmol(&["mol", "inspect", f, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(j["records"], 7);
    assert_eq!(j["molecules"], 2);
    let failed = j["failed"].as_array().expect("failed");
    let idx: Vec<u64> = failed.iter().filter_map(|x| x["index"].as_u64()).collect();
    assert_eq!(idx, vec![1, 2, 3, 4, 5]);
    let msgs: Vec<&str> = failed.iter().filter_map(|x| x["error"].as_str()).collect();
    assert!(
        msgs[1].contains("counts line declares 4 atoms"),
        "{}",
        msgs[1]
    );
    assert!(msgs[2].contains("unknown element 'Xq'"), "{}", msgs[2]);
    assert!(msgs[3].contains("non-numeric y coordinate"), "{}", msgs[3]);
    assert!(msgs[4].contains("1000000000"), "{}", msgs[4]);
    assert!(msgs
        .iter()
        .all(|m| m.contains("record ") && m.contains("line ")));
    let dir = tempfile::tempdir().expect("tmp");
    let empty = dir.path().join("empty.sdf");
    std::fs::write(&empty, b"").expect("write");
    let o = cellmol(&["mol", "inspect", empty.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("empty input") && !err.contains("panicked"),
        "{err}"
    );
    // Strict conversion refuses the bad file with the record and line.
    let o = cellmol(&[
        "mol",
        "convert",
        f,
        dir.path().join("x.xyz").to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("record 1 (line"));
}

fn metrics(file: &Path, protocol: &str, train: Option<&Path>) -> serde_json::Value {
    let mut args = vec![
        "mol",
        "metrics",
        file.to_str().expect("utf8"),
        "--protocol",
        protocol,
        "--json",
        "-q",
    ];
    if let Some(t) = train {
        args.extend(["--train", t.to_str().expect("utf8")]);
    }
    let o = cellmol(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json")
}

#[test]
fn import_qm9_convert_and_metrics() {
    let lib = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/lib"));
    let qm9 = std::fs::read_dir(&lib)
        .expect("venv lib (run scripts/setup.sh)")
        .flatten()
        .map(|e| e.path().join("site-packages/qm9pack"))
        .find(|p| p.is_dir())
        .expect("qm9pack in the venv (run scripts/setup.sh)");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("qm9.sdf");
    let o = cellmol(&[
        "mol",
        "import-qm9",
        "--from",
        qm9.to_str().expect("utf8"),
        "-o",
        out.to_str().expect("utf8"),
        "--split",
        "--limit",
        "3000",
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for s in ["train", "valid", "test"] {
        assert!(
            dir.path().join(format!("qm9.{s}.sdf")).exists(),
            "{s} split file"
        );
    }
    let mols = molecules::read_sdf_path(&out).expect("read back");
    assert_eq!(mols.len(), 3000);
    for k in [
        "mu", "alpha", "homo", "lumo", "gap", "U0", "Cv", "smiles", "split",
    ] {
        assert!(mols[10].property(k).is_some(), "property {k}");
    }
    // SDF -> XYZ.gz -> metrics under EDM equal the SDF's.
    let xyz = dir.path().join("qm9.xyz.gz");
    let o = cellmol(&[
        "mol",
        "convert",
        out.to_str().expect("utf8"),
        xyz.to_str().expect("utf8"),
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = metrics(&out, "edm", None);
    let b = metrics(&xyz, "edm", None);
    for k in [
        "n_molecules",
        "atom_stability",
        "mol_stability",
        "validity",
        "uniqueness",
    ] {
        assert!(a[k].is_number(), "{k}");
        assert!(
            (a[k].as_f64().unwrap_or(-1.0) - b[k].as_f64().unwrap_or(-2.0)).abs() < 1e-9,
            "{k}: {} vs {}",
            a[k],
            b[k]
        );
    }
    assert_eq!(a["n_molecules"], 3000);
    // Novelty against itself is 0; against another split it is in [0, 1].
    let n = metrics(&out, "edm", Some(&out));
    assert_eq!(n["novelty"].as_f64(), Some(0.0));
    let t = metrics(
        &dir.path().join("qm9.test.sdf"),
        "bonds",
        Some(&dir.path().join("qm9.train.sdf")),
    );
    let nov = t["novelty"].as_f64().expect("novelty");
    assert!((0.0..=1.0).contains(&nov));
    // The file's bonds are the EDM-inferred ones, so stability agrees closely.
    assert!(t["atom_stability"].as_f64().expect("num") > 0.9);
}
