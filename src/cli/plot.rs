//! `cellmol plot`: pictures from existing output directories (PNG or SVG by
//! the output extension; written to a temp file and renamed).
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use datasets::anndata::Matrix;
use datasets::train::plot::{
    plot_densities, plot_distributions, save_figure, Bars, DensityPanel, DistributionPanel,
};
use lcd::data::parse_condition;
use lcd::screen::ScreenData;

use super::{device, Global};

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
    /// Predicted vs observed expression distributions per gene for one
    /// condition (histograms of observed, predicted and control cells).
    Expression(ExpressionArgs),
    /// Flow-expansion outputs (`cellmol expand toy -o DIR`): validity,
    /// coverage and Vendi before/after for each DIR, plus 2-D densities
    /// (data | before | after) where DIR holds sample files.
    Expansion(ExpansionArgs),
    /// CLIPR effect heat map (genes in module order, colour bar, gene names
    /// when legible) from a `cellmol clipr -o DIR` output: one picture per
    /// estimator directory, or from a single `effects.tsv`.
    Clipr {
        /// `clipr -o` directory, one estimator directory, or an `effects.tsv`.
        path: PathBuf,
        /// Output picture (`.png` or `.svg`); with several estimators the
        /// estimator name is added before the extension (default:
        /// `heatmap.png` in each estimator directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scale {
    /// log1p when every value is ≥ 0 (counts), raw values otherwise.
    Auto,
    /// log(1 + x); refuses negative values.
    Log1p,
    /// Values as stored in X.
    Raw,
}

#[derive(Debug, Args)]
pub struct ExpressionArgs {
    /// LCD model directory (cells are predicted on the fly) or a predictions
    /// file written by `cellmol lcd predict` (.h5ad, obs["perturbation"]).
    pub prediction: PathBuf,
    /// The screen (.h5ad) with observed cells of the condition and controls.
    pub screen: PathBuf,
    /// Condition to show, e.g. "A+B" (order of targets does not matter).
    #[arg(long)]
    pub perturbation: String,
    /// Genes to show, comma-separated (default: the targets, then the genes
    /// whose observed mean moves most from control).
    #[arg(long, value_delimiter = ',')]
    pub genes: Vec<String>,
    /// Number of genes chosen when --genes is not given.
    #[arg(long, default_value_t = 6)]
    pub max_genes: usize,
    /// Value scale of the histograms.
    #[arg(long, value_enum, default_value = "auto")]
    pub scale: Scale,
    /// Cells to predict when PREDICTION is a model directory.
    #[arg(short = 'n', long, default_value_t = 300)]
    pub cells: usize,
    /// Sampling seed when PREDICTION is a model directory.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu or cuda:N (model directory only).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output picture, `.png` or `.svg` (default: expression_<condition>.png
    /// next to the predictions file, or in the model directory).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExpansionArgs {
    /// Output directories of `cellmol expand toy` (each holds metrics.json;
    /// optional samples_data/samples_before/samples_after .csv or .tsv files
    /// with two columns x, y).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Output picture, `.png` or `.svg` (default: expansion.png in the first
    /// DIR). Densities go to `<stem>_<dir name>.<ext>` beside it.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub fn run(cmd: PlotCommand, global: Global) -> anyhow::Result<()> {
    match cmd {
        PlotCommand::Curves { path, output } => curves(&path, output, global),
        PlotCommand::Expression(a) => expression(&a, global),
        PlotCommand::Expansion(a) => expansion(&a, global),
        PlotCommand::Clipr { path, output } => clipr_heatmap(&path, output, global),
    }
}

fn clipr_heatmap(path: &Path, output: Option<PathBuf>, global: Global) -> anyhow::Result<()> {
    let dirs = clipr::plot::result_dirs(path)?;
    let single = dirs.len() == 1;
    for dir in &dirs {
        let out = match &output {
            None => dir.join("heatmap.png"),
            Some(o) if single => o.clone(),
            Some(o) => {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "clipr".into());
                let stem = o
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "heatmap".into());
                let ext = o
                    .extension()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "png".into());
                o.with_file_name(format!("{stem}_{name}.{ext}"))
            }
        };
        let input = if single && path.is_file() {
            path.to_path_buf()
        } else {
            dir.clone()
        };
        clipr::plot::plot_clipr(&input, &out)
            .with_context(|| format!("plotting {}", input.display()))?;
        if !global.quiet {
            eprintln!("wrote {}", out.display());
        }
    }
    Ok(())
}

