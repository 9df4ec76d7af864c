//! Training-curve pictures (PNG or SVG by extension) from a metrics log, and
//! the font set-up every cellmol plot shares.
use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::{DatasetsError, Result};

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Register a system TrueType font as plotters' `sans-serif` (once per
/// process). Plotters' pure-Rust text backend has no built-in font; the
/// set-up script installs `fonts-dejavu-core`. `CELLMOL_FONT` overrides the
/// path. Returns false when no font could be loaded: plots then omit text.
pub fn ensure_font() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let env = std::env::var("CELLMOL_FONT").ok();
        let candidates = env
            .iter()
            .map(String::as_str)
            .chain(FONT_PATHS.iter().copied());
        for p in candidates {
            if let Ok(bytes) = std::fs::read(p) {
                let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, leaked).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn plot_err(out: &Path, e: impl std::fmt::Display) -> DatasetsError {
    DatasetsError::RunDir(format!("{}: drawing failed: {e}", out.display()))
}

/// Numeric series (name → (step, value)) from metrics records with a `step` field.
pub fn series(records: &[serde_json::Value]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let Some(obj) = r.as_object() else { continue };
        let step = obj.get("step").and_then(|s| s.as_f64()).unwrap_or(i as f64);
        // runs with several stages restart `step`: keep each stage's curves apart
        let stage = ["stage", "phase"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(|v| v.as_str()));
        for (k, v) in obj {
            if k == "step" {
                continue;
            }
            let Some(x) = v.as_f64().filter(|x| x.is_finite()) else {
                continue;
            };
            let name = match stage {
                Some(st) => format!("{st}: {k}"),
                None => k.clone(),
            };
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some((_, s)) => s.push((step, x)),
                None => out.push((name, vec![(step, x)])),
            }
        }
    }
    out.retain(|(_, s)| s.len() >= 2);
    out
}

/// One panel per metric (loss, lr, ...) against the step; PNG or SVG by the
/// extension of `out`.
pub fn plot_curves(records: &[serde_json::Value], title: &str, out: &Path) -> Result<()> {
    let series = series(records);
    if series.is_empty() {
        return Err(DatasetsError::RunDir(format!(
            "{}: no metric with at least two logged values to plot",
            out.display()
        )));
    }
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext != "png" && ext != "svg" {
        return Err(DatasetsError::RunDir(format!(
            "{}: expected a .png or .svg output path",
            out.display()
        )));
    }
    // Draw into a temp file beside `out`, then rename: a failed drawing never
    // leaves a half-written picture. The temp name keeps the extension, which
    // selects the image encoder.
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{stem}.tmp{}.{ext}", std::process::id()));
    let h = 260 * series.len() as u32 + 40;
    let drawn = if ext == "svg" {
        draw(
            SVGBackend::new(&tmp, (900, h)).into_drawing_area(),
            &series,
            title,
            out,
        )
    } else {
        draw(
            BitMapBackend::new(&tmp, (900, h)).into_drawing_area(),
            &series,
            title,
            out,
        )
    };
    let renamed = drawn.and_then(|()| {
        std::fs::rename(&tmp, out).map_err(|source| DatasetsError::Io {
            path: out.to_path_buf(),
            source,
        })
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    series: &[(String, Vec<(f64, f64)>)],
    title: &str,
    out: &Path,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let text = ensure_font();
    root.fill(&WHITE).map_err(|e| plot_err(out, e))?;
    let root = if text {
        root.titled(title, ("sans-serif", 22))
            .map_err(|e| plot_err(out, e))?
    } else {
        root
    };
    let panels = root.split_evenly((series.len(), 1));
    for (panel, (name, pts)) in panels.iter().zip(series) {
        let (x0, x1) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.0), b.max(p.0))
            });
        let (y0, y1) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.1), b.max(p.1))
            });
        let pad = ((y1 - y0).abs() * 0.05).max(1e-12);
        let mut chart = ChartBuilder::on(panel);
        chart
            .margin(12)
            .x_label_area_size(if text { 30 } else { 0 })
            .y_label_area_size(if text { 70 } else { 0 });
        if text {
            chart.caption(name, ("sans-serif", 16));
        }
        let mut chart = chart
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
            .map_err(|e| plot_err(out, e))?;
        if text {
            chart
                .configure_mesh()
                .x_desc("step")
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(|e| plot_err(out, e))?;
        }
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), &BLUE))
            .map_err(|e| plot_err(out, e))?;
    }
    root.present().map_err(|e| plot_err(out, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_groups_metrics_by_name() {
        let recs = vec![
            serde_json::json!({"step": 1, "loss": 3.0, "lr": 0.1, "note": "strings are skipped"}),
            serde_json::json!({"step": 2, "loss": 2.0, "lr": 0.1}),
            serde_json::json!({"step": 3, "loss": 1.0}),
        ];
        let s = series(&recs);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, "loss");
        assert_eq!(s[0].1, vec![(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]);
        let staged = vec![
            serde_json::json!({"stage": "stage1", "step": 0, "loss": 3.0}),
            serde_json::json!({"stage": "stage1", "step": 1, "loss": 2.0}),
            serde_json::json!({"stage": "stage2", "step": 0, "loss": 9.0}),
            serde_json::json!({"stage": "stage2", "step": 1, "loss": 8.0}),
        ];
        let names: Vec<String> = series(&staged).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["stage1: loss", "stage2: loss"]);
    }

    #[test]
    fn writes_png_and_svg() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let recs: Vec<_> = (0..50)
            .map(|i| serde_json::json!({"step": i, "loss": 1.0 / (1.0 + i as f64)}))
            .collect();
        for name in ["c.png", "c.svg"] {
            let p = tmp.path().join(name);
            plot_curves(&recs, "test", &p)?;
            assert!(std::fs::metadata(&p)?.len() > 1000, "{name} is too small");
        }
        assert!(plot_curves(&recs[..1], "x", &tmp.path().join("d.png")).is_err());
        let err = plot_curves(&recs, "x", &tmp.path().join("d.jpg"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a .png or .svg"), "{err}");
        // only the two finished pictures are left: no temp files, nothing for failures
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        assert_eq!(names, ["c.png", "c.svg"]);
        Ok(())
    }
}
