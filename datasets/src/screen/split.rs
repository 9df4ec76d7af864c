//! Folds of unseen combinations (design/lcd.md, "Evaluation protocol").
//!
//! Every single (and the control, and higher-order combinations) is always
//! in training. Doubles are shuffled with a seed; the first
//! `min(n_val, n_doubles / 5)` are validation doubles (the same in every
//! fold, never trained on), the rest are dealt round-robin into `n_folds`
//! folds and fold k's doubles are its test set; the other folds' doubles are
//! training data. A test (or validation) double with a target gene that is
//! not perturbed in any training condition is dropped and reported.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Condition, ConditionKind};
use crate::error::{DatasetsError, Result};

/// How to split doubles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitOptions {
    /// Number of folds K (≥ 1; default 10).
    pub n_folds: usize,
    /// Validation doubles (default 20, capped at a fifth of all doubles).
    pub n_val: usize,
    /// Shuffle seed.
    pub seed: u64,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            n_folds: 10,
            n_val: 20,
            seed: 0,
        }
    }
}

/// A double left out of a test or validation set, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedDouble {
    pub label: String,
    /// `test` or `val`.
    pub set: String,
    /// Targets not perturbed in training.
    pub unseen_targets: Vec<String>,
}

/// Condition indices (into `Screen::conditions()`) of one fold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Split {
    pub fold: usize,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
    pub dropped: Vec<DroppedDouble>,
}

