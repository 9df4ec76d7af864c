//! `cellmol expand`: verifier-based flow expansion (Flow Expander, ActFlow,
//! Rec-NF / Rec-F baselines). `expand toy` runs the illustrative 2-D tasks.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use morph::expand::plot::{density_png, panels_png};
use morph::expand::toy::{run_toy, ToyConfig, ToyMethod, ToyMetrics, ToyTask};

use super::{device, write_atomic, Global};

#[derive(Debug, Subcommand)]
pub enum ExpandCommand {
    /// Illustrative 2-D expansion: pre-train a flow on part of a valid region,
    /// expand it with a verifier of the whole region, write density pictures.
    Toy(ToyArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TaskArg {
    /// Annulus 1.5 ≤ |x| ≤ 2; the pre-trained flow sees one quarter arc.
    Ring,
    /// Four unit boxes; the pre-trained flow sees the two with x > 0.
    Boxes,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodArg {
    /// Flow Expander (mirror descent: expand entropy, project on the verifier).
    Fe,
    /// Active flow expansion (explore codes, keep valid novel designs, retrain).
    Actflow,
    /// Recursive synthetic training without filter.
    RecNf,
    /// Recursive synthetic training with the verifier filter.
    RecF,
}

#[derive(Debug, Args)]
pub struct ToyArgs {
    #[arg(long, value_enum)]
    pub task: TaskArg,
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// Output directory for the pictures and metrics.json (created if missing).
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Print `{"before": {...}, "after": {...}}` on stdout.
    #[arg(long)]
    pub json: bool,
    /// Random seed (runs are reproducible from it on the CPU).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// TOML file with a `ToyConfig` (sizes, FE / ActFlow settings); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Compute device: `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(cmd: ExpandCommand, global: Global) -> anyhow::Result<()> {
    match cmd {
        ExpandCommand::Toy(args) => run_toy_cmd(args, global),
    }
}

fn metrics_json(m: &ToyMetrics) -> serde_json::Value {
    serde_json::json!({ "validity": m.validity, "coverage": m.coverage, "vendi": m.vendi })
}

fn run_toy_cmd(args: ToyArgs, global: Global) -> anyhow::Result<()> {
    let dev = device::select(&args.device)?;
    let mut cfg = match &args.config {
        Some(p) => ToyConfig::load(p)?,
        None => ToyConfig::default(),
    };
    cfg.seed = args.seed;
    let task = match args.task {
        TaskArg::Ring => ToyTask::Ring,
        TaskArg::Boxes => ToyTask::Boxes,
    };
    let method = match args.method {
        MethodArg::Fe => ToyMethod::Fe,
        MethodArg::Actflow => ToyMethod::Actflow,
        MethodArg::RecNf => ToyMethod::RecNf,
        MethodArg::RecF => ToyMethod::RecF,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output directory {}", args.out.display()))?;
    let bar = if global.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(1)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let out = run_toy(task, method, &cfg, &dev, |t| {
        if bar.length() != Some(t.total as u64) {
            bar.set_length(t.total as u64);
        }
        bar.set_message(t.stage);
        bar.set_position(t.step as u64);
    })
    .context("toy expansion run failed")?;
    bar.finish_and_clear();
    density_png(&args.out.join("data.png"), task, &out.data)?;
    density_png(&args.out.join("before.png"), task, &out.samples_before)?;
    density_png(&args.out.join("after.png"), task, &out.samples_after)?;
    panels_png(
        &args.out.join("compare.png"),
        task,
        &[&out.data, &out.samples_before, &out.samples_after],
    )?;
    let full = serde_json::json!({
        "task": task,
        "method": method,
        "before": metrics_json(&out.before),
        "after": metrics_json(&out.after),
        "vendi_linear": { "before": out.vendi_linear.0, "after": out.vendi_linear.1 },
        "rounds": out.rounds,
        "config": cfg,
        "pictures": ["data.png", "before.png", "after.png", "compare.png (data | before | after)"],
    });
    write_atomic(
        &args.out.join("metrics.json"),
        serde_json::to_string_pretty(&full)?.as_bytes(),
    )?;
    if args.json {
        // keys in the documented order: before/after, validity/coverage/vendi
        let obj = |m: &ToyMetrics| -> anyhow::Result<String> {
            Ok(format!(
                "{{\"validity\":{},\"coverage\":{},\"vendi\":{}}}",
                serde_json::to_string(&m.validity)?,
                serde_json::to_string(&m.coverage)?,
                serde_json::to_string(&m.vendi)?
            ))
        };
        let line = format!(
            "{{\"before\":{},\"after\":{}}}",
            obj(&out.before)?,
            obj(&out.after)?
        );
        println!("{line}");
    } else {
        println!(
            "{:<8} {:>9} {:>9} {:>8}",
            "", "validity", "coverage", "vendi"
        );
        for (name, m) in [("before", out.before), ("after", out.after)] {
            println!(
                "{:<8} {:>9.3} {:>9.3} {:>8.2}",
                name, m.validity, m.coverage, m.vendi
            );
        }
        if !global.quiet {
            eprintln!("pictures and metrics.json in {}", args.out.display());
        }
    }
    Ok(())
}
