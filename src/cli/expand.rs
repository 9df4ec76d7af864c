//! `cellmol expand`: verifier-based flow expansion (Flow Expander, ActFlow,
//! Rec-NF / Rec-F baselines). `expand toy` runs the illustrative 2-D tasks;
//! `expand fe` / `expand actflow` adapt a trained Morph model and write it as
//! a new model directory (`cellmol morph sample | evaluate` then use it).
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use datasets::train::RunDir;
use indicatif::{ProgressBar, ProgressStyle};
use morph::expand::molecular::{
    select_graphs, ActFlowMode, ExpandMetrics, GraphMatch, GraphSource, MolProtocol,
    MorphActFlowConfig, MorphFeConfig,
};
use morph::expand::plot::{density_png, panels_png};
use morph::expand::toy::{run_toy, ToyConfig, ToyMethod, ToyMetrics, ToyTask};

use super::{device, write_atomic, Global};

#[derive(Debug, Subcommand)]
pub enum ExpandCommand {
    /// Illustrative 2-D expansion: pre-train a flow on part of a valid region,
    /// expand it with a verifier of the whole region, write density pictures.
    Toy(ToyArgs),
    /// Flow Expander on a trained Morph model: conformer (position) expansion
    /// for fixed graphs (sampled from the model, or real molecules with
    /// --graphs), projected on the verifier. The defaults depend on the
    /// verifier: `geometry` gets the expansion-table settings; `validity`,
    /// `stability` and `graph-match` (bonds re-inferred from distances, which
    /// a loosened bond flips) a gentle expansion, `[fe.expand] lr = 1e-4`.
    Fe(MorphFeArgs),
    /// ActFlow on a trained Morph model: explore, keep verified novel graphs,
    /// continue training on anchors + accepted designs (or, with --baseline,
    /// the Rec-NF / Rec-F recursive-training baselines).
    Actflow(MorphActFlowArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VerifierArg {
    /// RDKit sanitisation succeeds and one fragment (FE: bonds inferred from
    /// distances, EDM protocol; ActFlow: the model's bonds).
    Validity,
    /// Every atom has an allowed valence (same protocols as `validity`).
    Stability,
    /// `expand fe` only: the conformer is a geometry of its fixed graph, i.e.
    /// the bonds inferred from distances (EDM protocol) are exactly the
    /// graph's bonds, orders included (a valid molecule of THIS graph, not
    /// just some valid molecule).
    GraphMatch,
    /// `expand fe` only: PoseBusters-style geometry of the conformer against
    /// its fixed graph's own bonds: every bond length within 25 % of its
    /// element-pair / bond-order reference, every 1-3 distance within 25 % of
    /// the ideal angle's, no pair of atoms ≥ 3 bonds apart closer than 0.7 ×
    /// the sum of their van der Waals radii (settings TOML table
    /// `[geometry]`: bond_tol, angle_tol, clash_factor). Molecule-level
    /// metrics then use the graph's bonds (`mol_protocol = "graph"`).
    Geometry,
}

/// Options shared by `expand fe` and `expand actflow`.
#[derive(Debug, Args)]
pub struct MorphCommon {
    /// Trained Morph model directory (`cellmol morph fit`).
    pub model: PathBuf,
    #[arg(long, value_enum)]
    pub verifier: VerifierArg,
    /// New model directory (refused if it exists, unless --force).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Print `{"before": {...}, "after": {...}}` on stdout.
    #[arg(long)]
    pub json: bool,
    /// Random seed (runs are reproducible from it on the CPU).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// TOML with the method's settings (sizes, FE / ActFlow parameters), laid
    /// over the defaults; flags override it. The report's `details.config`
    /// lists every key, e.g. `[fe.expand]` / `[fe.project]` `lr` and
    /// `optimizer` ("sgd", the Morph FE default, or "adam").
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training molecules (SDF / XYZ) for `novel_valid`: distinct valid
    /// molecules (canonical SMILES) not among them.
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Replace an existing output directory.
    #[arg(long)]
    pub force: bool,
    /// Compute device: `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(Debug, Args)]
pub struct MorphFeArgs {
    #[command(flatten)]
    pub common: MorphCommon,
    /// Mirror-descent iterations K.
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Molecule file (SDF / XYZ with bonds) to take the fixed graphs from
    /// instead of the model's own samples: `n_graphs` molecules, in a shuffle
    /// seeded by --seed, the first that are plain-valid (neutral, no aromatic
    /// bonds, allowed valences), one fragment, ≥ 3 atoms, with elements and
    /// charges in the model's vocabulary and at most the model's sampler cap
    /// of atoms. The report lists them (file index, SMILES). The projection
    /// step steers with the smooth surrogate of the geometry checks by
    /// default (settings key `project_score = "geometry"`); "edm-geometry"
    /// also holds each bond inside the distance window in which EDM bond
    /// inference gives its order (the stand-in for --verifier validity),
    /// "verifier" uses the run's 0/1 verifier through a smoothed gradient,
    /// "bond-recovery" the graded recovery of each graph's bonds (the
    /// metrics always keep the run's verifier). `[fe] expand_tangent = true`
    /// expands only along torsions and rigid motions (bond lengths and 1-3
    /// distances held to first order; with the two geometry scores).
    #[arg(long)]
    pub graphs: Option<PathBuf>,
    /// Late start t0 in [0, 1) (settings key `t_start`; default 0.7): start the
    /// pre-trained flow at t0 from each graph's own conformer (the --graphs
    /// molecule's, or the model sample's) noised by the interpolant,
    /// t0·x_ref + (1 − t0)·z, instead of pure noise at t = 0 (SDEdit-style);
    /// FE then expands the conformers the flow makes from there. 0 samples
    /// from pure noise (a quick-preset model then misses most bonds).
    #[arg(long)]
    pub t_start: Option<f64>,
    /// Guard each iteration with the verifier (settings table `[guard]`):
    /// measure its pass rate on fixed guard conformers (`n_samples` per
    /// graph, default 32, noise apart from the evaluation's) before FE and
    /// after each iteration; an iteration that leaves it more than MAX_DROP
    /// below the pre-trained model's (e.g. 0.02 = 2 points) is undone and
    /// retried at half the step (the expand and projection learning rates,
    /// from the same random draws; `backtracks`, default 3, then skipped).
    /// The report's `details.guard` lists every try.
    /// `[guard] metric = "bond-recovery"` guards on the graded recovery of
    /// the graph's bonds instead (for strict verifiers that pass ~nothing),
    /// `metric = "pass-rate-vendi"` also keeps a step only if it leaves at
    /// least as many distinct valid guard conformers (RBF Vendi of the valid
    /// ones per sample) as the pre-trained model.
    #[arg(long, value_name = "MAX_DROP")]
    pub guard: Option<f64>,
}

#[derive(Debug, Args)]
pub struct MorphActFlowArgs {
    #[command(flatten)]
    pub common: MorphCommon,
    /// Rounds R.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Training molecules (SDF) kept in the continued training; without it the
    /// pre-trained model's verified samples are the anchors. Also the
    /// reference of `novel_valid` when --train is not given.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run a baseline instead of ActFlow: recursive synthetic training on
    /// temperature-1 samples, all kept (rec-nf) or verified ones kept (rec-f).
    #[arg(long, value_enum)]
    pub baseline: Option<BaselineArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BaselineArg {
    /// Recursive synthetic training without the verifier filter.
    RecNf,
    /// Recursive synthetic training with the verifier filter.
    RecF,
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
        ExpandCommand::Fe(args) => run_morph(
            &args.common,
            Method::Fe(
                args.iterations,
                args.graphs.clone(),
                args.t_start,
                args.guard,
            ),
            global,
        ),
        ExpandCommand::Actflow(args) => run_morph(
            &args.common,
            Method::ActFlow(args.rounds, args.data.clone(), args.baseline),
            global,
        ),
    }
}

enum Method {
    /// Iterations, --graphs, --t-start, --guard.
    Fe(Option<usize>, Option<PathBuf>, Option<f64>, Option<f64>),
    ActFlow(Option<usize>, Option<PathBuf>, Option<BaselineArg>),
}

enum Settings {
    /// Settings, the --graphs molecules and the file's name.
    Fe(MorphFeConfig, Option<(Vec<molecules::Molecule>, String)>),
    ActFlow(MorphActFlowConfig, Option<Vec<molecules::Molecule>>),
}

fn read_text(path: Option<&Path>) -> anyhow::Result<Option<String>> {
    path.map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()
}

/// The before/after object in the documented key order: validity, coverage,
/// vendi, then the molecule-level keys (distinct_valid, novel_valid when a
/// training set was given, vendi_fp).
fn before_after_line(before: &ExpandMetrics, after: &ExpandMetrics) -> anyhow::Result<String> {
    let obj = |m: &ExpandMetrics| -> anyhow::Result<String> {
        let novel = match m.novel_valid {
            Some(k) => format!(",\"novel_valid\":{k}"),
            None => String::new(),
        };
        Ok(format!(
            "{{\"validity\":{},\"coverage\":{},\"vendi\":{},\"distinct_valid\":{}{novel},\"vendi_fp\":{}}}",
            serde_json::to_string(&m.validity)?,
            serde_json::to_string(&m.coverage)?,
            serde_json::to_string(&m.vendi)?,
            m.distinct_valid,
            serde_json::to_string(&m.vendi_fp)?
        ))
    };
    Ok(format!(
        "{{\"before\":{},\"after\":{}}}",
        obj(before)?,
        obj(after)?
    ))
}

fn run_morph(a: &MorphCommon, method: Method, global: Global) -> anyhow::Result<()> {
    use molecules::metrics::Protocol;
    use molecules::verify::Stability;
    let dev = device::select(&a.device)?;
    // FE moves positions (bonds inferred from distances); ActFlow makes graphs
    // (the model's bonds).
    let protocol = match method {
        Method::Fe(..) => Protocol::Edm,
        Method::ActFlow(..) => Protocol::Bonds,
    };
    let mut verifier: Box<dyn molecules::Verifier> = match a.verifier {
        #[cfg(feature = "rdkit")]
        VerifierArg::Validity => Box::new(molecules::verify::Validity {
            protocol,
            single_fragment: true,
        }),
        #[cfg(not(feature = "rdkit"))]
        VerifierArg::Validity => anyhow::bail!(
            "--verifier validity needs RDKit sanitisation: this cellmol was built without the `rdkit` feature (use --verifier stability)"
        ),
        VerifierArg::Stability => Box::new(Stability { protocol }),
        VerifierArg::GraphMatch => match method {
            Method::Fe(..) => Box::new(GraphMatch { orders: true }),
            Method::ActFlow(..) => anyhow::bail!(
                "--verifier graph-match checks conformers of fixed graphs: it is for `expand fe` only"
            ),
        },
        // replaced by the settings' geometry once they are read
        VerifierArg::Geometry => match method {
            Method::Fe(..) => Box::new(morph::expand::verifier::Geometry::default()),
            Method::ActFlow(..) => anyhow::bail!(
                "--verifier geometry checks conformers of fixed graphs: it is for `expand fe` only"
            ),
        },
    };
    // Check the source model and the output before any work.
    let source = morph::io::ModelDir::load(&a.model, &dev)
        .with_context(|| format!("loading the Morph model {}", a.model.display()))?;
    if a.output.exists() && std::fs::canonicalize(&a.output)? == std::fs::canonicalize(&a.model)? {
        anyhow::bail!(
            "-o {}: the output must differ from the source model",
            a.output.display()
        );
    }
    // Settings and inputs are read before the output directory is created.
    let where_ = || {
        a.config
            .as_ref()
            .map_or("settings".to_string(), |p| format!("in {}", p.display()))
    };
    let text = read_text(a.config.as_deref())?;
    let settings = match &method {
        Method::Fe(iterations, graphs, t_start, guard) => {
            // verifiers that re-infer bonds from distances get a gentler
            // expansion by default
            let base = match a.verifier {
                VerifierArg::Geometry => MorphFeConfig::default(),
                VerifierArg::Validity | VerifierArg::Stability | VerifierArg::GraphMatch => {
                    MorphFeConfig::inferred_bonds()
                }
            };
            let mut cfg = match &text {
                Some(t) => MorphFeConfig::from_toml_over(&base, t).with_context(where_)?,
                None => base,
            };
            cfg.seed = a.seed;
            if let Some(k) = iterations {
                cfg.fe.iterations = *k;
            }
            if let Some(t0) = t_start {
                cfg.t_start = *t0;
            }
            if let Some(d) = guard {
                cfg.guard.enabled = true;
                cfg.guard.max_drop = *d;
            }
            if let VerifierArg::Geometry = a.verifier {
                cfg.mol_protocol = MolProtocol::Graph;
                verifier = Box::new(cfg.geometry);
            }
            cfg.validate().with_context(|| {
                let flags: Vec<String> = [
                    t_start.map(|t0| format!("--t-start {t0}")),
                    guard.map(|d| format!("--guard {d}")),
                ]
                .into_iter()
                .flatten()
                .collect();
                if flags.is_empty() {
                    where_()
                } else {
                    format!("{} ({})", where_(), flags.join(", "))
                }
            })?;
            let graphs = match graphs {
                Some(p) => {
                    let mols = molecules::read_molecules_path(p).with_context(|| {
                        format!("reading the fixed-graph molecules --graphs {}", p.display())
                    })?;
                    let name = p.display().to_string();
                    // Refuse unusable files before the output directory exists.
                    select_graphs(&mols, &name, &source.meta, cfg.n_graphs, cfg.seed)
                        .context("--graphs")?;
                    Some((mols, name))
                }
                None => None,
            };
            Settings::Fe(cfg, graphs)
        }
        Method::ActFlow(rounds, data, baseline) => {
            let mut cfg = match &text {
                Some(t) => MorphActFlowConfig::from_toml(t).with_context(where_)?,
                None => MorphActFlowConfig::default(),
            };
            cfg.seed = a.seed;
            if let Some(r) = rounds {
                cfg.rounds = *r;
            }
            match baseline {
                Some(BaselineArg::RecNf) => cfg.mode = ActFlowMode::RecNf,
                Some(BaselineArg::RecF) => cfg.mode = ActFlowMode::RecF,
                None => {}
            }
            cfg.validate().with_context(where_)?;
            let mols = data
                .as_ref()
                .map(|p| {
                    molecules::read_molecules_path(p)
                        .with_context(|| format!("reading training molecules {}", p.display()))
                })
                .transpose()?;
            Settings::ActFlow(cfg, mols)
        }
    };
    let train = a
        .train
        .as_ref()
        .map(|p| {
            molecules::read_molecules_path(p)
                .with_context(|| format!("reading training molecules --train {}", p.display()))
        })
        .transpose()?;
    let run = RunDir::new(&a.output);
    run.prepare(false, a.force)?;
    let bar = if global.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(1)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut progress = |stage: &str, step: usize, total: usize| {
        if bar.length() != Some(total as u64) {
            bar.set_length(total as u64);
        }
        bar.set_message(stage.to_string());
        bar.set_position(step as u64);
    };
    let result = match &settings {
        Settings::Fe(cfg, graphs) => morph::expand::molecular::fe_morph_with(
            &a.model,
            match graphs {
                Some((mols, name)) => GraphSource::Molecules { mols, name },
                None => GraphSource::Model,
            },
            train.as_deref(),
            verifier.as_ref(),
            &cfg,
            &a.output,
            &dev,
            &mut progress,
        ),
        Settings::ActFlow(cfg, mols) => morph::expand::molecular::actflow_morph(
            &a.model,
            mols.as_deref(),
            train.as_deref(),
            verifier.as_ref(),
            &cfg,
            &a.output,
            &dev,
            &mut progress,
        ),
    };
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            // leave no half-written model behind
            let _ = std::fs::remove_dir_all(&a.output);
            return Err(e.into());
        }
    };
    run.write_file(
        "expand_report.json",
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    run.finish()?;
    if a.json {
        println!("{}", before_after_line(&report.before, &report.after)?);
    } else {
        println!("{} with verifier {}", report.method, report.verifier);
        println!(
            "{:<8} {:>9} {:>9} {:>8} {:>9} {:>9} {:>7}",
            "", "validity", "coverage", "vendi", "vendi_fp", "distinct", "novel"
        );
        for (name, m) in [("before", report.before), ("after", report.after)] {
            println!(
                "{:<8} {:>9.3} {:>9.3} {:>8.2} {:>9.2} {:>9} {:>7}",
                name,
                m.validity,
                m.coverage,
                m.vendi,
                m.vendi_fp,
                m.distinct_valid,
                m.novel_valid.map_or("-".to_string(), |k| k.to_string())
            );
        }
        if !global.quiet {
            eprintln!(
                "adapted model and expand_report.json in {}",
                a.output.display()
            );
        }
    }
    Ok(())
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
    // The samples themselves, for `cellmol plot expansion` and other tools.
    for (name, pts) in [
        ("samples_data.csv", &out.data),
        ("samples_before.csv", &out.samples_before),
        ("samples_after.csv", &out.samples_after),
    ] {
        let mut text = String::from("x,y\n");
        for r in pts.rows() {
            text.push_str(&format!("{},{}\n", r[0], r[1]));
        }
        write_atomic(&args.out.join(name), text.as_bytes())?;
    }
    let full = serde_json::json!({
        "task": task,
        "method": method,
        "before": metrics_json(&out.before),
        "after": metrics_json(&out.after),
        "vendi_linear": { "before": out.vendi_linear.0, "after": out.vendi_linear.1 },
        "rounds": out.rounds,
        "config": cfg,
        "pictures": ["data.png", "before.png", "after.png", "compare.png (data | before | after)"],
        "samples": ["samples_data.csv", "samples_before.csv", "samples_after.csv"],
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
