//! Gene modules from an effect matrix (`design/clipr.md`, "Gene modules").
//!
//! 1. Closeness `C = |A| + |A|ᵀ`; edge weight `1 / (C + 1e-10)`, no self
//!    edges; pairs with `C = 0` exactly have no edge.
//! 2. All-pairs shortest paths (dense Dijkstra, one source per rayon task);
//!    symmetrised by the element-wise minimum; unreachable pairs get
//!    5 × the largest finite distance.
//! 3. Average-linkage (UPGMA) hierarchical clustering by the
//!    nearest-neighbour-chain algorithm (Murtagh 1983; exact for average
//!    linkage, O(n²) time), linkage in SciPy's convention.
//!    Leaves are put in the optimal leaf order (Bar-Joseph et al. 2001) for
//!    plots, up to [`OPTIMAL_ORDER_MAX`] genes.
//! 4. Cut at `cut_height`; clusters with at least `min_size` genes become
//!    modules (numbered along the dendrogram leaf order), the others none.
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{CliprError, Result};

/// Module options (defaults as published: cut 0.175, at least 5 genes).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ModuleOptions {
    /// Dendrogram cut height, in shortest-path distance units (> 0).
    pub cut_height: f64,
    /// Smallest cluster kept as a module (≥ 1).
    pub min_size: usize,
}

impl Default for ModuleOptions {
    fn default() -> Self {
        ModuleOptions {
            cut_height: 0.175,
            min_size: 5,
        }
    }
}

impl ModuleOptions {
    pub fn validate(&self) -> Result<()> {
        if !(self.cut_height.is_finite() && self.cut_height > 0.0) {
            return Err(CliprError::param(
                "cut_height",
                format!("must be finite and > 0, got {}", self.cut_height),
            ));
        }
        if self.min_size == 0 {
            return Err(CliprError::param("min_size", "must be >= 1, got 0"));
        }
        Ok(())
    }
}

/// One merge of the dendrogram (SciPy convention: ids `< n` are genes,
/// `n + m` is the cluster made by merge `m`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Merge {
    pub left: usize,
    pub right: usize,
    pub height: f64,
    pub size: usize,
}

/// Gene modules and everything needed to draw them.
#[derive(Debug, Clone)]
pub struct Modules {
    /// Symmetric shortest-path distances `[d, d]`.
    pub distances: Array2<f64>,
    /// `d − 1` merges sorted by height.
    pub linkage: Vec<Merge>,
    /// Genes in dendrogram leaf order (for heat maps): the optimal leaf
    /// order when `optimal_order`, else the plain one.
    pub leaf_order: Vec<usize>,
    /// Whether `leaf_order` is optimal (d ≤ [`OPTIMAL_ORDER_MAX`]).
    pub optimal_order: bool,
    /// Module of each gene (`None` = in no module of at least `min_size` genes).
    pub module: Vec<Option<usize>>,
    pub n_modules: usize,
}

/// Shortest-path gene distances from an effect matrix (steps 1–2).
pub fn gene_distances(a: &Array2<f64>) -> Result<Array2<f64>> {
    let d = a.nrows();
    if a.ncols() != d {
        return Err(CliprError::Shape {
            context: "gene distances".into(),
            expected: "a square effect matrix".into(),
            found: format!("{:?}", a.shape()),
        });
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(CliprError::NonFinite {
            context: "gene distances".into(),
            what: "NaN or inf in the effect matrix".into(),
        });
    }
    let abs = a.mapv(f64::abs);
    let c = &abs + &abs.t();
    let w = Array2::from_shape_fn((d, d), |(i, j)| {
        if i == j || c[[i, j]] == 0.0 {
            f64::INFINITY
        } else {
            1.0 / (c[[i, j]] + 1e-10)
        }
    });
    let rows: Vec<Vec<f64>> = (0..d)
        .into_par_iter()
        .map(|s| dijkstra_dense(&w, s))
        .collect();
    let mut dist = Array2::<f64>::zeros((d, d));
    for (i, r) in rows.iter().enumerate() {
        for (j, &v) in r.iter().enumerate() {
            dist[[i, j]] = v;
        }
    }
    let t = dist.t().to_owned();
    dist.zip_mut_with(&t, |x, &y| *x = x.min(y));
    let max_finite = dist
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, &v| m.max(v));
    let fill = if max_finite > 0.0 {
        5.0 * max_finite
    } else {
        1.0
    };
    dist.mapv_inplace(|v| if v.is_finite() { v } else { fill });
    Ok(dist)
}

