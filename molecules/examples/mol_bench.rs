//! Timing driver for the peer comparisons in benches/compare/ (run with
//! `cargo run --release -p molecules --example mol_bench -- <cmd> ...`):
//! - `parse FILE`: read every SDF record (parallel reader), print seconds.
//! - `metrics FILE N [REPEATS]`: read, then EDM-protocol metrics on the first
//!   N molecules REPEATS times (default 5); prints the median metrics seconds,
//!   every repeat, and the report.
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("parse") => {
            let path = args.get(1).ok_or_else(|| anyhow::anyhow!("parse FILE"))?;
            let t = Instant::now();
            let mols = molecules::read_sdf_path(path)?;
            let dt = t.elapsed().as_secs_f64();
            let atoms: usize = mols.iter().map(|m| m.n_atoms()).sum();
            println!(
                "{}",
                serde_json::json!({"records": mols.len(), "atoms": atoms, "seconds": dt, "threads": rayon::current_num_threads()})
            );
        }
        Some("metrics") => {
            let path = args
                .get(1)
                .ok_or_else(|| anyhow::anyhow!("metrics FILE N"))?;
            let n: usize = args
                .get(2)
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(10_000);
            let repeats: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(5);
            let t = Instant::now();
            let mut mols = molecules::read_sdf_path(path)?;
            mols.truncate(n);
            let t_parse = t.elapsed().as_secs_f64();
            // The Python peer starts its clock after RDKit has read the file
            // (library loaded, periodic table built): warm RDKit up likewise.
            molecules::chem::quiet_rdkit_logs();
            let _ = molecules::chem::canonicalize_smiles("CC");
            let mut times = Vec::new();
            let mut report = None;
            for _ in 0..repeats.max(1) {
                let t = Instant::now();
                let r = molecules::metrics::compute_metrics(
                    &mols,
                    molecules::metrics::Protocol::Edm,
                    None,
                );
                times.push(t.elapsed().as_secs_f64());
                report = Some(r);
            }
            let r = report.ok_or_else(|| anyhow::anyhow!("no repeat ran"))?;
            let mut sorted = times.clone();
            sorted.sort_by(f64::total_cmp);
            let dt = sorted[sorted.len() / 2];
            println!(
                "{}",
                serde_json::json!({"n_molecules": r.n_molecules, "parse_seconds": t_parse, "seconds": dt, "repeat_seconds": times, "threads": rayon::current_num_threads(), "report": r})
            );
        }
        Some("profile") => {
            // Single-threaded stage costs on the first N molecules.
            let path = args
                .get(1)
                .ok_or_else(|| anyhow::anyhow!("profile FILE N"))?;
            let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(2000);
            let mut mols = molecules::read_sdf_path(path)?;
            mols.truncate(n);
            molecules::chem::quiet_rdkit_logs();
            let t = Instant::now();
            let views: Vec<_> = mols
                .iter()
                .map(|m| molecules::metrics::protocol_view(m, molecules::Protocol::Edm))
                .collect();
            let t_view = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let blocks: Vec<String> = views.iter().map(molecules::sdf::mol_block).collect();
            let t_block = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let a: usize = views
                .iter()
                .map(|v| usize::from(molecules::chem::sanitize(v, false).ok))
                .sum();
            let t_keep_h = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let b: usize = views
                .iter()
                .map(|v| usize::from(molecules::chem::sanitize(v, true).ok))
                .sum();
            let t_remove_h = t.elapsed().as_secs_f64();
            let smi: Vec<String> = mols
                .iter()
                .filter_map(|m| m.property("smiles").map(str::to_string))
                .collect();
            let t = Instant::now();
            let c: usize = smi
                .iter()
                .filter_map(|s| molecules::chem::canonicalize_smiles(s))
                .count();
            let t_smiles = t.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"n": n, "smiles_ok": c, "us_per_mol": {"smiles_parse_canon": 1e6 * t_smiles / n as f64, "view": 1e6 * t_view / n as f64, "block": 1e6 * t_block / n as f64,
                "sanitize_smiles_keep_h": 1e6 * t_keep_h / n as f64, "sanitize_smiles_remove_h": 1e6 * t_remove_h / n as f64},
                "valid": [a, b], "block_bytes": blocks.iter().map(String::len).sum::<usize>() / n})
            );
        }
        _ => {
            anyhow::bail!("usage: mol_bench parse FILE | metrics FILE N [REPEATS] | profile FILE N")
        }
    }
    Ok(())
}
