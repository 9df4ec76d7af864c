//! `cellmol clipr`: direct causal effects, gene modules and graphs from a
//! trained LCD model (or from a simulated screen's true drift), scored against
//! a known truth on request (`design/clipr.md`).
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use clipr::estimate::{estimate, responses, symmetry_ratio, EstimatorKind};
use clipr::export::{write_atomic, EdgeSelect};
use clipr::implication::{
    de_tests, implication, DeTable, ImplicationOptions, ImplicationReport, Normalize,
};
use clipr::into::{write_into, IntoParams};
use clipr::lcd_drift::LcdDrift;
use clipr::report::{align_truth, top_partners, write_outputs};
use clipr::truth::{screen_truth, SimulatedDrift};
use clipr::{causal_metrics, gene_modules, MetricOptions, ModuleOptions, PerturbableDrift};
use datasets::anndata::read_h5ad;

use super::Global;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CliprArgs {
    #[command(subcommand)]
    pub command: Option<CliprCommand>,
    /// Trained LCD model directory (`cellmol lcd fit`), or a simulated
    /// screen `.h5ad` to run CLIPR on its true drift.
    #[arg(required = true)]
    pub model_dir: Option<PathBuf>,
    /// Output directory (one sub-directory per estimator).
    #[arg(short = 'o', long = "out", required = true)]
    pub out_dir: Option<PathBuf>,
    #[command(flatten)]
    pub est: EstimatorOpts,
    /// Write varp["clipr_effects"], var["clipr_module"], uns["clipr"]["params"]
    /// into this screen (first estimator's result; rewritten atomically).
    #[arg(long, value_name = "SCREEN.h5ad")]
    pub into: Option<PathBuf>,
    /// Simulated screen with varp["true_effects"]: score each estimator.
    #[arg(long, value_name = "SCREEN.h5ad")]
    pub truth: Option<PathBuf>,
    /// With --truth: print `{ "<estimator>": { "auroc3", "directed_auprc", "pearson", "sign_f1" } }`.
    #[arg(long)]
    pub json: bool,
    /// With --truth: true entries with |a| below this count as "no edge" (class 0).
    #[arg(long, default_value_t = 0.5)]
    pub zero_threshold: f64,
    /// Dendrogram cut height for gene modules.
    #[arg(long, default_value_t = 0.175)]
    pub cut_height: f64,
    /// Smallest gene module kept.
    #[arg(long, default_value_t = 5)]
    pub min_module_size: usize,
    /// Export edges with |effect| ≥ this (default: the --top-edges strongest).
    #[arg(long)]
    pub edge_threshold: Option<f64>,
    /// Export the K strongest edges (when no --edge-threshold).
    #[arg(long, default_value_t = 500)]
    pub top_edges: usize,
    /// Implication test on this screen (single perturbations + control cells):
    /// writes implication.json beside each estimator's results.
    #[arg(long, value_name = "SCREEN.h5ad")]
    pub implication: Option<PathBuf>,
    #[command(flatten)]
    pub imp: ImplicationOpts,
}

/// Options of the implication test (`cellmol clipr implication`, `--implication`).
#[derive(Debug, Args)]
pub struct ImplicationOpts {
    /// Quantiles of |effect| used as edge thresholds (comma-separated, each in (0, 1)).
    #[arg(long, value_delimiter = ',', default_value = "0.9,0.95,0.99")]
    pub quantiles: Vec<f64>,
    /// Benjamini–Hochberg FDR for "differentially expressed".
    #[arg(long, default_value_t = 0.05)]
    pub fdr: f64,
    /// Bootstrap resamples (over perturbations) for the precision intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Least cells of a tested perturbation (and of the control).
    #[arg(long, default_value_t = 10)]
    pub min_cells: usize,
    /// Expression transform: auto (log1p-normalise counts, keep other values), log1p, none.
    #[arg(long, default_value = "auto", value_parser = parse_normalize)]
    pub normalize: Normalize,
    /// Read expression from this layer instead of X.
    #[arg(long)]
    pub layer: Option<String>,
    /// obs column with perturbation labels (default: auto-detected).
    #[arg(long)]
    pub perturbation_column: Option<String>,
}

impl ImplicationOpts {
    fn options(&self) -> ImplicationOptions {
        ImplicationOptions {
            quantiles: self.quantiles.clone(),
            fdr: self.fdr,
            n_bootstrap: self.bootstrap,
            seed: self.seed,
            min_cells: self.min_cells,
            normalize: self.normalize,
            layer: self.layer.clone(),
            perturbation_column: self.perturbation_column.clone(),
        }
    }
}

