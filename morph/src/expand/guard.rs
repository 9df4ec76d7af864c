//! Verifier guard (a trust region) for Flow Expander iterations.
//!
//! Each mirror-descent iteration of FE moves the model; a step that is too
//! long (an expand learning rate that suits one verifier but not a stricter
//! one) loses the valid set it was meant to widen. The guard measures the
//! verifier's pass rate on fixed *guard* samples (their own noise codes,
//! drawn apart from the evaluation's) before FE and after each iteration.
//! When the rate has fallen by more than `max_drop` below the pre-trained
//! model's, the iteration is undone (weights restored) and tried again with
//! half the step, at most `backtracks` times: half the expand learning rate
//! and, in proportion, the projection's, from the same random draws, so a
//! retry is the rejected step shortened and not a fresh roll. The
//! learning rate that was accepted carries over to the next iteration, and
//! an iteration no halving rescues is skipped. This is backtracking on the
//! step size of mirror descent with the verifier's own rate as the
//! acceptance test, so the expansion goes as far as the valid set allows.
//!
//! A strict 0/1 verifier that passes almost nothing (a weak model under the
//! EDM bond-order windows) leaves the rate at 0 whatever an iteration does,
//! and the guard blind. `metric = "bond-recovery"` guards on a graded score
//! instead: the mean Jaccard index of the EDM-inferred and the graph's bonded
//! pairs ([`super::molecular::BondRecovery`]), which falls as soon as an
//! iteration loosens bonds.
//!
//! `metric = "pass-rate-vendi"` also asks for what FE is for: besides the
//! pass rate (within `max_drop`), the effective number of distinct *valid*
//! guard conformers (the RBF Vendi score of the valid ones, the
//! evaluation's kernel) per guard sample must not fall below the
//! pre-trained model's. That fraction alone is no guard: valid conformers
//! that all look alike count once, so a step can lose most of them and keep
//! it (measured: strict validity 9.0 → 1.4 % on one seed).
use serde::{Deserialize, Serialize};

use super::{bad_config, Result};

/// What the guard measures on its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuardMetric {
    /// The run's verifier pass rate.
    #[default]
    PassRate,
    /// The mean bond recovery of the fixed graph (graded, in [0, 1]).
    BondRecovery,
    /// The pass rate (within `max_drop`) and, with no drop allowed, the RBF
    /// Vendi score of the valid guard conformers divided by the number of
    /// guard conformers (in [0, 1]; at most the pass rate).
    PassRateVendi,
}

/// Guard settings (`[guard]` of the FE TOML).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeGuard {
    /// Check each iteration (off by default).
    pub enabled: bool,
    /// Largest allowed fall of the guard pass rate (mean over the graphs)
    /// below the pre-trained model's, as a fraction (0.02 = 2 points).
    pub max_drop: f64,
    /// Guard samples per graph (≥ 1).
    pub n_samples: usize,
    /// Halvings of the expand learning rate tried before an iteration is
    /// skipped.
    pub backtracks: usize,
    /// The score compared against the pre-trained model's (`max_drop` is
    /// in its units): `pass-rate` (default), `bond-recovery` or
    /// `pass-rate-vendi`.
    pub metric: GuardMetric,
}

impl Default for FeGuard {
    fn default() -> Self {
        Self {
            enabled: false,
            max_drop: 0.02,
            n_samples: 32,
            backtracks: 3,
            metric: GuardMetric::PassRate,
        }
    }
}

/// What the guard measured on its samples: the metric's `rate` and, for
/// `pass-rate-vendi`, the distinct-valid fraction `vendi`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GuardScore {
    pub rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendi: Option<f64>,
}

impl GuardScore {
    /// A score with the rate alone.
    pub fn rate(rate: f64) -> Self {
        Self { rate, vendi: None }
    }
}

/// One attempt of an iteration, as the report records it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GuardTry {
    pub iteration: usize,
    pub expand_lr: f64,
    #[serde(flatten)]
    pub score: GuardScore,
    pub accepted: bool,
}

impl FeGuard {
    pub fn validate(&self) -> Result<()> {
        let c = "FeGuard";
        if !(self.max_drop >= 0.0 && self.max_drop <= 1.0) {
            return Err(bad_config(
                c,
                "max_drop",
                self.max_drop,
                "a value in [0, 1]",
            ));
        }
        if self.n_samples == 0 {
            return Err(bad_config(c, "n_samples", self.n_samples, ">= 1"));
        }
        Ok(())
    }

    /// Whether an iteration that left the guard score at `s` (the
    /// pre-trained model's: `base`) is kept: the rate at most `max_drop`
    /// below, and a distinct-valid fraction (where both have one) not below.
    pub fn accepts(&self, base: GuardScore, s: GuardScore) -> bool {
        let vendi_holds = match (base.vendi, s.vendi) {
            (Some(b), Some(v)) => v + 1e-12 >= b,
            _ => true,
        };
        s.rate + 1e-12 >= base.rate - self.max_drop && vendi_holds
    }

