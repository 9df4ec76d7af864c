//! `cellmol slurm`: write (and optionally submit) sbatch scripts for the
//! usual batch jobs — LCD folds × seeds as one job array, Morph training with
//! requeue and a GPU request, CLIPR after LCD through a job dependency.
//!
//! Every script forwards SIGTERM/SIGUSR1 to cellmol, which checkpoints and
//! exits with code 75 ([`datasets::train::EXIT_REQUEUE`]); the script then
//! requeues the job itself (time-limit warning) or lets SLURM do it
//! (`scontrol requeue`, preemption). LCD and Morph training run with
//! `--resume`, so a requeued task continues from its checkpoint.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum SlurmCommand {
    /// LCD training for every fold × seed as one job array (array index → fold, seed).
    Lcd(LcdJob),
    /// Morph training as a requeueable job (GPU request with --gres gpu:1).
    Morph(MorphJob),
    /// CLIPR on every model of an LCD run directory, after a job (dependency afterok).
    Clipr(CliprJob),
    /// LCD job array, then CLIPR depending on it: writes both scripts and submits them in order.
    Pipeline(PipelineJob),
}

/// Resource flags passed through to `#SBATCH` lines.
#[derive(Debug, Args, Clone)]
pub struct Resources {
    /// Partition (queue) to submit to.
    #[arg(long)]
    pub partition: Option<String>,
    /// Generic resources, e.g. `gpu:1`.
    #[arg(long)]
    pub gres: Option<String>,
    /// Wall-clock limit per task (`HH:MM:SS` or `D-HH:MM:SS`).
    #[arg(long, default_value = "04:00:00")]
    pub time: String,
    /// Memory per task, e.g. `16G`.
    #[arg(long, default_value = "16G")]
    pub mem: String,
    /// CPU cores per task (also sets RAYON_NUM_THREADS / OPENBLAS_NUM_THREADS).
    #[arg(long, default_value_t = 4)]
    pub cpus_per_task: u32,
    /// Account to charge.
    #[arg(long)]
    pub account: Option<String>,
    /// Seconds before the time limit at which SLURM sends SIGUSR1 (checkpoint + requeue).
    #[arg(long, default_value_t = 300)]
    pub signal_lead: u32,
    /// Directory for per-task log files (default: <output>/logs).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Submit with sbatch after writing the script (prints the job id).
    #[arg(long)]
    pub submit: bool,
    /// Path of the cellmol binary the job runs (default: this executable).
    #[arg(long)]
    pub cellmol: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LcdJob {
    /// Screen (.h5ad) to train on.
    pub screen: PathBuf,
    /// Run directory: models go to <dir>/fold<F>_seed<S>, the script to <dir>/lcd.sbatch.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Folds to train (comma list, e.g. 0,1,2).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub folds: Vec<u32>,
    /// Seeds per fold (comma list).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,
    /// Preset passed to `lcd fit` (quick|paper).
    #[arg(long, default_value = "paper")]
    pub preset: String,
    /// TOML config passed to `lcd fit`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Device passed to `lcd fit`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Number of folds the combinations are dealt into (`lcd fit --folds`).
    #[arg(long = "n-folds", default_value_t = 10)]
    pub n_folds: usize,
    /// Further `lcd fit` options, e.g. "--min-cells 50 --genes 2000" (split on whitespace).
    #[arg(long, allow_hyphen_values = true, value_name = "ARGS")]
    pub fit_args: Option<String>,
    /// Job name.
    #[arg(long, default_value = "cellmol-lcd")]
    pub job_name: String,
    #[command(flatten)]
    pub res: Resources,
}

#[derive(Debug, Args)]
pub struct MorphJob {
    /// Training molecules (SDF).
    pub data: PathBuf,
    /// Model directory (the script goes next to it as <dir>.sbatch).
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(long, default_value = "paper")]
    pub preset: String,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Property to condition on (e.g. gap).
    #[arg(long)]
    pub condition: Option<String>,
    #[arg(long, default_value = "cuda:0")]
    pub device: String,
    #[arg(long, default_value = "cellmol-morph")]
    pub job_name: String,
    #[command(flatten)]
    pub res: Resources,
}