fn curves(path: &Path, output: Option<PathBuf>, global: Global) -> anyhow::Result<()> {
    let logs = metrics_logs(path)?;
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

/// Refuse an output path whose extension plotters cannot write, before any work.
fn check_output(out: &Path) -> anyhow::Result<()> {
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext != "png" && ext != "svg" {
        bail!("{}: expected a .png or .svg output path", out.display());
    }
    Ok(())
}

// ------------------------------------------------------------- expression

/// Predicted cells of one condition: gene names and rows `[cells][genes]`.
struct Predicted {
    genes: Vec<String>,
    rows: Vec<Vec<f64>>,
}

/// Dense rows `rows` of X (any dense dtype, CSR or CSC).
fn x_rows(x: &Matrix, rows: &[usize], file: &Path) -> anyhow::Result<Vec<Vec<f64>>> {
    let (_, d) = x.shape2();
    let sub = x.select_rows(rows);
    let dense: Vec<f64> = match &sub {
        Matrix::Dense(a) => a
            .to_f64()
            .with_context(|| format!("{}: X: expected numbers, found strings", file.display()))?
            .iter()
            .copied()
            .collect(),
        Matrix::Sparse(s) => s.to_dense_f32().iter().map(|&v| f64::from(v)).collect(),
    };
    if dense.len() != rows.len() * d {
        bail!(
            "{}: X: expected {} × {} values, found {}",
            file.display(),
            rows.len(),
            d,
            dense.len()
        );
    }
    Ok(dense.chunks(d.max(1)).map(<[f64]>::to_vec).collect())
}

fn read_predictions(path: &Path, label: &str, targets: &[String]) -> anyhow::Result<Predicted> {
    let ad = datasets::anndata::read_h5ad(path)
        .with_context(|| format!("reading predictions {}", path.display()))?;
    let col = ad.obs.column("perturbation").with_context(|| {
        format!(
            "{}: obs has no \"perturbation\" column (expected a file written by `cellmol lcd predict`)",
            path.display()
        )
    })?;
    let x =
        ad.x.as_ref()
            .with_context(|| format!("{}: no X matrix", path.display()))?;
    if x.shape2() != (ad.n_obs(), ad.n_vars()) {
        bail!(
            "{}: X is {:?}, obs × var is {} × {}",
            path.display(),
            x.shape2(),
            ad.n_obs(),
            ad.n_vars()
        );
    }
    let mut rows = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (i, l) in col.labels().into_iter().enumerate() {
        let Some(l) = l else { continue };
        let t = parse_condition(&l)
            .with_context(|| format!("{}: obs[\"perturbation\"][{i}] = {l:?}", path.display()))?;
        if t == targets {
            rows.push(i);
        } else if !seen.contains(&l) {
            seen.push(l);
        }
    }
    if rows.is_empty() {
        bail!(
            "{}: no predicted cells for {label:?} (conditions in the file: {})",
            path.display(),
            seen.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(Predicted {
        genes: ad.var_names().to_vec(),
        rows: x_rows(x, &rows, path)?,
    })
}

fn predict_from_model(
    dir: &Path,
    label: &str,
    targets: &[String],
    a: &ExpressionArgs,
) -> anyhow::Result<Predicted> {
    if a.cells == 0 {
        bail!("-n must be ≥ 1");
    }
    let dev = device::select(&a.device)?;
    let (model, _) = lcd::LcdModel::load(dir, &dev)
        .with_context(|| format!("loading LCD model {}", dir.display()))?;
    model
        .embedding(targets)
        .with_context(|| format!("{}: --perturbation {label:?}", dir.display()))?;
    let reps = if model.cfg.noise_model {
        model.cfg.sampler.decodes_per_chain.max(1)
    } else {
        1
    };
    let chains = a.cells.div_ceil(reps);
    let preds = model.predict(&[targets.to_vec()], chains, a.seed, |_, _| {})?;
    let p = preds
        .into_iter()
        .next()
        .context("the model returned no prediction")?;
    let n = a.cells.min(p.cells.nrows());
    Ok(Predicted {
        genes: model.genes().to_vec(),
        rows: (0..n)
            .map(|i| p.cells.row(i).iter().map(|&v| f64::from(v)).collect())
            .collect(),
    })
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// File-name-safe version of a condition label.
fn slug(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '+' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn expression(a: &ExpressionArgs, global: Global) -> anyhow::Result<()> {
    let label = a.perturbation.trim().to_string();
    let targets = parse_condition(&label).with_context(|| format!("--perturbation {label:?}"))?;
    let out = match &a.output {
        Some(o) => o.clone(),
        None => {
            let dir = if a.prediction.is_dir() {
                a.prediction.clone()
            } else {
                a.prediction
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            };
            dir.join(format!("expression_{}.png", slug(&label)))
        }
    };
    check_output(&out)?;
    if !a.screen.is_file() {
        bail!("{}: no such file", a.screen.display());
    }
    if !a.prediction.exists() {
        bail!(
            "{}: no such file or directory (expected an LCD model directory or a predictions .h5ad)",
            a.prediction.display()
        );
    }
    let screen = ScreenData::read(&a.screen)
        .with_context(|| format!("reading screen {}", a.screen.display()))?;
    let observed = screen
        .conditions
        .iter()
        .find(|c| c.targets == targets)
        .with_context(|| {
            format!(
                "{}: no cells for perturbation {label:?} (conditions: {}{})",
                a.screen.display(),
                screen
                    .conditions
                    .iter()
                    .take(8)
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if screen.conditions.len() > 8 {
                    ", ..."
                } else {
                    ""
                }
            )
        })?;
    let control = screen.conditions.iter().find(|c| c.targets.is_empty());
    let pred = if a.prediction.is_dir() {
        predict_from_model(&a.prediction, &label, &targets, a)?
    } else {
        read_predictions(&a.prediction, &label, &targets)?
    };
    // screen column of every predicted gene
    let screen_col = |g: &str| screen.genes.iter().position(|s| s == g);
    let genes: Vec<(usize, usize)> = if a.genes.is_empty() {
        let usable: Vec<(usize, usize)> = pred
            .genes
            .iter()
            .enumerate()
            .filter_map(|(pi, g)| screen_col(g).map(|si| (pi, si)))
            .collect();
        if usable.is_empty() {
            bail!(
                "{} and {}: no gene in common",
                a.prediction.display(),
                a.screen.display()
            );
        }
        let mut chosen: Vec<(usize, usize)> = usable
            .iter()
            .copied()
            .filter(|&(pi, _)| targets.contains(&pred.genes[pi]))
            .collect();
        let mut rest: Vec<(f64, (usize, usize))> = usable
            .iter()
            .copied()
            .filter(|p| !chosen.contains(p))
            .map(|(pi, si)| {
                let obs: Vec<f64> = observed.x.column(si).iter().map(|&v| v as f64).collect();
                let shift = match control {
                    Some(c) => {
                        let ctl: Vec<f64> = c.x.column(si).iter().map(|&v| v as f64).collect();
                        let f = |v: &[f64]| {
                            mean(&v.iter().map(|x| x.max(0.0).ln_1p()).collect::<Vec<_>>())
                        };
                        (f(&obs) - f(&ctl)).abs()
                    }
                    None => mean(&obs),
                };
                (if shift.is_finite() { shift } else { 0.0 }, (pi, si))
            })
            .collect();
        rest.sort_by(|x, y| y.0.total_cmp(&x.0));
        chosen.extend(rest.into_iter().map(|r| r.1));
        chosen.truncate(a.max_genes.max(1));
        chosen
    } else {
        a.genes
            .iter()
            .map(|g| {
                let g = g.trim();
                let pi = pred.genes.iter().position(|s| s == g).with_context(|| {
                    format!(
                        "--genes: {g:?} is not among the genes of {}",
                        a.prediction.display()
                    )
                })?;
                let si = screen_col(g).with_context(|| {
                    format!(
                        "--genes: {g:?} is not among the genes of {}",
                        a.screen.display()
                    )
                })?;
                Ok((pi, si))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let column =
        |rows: &[Vec<f64>], pi: usize| -> Vec<f64> { rows.iter().map(|r| r[pi]).collect() };
    let mut raw_panels: Vec<(String, Vec<(String, Vec<f64>)>)> = Vec::new();
    for &(pi, si) in &genes {
        let g = &pred.genes[pi];
        let mut series = vec![
            (
                format!("observed (n={})", observed.x.nrows()),
                observed.x.column(si).iter().map(|&v| v as f64).collect(),
            ),
            (
                format!("predicted (n={})", pred.rows.len()),
                column(&pred.rows, pi),
            ),
        ];
        if let Some(c) = control.filter(|_| !targets.is_empty()) {
            series.push((
                format!("control (n={})", c.x.nrows()),
                c.x.column(si).iter().map(|&v| v as f64).collect(),
            ));
        }
        raw_panels.push((g.clone(), series));
    }
    let negative = raw_panels
        .iter()
        .flat_map(|(_, s)| s.iter().flat_map(|(_, v)| v.iter()))
        .any(|&v| v < 0.0);
    let log = match a.scale {
        Scale::Raw => false,
        Scale::Log1p if negative => bail!(
            "--scale log1p: the data hold negative values (normalised expression?); use --scale raw"
        ),
        Scale::Log1p => true,
        Scale::Auto => !negative,
    };
    let panels: Vec<DistributionPanel> = raw_panels
        .into_iter()
        .map(|(g, series)| {
            let series: Vec<(String, Vec<f64>)> = series
                .into_iter()
                .map(|(n, v)| {
                    let v = if log {
                        v.into_iter().map(f64::ln_1p).collect()
                    } else {
                        v
                    };
                    (n, v)
                })
                .collect();
            let role = if targets.contains(&g) {
                " (target)"
            } else {
                ""
            };
            DistributionPanel {
                title: format!(
                    "{g}{role}: mean obs {:.2} / pred {:.2}",
                    mean(&series[0].1),
                    mean(&series[1].1)
                ),
                series,
            }
        })
        .collect();
    let title = format!(
        "{label}: predicted vs observed ({})",
        a.prediction
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    plot_distributions(
        &panels,
        &title,
        if log { "log1p(value)" } else { "value" },
        &out,
    )
    .with_context(|| format!("plotting {}", out.display()))?;
    if !global.quiet {
        eprintln!(
            "{label}: {} genes, {} observed / {} predicted cells -> {}",
            panels.len(),
            observed.x.nrows(),
            pred.rows.len(),
            out.display()
        );
    }
    println!("{}", out.display());
    Ok(())
}

// -------------------------------------------------------------- expansion

struct ExpansionRun {
    name: String,
    /// Directory name (for output file names).
    dir_name: String,
    task: Option<morph::expand::toy::ToyTask>,
    /// validity, coverage, vendi; before and after.
    before: [f64; 3],
    after: [f64; 3],
    /// (panel title, points) for data / before / after files found.
    samples: Vec<(String, Vec<(f64, f64)>)>,
}

const EXPANSION_METRICS: [&str; 3] = ["validity", "coverage", "vendi"];

/// Two-column numeric table (comma, tab or space separated; an optional
/// header line).
fn read_points(path: &Path) -> anyhow::Result<Vec<(f64, f64)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut pts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line
            .split([',', '\t', ' '])
            .filter(|s| !s.is_empty())
            .collect();
        let nums: Option<Vec<f64>> = fields.iter().map(|f| f.parse::<f64>().ok()).collect();
        match nums {
            Some(v) if v.len() >= 2 && v[0].is_finite() && v[1].is_finite() => {
                pts.push((v[0], v[1]))
            }
            None if i == 0 => continue, // header
            _ => bail!(
                "{}: line {}: expected two finite numbers (x, y), found {line:?}",
                path.display(),
                i + 1
            ),
        }
    }
    if pts.is_empty() {
        bail!("{}: no points (expected lines x, y)", path.display());
    }
    Ok(pts)
}

fn read_expansion(dir: &Path) -> anyhow::Result<ExpansionRun> {
    if !dir.is_dir() {
        bail!(
            "{}: no such directory (expected the output of `cellmol expand toy`)",
            dir.display()
        );
    }
    let mpath = dir.join("metrics.json");
    if !mpath.is_file() {
        bail!(
            "{}: missing (expected the output of `cellmol expand toy -o {}`)",
            mpath.display(),
            dir.display()
        );
    }
    let text =
        std::fs::read_to_string(&mpath).with_context(|| format!("reading {}", mpath.display()))?;
    let js: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", mpath.display()))?;
    let get = |side: &str| -> anyhow::Result<[f64; 3]> {
        let mut v = [0.0; 3];
        for (k, m) in EXPANSION_METRICS.iter().enumerate() {
            v[k] = js[side][m]
                .as_f64()
                .with_context(|| format!("{}: expected a number at {side}.{m}", mpath.display()))?;
        }
        Ok(v)
    };
    let task = js
        .get("task")
        .and_then(|t| serde_json::from_value::<morph::expand::toy::ToyTask>(t.clone()).ok());
    let dname = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let name = match js.get("method").and_then(|m| m.as_str()) {
        Some(m) if m != dname => format!("{m} ({dname})"),
        _ => dname.clone(),
    };
    let mut samples = Vec::new();
    for (stem, title) in [
        ("data", "training data"),
        ("before", "before"),
        ("after", "after"),
    ] {
        for ext in ["csv", "tsv"] {
            let p = dir.join(format!("samples_{stem}.{ext}"));
            if p.is_file() {
                samples.push((title.to_string(), read_points(&p)?));
                break;
            }
        }
    }
    Ok(ExpansionRun {
        name,
        dir_name: dname,
        task,
        before: get("before")?,
        after: get("after")?,
        samples,
    })
}

fn expansion(a: &ExpansionArgs, global: Global) -> anyhow::Result<()> {
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| a.dirs[0].join("expansion.png"));
    check_output(&out)?;
    let runs: Vec<ExpansionRun> = a
        .dirs
        .iter()
        .map(|d| read_expansion(d))
        .collect::<anyhow::Result<_>>()?;
    let metrics: Vec<String> = EXPANSION_METRICS.iter().map(|s| s.to_string()).collect();
    let groups: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
    let series = vec!["before".to_string(), "after".to_string()];
    let values: Vec<Vec<Vec<f64>>> = (0..EXPANSION_METRICS.len())
        .map(|k| runs.iter().map(|r| vec![r.before[k], r.after[k]]).collect())
        .collect();
    save_figure(
        &Bars {
            title: "flow expansion: before vs after",
            metrics: &metrics,
            groups: &groups,
            series: &series,
            values: &values,
        },
        &out,
    )
    .with_context(|| format!("plotting {}", out.display()))?;
    println!("{}", out.display());
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "expansion".into());
    let ext = out
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "png".into());
    let mut without = Vec::new();
    for (run, dir) in runs.iter().zip(&a.dirs) {
        if run.samples.is_empty() {
            without.push(dir.display().to_string());
            continue;
        }
        let dpath = out.with_file_name(format!("{stem}_{}.{ext}", slug(&run.dir_name)));
        let panels: Vec<DensityPanel> = run
            .samples
            .iter()
            .map(|(t, p)| DensityPanel {
                title: format!("{t} (n={})", p.len()),
                points: p,
            })
            .collect();
        let task = run.task;
        let inside = move |x: f64, y: f64| task.is_some_and(|t| t.sdf(x, y) <= 0.0);
        plot_densities(
            &panels,
            &run.name,
            morph::expand::toy::EXTENT,
            task.map(|_| &inside as &dyn Fn(f64, f64) -> bool),
            &dpath,
        )
        .with_context(|| format!("plotting {}", dpath.display()))?;
        println!("{}", dpath.display());
    }
    if !global.quiet && !without.is_empty() {
        eprintln!(
            "no sample files (samples_data/before/after.csv) in {}: metrics only",
            without.join(", ")
        );
    }
    Ok(())
}