/// Dense Dijkstra from `s` (O(n²), no heap: optimal for complete graphs).
fn dijkstra_dense(w: &Array2<f64>, s: usize) -> Vec<f64> {
    let n = w.nrows();
    let mut dist = vec![f64::INFINITY; n];
    let mut done = vec![false; n];
    dist[s] = 0.0;
    for _ in 0..n {
        let mut u = usize::MAX;
        let mut best = f64::INFINITY;
        for v in 0..n {
            if !done[v] && dist[v] < best {
                best = dist[v];
                u = v;
            }
        }
        if u == usize::MAX {
            break;
        }
        done[u] = true;
        let row = w.row(u);
        for v in 0..n {
            let nd = best + row[v];
            if nd < dist[v] {
                dist[v] = nd;
            }
        }
    }
    dist
}

/// Average-linkage clustering of a symmetric distance matrix (NN-chain).
pub fn average_linkage(dist: &Array2<f64>) -> Vec<Merge> {
    let n = dist.nrows();
    if n < 2 {
        return Vec::new();
    }
    let mut dm = dist.clone();
    let mut size = vec![1usize; n];
    let mut active = vec![true; n];
    let mut raw: Vec<(usize, usize, f64)> = Vec::with_capacity(n - 1); // (slot a, slot b, height); result stored in slot b
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    let mut n_active = n;
    while n_active > 1 {
        if chain.is_empty() {
            chain.push(active.iter().position(|&a| a).unwrap_or(0));
        }
        let a = chain[chain.len() - 1];
        let prev = if chain.len() >= 2 {
            Some(chain[chain.len() - 2])
        } else {
            None
        };
        // nearest active neighbour of a, preferring prev on ties (guarantees termination)
        let mut b = prev.unwrap_or(usize::MAX);
        let mut best = prev.map(|p| dm[[a, p]]).unwrap_or(f64::INFINITY);
        for k in 0..n {
            if k != a && active[k] && dm[[a, k]] < best {
                best = dm[[a, k]];
                b = k;
            }
        }
        if b == usize::MAX {
            // every remaining distance is infinite (cannot happen after the fill step); take any
            b = (0..n).find(|&k| k != a && active[k]).unwrap_or(a);
            best = dm[[a, b]];
        }
        if Some(b) == prev {
            chain.pop();
            chain.pop();
            let (sa, sb) = (size[a] as f64, size[b] as f64);
            for k in 0..n {
                if active[k] && k != a && k != b {
                    let v = (sa * dm[[a, k]] + sb * dm[[b, k]]) / (sa + sb);
                    dm[[b, k]] = v;
                    dm[[k, b]] = v;
                }
            }
            active[a] = false;
            size[b] += size[a];
            raw.push((a, b, best));
            n_active -= 1;
        } else {
            chain.push(b);
        }
    }
    // sort by height (stable) and relabel slots to SciPy ids with a union-find
    let mut order: Vec<usize> = (0..raw.len()).collect();
    order.sort_by(|&x, &y| raw[x].2.total_cmp(&raw[y].2));
    let mut parent: Vec<usize> = (0..n).collect();
    let mut id_of_root: Vec<usize> = (0..n).collect();
    let mut csize = vec![1usize; n];
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let mut out = Vec::with_capacity(raw.len());
    for (m, &ri) in order.iter().enumerate() {
        let (a, b, h) = raw[ri];
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        let (ia, ib) = (id_of_root[ra], id_of_root[rb]);
        let s = csize[ra] + csize[rb];
        parent[ra] = rb;
        csize[rb] = s;
        id_of_root[rb] = n + m;
        out.push(Merge {
            left: ia.min(ib),
            right: ia.max(ib),
            height: h,
            size: s,
        });
    }
    out
}

