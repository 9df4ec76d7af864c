//! Exports of an effect matrix: TSV edge list, GraphML and DOT (built with
//! petgraph) and a module table (heat maps: [`crate::plot`]). Every file is written atomically (temp file + rename).
use std::fmt::Write as _;
use std::path::Path;

use ndarray::Array2;
use petgraph::graph::DiGraph;

use crate::error::{CliprError, Result};
use crate::modules::Modules;

/// Which edges to export.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EdgeSelect {
    /// Every off-diagonal entry with `|effect| >= t`.
    Threshold(f64),
    /// The `k` largest `|effect|` off-diagonal entries.
    TopK(usize),
}

/// One directed edge `source → target` with its effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub source: usize,
    pub target: usize,
    pub effect: f64,
}

/// Off-diagonal edges of `a` (`[i, j]` = effect of `i` on `j`) sorted by
/// decreasing `|effect|` (ties by source, target).
pub fn select_edges(a: &Array2<f64>, sel: EdgeSelect) -> Vec<Edge> {
    let d = a.nrows();
    let mut edges: Vec<Edge> = Vec::new();
    for i in 0..d {
        for j in 0..d {
            let e = a[[i, j]];
            if i != j && e != 0.0 && e.is_finite() {
                edges.push(Edge {
                    source: i,
                    target: j,
                    effect: e,
                });
            }
        }
    }
    edges.sort_by(|x, y| {
        y.effect
            .abs()
            .total_cmp(&x.effect.abs())
            .then(x.source.cmp(&y.source))
            .then(x.target.cmp(&y.target))
    });
    match sel {
        EdgeSelect::Threshold(t) => edges.retain(|e| e.effect.abs() >= t),
        EdgeSelect::TopK(k) => edges.truncate(k),
    }
    edges
}

/// Writes `bytes` to `path` via a temp file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| CliprError::Export {
        path: path.into(),
        message: "no file name".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|source| CliprError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| CliprError::Io {
        path: path.into(),
        source,
    })
}

/// TSV with the header line `source`, `target`, `effect` (tab-separated).
pub fn edges_tsv(edges: &[Edge], genes: &[String]) -> String {
    let mut s = String::from("source\ttarget\teffect\n");
    for e in edges {
        let _ = writeln!(
            s,
            "{}\t{}\t{:.6e}",
            genes[e.source], genes[e.target], e.effect
        );
    }
    s
}

/// The selected edges as a petgraph graph (all genes are nodes).
pub fn to_graph(edges: &[Edge], genes: &[String]) -> DiGraph<String, f64> {
    let mut g = DiGraph::with_capacity(genes.len(), edges.len());
    let nodes: Vec<_> = genes.iter().map(|n| g.add_node(n.clone())).collect();
    for e in edges {
        g.add_edge(nodes[e.source], nodes[e.target], e.effect);
    }
    g
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// GraphML (directed; node attribute `module`, edge attribute `effect`).
pub fn graphml(g: &DiGraph<String, f64>, modules: Option<&[Option<usize>]>) -> String {
    let mut s = String::new();
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str("<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd\">\n");
    s.push_str("  <key id=\"effect\" for=\"edge\" attr.name=\"effect\" attr.type=\"double\"/>\n");
    s.push_str("  <key id=\"module\" for=\"node\" attr.name=\"module\" attr.type=\"int\"/>\n");
    s.push_str("  <graph id=\"clipr\" edgedefault=\"directed\">\n");
    for n in g.node_indices() {
        let _ = write!(s, "    <node id=\"{}\">", xml_escape(&g[n]));
        if let Some(m) = modules.and_then(|m| m.get(n.index()).copied().flatten()) {
            let _ = write!(s, "<data key=\"module\">{m}</data>");
        }
        s.push_str("</node>\n");
    }
    for e in g.edge_indices() {
        if let Some((a, b)) = g.edge_endpoints(e) {
            let _ = writeln!(
                s,
                "    <edge source=\"{}\" target=\"{}\"><data key=\"effect\">{:e}</data></edge>",
                xml_escape(&g[a]),
                xml_escape(&g[b]),
                g[e]
            );
        }
    }
    s.push_str("  </graph>\n</graphml>\n");
    s
}

/// Graphviz DOT via `petgraph::dot` (edge label = effect, red = activation, blue = repression).
pub fn dot(g: &DiGraph<String, f64>) -> String {
    use petgraph::dot::{Config, Dot};
    let edge_attr = |_: &DiGraph<String, f64>, e: petgraph::graph::EdgeReference<'_, f64>| {
        let w = *petgraph::visit::EdgeRef::weight(&e);
        format!(
            "label=\"{w:.3}\" color=\"{}\"",
            if w >= 0.0 { "red" } else { "blue" }
        )
    };
    let node_attr =
        |_: &DiGraph<String, f64>, _n: (petgraph::graph::NodeIndex, &String)| String::new();
    format!(
        "{:?}",
        Dot::with_attr_getters(g, &[Config::EdgeNoLabel], &edge_attr, &node_attr)
    )
}

