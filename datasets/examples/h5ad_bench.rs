//! One timed `.h5ad` read, for benches/compare/h5ad_read.sh.
//!
//! usage: h5ad_bench full FILE
//!        h5ad_bench partial FILE COND1,COND2,... N_GENES
//! Prints one JSON line: {"seconds": wall time of the read, "peak_rss_mb": VmHWM, ...}.
//! The partial read returns what anndata's `read_h5ad(backed="r")[rows,
//! :N_GENES]` view holds once `.X` is read: the X submatrix, the selected
//! rows of obs (names and columns) and the selected genes of var. It opens
//! with `H5adReader::open_lazy` (obs names are not needed to select cells by
//! a column), reads the selected rows × the first N_GENES genes of X and the
//! selected cells' obs names only (`LazyObs::select_rows`, names checked
//! unique among themselves). With CELLMOL_H5AD_NAMES set it reads and checks
//! all obs names first (as anndata and `H5adReader::open` do) and picks the
//! selected ones from them.
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

/// User + system CPU time of the process so far (seconds): on a loaded
/// machine it varies far less than wall time.
#[allow(unsafe_code)]
fn cpu_s() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let file = args
        .get(2)
        .ok_or_else(|| anyhow::anyhow!("usage: h5ad_bench full|partial FILE ..."))?;
    match mode {
        "full" => {
            let (t, c) = (Instant::now(), cpu_s());
            let ad = read_h5ad(file)?;
            let secs = t.elapsed().as_secs_f64();
            let cpu = cpu_s() - c;
            let nnz = ad.x.as_ref().map_or(0, |x| x.nnz());
            println!(
                "{{\"seconds\": {secs}, \"cpu_s\": {cpu}, \"peak_rss_mb\": {}, \"n_obs\": {}, \"nnz\": {nnz}}}",
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
            let (t, c) = (Instant::now(), cpu_s());
            // Obs names stay on disk: selecting cells needs only the column.
            let mut r = H5adReader::open_lazy(file)?;
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
            let t_open = t.elapsed().as_secs_f64();
            let m = r.read_submatrix("X", Some(&rows), Some(&cols))?;
            let t_x = t.elapsed().as_secs_f64();
            if std::env::var_os("CELLMOL_H5AD_NAMES").is_some() {
                // All names read and checked unique (select_rows then picks
                // from them).
                r.obs.names()?;
            }
            let obs = r.obs.select_rows(&rows)?;
            let var = r.var.select_rows(&cols);
            let t_obs = t.elapsed().as_secs_f64();
            if std::env::var_os("CELLMOL_H5AD_STAGES").is_some() {
                // Stage times (wall, s) on stderr: open + select cells, X, obs/var rows.
                eprintln!(
                    "open {t_open:.4} x {:.4} obs {:.4}",
                    t_x - t_open,
                    t_obs - t_x
                );
            }
            let secs = t.elapsed().as_secs_f64();
            let cpu = cpu_s() - c;
            let name = |v: &[String], last: bool| {
                let s = if last { v.last() } else { v.first() };
                s.map_or(String::new(), |s| s.replace(['"', '\\'], "_"))
            };
            println!(
                "{{\"seconds\": {secs}, \"cpu_s\": {cpu}, \"peak_rss_mb\": {}, \"rows\": {}, \"cols\": {}, \"nnz\": {}, \"obs_rows\": {}, \"obs_columns\": {}, \"first_name\": \"{}\", \"last_name\": \"{}\", \"last_gene\": \"{}\"}}",
                peak_rss_mb(),
                m.shape2().0,
                m.shape2().1,
                m.nnz(),
                obs.n_rows(),
                obs.columns.len(),
                name(&obs.index, false),
                name(&obs.index, true),
                name(&var.index, true),
            );
        }
        other => anyhow::bail!("unknown mode `{other}` (full|partial)"),
    }
    Ok(())
}
