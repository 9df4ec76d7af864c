//! `cellmol morph`: fit a Morph model on an SDF, sample molecules (optionally
//! for a property value with classifier-free guidance, or grown from a
//! scaffold), and evaluate samples against the training set under both
//! protocols (EDM distance-inferred bonds; model bonds).
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use datasets::molbatch::{MolRecord, MolSet};
use datasets::train::{Progress, RunDir, RunState, StopSignal};
use indicatif::{ProgressBar, ProgressStyle};
use molecules::metrics::{self, Protocol};
use molecules::Molecule;
use morph::io::ModelDir;
use morph::sampler::{sample_batch, Limits, SampleSpec, State};
use morph::train::{FitRun, InitModel};
use morph::MorphConfig;
use serde_json::json;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum MorphCommand {
    /// Train a Morph model on the molecules of an SDF file.
    Fit {
        /// Training molecules (SDF, 3D coordinates, bonds; numeric data fields are properties).
        data: PathBuf,
        /// Output model directory (config.json + model.safetensors).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// TOML config (fields of MorphConfig); applied on top of the preset.
        #[arg(long)]
        config: Option<PathBuf>,
        /// `quick` (CPU, minutes) or `paper` (GPU, EDM-sized EGNN).
        #[arg(long, default_value = "quick")]
        preset: String,
        /// Scalar SDF property to condition on (e.g. gap, mu, alpha, n_atoms).
        #[arg(long)]
        condition: Option<String>,
        /// Compute device: cpu or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Override the number of optimisation steps.
        #[arg(long)]
        steps: Option<usize>,
        /// Override the wall-time budget in minutes (0 = none).
        #[arg(long)]
        max_minutes: Option<f64>,
        /// Replace an existing model directory (finished or interrupted).
        #[arg(long)]
        force: bool,
        /// Continue an interrupted run from its checkpoint (on a fresh
        /// directory: just start; batch scripts always pass it).
        #[arg(long)]
        resume: bool,
        /// Start from a trained model's weights (continued training or
        /// fine-tuning) instead of random ones. Its [net] settings must be
        /// the run's and the data are encoded with its elements and
        /// coordinate scale; the optimiser, learning-rate schedule (set lr,
        /// steps in --config) and step count start afresh.
        #[arg(long, value_name = "MODEL_DIR")]
        init: Option<PathBuf>,
    },
    /// Generate molecules with a trained model.
    Sample {
        /// Model directory written by `morph fit`.
        model: PathBuf,
        /// Number of molecules.
        #[arg(short = 'n', long = "n-samples")]
        n: usize,
        /// Output SDF.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Requested condition `name=value` (the model's condition).
        #[arg(long)]
        property: Option<String>,
        /// Classifier-free guidance weight w in u + w (c − u).
        #[arg(long, default_value_t = 1.0)]
        guidance: f64,
        /// Scaffold SDF (first record): its atoms and bonds are kept in every sample.
        #[arg(long)]
        scaffold: Option<PathBuf>,
        /// Integration steps.
        #[arg(long)]
        steps: Option<usize>,
        /// Random seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Compute device: cpu or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Compare generated molecules with the training set (both protocols).
    Evaluate {
        /// Generated SDF.
        samples: PathBuf,
        /// Training SDF.
        #[arg(long)]
        train: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: MorphCommand, global: Global) -> anyhow::Result<()> {
    match cmd {
        MorphCommand::Fit {
            data,
            output,
            config,
            preset,
            condition,
            device,
            steps,
            max_minutes,
            force,
            resume,
            init,
        } => fit(
            &data,
            &output,
            config.as_deref(),
            &preset,
            condition,
            &device,
            steps,
            max_minutes,
            RunFlags { force, resume },
            init.as_deref(),
            global,
        ),
        MorphCommand::Sample {
            model,
            n,
            output,
            property,
            guidance,
            scaffold,
            steps,
            seed,
            device,
        } => sample(
            &model,
            n,
            &output,
            property.as_deref(),
            guidance,
            scaffold.as_deref(),
            steps,
            seed,
            &device,
            global,
        ),
        MorphCommand::Evaluate {
            samples,
            train,
            json,
        } => evaluate(&samples, &train, json),
    }
}

fn read_mols(path: &Path) -> anyhow::Result<Vec<Molecule>> {
    molecules::read_molecules_path(path)
        .with_context(|| format!("reading molecules from {}", path.display()))
}

fn bar(len: u64, quiet: bool, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(st) = ProgressStyle::with_template(template) {
        pb.set_style(st);
    }
    pb
}

/// `--force` / `--resume` of `morph fit`.
#[derive(Debug, Clone, Copy)]
struct RunFlags {
    force: bool,
    resume: bool,
}

#[allow(clippy::too_many_arguments)]
fn fit(
    data: &Path,
    output: &Path,
    config: Option<&Path>,
    preset: &str,
    condition: Option<String>,
    device: &str,
    steps: Option<usize>,
    max_minutes: Option<f64>,
    flags: RunFlags,
    init: Option<&Path>,
    global: Global,
) -> anyhow::Result<()> {
    let mut cfg = MorphConfig::preset(preset)?;
    if let Some(p) = config {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        cfg = MorphConfig::from_toml_over(&text, &cfg)
            .with_context(|| format!("in {}", p.display()))?;
    }
    if condition.is_some() {
        cfg.condition = condition;
    }
    if let Some(s) = steps {
        cfg.train.steps = s;
    }
    if let Some(m) = max_minutes {
        cfg.train.max_minutes = m;
    }
    cfg.validate()?;
    // Refuse a finished model / an interrupted run before any work (RunDir::prepare).
    let run = RunDir::new(output);
    if flags.resume && !flags.force && matches!(run.state()?, RunState::Finished) {
        // a requeued batch job whose model already finished: nothing to do
        eprintln!(
            "{} already holds a finished model; nothing to resume",
            output.display()
        );
        return Ok(());
    }
    let dev = super::device::select(device)?;
    let init = init
        .map(|p| {
            let m = InitModel::load(p)?;
            m.check(&cfg, &m.meta.vocab)?;
            anyhow::Ok(m)
        })
        .transpose()
        .with_context(|| {
            format!(
                "--init {}: expected a finished Morph model directory whose network matches the run's",
                init.map_or(String::new(), |p| p.display().to_string())
            )
        })?;
    let loaded = (|| -> anyhow::Result<_> {
        let mols = read_mols(data)?;
        if mols.is_empty() {
            bail!("{}: no molecules", data.display());
        }
        // a start model fixes the atom vocabulary and the coordinate scale
        let vocab = init.as_ref().map(|m| m.meta.vocab.clone());
        let mut set = MolSet::from_molecules(&mols, vocab).with_context(|| {
            format!(
                "encoding {}{}",
                data.display(),
                init.as_ref().map_or(String::new(), |m| format!(
                    " with the vocabulary of {}",
                    m.path.display()
                ))
            )
        })?;
        let mut stats = set.stats()?;
        if let Some(m) = &init {
            stats.coord_std = m.meta.stats.coord_std;
        }
        set.normalise(stats.coord_std);
        Ok((set, stats))
    })();
    let (set, stats) = loaded?;
    let resume = run.prepare(flags.resume, flags.force)?;
    if !global.quiet {
        eprintln!(
            "morph fit: {} molecules, {}–{} atoms, elements {:?}, charges {:?}, coordinate std {:.3} Å, {} layers × {}",
            set.len(),
            stats.n_min,
            stats.n_max,
            set.vocab.elements,
            set.vocab.charges,
            stats.coord_std,
            cfg.net.n_layers,
            cfg.net.hidden
        );
    }
    let from = resume.as_ref().map_or(0, |ck| ck.step);
    if resume.is_some() {
        // always printed: batch logs are checked for it
        eprintln!(
            "resuming from checkpoint at step {from} ({})",
            output.display()
        );
    }
    let stop = StopSignal::install()?;
    let mut progress = Progress::new("morph fit", cfg.train.steps as u64, from, global.quiet);
    let mut on_step = |log: &morph::train::StepLog| {
        progress.update(
            log.step as u64 + 1,
            &[
                ("loss", f64::from(log.loss)),
                ("lr", log.lr),
                ("|g|", log.grad_norm),
            ],
        );
    };
    if let (Some(m), None) = (&init, &resume) {
        if !global.quiet {
            eprintln!(
                "starting from the weights of {} ({} steps trained)",
                m.path.display(),
                m.meta.trained_steps
            );
        }
    }
    let fit_run = FitRun {
        dir: &run,
        resume,
        stop,
        init: init.as_ref(),
    };
    let report = match morph::train::fit_run(&set, &stats, &cfg, &dev, &fit_run, &mut on_step) {
        Ok(r) => r,
        // keep DatasetsError::Interrupted in the chain: the CLI exits with 75 on it
        Err(morph::MorphError::Datasets(e)) => return Err(anyhow::Error::new(e)),
        Err(e) => return Err(e.into()),
    };
    progress.finish();
    let js = serde_json::to_vec_pretty(&report)?;
    run.write_file("fit_report.json", &js)?;
    run.finish()?;
    if !global.quiet {
        eprintln!(
            "morph fit: {} steps in {:.0} s{}, final loss {:.3}, validation loss {}; model in {}",
            report.steps,
            report.elapsed_s,
            if report.stopped_by_time {
                " (stopped by the time budget)"
            } else {
                ""
            },
            report.final_loss,
            report.val_loss.map_or("n/a".into(), |v| format!("{v:.3}")),
            output.display()
        );
    }
    Ok(())
}

/// Encode the first record of a scaffold SDF as pinned atoms (normalised, centred).
fn scaffold_state(path: &Path, model: &ModelDir) -> anyhow::Result<State> {
    let mols = read_mols(path)?;
    let m = mols
        .first()
        .with_context(|| format!("{}: no molecule in the scaffold file", path.display()))?;
    let rec = MolRecord::from_molecule(
        m,
        &model.meta.vocab,
        &format!("{}: scaffold", path.display()),
    )
    .with_context(|| "the scaffold must use the model's elements and charges")?;
    let mut s = State::default();
    let std = model.meta.stats.coord_std;
    let n = rec.n_atoms();
    let bm = rec.bond_matrix();
    for i in 0..n {
        let bonds: Vec<usize> = (0..i).map(|j| bm[[i, j]]).collect();
        s.push(
            [0, 1, 2].map(|d| rec.pos[[i, d]] / std),
            rec.types[i],
            rec.charges[i],
            &bonds,
        );
    }
    morph::interpolant::centre3(&mut s.x);
    Ok(s)
}

#[allow(clippy::too_many_arguments)]
fn sample(
    model_dir: &Path,
    n: usize,
    output: &Path,
    property: Option<&str>,
    guidance: f64,
    scaffold: Option<&Path>,
    steps: Option<usize>,
    seed: u64,
    device: &str,
    global: Global,
) -> anyhow::Result<()> {
    let dev = super::device::select(device)?;
    let model = ModelDir::load(model_dir, &dev)?;
    let meta = &model.meta;
    let cfg = &meta.config;
    let cond = match (property, &meta.condition) {
        (None, _) => None,
        (Some(p), None) => bail!(
            "--property {p}: the model in {} was trained without a condition",
            model_dir.display()
        ),
        (Some(p), Some(ci)) => {
            let (name, val) = p
                .split_once('=')
                .with_context(|| format!("--property {p}: expected name=value"))?;
            if name.trim() != ci.name {
                bail!(
                    "--property {p}: the model is conditioned on `{}`, not `{}`",
                    ci.name,
                    name.trim()
                );
            }
            let v: f64 = val
                .trim()
                .parse()
                .with_context(|| format!("--property {p}: `{val}` is not a number"))?;
            Some((ci.name.clone(), v, ci.normalise(v)))
        }
    };
    if !(guidance.is_finite() && guidance >= 0.0) {
        bail!("--guidance {guidance}: expected a finite weight >= 0");
    }
    let steps = steps.unwrap_or(cfg.sample.steps);
    if steps < 2 {
        bail!("--steps {steps}: expected at least 2");
    }
    let scaffold = scaffold.map(|p| scaffold_state(p, &model)).transpose()?;
    let prior = morph::interpolant::Prior::new(&meta.stats, cfg.flow.prior_extra)?;
    let limits = Limits {
        min_atoms: cfg.sample.min_atoms,
        cap: meta.stats.n_max + cfg.sample.max_extra,
    };
    let bs = cfg.sample.batch_size;
    let n_batches = n.div_ceil(bs);
    let pb = bar(
        (n_batches * (steps - 1)) as u64,
        global.quiet,
        "{elapsed_precise} [{bar:30}] {pos}/{len} steps {msg}",
    );
    let start = std::time::Instant::now();
    let mut out: Vec<Molecule> = Vec::with_capacity(n);
    for b in 0..n_batches {
        let m = bs.min(n - b * bs);
        let spec = SampleSpec {
            steps,
            seed: seed.wrapping_mul(1_000_003).wrapping_add(b as u64),
            cond: cond.as_ref().map(|c| (c.2, guidance)),
            scaffold: scaffold.clone(),
            limits,
        };
        let states = sample_batch(&model.net, &prior, &cfg.flow, m, &spec, &dev, &mut |_| {
            pb.inc(1)
        })?;
        for s in states {
            let rec = MolRecord {
                types: s.a.clone(),
                charges: s.c.clone(),
                pos: ndarray::Array2::from_shape_fn((s.n(), 3), |(i, d)| s.x[i][d]),
                bonds: s.bond_list(),
                properties: Default::default(),
            };
            let mut mol = rec.to_molecule(&meta.vocab, meta.stats.coord_std)?;
            mol.title = format!("morph_{}", out.len() + 1);
            mol.set_property("morph_step_count", steps.to_string());
            if let Some((name, v, _)) = &cond {
                mol.set_property(name.clone(), format!("{v}"));
                mol.set_property("morph_guidance", format!("{guidance}"));
            }
            out.push(mol);
        }
    }
    pb.finish_and_clear();
    let mut buf = Vec::new();
    molecules::write_sdf(&mut buf, out.iter())?;
    super::write_atomic(output, &buf)?;
    if !global.quiet {
        let el = start.elapsed().as_secs_f64();
        eprintln!(
            "morph sample: {} molecules in {:.1} s ({:.2} molecules/s) -> {}",
            out.len(),
            el,
            out.len() as f64 / el.max(1e-9),
            output.display()
        );
    }
    Ok(())
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{:.3}", x))
}

fn evaluate(samples: &Path, train: &Path, as_json: bool) -> anyhow::Result<()> {
    let gen = read_mols(samples)?;
    let tr = read_mols(train)?;
    if gen.is_empty() {
        bail!("{}: no molecules", samples.display());
    }
    let mut protocols = Vec::new();
    for (key, label, p) in [
        (
            "edm",
            "EDM protocol (bonds inferred from distances)",
            Protocol::Edm,
        ),
        (
            "model_bonds",
            "model-bond protocol (bonds and charges from the file)",
            Protocol::Bonds,
        ),
    ] {
        let rep = metrics::compute_metrics(&gen, p, Some(&tr));
        let gv: Vec<Molecule> = gen.iter().map(|m| metrics::protocol_view(m, p)).collect();
        let tv: Vec<Molecule> = tr.iter().map(|m| metrics::protocol_view(m, p)).collect();
        let dist = metrics::distribution_distances(&gv, &tv);
        protocols.push((key, label, rep, dist));
    }
    // Conditional samples: requested value per molecule.
    let mut cond = serde_json::Value::Null;
    let names: Vec<String> = gen[0]
        .properties
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| k != "morph_step_count" && k != "morph_guidance")
        .collect();
    if let Some(name) = names.first() {
        let req: Vec<Option<f64>> = gen
            .iter()
            .map(|m| m.property(name).and_then(|v| v.trim().parse().ok()))
            .collect();
        if name == "n_atoms" {
            let pairs: Vec<(f64, f64)> = gen
                .iter()
                .zip(&req)
                .filter_map(|(m, r)| r.map(|r| (r, m.n_atoms() as f64)))
                .collect();
            let mae =
                pairs.iter().map(|(r, n)| (r - n).abs()).sum::<f64>() / pairs.len().max(1) as f64;
            let exact = pairs.iter().filter(|(r, n)| (r - n).abs() < 0.5).count() as f64
                / pairs.len().max(1) as f64;
            cond = json!({"property": name, "n": pairs.len(), "mae": mae, "exact_match": exact});
        } else {
            let vals: Vec<f64> = req.iter().flatten().copied().collect();
            let tv: Vec<f64> = tr
                .iter()
                .filter_map(|m| m.property(name).and_then(|v| v.trim().parse().ok()))
                .collect();
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            cond = json!({
                "property": name,
                "n": vals.len(),
                "requested_mean": mean(&vals),
                "train_mean": mean(&tv),
                "mae": serde_json::Value::Null,
                "note": "no property predictor is available in cellmol for this property; only atom-count conditions are scored",
            });
        }
    }
    if as_json {
        let mut o = serde_json::Map::new();
        o.insert("n_samples".into(), json!(gen.len()));
        o.insert("n_train".into(), json!(tr.len()));
        for (key, label, rep, dist) in &protocols {
            o.insert(
                (*key).into(),
                json!({"label": label, "metrics": rep, "distances": dist}),
            );
        }
        o.insert("conditional".into(), cond);
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(o))?
        );
        return Ok(());
    }
    println!("{} samples vs {} training molecules", gen.len(), tr.len());
    for (_, label, r, d) in &protocols {
        println!("\n== {label} ==");
        println!("  atom stability           {:.3}", r.atom_stability);
        println!("  molecule stability       {:.3}", r.mol_stability);
        println!("  validity (largest frag.) {}", fmt(r.validity));
        println!(
            "  validity (one fragment)  {}",
            fmt(r.validity_single_fragment)
        );
        println!("  uniqueness               {}", fmt(r.uniqueness));
        println!("  novelty                  {}", fmt(r.novelty));
        println!("  TV atom count            {:.3}", d.atom_count);
        println!("  TV atom type             {:.3}", d.atom_type);
        println!("  TV bond type             {:.3}", d.bond_type);
        println!("  TV charge                {:.3}", d.charge);
    }
    if !cond.is_null() {
        println!(
            "\n== conditional ==\n{}",
            serde_json::to_string_pretty(&cond)?
        );
    }
    Ok(())
}