/// Module table with columns `gene`, `module`, `leaf_order` (module empty when none).
pub fn modules_tsv(m: &Modules, genes: &[String]) -> String {
    let mut pos = vec![0usize; genes.len()];
    for (p, &g) in m.leaf_order.iter().enumerate() {
        pos[g] = p;
    }
    let mut s = String::from("gene\tmodule\tleaf_order\n");
    for (g, name) in genes.iter().enumerate() {
        let module = m.module[g].map(|x| x.to_string()).unwrap_or_default();
        let _ = writeln!(s, "{name}\t{module}\t{}", pos[g]);
    }
    s
}

/// Heat map of `a` in module leaf order (PNG or SVG by extension) with
/// genes named `G0`, `G1`, …; see [`crate::plot::heatmap`] for the picture
/// and for passing real gene names and a title.
pub fn heatmap_png(path: &Path, a: &Array2<f64>, m: &Modules) -> Result<()> {
    let genes: Vec<String> = (0..a.nrows()).map(|g| format!("G{g}")).collect();
    let title = format!(
        "CLIPR effects: {} genes, {} modules",
        a.nrows(),
        m.n_modules
    );
    crate::plot::heatmap(
        path,
        a,
        &crate::plot::HeatmapSpec {
            genes: &genes,
            order: &m.leaf_order,
            module: &m.module,
            title: &title,
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn edge_selection_and_formats() {
        let a = array![[-1.0, 2.0, -0.3], [0.0, -1.0, -1.5], [0.8, 0.0, -1.0]];
        let genes: Vec<String> = ["A", "B&C", "D"].iter().map(|s| s.to_string()).collect();
        let top = select_edges(&a, EdgeSelect::TopK(2));
        assert_eq!(
            top,
            vec![
                Edge {
                    source: 0,
                    target: 1,
                    effect: 2.0
                },
                Edge {
                    source: 1,
                    target: 2,
                    effect: -1.5
                }
            ]
        );
        let thr = select_edges(&a, EdgeSelect::Threshold(0.5));
        assert_eq!(thr.len(), 3);
        let tsv = edges_tsv(&thr, &genes);
        assert_eq!(tsv.lines().next(), Some("source\ttarget\teffect"));
        assert!(tsv.contains("A\tB&C\t2.000000e0"));
        let g = to_graph(&thr, &genes);
        let xml = graphml(&g, Some(&[Some(0), None, Some(0)]));
        assert!(xml.contains("<node id=\"B&amp;C\"></node>"));
        assert!(xml.contains(
            "<edge source=\"A\" target=\"B&amp;C\"><data key=\"effect\">2e0</data></edge>"
        ));
        assert_eq!(xml.matches("<edge ").count(), 3);
        let dot = dot(&g);
        assert!(dot.starts_with("digraph"));
        assert_eq!(dot.matches("->").count(), 3);
    }
}
