//! Heat maps (PNG and SVG) and `plot_clipr` on a written CLIPR result.
#![allow(clippy::unwrap_used)]
mod common;

use clipr::estimate::{estimate, responses, EstimatorKind};
use clipr::export::EdgeSelect;
use clipr::plot::{heatmap, plot_clipr, read_effects_tsv, HeatmapSpec, SVG_CELLS_MAX};
use clipr::report::write_outputs;
use clipr::{gene_modules, ModuleOptions};
use ndarray::Array2;

fn result_dir(d: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let drift = common::er_linear(d, 3.0, 11);
    let resp = responses(&drift, None).unwrap();
    let eff = estimate(&resp, EstimatorKind::Published, 1e-4).unwrap();
    let opts = ModuleOptions {
        min_size: 2,
        ..Default::default()
    };
    let m = gene_modules(&eff.a_causal, &opts).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("published");
    write_outputs(&dir, &resp.genes, &eff, &m, EdgeSelect::TopK(50), None).unwrap();
    (tmp, dir)
}

#[test]
fn plot_clipr_redraws_png_and_svg_with_labels() {
    let (tmp, dir) = result_dir(12);
    let png = std::fs::read(dir.join("heatmap.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // published estimator: b̂ per gene, ĉ_q per condition (control row = 0)
    let b = std::fs::read_to_string(dir.join("b_hat.tsv")).unwrap();
    assert_eq!(b.lines().count(), 13);
    assert_eq!(b.lines().next(), Some("gene\tb_hat"));
    let c = std::fs::read_to_string(dir.join("c_hat.tsv")).unwrap();
    assert_eq!(c.lines().count(), 14, "header + control + 12 singles");
    let ctrl: Vec<&str> = c.lines().nth(1).unwrap().split('\t').collect();
    assert_eq!(ctrl[0], "control");
    assert!(
        ctrl[1..].iter().all(|v| v.parse::<f64>().unwrap() == 0.0),
        "{ctrl:?}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["optimal_leaf_order"], true);
    // the parent output directory with one estimator resolves to it
    let svg_path = tmp.path().join("h.svg");
    plot_clipr(tmp.path(), &svg_path).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
    let font = datasets::train::plot::ensure_font();
    if font {
        assert!(svg.contains("CLIPR effects (published): 12 genes"), "title");
        // every gene named twice (rows and columns)
        let (genes, _) = read_effects_tsv(&dir.join("effects.tsv")).unwrap();
        for g in &genes {
            assert!(
                svg.matches(&format!(">{g}<")).count() >= 2
                    || svg.matches(&format!(">\n{g}\n<")).count() >= 2,
                "label {g}"
            );
        }
        assert!(svg.contains("effect"), "colour bar caption");
    } else {
        eprintln!("no system font: text checks skipped");
    }
    let png_path = tmp.path().join("again.png");
    plot_clipr(&dir, &png_path).unwrap();
    assert_eq!(&std::fs::read(&png_path).unwrap()[1..4], b"PNG");
    // no temp files left behind
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn large_svg_is_pooled_and_bad_input_is_an_error() {
    let d = 450;
    let a = Array2::from_shape_fn((d, d), |(i, j)| ((i * 31 + j * 17) % 13) as f64 - 6.0);
    let genes: Vec<String> = (0..d).map(|g| format!("G{g}")).collect();
    let order: Vec<usize> = (0..d).rev().collect();
    let module = vec![None; d];
    let spec = HeatmapSpec {
        genes: &genes,
        order: &order,
        module: &module,
        title: "pooled",
    };
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("big.svg");
    heatmap(&p, &a, &spec).unwrap();
    let svg = std::fs::read_to_string(&p).unwrap();
    let rects = svg.matches("<rect").count();
    assert!(
        rects <= SVG_CELLS_MAX * SVG_CELLS_MAX + 200,
        "{rects} rects"
    );
    assert!(!svg.contains(">G17<"), "no labels for d = {d}");
    // wrong extension, non-permutation order, malformed effects
    let e = heatmap(&tmp.path().join("x.jpg"), &a, &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains(".png or .svg"), "{e}");
    let mut bad_order = order.clone();
    bad_order[0] = 1;
    let bad = HeatmapSpec {
        order: &bad_order,
        ..spec.clone()
    };
    assert!(heatmap(&tmp.path().join("y.png"), &a, &bad).is_err());
    assert!(!tmp.path().join("y.png").exists());
    let f = tmp.path().join("effects.tsv");
    std::fs::write(&f, "source\tA\tB\nA\t1\t2\nB\t3\tx\n").unwrap();
    let e = plot_clipr(&f, &tmp.path().join("z.png"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("effects.tsv") && e.contains("line 3") && e.contains("\"x\""),
        "{e}"
    );
    let e = plot_clipr(&tmp.path().join("nope"), &tmp.path().join("z.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}
