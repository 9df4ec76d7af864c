//! Timing driver for the peer comparisons in benches/compare/ (run with
//! `cargo run --release -p molecules --example mol_bench -- <cmd> ...`):
//! - `parse FILE`: read every SDF record (parallel reader), print seconds.
//! - `metrics FILE N`: read, then EDM-protocol metrics on the first N
//!   molecules; prints parse and metrics seconds and the report.
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
            println!("{}", serde_json::json!({"records": mols.len(), "atoms": atoms, "seconds": dt, "threads": rayon::current_num_threads()}));
        }
        Some("metrics") => {
            let path = args.get(1).ok_or_else(|| anyhow::anyhow!("metrics FILE N"))?;
            let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(10_000);
            let t = Instant::now();
            let mut mols = molecules::read_sdf_path(path)?;
            mols.truncate(n);
            let t_parse = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let r = molecules::metrics::compute_metrics(&mols, molecules::metrics::Protocol::Edm, None);
            let dt = t.elapsed().as_secs_f64();
            println!("{}", serde_json::json!({"n_molecules": r.n_molecules, "parse_seconds": t_parse, "seconds": dt, "report": r}));
        }
        _ => anyhow::bail!("usage: mol_bench parse FILE | metrics FILE N"),
    }
    Ok(())
}