    /// Run iteration `it` under the guard: `step(lr)` runs the iteration
    /// with expand learning rate `lr`, `score()` measures the guard score
    /// (the pre-trained model's: `base`), `save()` / `restore(&saved)`
    /// snapshot and reset the weights. Returns the learning rate the next
    /// iteration starts from and appends the attempts to `log`.
    pub fn iterate<S, E>(
        &self,
        base: GuardScore,
        (it, lr): (usize, f64),
        mut step: impl FnMut(f64) -> std::result::Result<(), E>,
        mut score: impl FnMut() -> std::result::Result<GuardScore, E>,
        (save, restore): (
            impl Fn() -> std::result::Result<S, E>,
            impl Fn(&S) -> std::result::Result<(), E>,
        ),
        log: &mut Vec<GuardTry>,
    ) -> std::result::Result<f64, E> {
        let saved = save()?;
        let mut lr_try = lr;
        for k in 0..=self.backtracks {
            step(lr_try)?;
            let r = score()?;
            let accepted = self.accepts(base, r);
            log.push(GuardTry {
                iteration: it,
                expand_lr: lr_try,
                score: r,
                accepted,
            });
            if accepted {
                return Ok(lr_try);
            }
            restore(&saved)?;
            if k < self.backtracks {
                lr_try *= 0.5;
            }
        }
        Ok(lr_try)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A model whose guard rate falls linearly with the step it takes:
    /// rate = 0.5 − 100·lr after a step from the saved state.
    fn run(guard: FeGuard, lr: f64) -> (f64, Vec<GuardTry>, f64) {
        let state = Cell::new(0.0f64);
        let mut log = Vec::new();
        let next = guard
            .iterate::<f64, ()>(
                GuardScore::rate(0.5),
                (0, lr),
                |l| {
                    state.set(state.get() + l);
                    Ok(())
                },
                || Ok(GuardScore::rate(0.5 - 100.0 * state.get())),
                (
                    || Ok(state.get()),
                    |s| {
                        state.set(*s);
                        Ok(())
                    },
                ),
                &mut log,
            )
            .expect("guarded");
        (next, log, state.get())
    }

    #[test]
    fn halves_until_the_rate_holds_and_keeps_that_step() {
        let g = FeGuard {
            enabled: true,
            max_drop: 0.02,
            n_samples: 8,
            backtracks: 3,
            ..FeGuard::default()
        };
        // lr 1e-3 costs 0.1, 5e-4 0.05, 2.5e-4 0.025, 1.25e-4 0.0125 ≤ 0.02
        let (next, log, state) = run(g, 1e-3);
        assert_eq!(log.len(), 4, "{log:?}");
        assert!(log[..3].iter().all(|t| !t.accepted));
        assert!(log[3].accepted);
        assert!((next - 1.25e-4).abs() < 1e-15);
        // the rejected steps were undone: only the accepted one remains
        assert!((state - 1.25e-4).abs() < 1e-15, "{state}");
        assert!((log[3].score.rate - (0.5 - 0.0125)).abs() < 1e-12);
    }

    #[test]
    fn skips_the_iteration_when_no_halving_is_enough() {
        let g = FeGuard {
            enabled: true,
            max_drop: 0.0,
            n_samples: 8,
            backtracks: 2,
            ..FeGuard::default()
        };
        let (next, log, state) = run(g, 1e-3);
        assert_eq!(log.len(), 3);
        assert!(log.iter().all(|t| !t.accepted));
        assert_eq!(state, 0.0, "weights restored");
        assert!((next - 2.5e-4).abs() < 1e-15);
    }

    #[test]
    fn accepts_a_step_within_the_drop_at_once() {
        let g = FeGuard {
            enabled: true,
            max_drop: 0.2,
            ..FeGuard::default()
        };
        let (next, log, _) = run(g, 1e-3);
        assert_eq!(log.len(), 1);
        assert!(log[0].accepted);
        assert_eq!(next, 1e-3);
    }

    #[test]
    fn a_fallen_distinct_valid_fraction_rejects_a_step_the_rate_allows() {
        let g = FeGuard {
            max_drop: 0.02,
            ..FeGuard::default()
        };
        let with = |rate, vendi| GuardScore {
            rate,
            vendi: Some(vendi),
        };
        let base = with(0.10, 0.05);
        assert!(g.accepts(base, with(0.09, 0.05)));
        assert!(g.accepts(base, with(0.12, 0.06)));
        // rate within max_drop, but fewer distinct valid conformers
        assert!(!g.accepts(base, with(0.11, 0.049)));
        // more distinct ones do not buy a rate below max_drop
        assert!(!g.accepts(base, with(0.07, 0.07)));
        // without a fraction the rate decides alone
        assert!(g.accepts(GuardScore::rate(0.10), GuardScore::rate(0.09)));
        let json = serde_json::to_value(GuardTry {
            iteration: 1,
            expand_lr: 1e-4,
            score: with(0.1, 0.05),
            accepted: true,
        })
        .expect("json");
        assert_eq!(json["rate"], 0.1);
        assert_eq!(json["vendi"], 0.05);
        let json = serde_json::to_value(GuardScore::rate(0.1)).expect("json");
        assert!(json.get("vendi").is_none(), "{json}");
    }

    #[test]
    fn validate_rejects_impossible_settings() {
        let bad = FeGuard {
            max_drop: -0.1,
            ..FeGuard::default()
        };
        assert!(bad.validate().is_err());
        let bad = FeGuard {
            n_samples: 0,
            ..FeGuard::default()
        };
        assert!(bad.validate().is_err());
        assert!(FeGuard::default().validate().is_ok());
    }

    #[test]
    fn metric_reads_from_toml_and_rejects_unknown_names() {
        let g: FeGuard = toml::from_str("metric = \"bond-recovery\"").expect("toml");
        assert_eq!(g.metric, GuardMetric::BondRecovery);
        assert_eq!(
            serde_json::to_value(g.metric).expect("json"),
            "bond-recovery"
        );
        let g: FeGuard = toml::from_str("metric = \"pass-rate-vendi\"").expect("toml");
        assert_eq!(g.metric, GuardMetric::PassRateVendi);
        let g: FeGuard = toml::from_str("enabled = true").expect("toml");
        assert_eq!(g.metric, GuardMetric::PassRate);
        assert!(toml::from_str::<FeGuard>("metric = \"bonds\"").is_err());
    }
}
