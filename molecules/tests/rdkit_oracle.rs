//! Real SDF files nobody here wrote (Debian rdkit-data) read by our reader and
//! by Python RDKit (the oracle, tests/oracle/rdkit_dump.py): per record atom
//! count, bonds, charges, isotopes, property names/values and sanitisation
//! verdicts must be equal; canonical SMILES must equal Python's wherever the
//! two RDKit versions (Debian 2022.09 linked here, 2026.09 in the venv) agree
//! on the original record. Written files (V2000, V3000, CRLF, gzip) must be
//! read back by Python RDKit identically (coordinates to 1e-4 Å).
#![cfg(feature = "rdkit")]
mod common;

use std::path::Path;

use anyhow::{ensure, Context, Result};
use molecules::sdf::{parse_sdf_bytes, write_sdf_version, CtabVersion, SdfReadOptions};
use molecules::{BondOrder, Molecule};
use serde_json::Value;

const FILES: [&str; 4] = [
    "pubchem.200.sdf",
    "bzr.sdf",
    "first_200.props.sdf",
    "egfr.sdf",
];

fn bond_name(o: BondOrder) -> &'static str {
    match o {
        BondOrder::Single => "SINGLE",
        BondOrder::Double => "DOUBLE",
        BondOrder::Triple => "TRIPLE",
        BondOrder::Aromatic => "AROMATIC",
    }
}

/// Compare one of our molecules with one oracle record (structure, props, coords).
fn same_structure(m: &Molecule, r: &Value, what: &str) -> Result<()> {
    let ints = |k: &str| -> Vec<i64> {
        r[k].as_array()
            .map(|a| a.iter().filter_map(|v| v.as_i64()).collect())
            .unwrap_or_default()
    };
    ensure!(
        ints("atoms")
            == m.elements
                .iter()
                .map(|e| i64::from(e.0))
                .collect::<Vec<_>>(),
        "{what}: atoms differ"
    );
    ensure!(
        ints("charges") == m.charges.iter().map(|&c| i64::from(c)).collect::<Vec<_>>(),
        "{what}: charges differ"
    );
    ensure!(
        ints("isotopes") == m.isotopes.iter().map(|&c| i64::from(c)).collect::<Vec<_>>(),
        "{what}: isotopes differ"
    );
    let ours: Vec<(usize, usize, &str)> = m
        .bond_list()
        .map(|(a, b, o, _)| (a, b, bond_name(o)))
        .collect();
    let theirs: Vec<(usize, usize, &str)> = r["bonds"]
        .as_array()
        .context("bonds")?
        .iter()
        .map(|b| {
            (
                b[0].as_u64().unwrap_or(0) as usize,
                b[1].as_u64().unwrap_or(0) as usize,
                b[2].as_str().unwrap_or(""),
            )
        })
        .collect();
    ensure!(
        ours == theirs,
        "{what}: bonds differ:\n ours {ours:?}\n rdkit {theirs:?}"
    );
    let props = r["props"].as_object().context("props")?;
    ensure!(
        props.len() == m.properties.len(),
        "{what}: {} props vs rdkit {}",
        m.properties.len(),
        props.len()
    );
    for (k, v) in &m.properties {
        ensure!(
            props.get(k).and_then(|x| x.as_str()) == Some(v.as_str()),
            "{what}: prop {k} = {v:?} vs rdkit {:?}",
            props.get(k)
        );
    }
    ensure!(
        r["title"].as_str().map(str::trim_end) == Some(m.title.as_str()),
        "{what}: title {:?} vs {:?}",
        m.title,
        r["title"]
    );
    let coords = r["coords"].as_array().context("coords")?;
    for (i, c) in coords.iter().enumerate() {
        for k in 0..3 {
            let d = (c[k].as_f64().unwrap_or(f64::NAN) - m.positions[[i, k]]).abs();
            ensure!(
                d <= 1e-4 + 1e-9,
                "{what}: atom {i} coord {k} differs by {d}"
            );
        }
    }
    Ok(())
}

