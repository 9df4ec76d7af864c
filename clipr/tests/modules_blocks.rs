//! Gene modules on a simulated block-structured graph recover the blocks.
#![allow(clippy::unwrap_used)]
mod common;

use clipr::metrics::adjusted_rand_index;
use clipr::{gene_modules, ModuleOptions};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n_blocks` blocks of `size` genes: dense strong edges (±U(2, 4), p = 0.5)
/// inside a block, sparse weak edges (±U(0.1, 0.3), p = 0.05) between blocks.
fn block_graph(n_blocks: usize, size: usize, seed: u64) -> (Array2<f64>, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = n_blocks * size;
    let block: Vec<i64> = (0..d).map(|g| (g / size) as i64).collect();
    // shuffle gene order so that blocks are not contiguous
    let mut perm: Vec<usize> = (0..d).collect();
    for i in (1..d).rev() {
        perm.swap(i, rng.random_range(0..=i));
    }
    let mut a = Array2::<f64>::zeros((d, d));
    for i in 0..d {
        for j in 0..d {
            if i == j {
                continue;
            }
            let same = block[i] == block[j];
            let (p, lo, hi) = if same {
                (0.5, 2.0, 4.0)
            } else {
                (0.05, 0.1, 0.3)
            };
            if rng.random_bool(p) {
                let v: f64 = rng.random_range(lo..hi);
                a[[perm[i], perm[j]]] = if rng.random_bool(0.5) { v } else { -v };
            }
        }
    }
    let mut labels = vec![0i64; d];
    for g in 0..d {
        labels[perm[g]] = block[g];
    }
    (a, labels)
}

#[test]
fn modules_recover_planted_blocks() {
    let (a, truth) = block_graph(4, 10, 7);
    // Within-block shortest paths are ≈ 0.1–0.25 and between-block ≈ 1.5+;
    // cut between the two scales.
    let m = gene_modules(
        &a,
        &ModuleOptions {
            cut_height: 0.6,
            min_size: 5,
        },
    )
    .unwrap();
    let pred: Vec<i64> = m
        .module
        .iter()
        .map(|x| x.map(|v| v as i64).unwrap_or(-1))
        .collect();
    let ari = adjusted_rand_index(&pred, &truth);
    eprintln!("ARI (cut 0.6) = {ari}, {} modules", m.n_modules);
    assert!(ari > 0.95, "ARI {ari}");
    assert_eq!(m.n_modules, 4);
    // leaf order keeps every block contiguous
    let ord: Vec<i64> = m.leaf_order.iter().map(|&g| truth[g]).collect();
    let changes = ord.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(changes, 3, "{ord:?}");
    // the published default cut (0.175) is finer: every module is pure
    let m2 = gene_modules(&a, &ModuleOptions::default()).unwrap();
    for k in 0..m2.n_modules {
        let blocks: std::collections::BTreeSet<i64> = (0..a.nrows())
            .filter(|&g| m2.module[g] == Some(k))
            .map(|g| truth[g])
            .collect();
        assert_eq!(blocks.len(), 1);
    }
}
