//! QM9 (qm9pack CSVs from the project venv) under the EDM protocol must
//! reproduce the published data row — atom stability 99.0 %, molecule
//! stability 95.2 %, validity 97.7 % — within ±0.5 points on the 13 083
//! molecules of the fixed-seed test split; and per molecule, stability and
//! validity must equal an independent EDM-style Python/RDKit implementation
//! (benches/compare/mol_metrics_edm.py) on 1 500 of them.
#![cfg(feature = "rdkit")]
mod common;

use anyhow::{ensure, Context, Result};
use molecules::metrics::{compute_metrics, evaluate_all, smiles_set, summarize, Protocol};
use molecules::qm9::{import_qm9, split_assignment, Qm9Config, Split};
use molecules::verify::Validity;
use molecules::Verifier;

fn qm9pack_dir() -> Result<std::path::PathBuf> {
    let lib = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/lib"));
    for e in std::fs::read_dir(&lib)
        .with_context(|| format!("{}: venv missing, run scripts/setup.sh", lib.display()))?
    {
        let p = e?.path().join("site-packages/qm9pack");
        if p.is_dir() {
            return Ok(p);
        }
    }
    anyhow::bail!(
        "qm9pack not installed in the venv ({}): run scripts/setup.sh",
        lib.display()
    )
}

#[test]
fn qm9_edm_reproduces_published_row_and_python_per_molecule() -> Result<()> {
    let dir = qm9pack_dir()?;
    let all = import_qm9(
        &dir,
        &Qm9Config {
            infer_bonds: false,
            ..Default::default()
        },
    )?;
    ensure!(
        all.len() == 130_831,
        "expected 130 831 QM9 molecules, got {}",
        all.len()
    );
    let split = split_assignment(all.len(), 42);
    let (mut test, mut train) = (Vec::new(), Vec::new());
    for (m, &s) in all.into_iter().zip(&split) {
        match s {
            Split::Test => test.push(m),
            Split::Train if train.len() < 4000 => train.push(m),
            _ => {}
        }
    }
    let t0 = std::time::Instant::now();
    let r = compute_metrics(&test, Protocol::Edm, None);
    eprintln!(
        "QM9 test split, EDM protocol ({:.1} s): {r:?}",
        t0.elapsed().as_secs_f64()
    );
    ensure!(r.n_molecules >= 10_000);
    let close = |x: f64, target: f64| (100.0 * x - target).abs() <= 0.5;
    ensure!(
        close(r.atom_stability, 99.0),
        "atom stability {:.2} % vs 99.0 %",
        100.0 * r.atom_stability
    );
    ensure!(
        close(r.mol_stability, 95.2),
        "molecule stability {:.2} % vs 95.2 %",
        100.0 * r.mol_stability
    );
    ensure!(
        close(r.validity.context("validity")?, 97.7),
        "validity {:?} vs 97.7 %",
        r.validity
    );

    // compute_metrics asks RDKit for SMILES only inside class-key collisions:
    // it must give exactly the report of the all-RDKit path, with and without
    // a training set (one that overlaps the evaluated set, for novelty < 1).
    let full = summarize(&evaluate_all(&test, Protocol::Edm), Protocol::Edm, None);
    ensure!(
        full == r,
        "keyed metrics {r:?} differ from the all-RDKit path {full:?}"
    );
    // The validity verifiers (RDKit-free for plain elements) agree with the
    // all-RDKit evaluation.
    let evals = evaluate_all(&test[..3000], Protocol::Edm);
    for single_fragment in [false, true] {
        let v = Validity {
            protocol: Protocol::Edm,
            single_fragment,
        };
        for (i, (m, e)) in test.iter().zip(&evals).enumerate() {
            let want = e.valid == Some(true) && (!single_fragment || e.n_fragments == 1);
            ensure!(
                v.verify(m) == want,
                "mol {i}: {} says {}, RDKit path {want}",
                v.name(),
                !want
            );
        }
    }
    train.extend(test[..2000].iter().cloned());
    let gen = &test[1000..5000];
    let r = compute_metrics(gen, Protocol::Edm, Some(&train));
    let train_set = smiles_set(&evaluate_all(&train, Protocol::Edm));
    let full = summarize(
        &evaluate_all(gen, Protocol::Edm),
        Protocol::Edm,
        Some(&train_set),
    );
    ensure!(
        full == r,
        "keyed metrics with training set {r:?} differ from the all-RDKit path {full:?}"
    );
    let novelty = r.novelty.context("novelty")?;
    ensure!(
        (0.6..0.9).contains(&novelty),
        "a quarter of the set is in training: novelty {novelty}"
    );

    // Per-molecule agreement with the Python EDM implementation.
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("qm9_sub.sdf");
    molecules::write_sdf_path(&path, &test[..1500], molecules::sdf::CtabVersion::Auto)?;
    let sub = molecules::read_sdf_path(&path)?; // same rounded coordinates as Python sees
    let ours = evaluate_all(&sub, Protocol::Edm);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../benches/compare/mol_metrics_edm.py"
    );
    let out = std::process::Command::new(common::python()?)
        .arg(script)
        .arg(&path)
        .arg("--per-mol")
        .output()?;
    ensure!(
        out.status.success(),
        "python EDM failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let per = v["per_mol"].as_array().context("per_mol")?;
    ensure!(per.len() == ours.len(), "{} vs {}", per.len(), ours.len());
    let (mut smiles_eq, mut n_valid, mut n_invalid) = (0, 0, 0);
    for (i, (p, o)) in per.iter().zip(&ours).enumerate() {
        ensure!(
            p[0].as_bool() == Some(o.stable),
            "mol {i}: stable {} vs python {}",
            o.stable,
            p[0]
        );
        ensure!(
            p[1].as_u64() == Some(o.stable_atoms as u64),
            "mol {i}: stable atoms {} vs python {}",
            o.stable_atoms,
            p[1]
        );
        ensure!(
            p[2].as_bool() == o.valid,
            "mol {i}: valid {:?} vs python {}",
            o.valid,
            p[2]
        );
        if o.valid == Some(true) {
            n_valid += 1;
            smiles_eq += usize::from(p[3].as_str() == o.smiles.as_deref());
        } else {
            n_invalid += 1;
        }
    }
    eprintln!("per-molecule: stability and validity identical on {} molecules ({n_invalid} invalid); largest-fragment SMILES equal on {smiles_eq}/{n_valid}", per.len());
    ensure!(
        n_invalid > 0,
        "the subset should contain invalid molecules to test the verdict"
    );
    ensure!(
        smiles_eq as f64 >= 0.98 * n_valid as f64,
        "SMILES agreement {smiles_eq}/{n_valid}"
    );
    Ok(())
}
