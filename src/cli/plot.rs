//! `cellmol plot`: pictures from existing output directories.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum PlotCommand {
    /// Training curves (loss, learning rate, ...) from a model directory's
    /// JSON-lines metrics log (`*.jsonl`), or from a given log file.
    Curves {
        /// Model directory or a `.jsonl` metrics file.
        path: PathBuf,
        /// Output picture; `.png` or `.svg` (default: curves.png next to the log).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

pub fn run(cmd: PlotCommand, global: Global) -> anyhow::Result<()> {
    match cmd {
        PlotCommand::Curves { path, output } => {
            let logs = metrics_logs(&path)?;
            for (i, log) in logs.iter().enumerate() {
                let records = datasets::train::read_metrics(log)?;
                let dir = log.parent().unwrap_or(Path::new("."));
                let stem = log
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let out = match (&output, logs.len()) {
                    (Some(o), 1) => o.clone(),
                    (Some(o), _) => o.with_file_name(format!(
                        "{}_{}.{}",
                        o.file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "curves".into()),
                        stem,
                        o.extension()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "png".into())
                    )),
                    (None, _) => dir.join(format!("{stem}.png")),
                };
                datasets::train::plot::plot_curves(
                    &records,
                    &format!("{} ({})", dir.display(), stem),
                    &out,
                )
                .with_context(|| format!("plotting {}", log.display()))?;
                if !global.quiet {
                    eprintln!(
                        "[{}/{}] {} -> {}",
                        i + 1,
                        logs.len(),
                        log.display(),
                        out.display()
                    );
                }
                println!("{}", out.display());
            }
            Ok(())
        }
    }
}

fn metrics_logs(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        bail!("{}: no such file or directory", path.display());
    }
    let mut logs: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    logs.sort();
    if logs.is_empty() {
        bail!(
            "{}: no metrics log (*.jsonl) in this directory",
            path.display()
        );
    }
    Ok(logs)
}
