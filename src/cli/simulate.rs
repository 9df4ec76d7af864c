//! `cellmol simulate screen`: synthetic perturbation screens with a known
//! causal truth (datasets::simulate), written as an ordinary `.h5ad`.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use datasets::simulate::{simulate_screen, GraphKind, SimKind, SimulationConfig};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// Simulate a screen: control, P singles, K doubles, N cells each; the
    /// true effect matrix goes to varp["true_effects"] ([i, j] = effect of
    /// gene i on gene j), parameters to uns["simulation"].
    Screen(ScreenArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// Linear SDE, exact stationary Gaussian (Lyapunov solve).
    Linear,
    /// f(x) = −x + tanh(W x + b) + c, Euler–Maruyama; doubles interact.
    Nonlinear,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphArg {
    /// Erdős–Rényi.
    Er,
    /// Scale-free (Barabási–Albert).
    Sf,
}

#[derive(Debug, Args)]
pub struct ScreenArgs {
    /// Dynamics.
    #[arg(long, value_enum, default_value = "linear")]
    pub kind: KindArg,
    /// Number of genes D.
    #[arg(long)]
    pub genes: usize,
    /// Number of perturbed genes P (≤ D); one single condition each.
    #[arg(long)]
    pub perturbed: usize,
    /// Number of double perturbations K among the perturbed genes (≤ P(P−1)/2).
    #[arg(long, default_value_t = 0)]
    pub doubles: usize,
    /// Cells per condition N.
    #[arg(long, default_value_t = 200)]
    pub cells_per_condition: usize,
    /// Write ZIP counts to X and the latent states to layers["latent"].
    #[arg(long)]
    pub counts: bool,
    /// Random graph family.
    #[arg(long, value_enum, default_value = "er")]
    pub graph: GraphArg,
    /// Expected edges per gene (ER) / edges added per gene (SF).
    #[arg(long, default_value_t = 10.0)]
    pub degree: f64,
    /// Random seed (results are identical for equal seeds).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output .h5ad.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

impl ScreenArgs {
    fn config(&self) -> SimulationConfig {
        SimulationConfig {
            kind: match self.kind {
                KindArg::Linear => SimKind::Linear,
                KindArg::Nonlinear => SimKind::Nonlinear,
            },
            genes: self.genes,
            perturbed: self.perturbed,
            doubles: self.doubles,
            cells_per_condition: self.cells_per_condition,
            counts: self.counts,
            graph: match self.graph {
                GraphArg::Er => GraphKind::Er,
                GraphArg::Sf => GraphKind::Sf,
            },
            degree: self.degree,
            seed: self.seed,
            ..SimulationConfig::default()
        }
    }
}

pub fn run(cmd: SimulateCommand, global: Global) -> anyhow::Result<()> {
    match cmd {
        SimulateCommand::Screen(args) => screen(&args, global),
    }
}

fn screen(args: &ScreenArgs, global: Global) -> anyhow::Result<()> {
    let cfg = args.config();
    cfg.validate().context("invalid simulation options")?;
    let start = Instant::now();
    let bar = if global.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new((1 + cfg.perturbed + cfg.doubles) as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "simulating {pos}/{len} conditions [{elapsed_precise}] {wide_bar}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let sim = simulate_screen(&cfg, &|done, _total| bar.set_position(done as u64))
        .context("simulating the screen")?;
    bar.finish_and_clear();
    let sim_s = start.elapsed().as_secs_f64();
    write_h5ad_atomic(&sim.adata, &args.output)?;
    if !global.quiet {
        let lyap = sim
            .lyapunov_residual
            .map(|r| format!(", Lyapunov residual {r:.2e}"))
            .unwrap_or_default();
        eprintln!(
            "wrote {}: {} cells × {} genes, {} conditions ({} kind{}); simulated in {:.2} s, total {:.2} s",
            args.output.display(),
            sim.adata.n_obs(),
            sim.adata.n_vars(),
            sim.conditions.len(),
            cfg.kind.name(),
            lyap,
            sim_s,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Write to a temp file beside `path`, then rename.
fn write_h5ad_atomic(adata: &datasets::AnnData, path: &std::path::Path) -> anyhow::Result<()> {
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
    let res = datasets::anndata::write_h5ad(adata, &tmp);
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
