//! Top-level command tree. Each area owns one module with its clap types and
//! a `run` function; this file only wires them together.
use clap::{Parser, Subcommand};

pub mod clipr;
pub mod data;
pub mod device;
pub mod expand;
pub mod lcd;
pub mod mol;
pub mod morph;
pub mod plot;
pub mod simulate;
pub mod slurm;

/// cellmol: perturbation screens (LCD, CLIPR), 3D molecule generation (Morph)
/// and verifier-based flow expansion, with AnnData and SDF I/O.
#[derive(Debug, Parser)]
#[command(name = "cellmol", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Suppress progress bars and informational messages on stderr.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate synthetic perturbation screens with a known causal truth.
    #[command(subcommand)]
    Simulate(simulate::SimulateCommand),
    /// Inspect and subset AnnData (.h5ad) files.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Molecule files: inspect, metrics, conversion, QM9 import.
    #[command(subcommand)]
    Mol(mol::MolCommand),
    /// Latent causal diffusion: fit, predict unseen combinations, evaluate.
    #[command(subcommand)]
    Lcd(lcd::LcdCommand),
    /// Direct causal effects, graphs and gene modules from a trained LCD.
    Clipr(clipr::CliprArgs),
    /// Flexible-size equivariant 3D molecule generation.
    #[command(subcommand)]
    Morph(morph::MorphCommand),
    /// Verifier-based flow expansion (Flow Expander, ActFlow).
    #[command(subcommand)]
    Expand(expand::ExpandCommand),
    /// Pictures from existing outputs (training curves, ...).
    #[command(subcommand)]
    Plot(plot::PlotCommand),
    /// Write (and optionally submit) SLURM batch scripts for training and analysis.
    #[command(subcommand)]
    Slurm(slurm::SlurmCommand),
}

/// Options every command can see.
#[derive(Debug, Clone, Copy)]
pub struct Global {
    pub quiet: bool,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let global = Global { quiet: cli.quiet };
    match cli.command {
        Command::Simulate(cmd) => simulate::run(cmd, global),
        Command::Data(cmd) => data::run(cmd, global),
        Command::Mol(cmd) => mol::run(cmd, global),
        Command::Lcd(cmd) => lcd::run(cmd, global),
        Command::Clipr(cmd) => clipr::run(cmd, global),
        Command::Morph(cmd) => morph::run(cmd, global),
        Command::Expand(cmd) => expand::run(cmd, global),
        Command::Plot(cmd) => plot::run(cmd, global),
        Command::Slurm(cmd) => slurm::run(cmd, global),
    }
}

/// Process exit code for an error: [`datasets::train::EXIT_REQUEUE`] (75) when
/// a training run stopped on a signal after checkpointing (batch scripts
/// requeue on it), 1 for every other failure.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let interrupted = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<datasets::DatasetsError>(),
            Some(datasets::DatasetsError::Interrupted { .. })
        )
    });
    if interrupted {
        datasets::train::EXIT_REQUEUE
    } else {
        1
    }
}

/// Write `bytes` to `path` atomically: a temp file in the same directory,
/// then rename, so a failed run never leaves a half-written output.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path.file_name().context("output path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
