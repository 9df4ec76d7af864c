//! Parsing perturbation labels: which obs column, which labels mean
//! "control", which separator joins combination targets.
//!
//! A label is split on the separator; each part that is a control label is
//! dropped (so GEARS-style `TP53+ctrl` is the single `TP53` and `ctrl+ctrl`
//! is control); the remaining parts are the targets. Labels with the same
//! *set* of targets (`A+B`, `B+A`) are one condition.
use crate::anndata::{AnnData, Column};

/// obs columns tried, in order, when none is given.
pub const PERTURBATION_COLUMNS: [&str; 5] = [
    "perturbation",
    "condition",
    "perturbation_name",
    "guide_ids",
    "gene",
];
/// Default control labels (matched case-insensitively after trimming; the empty label is control too).
pub const CONTROL_LABELS: [&str; 4] = ["control", "ctrl", "non-targeting", ""];
/// Candidate separators, in order of preference on ties.
pub const SEPARATORS: [char; 4] = ['+', '|', ',', '_'];

/// First candidate column present in `obs` with string-like labels.
pub fn detect_column(adata: &AnnData) -> Option<String> {
    PERTURBATION_COLUMNS
        .iter()
        .find(|c| {
            matches!(
                adata.obs.column(c),
                Some(Column::Categorical { .. })
                    | Some(Column::Array(crate::anndata::DenseArray::String(_)))
            )
        })
        .map(|c| c.to_string())
}

/// Is `part` a control label?
pub fn is_control(part: &str, controls: &[String]) -> bool {
    let p = part.trim();
    controls.iter().any(|c| c.trim().eq_ignore_ascii_case(p))
}

/// Split a label into target names (controls dropped, whitespace trimmed).
pub fn parse_label(label: &str, sep: char, controls: &[String]) -> Vec<String> {
    if is_control(label, controls) {
        return Vec::new();
    }
    label
        .split(sep)
        .map(str::trim)
        .filter(|p| !is_control(p, controls))
        .map(str::to_string)
        .collect()
}

/// Choose the separator that makes the most labels parse into known parts
/// (var names or controls). A label without any separator votes for none.
/// Falls back to `+` when no label contains a candidate.
pub fn detect_separator<'a>(
    labels: impl Iterator<Item = &'a str> + Clone,
    var_names: &std::collections::HashSet<&str>,
    controls: &[String],
) -> char {
    let mut best = ('+', 0usize);
    for sep in SEPARATORS {
        let score = labels
            .clone()
            .filter(|l| l.contains(sep))
            .filter(|l| {
                l.split(sep)
                    .all(|p| var_names.contains(p.trim()) || is_control(p, controls))
            })
            .count();
        if score > best.1 {
            best = (sep, score);
        }
    }
    if best.1 > 0 {
        return best.0;
    }
    // No label splits into known genes: pick the first separator that occurs
    // in a label that is not itself a gene name.
    SEPARATORS
        .into_iter()
        .find(|&s| {
            labels
                .clone()
                .any(|l| l.contains(s) && !var_names.contains(l))
        })
        .unwrap_or('+')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn ctrl() -> Vec<String> {
        CONTROL_LABELS.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_separator_and_control_style() {
        let c = ctrl();
        for sep in SEPARATORS {
            let l = format!("KLF1{sep}CEBPA");
            assert_eq!(parse_label(&l, sep, &c), vec!["KLF1", "CEBPA"], "sep {sep}");
            let l = format!("KLF1{sep}ctrl");
            assert_eq!(parse_label(&l, sep, &c), vec!["KLF1"]);
        }
        for l in [
            "control",
            "CTRL",
            "non-targeting",
            "",
            "  ",
            "ctrl+ctrl",
            "Non-Targeting",
        ] {
            assert!(parse_label(l, '+', &c).is_empty(), "{l:?}");
        }
        let custom = vec!["NT".to_string()];
        assert!(parse_label("NT", '+', &custom).is_empty());
        assert_eq!(parse_label("control", '+', &custom), vec!["control"]);
    }

    #[test]
    fn separator_detection_prefers_known_genes() {
        let c = ctrl();
        let genes: HashSet<&str> = ["KLF1", "CEBPA", "MT_1", "GATA1"].into_iter().collect();
        let labels = ["KLF1_CEBPA", "GATA1", "ctrl", "KLF1_GATA1"];
        assert_eq!(detect_separator(labels.iter().copied(), &genes, &c), '_');
        let labels = ["KLF1|CEBPA", "GATA1", "MT_1"];
        assert_eq!(detect_separator(labels.iter().copied(), &genes, &c), '|');
        let labels = ["KLF1,ctrl", "CEBPA,GATA1"];
        assert_eq!(detect_separator(labels.iter().copied(), &genes, &c), ',');
        // A gene name containing '_' does not make '_' the separator.
        let labels = ["MT_1", "KLF1+CEBPA"];
        assert_eq!(detect_separator(labels.iter().copied(), &genes, &c), '+');
        // Unknown genes only: first separator that occurs.
        let none: HashSet<&str> = HashSet::new();
        assert_eq!(
            detect_separator(["X|Y", "Z"].iter().copied(), &none, &c),
            '|'
        );
        assert_eq!(detect_separator(["X", "Z"].iter().copied(), &none, &c), '+');
    }
}