/// Raw record texts, split at `$$$$` lines.
fn raw_records(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.split_inclusive('\n') {
        cur.push_str(line);
        if line.starts_with("$$$$") {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

#[test]
fn real_sdf_files_match_rdkit() -> Result<()> {
    molecules::chem::quiet_rdkit_logs();
    let paths: Vec<_> = FILES
        .iter()
        .map(|f| common::rdkit_data(f))
        .collect::<Result<_>>()?;
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let oracle = common::rdkit_dump(&refs)?;
    let (mut n_total, mut n_smiles_ours_eq_py, mut n_versions_agree, mut n_sanitized) =
        (0, 0, 0, 0);
    let dir = tempfile::tempdir()?;
    for p in &paths {
        let key = p.to_str().context("utf8 path")?;
        let recs = oracle[key].as_array().context("oracle output")?;
        let bytes = std::fs::read(p)?;
        let batch = parse_sdf_bytes(
            &bytes,
            key,
            &SdfReadOptions {
                skip_bad: true,
                parallel: true,
            },
        )?;
        let raw = raw_records(&String::from_utf8_lossy(&bytes));
        ensure!(
            raw.len() == recs.len(),
            "{key}: {} raw records vs rdkit {}",
            raw.len(),
            recs.len()
        );
        let mut ours: Vec<Option<&Molecule>> = vec![None; recs.len()];
        for (m, &i) in batch.molecules.iter().zip(&batch.record_index) {
            ours[i] = Some(m);
        }
        for s in &batch.skipped {
            eprintln!("{key}: skipped record {}: {}", s.record, s.error);
        }
        for (i, r) in recs.iter().enumerate() {
            let what = format!("{key} record {i}");
            let parsed = r["parsed"].as_bool() == Some(true);
            ensure!(
                parsed == ours[i].is_some(),
                "{what}: rdkit parsed={parsed}, we parsed={}",
                ours[i].is_some()
            );
            let Some(m) = ours[i] else { continue };
            n_total += 1;
            same_structure(m, r, &what)?;
            let s = molecules::chem::sanitize(m, true);
            ensure!(
                Some(s.ok) == r["sanitize_ok"].as_bool(),
                "{what}: sanitize ok={} vs rdkit {} ({:?})",
                s.ok,
                r["sanitize_ok"],
                s.problems
            );
            if !s.ok {
                continue;
            }
            n_sanitized += 1;
            let py = r["smiles"].as_str();
            // Same RDKit version (2022.09) on the original record text.
            let native = molecules::chem::sanitize_block(&raw[i], true).smiles;
            ensure!(
                s.smiles == native,
                "{what}: our SMILES {:?} != RDKit 2022 on the raw record {:?}",
                s.smiles,
                native
            );
            if native.as_deref() == py {
                n_versions_agree += 1;
                ensure!(
                    s.smiles.as_deref() == py,
                    "{what}: SMILES {:?} vs rdkit {:?}",
                    s.smiles,
                    py
                );
            }
            n_smiles_ours_eq_py += usize::from(s.smiles.as_deref() == py);
        }
        // Round trips: V2000, V3000, CRLF, gzip; read back by Python RDKit.
        let mols = &batch.molecules;
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("x")
            .to_string();
        let mut v2 = Vec::new();
        write_sdf_version(&mut v2, mols, CtabVersion::Auto)?;
        let mut v3 = Vec::new();
        write_sdf_version(&mut v3, mols, CtabVersion::V3000)?;
        let crlf = String::from_utf8(v2.clone())?.replace('\n', "\r\n");
        let out2 = dir.path().join(format!("{stem}.v2000.sdf"));
        let out3 = dir.path().join(format!("{stem}.v3000.sdf"));
        let outc = dir.path().join(format!("{stem}.crlf.sdf"));
        let outg = dir.path().join(format!("{stem}.v2000.sdf.gz"));
        std::fs::write(&out2, &v2)?;
        std::fs::write(&out3, &v3)?;
        std::fs::write(&outc, crlf.as_bytes())?;
        molecules::write_sdf_path(&outg, mols, CtabVersion::Auto)?;
        let back = common::rdkit_dump(&[&out2, &out3, &outc, &outg])?;
        for o in [&out2, &out3, &outc, &outg] {
            let k = o.to_str().context("utf8")?;
            let rb = back[k].as_array().context("dump")?;
            ensure!(
                rb.len() == mols.len(),
                "{k}: rdkit read {} records, wrote {}",
                rb.len(),
                mols.len()
            );
            for (j, (m, r)) in mols.iter().zip(rb).enumerate() {
                ensure!(
                    r["parsed"].as_bool() == Some(true),
                    "{k} record {j}: rdkit could not read our output"
                );
                same_structure(m, r, &format!("{k} record {j}"))?;
                let orig = &recs[batch.record_index[j]];
                ensure!(
                    r["sanitize_ok"] == orig["sanitize_ok"],
                    "{k} record {j}: sanitize verdict changed after writing"
                );
            }
            // And our reader reads every variant identically.
            let again = molecules::read_sdf_path(o)?;
            ensure!(again.len() == mols.len(), "{k}: re-read count");
            for (a, b) in again.iter().zip(mols) {
                ensure!(
                    a.elements == b.elements
                        && a.charges == b.charges
                        && a.properties == b.properties,
                    "{k}: re-read differs"
                );
                ensure!(
                    a.bond_list()
                        .map(|x| (x.0, x.1, x.2))
                        .eq(b.bond_list().map(|x| (x.0, x.1, x.2))),
                    "{k}: bonds differ"
                );
                ensure!(
                    (&a.positions - &b.positions)
                        .iter()
                        .all(|d| d.abs() <= 1e-4),
                    "{k}: coords differ"
                );
            }
        }
    }
    eprintln!(
        "rdkit oracle: {n_total} records, {n_sanitized} sanitised; canonical SMILES equal to Python RDKit 2026 for {n_smiles_ours_eq_py}/{n_sanitized} ({:.1} %); the two RDKit versions agree on {n_versions_agree}/{n_sanitized}",
        100.0 * n_smiles_ours_eq_py as f64 / n_sanitized.max(1) as f64
    );
    ensure!(n_total >= 900, "expected ~928 records, got {n_total}");
    Ok(())
}
