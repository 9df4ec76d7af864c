//! The implication test on simulated screens: the true direct effects imply
//! differential expression far above the baseline rate; a shuffled matrix
//! does not.
#![allow(clippy::unwrap_used)]
use std::path::Path;

use clipr::implication::{de_tests, implication, ImplicationOptions, Normalize};
use clipr::stats::rank_sum_test;
use clipr::truth::screen_truth;
use datasets::screen::{Screen, ScreenOptions};
use datasets::simulate::{simulate_screen, SimulationConfig};
use ndarray::Array2;

fn screen(counts: bool) -> datasets::anndata::AnnData {
    let cfg = SimulationConfig {
        genes: 20,
        perturbed: 20,
        doubles: 0,
        cells_per_condition: 40,
        degree: 2.0,
        counts,
        seed: 5,
        ..Default::default()
    };
    simulate_screen(&cfg, &|_, _| {}).unwrap().adata
}

#[test]
fn true_effects_imply_de_and_shuffled_ones_do_not() {
    let adata = screen(false);
    let file = Path::new("sim.h5ad");
    let truth = screen_truth(&adata, file).unwrap();
    let opts = ImplicationOptions {
        quantiles: vec![0.8, 0.9],
        n_bootstrap: 500,
        ..Default::default()
    };
    let de = de_tests(&adata, file, &truth.genes, &opts).unwrap();
    assert!(!de.normalized, "latent states are not counts");
    assert_eq!(de.sources.len(), 20);
    assert_eq!(de.n_control, 40);

    // one entry recomputed directly from the cells
    let s = Screen::from_anndata(&adata, ScreenOptions::default()).unwrap();
    let ctrl = s.control().unwrap();
    let src = de.sources[3];
    let cond = s.condition(&truth.genes[src]).unwrap();
    let j = (src + 1) % 20;
    let col = |cells: &[usize]| -> Vec<f64> {
        s.dense_counts(cells, &[j])
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect()
    };
    let direct = rank_sum_test(&col(&cond.cells), &col(&ctrl.cells));
    assert!((de.pvals[[3, j]] - direct.p).abs() <= 1e-12 * direct.p.max(1e-300));

    let r = implication(&truth.effects, &de, &opts).unwrap();
    assert_eq!(r.n_candidate_pairs, 20 * 19);
    let top = &r.levels[1];
    assert!(top.n_edges >= 15, "{r:?}");
    assert!(
        top.precision > r.baseline_rate + 0.2 && top.ci_low > r.baseline_rate,
        "true effects: precision {} [{}, {}] vs baseline {}",
        top.precision,
        top.ci_low,
        top.ci_high,
        r.baseline_rate
    );
    assert!(top.ci_low <= top.precision && top.precision <= top.ci_high);
    assert!(top.sign_agreement > 0.7, "{top:?}");

    // the same magnitudes on the wrong pairs (a fixed derangement of targets)
    let d = 20;
    let shuffled = Array2::from_shape_fn((d, d), |(i, j)| {
        if i == j {
            0.0
        } else {
            let jj = (j * 7 + 3) % d;
            if jj == i {
                truth.effects[[i, j]]
            } else {
                truth.effects[[i, jj]]
            }
        }
    });
    let rs = implication(&shuffled, &de, &opts).unwrap();
    assert!(
        rs.levels[1].precision < top.precision - 0.15,
        "shuffled {} vs true {}",
        rs.levels[1].precision,
        top.precision
    );
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["levels"][0]["precision"].is_number());
}

#[test]
fn counts_are_log1p_normalised_and_bad_input_is_an_error() {
    let adata = screen(true);
    let file = Path::new("sim_counts.h5ad");
    let truth = screen_truth(&adata, file).unwrap();
    let opts = ImplicationOptions::default();
    let de = de_tests(&adata, file, &truth.genes, &opts).unwrap();
    assert!(de.normalized);
    let r = implication(&truth.effects, &de, &opts).unwrap();
    assert!(r.levels.iter().all(|l| l.n_edges > 0));

    let forced = ImplicationOptions {
        normalize: Normalize::None,
        ..Default::default()
    };
    assert!(
        !de_tests(&adata, file, &truth.genes, &forced)
            .unwrap()
            .normalized
    );

    let mut genes = truth.genes.clone();
    genes[0] = "NOT_A_GENE".into();
    let e = de_tests(&adata, file, &genes, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("NOT_A_GENE") && e.contains("sim_counts.h5ad"),
        "{e}"
    );
    let too_many = ImplicationOptions {
        min_cells: 1000,
        ..Default::default()
    };
    let e = de_tests(&adata, file, &truth.genes, &too_many)
        .unwrap_err()
        .to_string();
    assert!(e.contains("control cells"), "{e}");
}