fn parse_normalize(s: &str) -> Result<Normalize, String> {
    s.parse::<Normalize>().map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct EstimatorOpts {
    /// Estimator(s): published, direction-aware (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_value = "published", value_parser = parse_estimator)]
    pub estimator: Vec<EstimatorKind>,
    /// Tikhonov λ of the published estimator (1e-2 for genome-scale screens).
    #[arg(long, default_value_t = 1e-4)]
    pub lambda: f64,
    /// Compute device for the LCD model (`cpu`, `cuda:N`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

fn parse_estimator(s: &str) -> Result<EstimatorKind, String> {
    s.parse::<EstimatorKind>().map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum CliprCommand {
    /// Strongest regulators of and targets of GENE.
    Top(TopArgs),
    /// Implication test of CLIPR results on a screen: do predicted edges i→j
    /// (|effect| above high quantiles) imply that j is differentially
    /// expressed (Wilcoxon rank-sum vs control, BH FDR) when i is perturbed?
    /// Prints `{ "<estimator>": { "baseline_rate", "levels": [{ "quantile",
    /// "precision", "ci_low", "ci_high", … }], … } }` with --json.
    Implication(ImplicationArgs),
}

#[derive(Debug, Args)]
pub struct ImplicationArgs {
    /// `cellmol clipr -o` output directory (every estimator in it), one
    /// estimator's directory, or an effects.tsv.
    pub result: PathBuf,
    /// Screen with control and single-perturbation cells (`obs["perturbation"]`).
    #[arg(long, value_name = "SCREEN.h5ad")]
    pub screen: PathBuf,
    #[command(flatten)]
    pub imp: ImplicationOpts,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Trained LCD model directory (or a simulated screen `.h5ad`).
    pub model_dir: PathBuf,
    /// Gene name.
    pub gene: String,
    /// How many regulators and targets.
    #[arg(short = 'k', default_value_t = 10)]
    pub k: usize,
    #[command(flatten)]
    pub est: EstimatorOpts,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The drift behind MODEL_DIR: an LCD model directory or a simulated screen.
fn load_drift(path: &Path, device: &str) -> anyhow::Result<Box<dyn PerturbableDrift>> {
    if path.is_file() && path.extension().is_some_and(|e| e == "h5ad") {
        let adata = read_h5ad(path).with_context(|| format!("reading {}", path.display()))?;
        let truth = screen_truth(&adata, path)?;
        let Some(system) = truth.system else {
            bail!("{}: uns/simulation cannot rebuild the true system (not a screen from `cellmol simulate screen`?)", path.display());
        };
        let mut drift = SimulatedDrift::new(system, truth.genes)?;
        drift.targets = truth.perturbed;
        return Ok(Box::new(drift));
    }
    let dev = super::device::select(device)?;
    let drift = LcdDrift::load(path, &dev)
        .with_context(|| format!("loading the LCD model {}", path.display()))?;
    Ok(Box::new(drift))
}

fn validate(est: &EstimatorOpts) -> anyhow::Result<()> {
    if !(est.lambda.is_finite() && est.lambda >= 0.0) {
        bail!("--lambda must be finite and ≥ 0, but is {}", est.lambda);
    }
    if est.estimator.is_empty() {
        bail!("--estimator: give at least one of published, direction-aware");
    }
    Ok(())
}

pub fn run(args: CliprArgs, global: Global) -> anyhow::Result<()> {
    match args.command {
        Some(CliprCommand::Top(t)) => return run_top(t, global),
        Some(CliprCommand::Implication(i)) => return run_implication(i, global),
        None => {}
    }
    let (Some(model), Some(out)) = (args.model_dir.as_deref(), args.out_dir.as_deref()) else {
        bail!("usage: cellmol clipr MODEL_DIR -o OUT_DIR (or cellmol clipr top MODEL_DIR GENE)");
    };
    validate(&args.est)?;
    if args.json && args.truth.is_none() {
        bail!("--json prints the scores against a truth: give --truth SCREEN.h5ad");
    }
    let mopts = ModuleOptions {
        cut_height: args.cut_height,
        min_size: args.min_module_size,
    };
    mopts.validate()?;
    let sel = match args.edge_threshold {
        Some(t) if t.is_finite() && t >= 0.0 => EdgeSelect::Threshold(t),
        Some(t) => bail!("--edge-threshold must be finite and ≥ 0, but is {t}"),
        None => EdgeSelect::TopK(args.top_edges),
    };
    let imp_opts = args.imp.options();
    imp_opts.validate()?;
    // Truth first: a bad --truth file should fail before the expensive part.
    let truth = match &args.truth {
        Some(p) => {
            let adata = read_h5ad(p).with_context(|| format!("reading --truth {}", p.display()))?;
            Some((screen_truth(&adata, p)?, p.clone()))
        }
        None => None,
    };
    let drift = load_drift(model, &args.est.device)?;
    let genes = drift.gene_names();
    let truth_m = match &truth {
        Some((t, p)) => Some(align_truth(&t.effects, &t.genes, &genes, p)?),
        None => None,
    };
    if let Some(t) = &truth_m {
        let n_edges = t
            .indexed_iter()
            .filter(|((i, j), v)| i != j && v.abs() >= args.zero_threshold)
            .count();
        if n_edges == 0 && !global.quiet {
            eprintln!("clipr: warning: no true effect reaches |a| >= --zero-threshold {}: AUROC/AUPRC are undefined (NaN); lower --zero-threshold", args.zero_threshold);
        }
    }
    let de = match &args.implication {
        Some(p) => Some((load_de(p, &genes, &imp_opts, global.quiet)?, p.clone())),
        None => None,
    };
    let t0 = Instant::now();
    let resp = responses(drift.as_ref(), None)?;
    if !global.quiet {
        eprintln!(
            "clipr: {} genes, {} conditions (control + {} singles): responses in {:.2} s",
            genes.len(),
            resp.conditions.len(),
            resp.conditions.len() - 1,
            t0.elapsed().as_secs_f64()
        );
    }
    let mut scores = serde_json::Map::new();
    let mut first = None;
    for &kind in &args.est.estimator {
        let eff = estimate(&resp, kind, args.est.lambda)?;
        let modules = gene_modules(&eff.a_causal, &mopts)?;
        let metrics = match &truth_m {
            Some(t) => Some(causal_metrics(
                eff.a_causal.view(),
                t.view(),
                &MetricOptions {
                    zero_threshold: args.zero_threshold,
                    ..Default::default()
                },
            )?),
            None => None,
        };
        let dir = out.join(kind.name());
        write_outputs(&dir, &genes, &eff, &modules, sel, metrics.as_ref())?;
        if let Some((de, screen)) = &de {
            let rep = implication(&eff.a_causal, de, &imp_opts)?;
            write_implication(&dir, &rep, screen)?;
            if !global.quiet {
                eprint!("{}", implication_table(kind.name(), &rep));
            }
        }
        if !global.quiet {
            eprintln!(
                "clipr {}: {} (symmetry ratio {:.3}, {} modules) -> {}",
                kind.name(),
                eff.note,
                symmetry_ratio(&eff.a_causal),
                modules.n_modules,
                dir.display()
            );
        }
        if let Some(m) = metrics {
            if !args.json {
                println!(
                    "{:<16} auroc3 {:.4}  directed_auprc {:.4}  pearson {:.4}  sign_f1 {:.4}",
                    kind.name(),
                    m.auroc3,
                    m.directed_auprc,
                    m.pearson,
                    m.sign_f1
                );
            }
            scores.insert(kind.name().into(), serde_json::to_value(m)?);
        }
        if first.is_none() {
            first = Some((eff, modules));
        }
    }
    if let (Some(path), Some((eff, modules))) = (&args.into, &first) {
        let params = IntoParams {
            model: model.display().to_string(),
            module_options: mopts,
        };
        write_into(path, &genes, eff, modules, &params)
            .with_context(|| format!("writing CLIPR results into {}", path.display()))?;
        if !global.quiet {
            eprintln!(
                "clipr: wrote varp/clipr_effects, var/clipr_module, uns/clipr/params into {}",
                path.display()
            );
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(scores))?
        );
    }
    Ok(())
}

fn run_top(args: TopArgs, _global: Global) -> anyhow::Result<()> {
    validate(&args.est)?;
    let drift = load_drift(&args.model_dir, &args.est.device)?;
    let genes = drift.gene_names();
    let Some(g) = genes.iter().position(|x| *x == args.gene) else {
        bail!(
            "gene {:?} is not among the {} genes of {}",
            args.gene,
            genes.len(),
            args.model_dir.display()
        );
    };
    let resp = responses(drift.as_ref(), None)?;
    let mut out = serde_json::Map::new();
    for &kind in &args.est.estimator {
        let eff = estimate(&resp, kind, args.est.lambda)?;
        let (regs, tgts) = top_partners(&eff.a_causal, g, args.k);
        if args.json {
            let list = |v: &[(usize, f64)]| {
                v.iter()
                    .map(|&(i, e)| serde_json::json!({ "gene": genes[i], "effect": e }))
                    .collect::<Vec<_>>()
            };
            out.insert(kind.name().into(), serde_json::json!({ "gene": args.gene, "regulators": list(&regs), "targets": list(&tgts), "note": eff.note }));
        } else {
            println!("# {} ({}): {}", args.gene, kind.name(), eff.note);
            println!(
                "regulators of {} (effect of regulator on {}):",
                args.gene, args.gene
            );
            for (i, e) in &regs {
                println!("  {:<20} {:+.4}", genes[*i], e);
            }
            println!(
                "targets of {} (effect of {} on target):",
                args.gene, args.gene
            );
            for (j, e) in &tgts {
                println!("  {:<20} {:+.4}", genes[*j], e);
            }
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(out))?
        );
    }
    Ok(())
}

fn load_de(
    screen: &Path,
    genes: &[String],
    opts: &ImplicationOptions,
    quiet: bool,
) -> anyhow::Result<DeTable> {
    let t0 = Instant::now();
    let adata =
        read_h5ad(screen).with_context(|| format!("reading the screen {}", screen.display()))?;
    let de = de_tests(&adata, screen, genes, opts)?;
    if !quiet {
        eprintln!(
            "clipr implication: {} perturbations x {} genes vs {} control cells ({}), {:.2} s",
            de.sources.len(),
            genes.len(),
            de.n_control,
            if de.normalized {
                "log1p-normalised counts"
            } else {
                "values as stored"
            },
            t0.elapsed().as_secs_f64()
        );
        for (label, why) in &de.skipped {
            eprintln!("clipr implication: skipped {label}: {why}");
        }
    }
    Ok(de)
}

fn write_implication(dir: &Path, rep: &ImplicationReport, screen: &Path) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(rep)?;
    v["screen"] = serde_json::Value::String(screen.display().to_string());
    let path = dir.join("implication.json");
    write_atomic(&path, serde_json::to_string_pretty(&v)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn implication_table(name: &str, rep: &ImplicationReport) -> String {
    let mut s = format!(
        "{name}: implication test over {} perturbations, baseline DE rate {:.3} (FDR {})\n",
        rep.n_perturbations, rep.baseline_rate, rep.fdr
    );
    for l in &rep.levels {
        s.push_str(&format!(
            "  q {:<6} |a| >= {:<10.4e} edges {:>7}  precision {:.3} [{:.3}, {:.3}]  sign agreement {:.3}\n",
            l.quantile, l.threshold, l.n_edges, l.precision, l.ci_low, l.ci_high, l.sign_agreement
        ));
    }
    s
}

fn run_implication(args: ImplicationArgs, global: Global) -> anyhow::Result<()> {
    let opts = args.imp.options();
    opts.validate()?;
    let dirs = clipr::plot::result_dirs(&args.result)?;
    let mut results = Vec::with_capacity(dirs.len());
    for dir in &dirs {
        let file = if args.result.is_file() {
            args.result.clone()
        } else {
            dir.join("effects.tsv")
        };
        let (genes, a) = clipr::plot::read_effects_tsv(&file)?;
        results.push((clipr::plot::estimator_name(dir), dir.clone(), genes, a));
    }
    // one DE table serves every result with the same genes
    let genes0 = results[0].2.clone();
    if let Some((name, ..)) = results.iter().find(|r| r.2 != genes0) {
        bail!(
            "{}: the results disagree on their genes ({name} differs from {}); run one at a time",
            args.result.display(),
            results[0].0
        );
    }
    let de = load_de(&args.screen, &genes0, &opts, global.quiet)?;
    let mut out = serde_json::Map::new();
    for (name, dir, _, a) in &results {
        let rep = implication(a, &de, &opts)?;
        write_implication(dir, &rep, &args.screen)?;
        if args.json {
            out.insert(name.clone(), serde_json::to_value(&rep)?);
        } else {
            print!("{}", implication_table(name, &rep));
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(out))?
        );
    }
    Ok(())
}