#[derive(Debug, Args)]
pub struct CliprJob {
    /// LCD run directory written by `cellmol slurm lcd` (every fold<F>_seed<S> model in it).
    pub runs: PathBuf,
    /// Start only after this job finished successfully (afterok).
    #[arg(long)]
    pub after: Option<String>,
    /// Estimator passed to `clipr`.
    #[arg(long, default_value = "published")]
    pub estimator: String,
    #[arg(long, default_value = "cellmol-clipr")]
    pub job_name: String,
    #[command(flatten)]
    pub res: Resources,
}

#[derive(Debug, Args)]
pub struct PipelineJob {
    #[command(flatten)]
    pub lcd: LcdJob,
    /// Estimator for the CLIPR step.
    #[arg(long, default_value = "published")]
    pub estimator: String,
}

pub fn run(cmd: SlurmCommand, global: Global) -> anyhow::Result<()> {
    match cmd {
        SlurmCommand::Lcd(job) => {
            let script = write_lcd(&job)?;
            finish(&script, &job.res, None, global).map(|_| ())
        }
        SlurmCommand::Morph(job) => {
            let script = write_morph(&job)?;
            finish(&script, &job.res, None, global).map(|_| ())
        }
        SlurmCommand::Clipr(job) => {
            let script = write_clipr(&job.runs, &job.estimator, &job.job_name, &job.res)?;
            finish(&script, &job.res, job.after.as_deref(), global).map(|_| ())
        }
        SlurmCommand::Pipeline(p) => {
            let lcd_script = write_lcd(&p.lcd)?;
            let clipr_script =
                write_clipr(&p.lcd.output, &p.estimator, "cellmol-clipr", &p.lcd.res)?;
            let lcd_id = finish(&lcd_script, &p.lcd.res, None, global)?;
            finish(&clipr_script, &p.lcd.res, lcd_id.as_deref(), global).map(|_| ())
        }
    }
}

/// Write nothing but tell the user, or submit and return the job id.
fn finish(
    script: &Path,
    res: &Resources,
    after: Option<&str>,
    global: Global,
) -> anyhow::Result<Option<String>> {
    if !res.submit {
        if !global.quiet {
            eprintln!(
                "wrote {} (submit with: sbatch {}{})",
                script.display(),
                after
                    .map(|a| format!("--dependency=afterok:{a} "))
                    .unwrap_or_default(),
                script.display()
            );
        }
        println!("{}", script.display());
        return Ok(None);
    }
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if let Some(a) = after {
        cmd.arg(format!("--dependency=afterok:{a}"));
    }
    cmd.arg(script);
    let out = cmd
        .output()
        .context("running sbatch (is SLURM installed and on PATH?)")?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let id = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() {
        bail!("sbatch {} printed no job id", script.display());
    }
    println!("{id}");
    Ok(Some(id))
}

fn cellmol_path(res: &Resources) -> anyhow::Result<PathBuf> {
    match &res.cellmol {
        Some(p) => Ok(p.clone()),
        None => std::env::current_exe().context("locating the cellmol executable (pass --cellmol)"),
    }
}

fn abs(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("current directory")?
        .join(p))
}

/// Quote for bash (single quotes).
fn q(p: impl AsRef<std::ffi::OsStr>) -> String {
    let s = p.as_ref().to_string_lossy();
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn validate(res: &Resources) -> anyhow::Result<()> {
    if res.cpus_per_task == 0 {
        bail!("--cpus-per-task must be at least 1");
    }
    let t = &res.time;
    let ok = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || c == ':' || c == '-');
    if !ok {
        bail!("--time {t}: expected minutes, HH:MM:SS or D-HH:MM:SS");
    }
    Ok(())
}

