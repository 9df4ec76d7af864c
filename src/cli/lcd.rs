//! `cellmol lcd`: fit a latent causal diffusion on a screen, predict
//! (unseen) perturbation combinations, evaluate against baselines.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use datasets::train::{Progress, RunDir, RunState, StopSignal};
use indicatif::{ProgressBar, ProgressStyle};
use lcd::data::parse_condition;
use lcd::evaluate::{evaluate as run_eval, METHODS};
use lcd::fit::{checkpoint_position, FitRun};
use lcd::screen::{prediction_anndata, ScreenData, ScreenSpec};
use lcd::LcdError;
use lcd::{LcdConfig, LcdModel};

use super::{device, Global};

#[derive(Debug, Subcommand)]
pub enum LcdCommand {
    /// Train both stages on a screen (.h5ad: counts in X, obs["perturbation"]).
    Fit(FitArgs),
    /// Sample cells for perturbation combinations from a trained model.
    Predict(PredictArgs),
    /// Score a model's held-out predictions against control/additive/pooled baselines.
    Evaluate(EvaluateArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Preset {
    /// Small settings: d = 50–100 in minutes on 2 CPU cores.
    Quick,
    /// The published settings (default).
    Paper,
}

#[derive(Debug, Args)]
pub struct FitArgs {
    /// Screen .h5ad.
    pub screen: PathBuf,
    /// Model directory to create.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// LcdConfig TOML laid over --preset: the keys it sets replace the preset's
    /// (default preset: paper). Includes `checkpoint_every` (top level or per stage).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Settings preset when no --config is given.
    #[arg(long, value_enum, default_value = "paper")]
    pub preset: Preset,
    /// Hold out fold K of the combinations (default: train on everything).
    #[arg(long)]
    pub fold: Option<usize>,
    /// Number of folds the combinations are dealt into.
    #[arg(long, default_value_t = 10)]
    pub folds: usize,
    /// Validation doubles set aside from training and test (at most a fifth of the doubles).
    #[arg(long = "val", default_value_t = 20, value_name = "N")]
    pub n_val: usize,
    /// Model at most N genes: the perturbed genes first, then highly variable
    /// genes (Seurat dispersion on control + training singles).
    #[arg(long = "genes", default_value_t = 1000, value_name = "N")]
    pub n_genes: usize,
    /// Leave out conditions with fewer cells (after QC).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub min_cells: usize,
    /// Cell QC: drop cells with fewer total counts.
    #[arg(long, value_name = "N")]
    pub min_counts: Option<f64>,
    /// Cell QC: drop cells with fewer detected genes.
    #[arg(long = "min-genes", value_name = "N")]
    pub min_genes: Option<usize>,
    /// Cell QC: drop cells with a larger fraction of counts in MT- genes.
    #[arg(long, value_name = "FRACTION")]
    pub max_mito: Option<f64>,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip the count model: stage 2 directly on the (normalised) expression in X.
    #[arg(long)]
    pub no_noise_model: bool,
    /// Replace an existing model directory (finished or interrupted).
    #[arg(long)]
    pub force: bool,
    /// Continue an interrupted run from its checkpoint (on a fresh directory:
    /// just start; batch scripts always pass it).
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Trained model directory.
    pub model: PathBuf,
    /// Condition to predict, e.g. "A+B" (repeatable).
    #[arg(long = "perturbation", required = true)]
    pub perturbations: Vec<String>,
    /// Cells per condition (default: chains × decodes of the model config).
    #[arg(short = 'n', long)]
    pub cells: Option<usize>,
    /// Output .h5ad.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Trained model directory.
    pub model: PathBuf,
    /// Screen .h5ad (the one the model was fitted on).
    pub screen: PathBuf,
    /// Fold to evaluate (default: the model's held-out fold).
    #[arg(long)]
    pub fold: Option<usize>,
    /// Print the full result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(cmd: LcdCommand, global: Global) -> anyhow::Result<()> {
    match cmd {
        LcdCommand::Fit(a) => fit(&a, global),
        LcdCommand::Predict(a) => predict(&a, global),
        LcdCommand::Evaluate(a) => evaluate(&a, global),
    }
}

fn bar(quiet: bool, len: u64, prefix: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let st = ProgressStyle::with_template(
        "{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(st);
    pb.set_prefix(prefix.to_string());
    pb
}

fn fit(a: &FitArgs, global: Global) -> anyhow::Result<()> {
    let preset = match a.preset {
        Preset::Quick => LcdConfig::quick(),
        Preset::Paper => LcdConfig::paper(),
    };
    let mut cfg = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            LcdConfig::from_toml_over(&text, p, &preset)?
        }
        None => preset,
    };
    if a.no_noise_model {
        cfg.noise_model = false;
    }
    cfg.validate()?;
    // Refuse a finished model / an interrupted run before any work (RunDir::prepare).
    let run = RunDir::new(&a.output);
    if a.resume && !a.force && matches!(run.state()?, RunState::Finished) {
        // a requeued batch task whose model already finished: nothing to do
        eprintln!(
            "{} already holds a finished model; nothing to resume",
            a.output.display()
        );
        return Ok(());
    }
    let existed = a.output.exists();
    let resume = run.prepare(a.resume, a.force)?;
    let dev = device::select(&a.device)?;
    let spec = ScreenSpec {
        n_genes: a.n_genes,
        min_cells: a.min_cells,
        min_counts: a.min_counts,
        min_genes: a.min_genes,
        max_mito_fraction: a.max_mito,
        n_folds: a.folds,
        n_val: a.n_val,
        fold: a.fold,
    };
    let loaded = (|| -> anyhow::Result<_> {
        let loaded = ScreenData::load(&a.screen, &spec, None)
            .with_context(|| format!("reading screen {}", a.screen.display()))?;
        let data = loaded.data.training_data(&loaded.split);
        data.validate(cfg.noise_model)
            .with_context(|| format!("screen {}", a.screen.display()))?;
        Ok((loaded, data))
    })();
    let (loaded, data) = match loaded {
        Ok(v) => v,
        Err(e) => {
            if !existed {
                // nothing was written yet: leave no empty directory behind
                let _ = std::fs::remove_dir(&a.output);
            }
            return Err(e);
        }
    };
    let (screen, split) = (&loaded.data, &loaded.split);
    if !global.quiet {
        eprintln!(
            "{}: {} of {} genes{}, {} training conditions, {} validation and {} test combinations{}",
            a.screen.display(),
            data.n_genes(),
            loaded.n_vars,
            if loaded.n_hvg > 0 {
                format!(" ({} highly variable)", loaded.n_hvg)
            } else {
                String::new()
            },
            data.envs.len(),
            split.val.len(),
            split.test.len(),
            if split.dropped.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} dropped: targets not perturbed in training)",
                    split.dropped.len()
                )
            }
        );
        if !loaded.too_few_cells.is_empty() {
            eprintln!(
                "left out {} conditions with fewer than {} cells (--min-cells), e.g. {:?}",
                loaded.too_few_cells.len(),
                a.min_cells,
                &loaded.too_few_cells[..loaded.too_few_cells.len().min(3)]
            );
        }
        if loaded.qc_removed > 0 {
            eprintln!("cell QC removed {} cells", loaded.qc_removed);
        }
    }
    if let Some(ck) = &resume {
        let (stage, step) = checkpoint_position(ck);
        // always printed: batch logs are checked for it
        eprintln!(
            "resuming from checkpoint at {stage} step {step} ({})",
            a.output.display()
        );
    }
    let stop = StopSignal::install()?;
    let start = Instant::now();
    let first = resume.as_ref().map(checkpoint_position);
    let mut current: Option<(String, Progress)> = None;
    let mut progress = |stage: &str, step: usize, total: usize, loss: f64| {
        if current.as_ref().map(|c| c.0 != stage).unwrap_or(true) {
            if let Some((_, mut b)) = current.take() {
                b.finish();
            }
            let from = match &first {
                Some((s, n)) if s.replace("stage", "stage ") == stage => *n,
                _ => 0,
            };
            current = Some((
                stage.to_string(),
                Progress::new(stage, total as u64, from, global.quiet),
            ));
        }
        if let Some((_, b)) = &mut current {
            b.update(step as u64, &[("loss", loss)]);
        }
    };
    let fit_run = FitRun {
        dir: &run,
        resume,
        stop,
    };
    let fitted = LcdModel::fit_run(&data, &cfg, a.seed, &dev, &fit_run, &mut progress);
    if let (Some((_, mut b)), true) = (current.take(), fitted.is_ok()) {
        b.finish();
    }
    let model = match fitted {
        Ok(m) => m,
        // keep DatasetsError::Interrupted in the chain: the CLI exits with 75 on it
        Err(LcdError::Datasets(e)) => return Err(anyhow::Error::new(e)),
        Err(e) => return Err(e.into()),
    };
    let info = serde_json::json!({
        "screen": a.screen.display().to_string(),
        "fold": a.fold,
        "n_folds": a.folds,
        "screen_spec": spec,
        "test_conditions": split.test.iter().map(|&i| screen.conditions[i].name.clone()).collect::<Vec<_>>(),
        "val_conditions": split.val.iter().map(|&i| screen.conditions[i].name.clone()).collect::<Vec<_>>(),
        "dropped": split.dropped,
        "device": a.device,
        "fit_seconds": start.elapsed().as_secs_f64(),
    });
    model.save_run(&run, info, false)?;
    if !global.quiet {
        eprintln!(
            "wrote {} ({:.1} s)",
            a.output.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn write_h5ad_atomic(ad: &datasets::AnnData, path: &Path) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("output path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if let Err(e) = datasets::anndata::write_h5ad(ad, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

fn predict(a: &PredictArgs, global: Global) -> anyhow::Result<()> {
    let dev = device::select(&a.device)?;
    let (model, _) = LcdModel::load(&a.model, &dev)?;
    let conds: Vec<Vec<String>> = a
        .perturbations
        .iter()
        .map(|p| parse_condition(p))
        .collect::<Result<_, _>>()?;
    // Validate every target before sampling (unknown target → error, nothing written).
    let mut notes = BTreeMap::new();
    for (label, c) in a.perturbations.iter().zip(&conds) {
        let (_, unseen) = model
            .embedding(c)
            .with_context(|| format!("--perturbation {label:?}"))?;
        if !unseen.is_empty() {
            let msg = format!(
                "targets never perturbed in training, embedded as the mean embedding: {}",
                unseen.join(", ")
            );
            if !global.quiet {
                eprintln!("warning: {label}: {msg}");
            }
            notes.insert(
                format!("unseen_targets/{label}"),
                datasets::anndata::Value::Scalar(datasets::anndata::Scalar::String(msg)),
            );
        }
    }
    let reps = if model.cfg.noise_model {
        model.cfg.sampler.decodes_per_chain
    } else {
        1
    };
    let chains = match a.cells {
        Some(0) => bail!("-n must be ≥ 1"),
        Some(n) => n.div_ceil(reps),
        None => model.cfg.sampler.chains,
    };
    let pb = bar(global.quiet, model.n_levels() as u64, "sampling");
    let mut preds = model.predict(&conds, chains, a.seed, |i, _| pb.set_position(i as u64))?;
    pb.finish_and_clear();
    if let Some(n) = a.cells {
        for p in &mut preds {
            p.cells = p
                .cells
                .slice(ndarray::s![..n.min(p.cells.nrows()), ..])
                .to_owned();
        }
    }
    notes.insert(
        "model".into(),
        datasets::anndata::Value::Scalar(datasets::anndata::Scalar::String(
            a.model.display().to_string(),
        )),
    );
    let ad = prediction_anndata(model.genes(), &preds, notes)?;
    write_h5ad_atomic(&ad, &a.output)?;
    if !global.quiet {
        eprintln!(
            "wrote {}: {} cells × {} genes, {} conditions",
            a.output.display(),
            ad.n_obs(),
            ad.n_vars(),
            preds.len()
        );
    }
    Ok(())
}

fn evaluate(a: &EvaluateArgs, global: Global) -> anyhow::Result<()> {
    let dev = device::select(&a.device)?;
    let (model, info) = LcdModel::load(&a.model, &dev)?;
    let fold = a.fold.or_else(|| info["fold"].as_u64().map(|f| f as usize));
    let Some(fold) = fold else {
        bail!("the model was trained on every condition (no --fold at fit time); pass --fold K to choose test conditions");
    };
    // The split and QC the model was fitted with (models from before
    // `screen_spec` existed: their fold count, no QC).
    let mut spec: ScreenSpec = match info.get("screen_spec") {
        Some(v) if !v.is_null() => serde_json::from_value(v.clone())
            .with_context(|| format!("{}: model.json info.screen_spec", a.model.display()))?,
        _ => ScreenSpec {
            n_folds: info["n_folds"].as_u64().map(|f| f as usize).unwrap_or(10),
            min_cells: 0,
            ..Default::default()
        },
    };
    spec.fold = Some(fold);
    let loaded = ScreenData::load(&a.screen, &spec, Some(model.genes())).with_context(|| {
        format!(
            "screen {} vs model {}",
            a.screen.display(),
            a.model.display()
        )
    })?;
    let (screen, split) = (&loaded.data, &loaded.split);
    let seen: Vec<&String> = split
        .test
        .iter()
        .map(|&i| &screen.conditions[i].name)
        .filter(|n| model.train_conditions.contains(n))
        .collect();
    if !seen.is_empty() {
        bail!("fold {fold}: {} test conditions were in the model's training set (e.g. {:?}); evaluate the fold the model held out", seen.len(), seen[0]);
    }
    if split.test.is_empty() {
        bail!("fold {fold} has no test combinations");
    }
    let conds: Vec<Vec<String>> = split
        .test
        .iter()
        .map(|&i| screen.conditions[i].targets.clone())
        .collect();
    let pb = bar(global.quiet, model.n_levels() as u64, "sampling");
    let preds = model.predict(&conds, model.cfg.sampler.chains, a.seed, |i, _| {
        pb.set_position(i as u64)
    })?;
    pb.finish_and_clear();
    let cells: Vec<_> = preds.iter().map(|p| p.cells.clone()).collect();
    let unseen: Vec<_> = preds.iter().map(|p| p.unseen_targets.clone()).collect();
    let ev = run_eval(
        screen,
        split,
        &cells,
        &unseen,
        model.cfg.noise_model,
        model.cfg.eval.max_cells,
        model.cfg.eval.n_de,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&ev)?);
    } else {
        let keys = ["energy_distance", "mmd", "rmse", "pearson_delta", "w1"];
        println!("fold {fold}: {} test conditions", ev.conditions.len());
        println!(
            "{:<10} {}",
            "method",
            keys.iter().map(|k| format!("{k:>16}")).collect::<String>()
        );
        for m in METHODS {
            let row: String = keys
                .iter()
                .map(|k| {
                    format!(
                        "{:>9.4}±{:<6.4}",
                        ev.summary[m].get(*k).copied().unwrap_or(f64::NAN),
                        ev.summary_sem[m].get(*k).copied().unwrap_or(f64::NAN)
                    )
                })
                .collect();
            println!("{m:<10} {row}");
        }
    }
    Ok(())
}
