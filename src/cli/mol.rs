//! `cellmol mol`: inspect molecule files, compute EDM / model-bond metrics,
//! convert SDF <-> XYZ (gz), import QM9 from qm9pack.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use molecules::io::{format_of, Format};
use molecules::metrics::{self, Protocol};
use molecules::sdf::{SdfReadOptions, SkippedRecord};
use molecules::Molecule;
use serde_json::json;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum MolCommand {
    /// Summarise a molecule file (records, failures, atoms, bonds, elements).
    Inspect {
        /// SDF/MOL/XYZ file, optionally gzipped.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// One line per record (with --json: one JSON object per record).
        #[arg(long)]
        per_record: bool,
    },
    /// Stability, validity, uniqueness and novelty of a set of molecules.
    Metrics {
        /// SDF or XYZ file (XYZ only with --protocol edm).
        file: PathBuf,
        /// `edm`: bonds inferred from coordinates; `bonds`: the file's bonds.
        #[arg(long, value_enum)]
        protocol: ProtocolArg,
        /// Training set for novelty (same pipeline).
        #[arg(long)]
        train: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert between SDF and XYZ (by extension; `.gz` compresses).
    Convert { input: PathBuf, output: PathBuf },
    /// Convert qm9pack's CSV files to SDF with properties as data fields.
    #[command(name = "import-qm9")]
    ImportQm9 {
        /// Directory holding qm9_part*.csv (searched recursively, e.g. site-packages/qm9pack).
        #[arg(long = "from")]
        from: PathBuf,
        /// Output SDF (`.sdf` or `.sdf.gz`).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Also write <stem>.train/.valid/.test SDFs and a `split` data field.
        #[arg(long)]
        split: bool,
        /// Write atoms only (no EDM-inferred bonds).
        #[arg(long)]
        no_bonds: bool,
        /// Import only the first N molecules.
        #[arg(long)]
        limit: Option<usize>,
        /// Seed of the split shuffle.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProtocolArg {
    Edm,
    Bonds,
}

pub fn run(cmd: MolCommand, global: Global) -> anyhow::Result<()> {
    #[cfg(feature = "rdkit")]
    molecules::chem::quiet_rdkit_logs();
    match cmd {
        MolCommand::Inspect {
            file,
            json,
            per_record,
        } => inspect(&file, json, per_record),
        MolCommand::Metrics {
            file,
            protocol,
            train,
            json,
        } => {
            let protocol = match protocol {
                ProtocolArg::Edm => Protocol::Edm,
                ProtocolArg::Bonds => Protocol::Bonds,
            };
            metrics_cmd(&file, protocol, train.as_deref(), json, global)
        }
        MolCommand::Convert { input, output } => {
            let mols = molecules::read_molecules_path(&input)?;
            molecules::write_molecules_path(&output, &mols)?;
            if !global.quiet {
                eprintln!("wrote {} molecules to {}", mols.len(), output.display());
            }
            Ok(())
        }
        MolCommand::ImportQm9 {
            from,
            output,
            split,
            no_bonds,
            limit,
            seed,
        } => import_qm9(&from, &output, split, no_bonds, limit, seed, global),
    }
}

/// Read leniently: molecules with their record indices, plus skipped records.
fn read_lenient(path: &Path) -> anyhow::Result<(Vec<Molecule>, Vec<usize>, Vec<SkippedRecord>)> {
    match format_of(path)? {
        Format::Sdf => {
            let b = molecules::read_sdf_path_with(
                path,
                &SdfReadOptions {
                    skip_bad: true,
                    parallel: true,
                },
            )?;
            Ok((b.molecules, b.record_index, b.skipped))
        }
        Format::Xyz => {
            let m = molecules::read_xyz_path(path)?;
            let idx = (0..m.len()).collect();
            Ok((m, idx, Vec::new()))
        }
    }
}

#[cfg(feature = "rdkit")]
fn sanitize(m: &Molecule) -> (Option<bool>, Option<String>) {
    let s = molecules::chem::sanitize(m, true);
    (Some(s.ok), s.smiles)
}
#[cfg(not(feature = "rdkit"))]
fn sanitize(_m: &Molecule) -> (Option<bool>, Option<String>) {
    (None, None)
}

fn inspect(path: &Path, as_json: bool, per_record: bool) -> anyhow::Result<()> {
    use rayon::prelude::*;
    let (mols, idx, skipped) = read_lenient(path)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if per_record {
        let rows: Vec<serde_json::Value> = mols
            .par_iter()
            .zip(idx.par_iter())
            .map(|(m, &i)| {
                let mut props: Vec<&str> = m.properties.iter().map(|(k, _)| k.as_str()).collect();
                props.sort_unstable();
                props.dedup();
                let (ok, smiles) = sanitize(m);
                json!({
                    "index": i, "title": m.title, "n_atoms": m.n_atoms(), "n_bonds": m.n_bonds(),
                    "charge": m.total_charge(), "props": props, "sanitize_ok": ok, "smiles": smiles,
                })
            })
            .collect();
        let mut all: Vec<(usize, serde_json::Value)> = idx.iter().copied().zip(rows).collect();
        all.extend(skipped.iter().map(|s| {
            (
                s.record,
                json!({"index": s.record, "error": s.error, "line": s.line}),
            )
        }));
        all.sort_by_key(|(i, _)| *i);
        for (_, v) in all {
            if as_json {
                writeln!(out, "{v}")?;
            } else {
                match v.get("error") {
                    Some(e) => {
                        writeln!(out, "{}\tERROR\t{}", v["index"], e.as_str().unwrap_or(""))?
                    }
                    None => writeln!(
                        out,
                        "{}\t{}\tatoms={}\tbonds={}\tcharge={}\tsanitize_ok={}\t{}",
                        v["index"],
                        v["title"].as_str().unwrap_or(""),
                        v["n_atoms"],
                        v["n_bonds"],
                        v["charge"],
                        v["sanitize_ok"],
                        v["smiles"].as_str().unwrap_or("")
                    )?,
                }
            }
        }
        return Ok(());
    }
    let mut elements: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &mols {
        for e in &m.elements {
            *elements.entry(e.symbol()).or_default() += 1;
        }
    }
    let n_atoms: usize = mols.iter().map(|m| m.n_atoms()).sum();
    let n_bonds: usize = mols.iter().map(|m| m.n_bonds()).sum();
    if as_json {
        let v = json!({
            "file": path.display().to_string(),
            "records": mols.len() + skipped.len(),
            "molecules": mols.len(),
            "failed": skipped.iter().map(|s| json!({"index": s.record, "line": s.line, "error": s.error})).collect::<Vec<_>>(),
            "n_atoms": n_atoms, "n_bonds": n_bonds, "elements": elements,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(out, "file      {}", path.display())?;
        writeln!(
            out,
            "records   {} ({} parsed, {} failed)",
            mols.len() + skipped.len(),
            mols.len(),
            skipped.len()
        )?;
        writeln!(out, "atoms     {n_atoms}")?;
        writeln!(out, "bonds     {n_bonds}")?;
        let el: Vec<String> = elements.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        writeln!(out, "elements  {}", el.join(" "))?;
        for s in &skipped {
            writeln!(
                out,
                "failed    record {} line {}: {}",
                s.record, s.line, s.error
            )?;
        }
    }
    Ok(())
}

fn metrics_cmd(
    path: &Path,
    protocol: Protocol,
    train: Option<&Path>,
    as_json: bool,
    g: Global,
) -> anyhow::Result<()> {
    let load = |p: &Path| -> anyhow::Result<Vec<Molecule>> {
        if protocol == Protocol::Bonds && format_of(p)? == Format::Xyz {
            anyhow::bail!("{}: XYZ has no bonds; use --protocol edm", p.display());
        }
        let (m, _, skipped) = read_lenient(p)?;
        for s in &skipped {
            eprintln!("warning: skipped {}", s.error);
        }
        if m.is_empty() {
            anyhow::bail!("{}: no molecules could be read", p.display());
        }
        Ok(m)
    };
    let mols = load(path)?;
    let train_mols = train.map(load).transpose()?;
    let t0 = std::time::Instant::now();
    let r = metrics::compute_metrics(&mols, protocol, train_mols.as_deref());
    if !g.quiet {
        eprintln!(
            "evaluated {} molecules in {:.2} s",
            mols.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{:.2} %", 100.0 * x));
        println!("protocol                   {:?}", r.protocol);
        println!("n_molecules                {}", r.n_molecules);
        println!("atom_stability             {}", pct(Some(r.atom_stability)));
        println!("mol_stability              {}", pct(Some(r.mol_stability)));
        println!("validity (EDM, largest)    {}", pct(r.validity));
        println!(
            "validity (single fragment) {}",
            pct(r.validity_single_fragment)
        );
        println!("uniqueness                 {}", pct(r.uniqueness));
        println!("novelty                    {}", pct(r.novelty));
    }
    Ok(())
}

fn import_qm9(
    from: &Path,
    output: &Path,
    split: bool,
    no_bonds: bool,
    limit: Option<usize>,
    seed: u64,
    g: Global,
) -> anyhow::Result<()> {
    use molecules::qm9;
    use molecules::sdf::{write_sdf_path, CtabVersion};
    let cfg = qm9::Qm9Config {
        infer_bonds: !no_bonds,
        seed,
        limit,
    };
    let mut mols = qm9::import_qm9(from, &cfg)
        .with_context(|| format!("importing QM9 from {}", from.display()))?;
    if split {
        let s = qm9::split_assignment(mols.len(), seed);
        for (m, sp) in mols.iter_mut().zip(&s) {
            m.set_property("split", sp.name());
        }
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (stem, ext) = match name.find(".sdf") {
            Some(i) => (name[..i].to_string(), name[i..].to_string()),
            None => (name.clone(), ".sdf".to_string()),
        };
        for part in [qm9::Split::Train, qm9::Split::Valid, qm9::Split::Test] {
            let p = output.with_file_name(format!("{stem}.{}{ext}", part.name()));
            let sel: Vec<&Molecule> = mols
                .iter()
                .zip(&s)
                .filter(|(_, &x)| x == part)
                .map(|(m, _)| m)
                .collect();
            write_sdf_path(&p, sel.iter().copied(), CtabVersion::Auto)?;
            if !g.quiet {
                eprintln!(
                    "wrote {} {} molecules to {}",
                    sel.len(),
                    part.name(),
                    p.display()
                );
            }
        }
    }
    write_sdf_path(output, &mols, CtabVersion::Auto)?;
    if !g.quiet {
        eprintln!("wrote {} molecules to {}", mols.len(), output.display());
    }
    Ok(())
}
