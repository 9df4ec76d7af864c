//! Random regulatory graphs with signed weights for the screen simulators.
//!
//! Orientation everywhere in this module: `w[[i, j]]` is the weight of the
//! edge *i → j* (gene i regulates gene j). Self-loops are never drawn; cycles
//! are allowed (design/lcd.md, "Simulator").
//!
//! - `Er`: Erdős–Rényi. Every ordered pair (i, j), i ≠ j, carries an edge with
//!   probability `p = degree / (d − 1)` (capped at 1), so the expected
//!   in-degree and out-degree of a gene are both `degree` and the expected
//!   number of edges is `degree · d`.
//! - `Sf`: scale-free, Barabási–Albert preferential attachment (Barabási &
//!   Albert 1999): genes join one by one and attach `m = round(degree)` edges
//!   to earlier genes chosen with probability ∝ (degree + 1); each edge gets
//!   a random direction, so hubs both regulate and are regulated and cycles
//!   occur. Expected number of edges ≈ `m · d`.
//!
//! Weights are `±U(1, 3)` with a fair random sign.
use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Random graph family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GraphKind {
    /// Erdős–Rényi (directed).
    #[default]
    Er,
    /// Scale-free (Barabási–Albert, random edge directions).
    Sf,
}

impl GraphKind {
    pub fn name(self) -> &'static str {
        match self {
            GraphKind::Er => "er",
            GraphKind::Sf => "sf",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "er" | "erdos-renyi" => Some(GraphKind::Er),
            "sf" | "scale-free" | "ba" => Some(GraphKind::Sf),
            _ => None,
        }
    }
}

/// A signed weight `±U(lo, hi)`.
pub fn signed_uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    let mag = rng.random_range(lo..hi);
    if rng.random_bool(0.5) {
        mag
    } else {
        -mag
    }
}

/// Adjacency (`true` = edge i → j) of a random graph on `d` genes.
pub fn random_graph(kind: GraphKind, d: usize, degree: f64, rng: &mut ChaCha8Rng) -> Array2<bool> {
    let mut adj = Array2::from_elem((d, d), false);
    if d < 2 {
        return adj;
    }
    match kind {
        GraphKind::Er => {
            let p = (degree / (d - 1) as f64).clamp(0.0, 1.0);
            for i in 0..d {
                for j in 0..d {
                    if i != j && rng.random_bool(p) {
                        adj[[i, j]] = true;
                    }
                }
            }
        }
        GraphKind::Sf => {
            let m = (degree.round() as usize).max(1);
            // Undirected degree counts for preferential attachment.
            let mut deg = vec![0usize; d];
            for t in 1..d {
                let k = m.min(t);
                let mut chosen: Vec<usize> = Vec::with_capacity(k);
                while chosen.len() < k {
                    let total: f64 = (0..t)
                        .filter(|s| !chosen.contains(s))
                        .map(|s| deg[s] as f64 + 1.0)
                        .sum();
                    let mut u = rng.random_range(0.0..total);
                    let mut pick = None;
                    for s in (0..t).filter(|s| !chosen.contains(s)) {
                        let wgt = deg[s] as f64 + 1.0;
                        if u < wgt {
                            pick = Some(s);
                            break;
                        }
                        u -= wgt;
                    }
                    // Rounding can leave u just above the last weight: take the last candidate.
                    let s = pick
                        .unwrap_or_else(|| (0..t).rev().find(|s| !chosen.contains(s)).unwrap_or(0));
                    chosen.push(s);
                }
                for s in chosen {
                    deg[s] += 1;
                    deg[t] += 1;
                    if rng.random_bool(0.5) {
                        adj[[s, t]] = true;
                    } else {
                        adj[[t, s]] = true;
                    }
                }
            }
        }
    }
    adj
}

/// Weighted random graph: `w[[i, j]] = ±U(lo, hi)` on edges i → j, 0 elsewhere.
pub fn random_weights(
    kind: GraphKind,
    d: usize,
    degree: f64,
    lo: f64,
    hi: f64,
    rng: &mut ChaCha8Rng,
) -> Array2<f64> {
    let adj = random_graph(kind, d, degree, rng);
    let mut w = Array2::zeros((d, d));
    for ((i, j), &e) in adj.indexed_iter() {
        if e {
            w[[i, j]] = signed_uniform(rng, lo, hi);
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn er_expected_degree_and_no_self_loops() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let d = 300;
        let adj = random_graph(GraphKind::Er, d, 10.0, &mut rng);
        let n_edges = adj.iter().filter(|&&e| e).count() as f64;
        // Binomial(d(d−1), p): mean 3000, sd ≈ 54.
        assert!((n_edges - 3000.0).abs() < 250.0, "edges {n_edges}");
        assert!((0..d).all(|i| !adj[[i, i]]));
    }

    #[test]
    fn sf_has_hubs_and_cycles_possible() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let d = 300;
        let adj = random_graph(GraphKind::Sf, d, 3.0, &mut rng);
        let n_edges = adj.iter().filter(|&&e| e).count();
        assert_eq!(n_edges, 3 * (d - 3) + 3); // 1 + 2 + 3·(d−3)
        let total_deg: Vec<usize> = (0..d)
            .map(|i| {
                adj.row(i)
                    .iter()
                    .chain(adj.column(i).iter())
                    .filter(|&&e| e)
                    .count()
            })
            .collect();
        let max = *total_deg.iter().max().unwrap_or(&0);
        // Preferential attachment: the largest hub is far above the mean degree 6.
        assert!(max > 25, "max degree {max}");
        // Both directions occur.
        let fwd = (0..d)
            .flat_map(|i| (i + 1..d).map(move |j| (i, j)))
            .filter(|&(i, j)| adj[[i, j]])
            .count();
        assert!(fwd > 0 && fwd < n_edges);
    }

    #[test]
    fn deterministic_given_seed() {
        let a = random_weights(
            GraphKind::Er,
            50,
            5.0,
            1.0,
            3.0,
            &mut ChaCha8Rng::seed_from_u64(7),
        );
        let b = random_weights(
            GraphKind::Er,
            50,
            5.0,
            1.0,
            3.0,
            &mut ChaCha8Rng::seed_from_u64(7),
        );
        assert_eq!(a, b);
        assert!(a.iter().all(|&x| x == 0.0 || (1.0..3.0).contains(&x.abs())));
    }
}
