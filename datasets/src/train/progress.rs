//! Progress reporting: an indicatif bar on a terminal, plain periodic lines
//! (for SLURM log files) otherwise, nothing with `--quiet`.
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

enum Sink {
    Quiet,
    Bar(ProgressBar),
    Lines { every: Duration, last: Instant },
}

/// Progress of a loop of `total` steps, with the latest metrics shown beside it.
pub struct Progress {
    label: String,
    total: u64,
    start: Instant,
    start_step: u64,
    sink: Sink,
}

fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl Progress {
    /// `start_step` is where a resumed run picks up (rates and ETA count from it).
    pub fn new(label: &str, total: u64, start_step: u64, quiet: bool) -> Self {
        let sink = if quiet {
            Sink::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            let style =
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar.set_position(start_step);
            Sink::Bar(bar)
        } else {
            Sink::Lines {
                every: Duration::from_secs(10),
                last: Instant::now(),
            }
        };
        Progress {
            label: label.to_string(),
            total,
            start: Instant::now(),
            start_step,
            sink,
        }
    }

    /// Plain-line mode: print at most once per `every` (default 10 s).
    pub fn with_line_interval(mut self, every: Duration) -> Self {
        if let Sink::Lines { every: e, .. } = &mut self.sink {
            *e = every;
        }
        self
    }

    fn rates(&self, step: u64) -> (f64, f64) {
        let done = step.saturating_sub(self.start_step).max(1) as f64;
        let per_step = self.start.elapsed().as_secs_f64() / done;
        let eta = per_step * self.total.saturating_sub(step) as f64;
        (per_step, eta)
    }

    /// Report that `step` steps are done, with metrics such as `[("loss", 0.3)]`.
    pub fn update(&mut self, step: u64, metrics: &[(&str, f64)]) {
        let msg: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        let (per_step, eta) = self.rates(step);
        match &mut self.sink {
            Sink::Quiet => {}
            Sink::Bar(bar) => {
                bar.set_position(step);
                bar.set_message(format!("{} | {:.1} ms/step", msg.join(" "), per_step * 1e3));
            }
            Sink::Lines { every, last } => {
                if last.elapsed() >= *every || step == self.total {
                    *last = Instant::now();
                    eprintln!(
                        "{}: step {step}/{} {} | {:.1} ms/step | ETA {}",
                        self.label,
                        self.total,
                        msg.join(" "),
                        per_step * 1e3,
                        fmt_duration(eta)
                    );
                }
            }
        }
    }

    /// A one-off message (shown above the bar, or as a line).
    pub fn println(&self, msg: &str) {
        match &self.sink {
            Sink::Quiet => {}
            Sink::Bar(bar) => bar.println(msg),
            Sink::Lines { .. } => eprintln!("{}: {msg}", self.label),
        }
    }

    pub fn finish(&mut self) {
        let took = fmt_duration(self.start.elapsed().as_secs_f64());
        match &self.sink {
            Sink::Quiet => {}
            Sink::Bar(bar) => bar.finish_with_message(format!("done in {took}")),
            Sink::Lines { .. } => eprintln!("{}: done in {took}", self.label),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(5.2), "5s");
        assert_eq!(fmt_duration(125.0), "2m05s");
        assert_eq!(fmt_duration(7300.0), "2h01m");
    }

    #[test]
    fn eta_counts_from_resume_step() {
        let p = Progress::new("t", 100, 50, true);
        let (_, eta) = p.rates(75);
        assert!(eta >= 0.0);
    }
}