/// Leaves in dendrogram order (left subtree first), as SciPy's `leaves_list`.
pub fn leaf_order(linkage: &[Merge], n: usize) -> Vec<usize> {
    if linkage.is_empty() {
        return (0..n).collect();
    }
    let mut out = Vec::with_capacity(n);
    let mut stack = vec![n + linkage.len() - 1];
    while let Some(id) = stack.pop() {
        if id < n {
            out.push(id);
        } else {
            let m = linkage[id - n];
            stack.push(m.right);
            stack.push(m.left);
        }
    }
    out
}

/// Largest gene count for which [`gene_modules`] computes the optimal leaf
/// order (O(d³) time, d² memory: about a second at d = 1000); above it the
/// plain dendrogram order is used.
pub const OPTIMAL_ORDER_MAX: usize = 2000;

/// Optimal leaf ordering (Bar-Joseph, Gifford & Jaakkola, Bioinformatics
/// 2001): among the `2^(n−1)` leaf orders obtained by flipping the two
/// children of merges, the one minimising the sum of distances between
/// adjacent leaves. Exact dynamic programme: for every pair of leaves
/// `(i, j)` whose lowest common merge is `v`, `m[i][j]` is the cheapest
/// order of `v`'s leaves starting at `i` and ending at `j`;
/// `m[i][j] = min_{k, l} m[i][k] + D(k, l) + m[l][j]` with `k` in the child
/// of `v` holding `i` (in the other grandchild from `i`) and `l` likewise on
/// `j`'s side, evaluated in two stages (O(n³) overall).
pub fn optimal_leaf_order(linkage: &[Merge], dist: &Array2<f64>) -> Vec<usize> {
    let n = dist.nrows();
    if n < 3 || linkage.len() + 1 != n {
        return leaf_order(linkage, n);
    }
    // leaves of every node as a contiguous range of the plain order
    let plain = leaf_order(linkage, n);
    let mut pos = vec![0usize; n];
    for (p, &g) in plain.iter().enumerate() {
        pos[g] = p;
    }
    let n_nodes = n + linkage.len();
    let mut range = vec![(0usize, 0usize); n_nodes]; // [start, end) in `plain`
    for g in 0..n {
        range[g] = (pos[g], pos[g] + 1);
    }
    for (m, mg) in linkage.iter().enumerate() {
        let (a, b) = (range[mg.left], range[mg.right]);
        range[n + m] = (a.0.min(b.0), a.1.max(b.1));
    }
    let children = |v: usize| -> Option<(usize, usize)> {
        if v < n {
            None
        } else {
            let mg = linkage[v - n];
            // the child whose range comes first in `plain`
            if range[mg.left].0 < range[mg.right].0 {
                Some((mg.left, mg.right))
            } else {
                Some((mg.right, mg.left))
            }
        }
    };
    let leaves = |v: usize| -> &[usize] { &plain[range[v].0..range[v].1] };
    // leaves that may end an order of subtree `c` starting at leaf `i`
    let ends = |c: usize, i: usize| -> &[usize] {
        match children(c) {
            None => leaves(c),
            Some((x, y)) => {
                if pos[i] < range[x].1 {
                    leaves(y)
                } else {
                    leaves(x)
                }
            }
        }
    };
    let mut m = Array2::<f64>::zeros((n, n));
    for v in n..n_nodes {
        let Some((a, b)) = children(v) else { continue };
        let (la, lb) = (leaves(a), leaves(b));
        let rows: Vec<Vec<f64>> = la
            .par_iter()
            .map(|&i| {
                // t[l] = min_k m[i][k] + D(k, l), l ∈ leaves(b)
                let ks = ends(a, i);
                let t: Vec<f64> = lb
                    .iter()
                    .map(|&l| {
                        ks.iter()
                            .map(|&k| m[[i, k]] + dist[[k, l]])
                            .fold(f64::INFINITY, f64::min)
                    })
                    .collect();
                lb.iter()
                    .map(|&j| {
                        ends(b, j)
                            .iter()
                            .map(|&l| t[pos[l] - range[b].0] + m[[l, j]])
                            .fold(f64::INFINITY, f64::min)
                    })
                    .collect()
            })
            .collect();
        for (ia, &i) in la.iter().enumerate() {
            for (jb, &j) in lb.iter().enumerate() {
                m[[i, j]] = rows[ia][jb];
                m[[j, i]] = rows[ia][jb];
            }
        }
    }
    // trace back from the best pair of end leaves at the root
    let root = n_nodes - 1;
    let Some((ra, rb)) = children(root) else {
        return plain;
    };
    let mut best = (f64::INFINITY, plain[0], plain[n - 1]);
    for &i in leaves(ra) {
        for &j in leaves(rb) {
            if m[[i, j]] < best.0 {
                best = (m[[i, j]], i, j);
            }
        }
    }
    let mut out = Vec::with_capacity(n);
    let mut stack = vec![(root, best.1, best.2)];
    while let Some((v, i, j)) = stack.pop() {
        let Some((x, y)) = children(v) else {
            out.push(i);
            continue;
        };
        // p holds i (comes first), q holds j
        let (p, q) = if pos[i] < range[x].1 { (x, y) } else { (y, x) };
        let mut arg = (f64::INFINITY, i, j);
        for &k in ends(p, i) {
            for &l in ends(q, j) {
                let c = m[[i, k]] + dist[[k, l]] + m[[l, j]];
                if c < arg.0 {
                    arg = (c, k, l);
                }
            }
        }
        stack.push((q, arg.2, j));
        stack.push((p, i, arg.1));
    }
    out
}