/// The `#SBATCH` header and the signal-forwarding runner shared by every script.
fn header(job_name: &str, res: &Resources, log_dir: &Path, array: Option<&str>) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let mut line = |k: &str, v: &str| {
        let _ = writeln!(s, "#SBATCH --{k}={v}");
    };
    line("job-name", job_name);
    line("time", &res.time);
    line("mem", &res.mem);
    line("cpus-per-task", &res.cpus_per_task.to_string());
    if let Some(p) = &res.partition {
        line("partition", p);
    }
    if let Some(g) = &res.gres {
        line("gres", g);
    }
    if let Some(a) = &res.account {
        line("account", a);
    }
    if let Some(a) = array {
        line("array", a);
        line("output", &log_dir.join("%x_%A_%a.out").to_string_lossy());
    } else {
        line("output", &log_dir.join("%x_%j.out").to_string_lossy());
    }
    line("signal", &format!("B:USR1@{}", res.signal_lead));
    s.push_str("#SBATCH --requeue\n#SBATCH --open-mode=append\n");
    let _ = write!(
        s,
        r#"set -uo pipefail
export RAYON_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{cpus}}} OPENBLAS_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{cpus}}}
echo "[cellmol] job ${{SLURM_JOB_ID:-?}} task ${{SLURM_ARRAY_TASK_ID:-0}} restart ${{SLURM_RESTART_COUNT:-0}} on $(hostname) at $(date -Is)"

# Run cellmol in the background so this shell can forward signals: cellmol
# checkpoints on TERM/USR1 and exits with 75; USR1 (time limit near) means we
# requeue ourselves, TERM (preemption, scontrol requeue) means SLURM does.
run_cellmol() {{
  "$@" &
  local pid=$!
  trap 'echo "[cellmol] USR1: checkpointing"; requeue_self=1; kill -USR1 $pid' USR1
  trap 'echo "[cellmol] TERM: checkpointing"; kill -TERM $pid' TERM
  local rc
  while true; do
    wait $pid; rc=$?
    kill -0 $pid 2>/dev/null || break
  done
  trap - USR1 TERM
  if [ "$rc" -eq 75 ] && [ "${{requeue_self:-0}}" -eq 1 ] && [ -n "${{SLURM_JOB_ID:-}}" ]; then
    scontrol requeue "${{SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}}${{SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}}"
  fi
  return $rc
}}
"#,
        cpus = res.cpus_per_task
    );
    s
}

