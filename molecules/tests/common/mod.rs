//! Shared helpers for integration tests: the project venv's Python (RDKit
//! oracle) and the Debian rdkit-data SDF files.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub fn python() -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"));
    if !p.exists() {
        bail!("the project venv is missing ({}): run scripts/setup.sh first (it installs rdkit and qm9pack)", p.display());
    }
    Ok(p)
}

/// Locate a real SDF shipped by Debian `rdkit-data` (or the rdkit wheel).
pub fn rdkit_data(name: &str) -> anyhow::Result<PathBuf> {
    let roots = [
        PathBuf::from("/usr/share/RDKit"),
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.venv/lib/python3.11/site-packages/rdkit"
        )),
    ];
    for r in &roots {
        if let Some(p) = find(r, name, 5) {
            return Ok(p);
        }
    }
    bail!("{name} not found under /usr/share/RDKit (apt-get install rdkit-data; scripts/setup.sh does this)")
}

fn find(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let rd = std::fs::read_dir(dir).ok()?;
    let mut dirs = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) && p.is_file() {
            return Some(p);
        }
        if p.is_dir() {
            dirs.push(p);
        }
    }
    if depth == 0 {
        return None;
    }
    dirs.sort();
    dirs.iter().find_map(|d| find(d, name, depth - 1))
}

/// Run the RDKit dump script on files; returns `{path: [records]}`.
pub fn rdkit_dump(files: &[&Path]) -> anyhow::Result<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/rdkit_dump.py");
    let out = std::process::Command::new(python()?)
        .arg(script)
        .args(files)
        .output()
        .context("running the RDKit oracle script")?;
    if !out.status.success() {
        bail!("oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}
