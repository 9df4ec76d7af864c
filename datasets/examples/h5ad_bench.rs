//! One timed `.h5ad` read, for benches/compare/h5ad_read.sh.
//!
//! usage: h5ad_bench full FILE
//!        h5ad_bench partial FILE COND1,COND2,... N_GENES
//! Prints one JSON line: {"seconds": wall time of the read, "peak_rss_mb": VmHWM, ...}.
use std::time::Instant;

use datasets::anndata::{read_h5ad, H5adReader};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let file = args
        .get(2)
        .ok_or_else(|| anyhow::anyhow!("usage: h5ad_bench full|partial FILE ..."))?;
    match mode {
        "full" => {
            let t = Instant::now();
            let ad = read_h5ad(file)?;
            let secs = t.elapsed().as_secs_f64();
            let nnz = ad.x.as_ref().map_or(0, |x| x.nnz());
            println!(
                "{{\"seconds\": {secs}, \"peak_rss_mb\": {}, \"n_obs\": {}, \"nnz\": {nnz}}}",
                peak_rss_mb(),
                ad.n_obs()
            );
        }
        "partial" => {
            let conds: Vec<&str> = args
                .get(3)
                .map(|s| s.split(',').collect())
                .unwrap_or_default();
            let n_genes: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1000);
            let t = Instant::now();
            let mut r = H5adReader::open(file)?;
            if let Some(g) = std::env::var("CELLMOL_H5AD_GAP")
                .ok()
                .and_then(|g| g.parse().ok())
            {
                r = r.with_coalesce_gap(g);
            }
            let col = r
                .obs
                .column("perturbation")
                .ok_or_else(|| anyhow::anyhow!("no obs perturbation"))?;
            let rows: Vec<usize> = col.rows_with_labels(&conds);
            let cols: Vec<usize> = (0..n_genes.min(r.n_vars())).collect();
            let m = r.read_submatrix("X", Some(&rows), Some(&cols))?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{{\"seconds\": {secs}, \"peak_rss_mb\": {}, \"rows\": {}, \"cols\": {}, \"nnz\": {}}}",
                peak_rss_mb(),
                m.shape2().0,
                m.shape2().1,
                m.nnz()
            );
        }
        other => anyhow::bail!("unknown mode `{other}` (full|partial)"),
    }
    Ok(())
}