fn write_script(path: &Path, text: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    super::write_atomic(path, text.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    Ok(path.to_path_buf())
}

/// LCD folds × seeds as one job array; task i → fold = folds[i / n_seeds], seed = seeds[i % n_seeds].
pub fn lcd_script(job: &LcdJob, cellmol: &Path, log_dir: &Path) -> anyhow::Result<String> {
    validate(&job.res)?;
    if job.folds.is_empty() || job.seeds.is_empty() {
        bail!("--folds and --seeds need at least one value each");
    }
    let n = job.folds.len() * job.seeds.len();
    let out = abs(&job.output)?;
    let mut s = header(
        &job.job_name,
        &job.res,
        log_dir,
        Some(&format!("0-{}", n - 1)),
    );
    let folds: Vec<String> = job.folds.iter().map(u32::to_string).collect();
    let seeds: Vec<String> = job.seeds.iter().map(u64::to_string).collect();
    let _ = write!(
        s,
        r#"FOLDS=({folds}); SEEDS=({seeds})
i=${{SLURM_ARRAY_TASK_ID:-0}}
FOLD=${{FOLDS[$(( i / ${{#SEEDS[@]}} ))]}}; SEED=${{SEEDS[$(( i % ${{#SEEDS[@]}} ))]}}
MODEL={out}/fold${{FOLD}}_seed${{SEED}}
echo "[cellmol] lcd fit fold $FOLD seed $SEED -> $MODEL"
run_cellmol {bin} lcd fit {screen} -o "$MODEL" --fold "$FOLD" --folds {n_folds} --seed "$SEED" --preset {preset}{config} --device {device}{extra} --resume
"#,
        n_folds = job.n_folds,
        extra = job
            .fit_args
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(|t| format!(" {}", q(t)))
            .collect::<String>(),
        folds = folds.join(" "),
        seeds = seeds.join(" "),
        out = q(&out),
        bin = q(cellmol),
        screen = q(abs(&job.screen)?),
        preset = q(&job.preset),
        config = match &job.config {
            Some(c) => format!(" --config {}", q(abs(c)?)),
            None => String::new(),
        },
        device = q(&job.device),
    );
    Ok(s)
}

fn write_lcd(job: &LcdJob) -> anyhow::Result<PathBuf> {
    let out = abs(&job.output)?;
    let log_dir = job
        .res
        .log_dir
        .clone()
        .map(|p| abs(&p))
        .transpose()?
        .unwrap_or_else(|| out.join("logs"));
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let text = lcd_script(job, &cellmol_path(&job.res)?, &log_dir)?;
    write_script(&out.join("lcd.sbatch"), &text)
}

pub fn morph_script(job: &MorphJob, cellmol: &Path, log_dir: &Path) -> anyhow::Result<String> {
    validate(&job.res)?;
    let mut s = header(&job.job_name, &job.res, log_dir, None);
    // `--resume` on every (re)start: a requeued job continues from the
    // checkpoint `morph fit` wrote on TERM/USR1 (a fresh directory just starts,
    // a finished one is left alone).
    let _ = writeln!(
        s,
        "run_cellmol {bin} morph fit {data} -o {out} --preset {preset}{config}{cond} --device {device} --resume",
        bin = q(cellmol),
        data = q(abs(&job.data)?),
        out = q(abs(&job.output)?),
        preset = q(&job.preset),
        config = match &job.config {
            Some(c) => format!(" --config {}", q(abs(c)?)),
            None => String::new(),
        },
        cond = job.condition.as_ref().map(|c| format!(" --condition {}", q(c))).unwrap_or_default(),
        device = q(&job.device),
    );
    Ok(s)
}

fn write_morph(job: &MorphJob) -> anyhow::Result<PathBuf> {
    let out = abs(&job.output)?;
    let parent = out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let log_dir = job
        .res
        .log_dir
        .clone()
        .map(|p| abs(&p))
        .transpose()?
        .unwrap_or_else(|| parent.join("logs"));
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let text = morph_script(job, &cellmol_path(&job.res)?, &log_dir)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "morph".into());
    write_script(&parent.join(format!("{name}.sbatch")), &text)
}

pub fn clipr_script(
    runs: &Path,
    estimator: &str,
    job_name: &str,
    res: &Resources,
    cellmol: &Path,
    log_dir: &Path,
) -> anyhow::Result<String> {
    validate(res)?;
    let mut s = header(job_name, res, log_dir, None);
    let _ = write!(
        s,
        r#"status=0
for MODEL in {runs}/fold*_seed*; do
  [ -f "$MODEL/COMPLETE" ] || {{ echo "[cellmol] skipping unfinished $MODEL"; status=1; continue; }}
  echo "[cellmol] clipr $MODEL"
  run_cellmol {bin} clipr "$MODEL" -o "$MODEL/clipr" --estimator {est} || status=$?
done
exit $status
"#,
        runs = q(abs(runs)?),
        bin = q(cellmol),
        est = q(estimator),
    );
    Ok(s)
}

fn write_clipr(
    runs: &Path,
    estimator: &str,
    job_name: &str,
    res: &Resources,
) -> anyhow::Result<PathBuf> {
    let out = abs(runs)?;
    let log_dir = res
        .log_dir
        .clone()
        .map(|p| abs(&p))
        .transpose()?
        .unwrap_or_else(|| out.join("logs"));
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let text = clipr_script(
        runs,
        estimator,
        job_name,
        res,
        &cellmol_path(res)?,
        &log_dir,
    )?;
    write_script(&out.join("clipr.sbatch"), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res() -> Resources {
        Resources {
            partition: Some("gpu".into()),
            gres: Some("gpu:1".into()),
            time: "01:00:00".into(),
            mem: "8G".into(),
            cpus_per_task: 2,
            account: None,
            signal_lead: 60,
            log_dir: None,
            submit: false,
            cellmol: None,
        }
    }

    #[test]
    fn lcd_array_covers_folds_times_seeds() -> anyhow::Result<()> {
        let job = LcdJob {
            screen: "/data/s.h5ad".into(),
            output: "/runs/x".into(),
            folds: vec![0, 1, 2],
            seeds: vec![7, 8],
            preset: "quick".into(),
            config: None,
            device: "cpu".into(),
            n_folds: 5,
            fit_args: Some("--min-cells 20  --genes 500".into()),
            job_name: "j".into(),
            res: res(),
        };
        let s = lcd_script(&job, Path::new("/bin/cellmol"), Path::new("/runs/x/logs"))?;
        assert!(
            s.contains("--folds 5 ") && s.contains(" '--min-cells' '20' '--genes' '500' --resume"),
            "{s}"
        );
        assert!(s.contains("#SBATCH --array=0-5\n"), "{s}");
        assert!(s.contains("#SBATCH --gres=gpu:1\n"));
        assert!(s.contains("#SBATCH --partition=gpu\n"));
        assert!(s.contains("#SBATCH --signal=B:USR1@60\n"));
        assert!(s.contains("#SBATCH --requeue"));
        assert!(s.contains("FOLDS=(0 1 2); SEEDS=(7 8)"));
        assert!(s.contains("--preset 'quick'") && s.contains("--resume"));
        assert!(s.contains("%x_%A_%a.out"));
        // the index arithmetic of the script, checked in bash itself
        let out = Command::new("bash")
            .arg("-c")
            .arg("FOLDS=(0 1 2); SEEDS=(7 8); for i in 0 1 2 3 4 5; do echo ${FOLDS[$(( i / ${#SEEDS[@]} ))]}:${SEEDS[$(( i % ${#SEEDS[@]} ))]}; done")
            .output()?;
        assert_eq!(
            String::from_utf8(out.stdout)?
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["0:7", "0:8", "1:7", "1:8", "2:7", "2:8"]
        );
        Ok(())
    }

    #[test]
    fn bad_resources_are_refused() {
        let mut r = res();
        r.time = "soon".into();
        assert!(validate(&r).is_err());
        r.time = "1-00:00:00".into();
        r.cpus_per_task = 0;
        assert!(validate(&r).is_err());
    }

    #[test]
    fn scripts_are_valid_bash() -> anyhow::Result<()> {
        let job = MorphJob {
            data: "/d/qm9.sdf".into(),
            output: "/m/model".into(),
            preset: "paper".into(),
            config: None,
            condition: Some("gap".into()),
            device: "cuda:0".into(),
            job_name: "m".into(),
            res: res(),
        };
        let m = morph_script(&job, Path::new("/bin/cellmol"), Path::new("/m/logs"))?;
        // a requeued Morph job continues from its checkpoint
        assert!(m.contains("--device 'cuda:0' --resume"), "{m}");
        assert!(m.contains("#SBATCH --requeue"), "{m}");
        let c = clipr_script(
            Path::new("/runs/it's"),
            "published",
            "c",
            &res(),
            Path::new("/bin/cellmol"),
            Path::new("/l"),
        )?;
        for s in [m, c] {
            let st = Command::new("bash").arg("-n").arg("-c").arg(&s).status()?;
            assert!(st.success(), "bash -n rejected:\n{s}");
        }
        Ok(())
    }
}