/// Build fold `fold` over `conditions` (excluded conditions are ignored).
pub fn make_split(conditions: &[Condition], fold: usize, opts: &SplitOptions) -> Result<Split> {
    if opts.n_folds == 0 {
        return Err(DatasetsError::InvalidConfig {
            param: "n_folds".into(),
            message: "should be ≥ 1, but is 0".into(),
        });
    }
    if fold >= opts.n_folds {
        return Err(DatasetsError::InvalidConfig {
            param: "fold".into(),
            message: format!("should be in [0, {}), but is {fold}", opts.n_folds),
        });
    }
    let usable = |c: &Condition| !c.excluded;
    let mut doubles: Vec<usize> = (0..conditions.len())
        .filter(|&i| usable(&conditions[i]) && conditions[i].kind == ConditionKind::Double)
        .collect();
    doubles.sort_by(|&a, &b| conditions[a].label.cmp(&conditions[b].label));
    doubles.shuffle(&mut ChaCha8Rng::seed_from_u64(opts.seed));
    let n_val = opts.n_val.min(doubles.len() / 5);
    let (val, rest) = doubles.split_at(n_val);
    let mut train: Vec<usize> = (0..conditions.len())
        .filter(|&i| usable(&conditions[i]) && conditions[i].kind != ConditionKind::Double)
        .collect();
    let mut test = Vec::new();
    for (k, &i) in rest.iter().enumerate() {
        if k % opts.n_folds == fold {
            test.push(i);
        } else {
            train.push(i);
        }
    }
    train.sort_unstable();
    let trained: std::collections::HashSet<&str> = train
        .iter()
        .flat_map(|&i| conditions[i].targets.iter().map(String::as_str))
        .collect();
    let mut dropped = Vec::new();
    let mut keep = |set: &str, ids: &[usize]| -> Vec<usize> {
        let mut out = Vec::new();
        for &i in ids {
            let unseen: Vec<String> = conditions[i]
                .targets
                .iter()
                .filter(|t| !trained.contains(t.as_str()))
                .cloned()
                .collect();
            if unseen.is_empty() {
                out.push(i);
            } else {
                dropped.push(DroppedDouble {
                    label: conditions[i].label.clone(),
                    set: set.into(),
                    unseen_targets: unseen,
                });
            }
        }
        out.sort_unstable();
        out
    };
    let test = keep("test", &test);
    let val = keep("val", val);
    Ok(Split {
        fold,
        train,
        val,
        test,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(label: &str, targets: &[&str], excluded: bool) -> Condition {
        let kind = ConditionKind::from_order(targets.len());
        Condition {
            label: label.into(),
            aliases: vec![],
            targets: targets.iter().map(|s| s.to_string()).collect(),
            target_vars: vec![Some(0); targets.len()],
            cells: vec![0],
            kind,
            excluded,
        }
    }

    fn screen() -> Vec<Condition> {
        let mut c = vec![cond("control", &[], false)];
        let genes: Vec<String> = (0..12).map(|g| format!("G{g}")).collect();
        for g in &genes {
            c.push(cond(g, &[g], false));
        }
        for a in 0..12 {
            for b in (a + 1)..12 {
                if (a + b) % 3 == 0 {
                    c.push(cond(&format!("G{a}+G{b}"), &[&genes[a], &genes[b]], false));
                }
            }
        }
        c.push(cond("G0+X9", &["G0", "X9"], false)); // X9 never perturbed alone
        c.push(cond("G1+G2+G3", &["G1", "G2", "G3"], false));
        c.push(cond("G5+G7", &["G5", "G7"], true)); // too few cells
        c
    }

    #[test]
    fn folds_partition_doubles_and_keep_singles_in_training() {
        let conds = screen();
        let opts = SplitOptions {
            n_folds: 4,
            n_val: 20,
            seed: 1,
        };
        let doubles: Vec<usize> = (0..conds.len())
            .filter(|&i| conds[i].kind == ConditionKind::Double && !conds[i].excluded)
            .collect();
        let n_val_expected = 20.min(doubles.len() / 5);
        let mut seen_test = std::collections::HashSet::new();
        let mut val0 = None;
        for k in 0..4 {
            let s = make_split(&conds, k, &opts).expect("split");
            // Singles, control and higher order always train; excluded never appear.
            for (i, c) in conds.iter().enumerate() {
                if c.kind != ConditionKind::Double && !c.excluded {
                    assert!(s.train.contains(&i), "{} not in training", c.label);
                }
                if c.excluded {
                    assert!(!s.train.contains(&i) && !s.test.contains(&i) && !s.val.contains(&i));
                }
            }
            for t in &s.test {
                assert!(!s.train.contains(t) && !s.val.contains(t));
                assert!(seen_test.insert(*t), "a double is in two test folds");
            }
            assert!(s.val.iter().all(|v| !s.train.contains(v)));
            assert_eq!(
                s.val.len() + s.dropped.iter().filter(|d| d.set == "val").count(),
                n_val_expected
            );
            match &val0 {
                None => val0 = Some(s.val.clone()),
                Some(v) => assert_eq!(v, &s.val, "validation set must not change across folds"),
            }
            // The double with an unseen gene is dropped wherever it lands.
            assert!(!s
                .test
                .iter()
                .chain(&s.val)
                .any(|&i| conds[i].label == "G0+X9"));
        }
        let x9 = conds
            .iter()
            .position(|c| c.label == "G0+X9")
            .expect("present");
        let in_val = val0.as_ref().is_some_and(|v| v.contains(&x9));
        let dropped: Vec<DroppedDouble> = (0..4)
            .flat_map(|k| make_split(&conds, k, &opts).expect("split").dropped)
            .filter(|d| d.label == "G0+X9")
            .collect();
        // Reported once (its test fold) or in every fold (validation), never silently lost.
        assert_eq!(dropped.len(), if in_val { 4 } else { 1 });
        assert_eq!(dropped[0].unseen_targets, vec!["X9".to_string()]);
        // Test folds plus validation plus dropped cover all usable doubles exactly once.
        let n_dropped_test: usize = (0..4)
            .map(|k| {
                make_split(&conds, k, &opts)
                    .expect("split")
                    .dropped
                    .iter()
                    .filter(|d| d.set == "test")
                    .count()
            })
            .sum();
        assert_eq!(
            seen_test.len() + n_dropped_test + n_val_expected,
            doubles.len()
        );
    }

    #[test]
    fn small_screens_keep_test_doubles_and_bad_folds_error() {
        let conds = screen();
        let s = make_split(
            &conds,
            0,
            &SplitOptions {
                n_folds: 2,
                n_val: 1000,
                seed: 0,
            },
        )
        .expect("split");
        assert!(!s.test.is_empty());
        assert!(make_split(
            &conds,
            2,
            &SplitOptions {
                n_folds: 2,
                ..Default::default()
            }
        )
        .is_err());
        assert!(make_split(
            &conds,
            0,
            &SplitOptions {
                n_folds: 0,
                ..Default::default()
            }
        )
        .is_err());
    }
}