/// Sum of distances between adjacent leaves of an order.
pub fn order_cost(order: &[usize], dist: &Array2<f64>) -> f64 {
    order.windows(2).map(|w| dist[[w[0], w[1]]]).sum()
}

/// Flat clusters: apply every merge with `height <= cut`; returns a cluster label per gene.
pub fn cut_tree(linkage: &[Merge], n: usize, cut: f64) -> Vec<usize> {
    let mut label: Vec<usize> = (0..n).collect();
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    for m in linkage.iter() {
        let merged = if m.height <= cut {
            let mut v = std::mem::take(&mut members[m.left]);
            v.extend(std::mem::take(&mut members[m.right]));
            v
        } else {
            Vec::new()
        };
        if m.height <= cut {
            let l = merged.iter().copied().min().unwrap_or(0);
            for &g in &merged {
                label[g] = l;
            }
        }
        members.push(merged);
    }
    label
}

/// Runs steps 1–4 on an effect matrix (`[i, j]` = effect of `i` on `j`; the
/// closeness is symmetric, so the orientation does not matter here).
pub fn gene_modules(a: &Array2<f64>, opts: &ModuleOptions) -> Result<Modules> {
    opts.validate()?;
    let d = a.nrows();
    let distances = gene_distances(a)?;
    let linkage = average_linkage(&distances);
    let optimal_order = d <= OPTIMAL_ORDER_MAX;
    let leaf_order = if optimal_order {
        optimal_leaf_order(&linkage, &distances)
    } else {
        leaf_order(&linkage, d)
    };
    let labels = cut_tree(&linkage, d, opts.cut_height);
    let mut count = std::collections::HashMap::<usize, usize>::new();
    for &l in &labels {
        *count.entry(l).or_default() += 1;
    }
    let mut module_of_label = std::collections::HashMap::<usize, usize>::new();
    let mut module = vec![None; d];
    for &g in &leaf_order {
        let l = labels[g];
        if count[&l] >= opts.min_size {
            let next = module_of_label.len();
            let m = *module_of_label.entry(l).or_insert(next);
            module[g] = Some(m);
        }
    }
    Ok(Modules {
        distances,
        linkage,
        leaf_order,
        optimal_order,
        module,
        n_modules: module_of_label.len(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn upgma_matches_hand_computation() {
        // points on a line at 0, 1, 5, 11: merges (0,1)@1, then {0,1}-2 avg(5,4)=4.5, then 3: avg(11,10,6)=9
        let x = [0.0f64, 1.0, 5.0, 11.0];
        let d = Array2::from_shape_fn((4, 4), |(i, j)| (x[i] - x[j]).abs());
        let l = average_linkage(&d);
        assert_eq!(l.len(), 3);
        assert_eq!((l[0].left, l[0].right, l[0].size), (0, 1, 2));
        assert!((l[0].height - 1.0).abs() < 1e-12);
        assert_eq!((l[1].left, l[1].right), (2, 4));
        assert!((l[1].height - 4.5).abs() < 1e-12);
        assert_eq!((l[2].left, l[2].right, l[2].size), (3, 5, 4));
        assert!((l[2].height - 9.0).abs() < 1e-12);
        assert_eq!(leaf_order(&l, 4), vec![3, 2, 0, 1]);
        assert_eq!(cut_tree(&l, 4, 4.6), vec![0, 0, 0, 3]);
    }

    /// Every order reachable by flipping children (2^(n−1) of them).
    fn all_flip_orders(linkage: &[Merge], n: usize, v: usize) -> Vec<Vec<usize>> {
        if v < n {
            return vec![vec![v]];
        }
        let m = linkage[v - n];
        let (a, b) = (
            all_flip_orders(linkage, n, m.left),
            all_flip_orders(linkage, n, m.right),
        );
        let mut out = Vec::new();
        for x in &a {
            for y in &b {
                out.push(x.iter().chain(y).copied().collect());
                out.push(y.iter().chain(x).copied().collect());
            }
        }
        out
    }

    #[test]
    fn optimal_leaf_order_matches_brute_force() {
        // deterministic pseudo-random symmetric distances (LCG)
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut improved = 0;
        for trial in 0..40 {
            let n = 3 + trial % 7; // 3..=9
            let mut d = Array2::<f64>::zeros((n, n));
            for i in 0..n {
                for j in 0..i {
                    let v = 0.1 + next();
                    d[[i, j]] = v;
                    d[[j, i]] = v;
                }
            }
            let l = average_linkage(&d);
            let all = all_flip_orders(&l, n, 2 * n - 2);
            assert_eq!(all.len(), 1 << (n - 1));
            let best = all
                .iter()
                .map(|o| order_cost(o, &d))
                .fold(f64::INFINITY, f64::min);
            let olo = optimal_leaf_order(&l, &d);
            assert!(
                all.contains(&olo),
                "trial {trial}: {olo:?} is not a flip order"
            );
            let c = order_cost(&olo, &d);
            assert!(
                (c - best).abs() < 1e-12,
                "trial {trial}: cost {c} vs brute force {best}"
            );
            let plain = order_cost(&leaf_order(&l, n), &d);
            assert!(c <= plain + 1e-12);
            improved += usize::from(c < plain - 1e-12);
        }
        assert!(
            improved > 10,
            "optimal order never beat the plain order ({improved})"
        );
    }

    #[test]
    fn shortest_paths_use_indirect_routes_and_fill_unreachable() {
        // 0-1 strong, 1-2 strong, 0-2 weak, 3 isolated
        let a = array![
            [0.0, 4.0, 0.1, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 4.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0]
        ];
        let dist = gene_distances(&a).unwrap();
        assert!((dist[[0, 2]] - 0.5).abs() < 1e-9, "{dist}"); // 1/4 + 1/4 < 1/0.1
        assert!((dist[[0, 3]] - 2.5).abs() < 1e-9); // 5 × 0.5
        assert_eq!(dist, dist.t());
        assert!(dist.diag().iter().all(|&v| v == 0.0));
    }
}
