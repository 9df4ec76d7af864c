//! Pictures (PNG or SVG by extension) shared by every cellmol plot: training
//! curves from a metrics log, distribution panels (predicted vs observed
//! expression), 2-D density panels (flow expansion), grouped bars, 2-D
//! molecule depictions, and inline display in evcxr notebooks ([`Inline`]).
//!
//! Every writer draws into a temp file beside the output and renames it, so a
//! failed drawing never leaves a half-written picture.
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
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

/// Drawing errors as strings (plotters' error types are generic over the backend).
type DrawResult = std::result::Result<(), String>;

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A picture that can be drawn on any plotters backend.
pub trait Figure {
    /// Size in pixels (width, height).
    fn size(&self) -> (u32, u32);
    /// Draw on `root` (already filled white). `text`: a font is available.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> DrawResult
    where
        DB::ErrorType: 'static;
}

/// Output format chosen from the extension of `out` (`.png` or `.svg`).
fn output_ext(out: &Path) -> Result<String> {
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
    Ok(ext)
}

fn render<DB: DrawingBackend, F: Figure>(root: DrawingArea<DB, Shift>, fig: &F) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let text = ensure_font();
    root.fill(&WHITE).map_err(e2s)?;
    fig.draw(&root, text)?;
    root.present().map_err(e2s)
}

/// Write `fig` to `out` (PNG or SVG by extension) through a temp file and a rename.
pub fn save_figure<F: Figure>(fig: &F, out: &Path) -> Result<()> {
    let ext = output_ext(out)?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(DatasetsError::RunDir(format!(
            "{}: output directory {} does not exist",
            out.display(),
            dir.display()
        )));
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // the temp name keeps the extension, which selects the image encoder
    let tmp = dir.join(format!(".{stem}.tmp{}.{ext}", std::process::id()));
    let size = fig.size();
    let drawn = if ext == "svg" {
        render(SVGBackend::new(&tmp, size).into_drawing_area(), fig)
    } else {
        render(BitMapBackend::new(&tmp, size).into_drawing_area(), fig)
    };
    let done = drawn
        .map_err(|e| DatasetsError::RunDir(format!("{}: drawing failed: {e}", out.display())))
        .and_then(|()| {
            std::fs::rename(&tmp, out).map_err(|source| DatasetsError::Io {
                path: out.to_path_buf(),
                source,
            })
        });
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// Series colours: blue, orange, grey, green, red, purple, brown.
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(127, 127, 127),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    (lo <= hi).then_some((lo, hi))
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let pad = ((hi - lo).abs() * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

fn title_area<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    text: bool,
) -> std::result::Result<DrawingArea<DB, Shift>, String>
where
    DB::ErrorType: 'static,
{
    if text && !title.is_empty() {
        root.titled(title, ("sans-serif", 22)).map_err(e2s)
    } else {
        Ok(root.clone())
    }
}

// ---------------------------------------------------------------- curves

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

struct Curves<'a> {
    series: &'a [(String, Vec<(f64, f64)>)],
    title: &'a str,
}

impl Figure for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        (900, 260 * self.series.len() as u32 + 40)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let root = title_area(root, self.title, text)?;
        let panels = root.split_evenly((self.series.len(), 1));
        for (panel, (name, pts)) in panels.iter().zip(self.series) {
            let (x0, x1) = finite_range(pts.iter().map(|p| p.0)).unwrap_or((0.0, 1.0));
            let (y0, y1) = finite_range(pts.iter().map(|p| p.1)).unwrap_or((0.0, 1.0));
            let (y0, y1) = padded(y0, y1);
            let mut chart = ChartBuilder::on(panel);
            chart
                .margin(12)
                .x_label_area_size(if text { 30 } else { 0 })
                .y_label_area_size(if text { 70 } else { 0 });
            if text {
                chart.caption(name, ("sans-serif", 16));
            }
            let mut chart = chart
                .build_cartesian_2d(x0..x1.max(x0 + 1.0), y0..y1)
                .map_err(e2s)?;
            if text {
                chart
                    .configure_mesh()
                    .x_desc("step")
                    .light_line_style(WHITE.mix(0.0))
                    .draw()
                    .map_err(e2s)?;
            }
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), &BLUE))
                .map_err(e2s)?;
        }
        Ok(())
    }
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
    output_ext(out)?;
    save_figure(
        &Curves {
            series: &series,
            title,
        },
        out,
    )
}

// ---------------------------------------------------------- distributions

/// One panel of overlaid histograms (e.g. one gene: control, observed,
/// predicted). Each series is normalised to unit area, so groups of different
/// sizes compare; bins are shared within the panel.
#[derive(Debug, Clone, PartialEq)]
pub struct DistributionPanel {
    pub title: String,
    /// (label, values); colours follow [`PALETTE`] by position.
    pub series: Vec<(String, Vec<f64>)>,
}

/// Bin edges and densities of `values` over `[lo, hi]` with `bins` bins.
pub fn histogram_density(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let bins = bins.max(1);
    let w = (hi - lo) / bins as f64;
    let mut h = vec![0.0; bins];
    let mut n = 0usize;
    for &v in values.iter().filter(|v| v.is_finite()) {
        if w <= 0.0 {
            h[0] += 1.0;
        } else {
            let b = (((v - lo) / w).floor().max(0.0) as usize).min(bins - 1);
            h[b] += 1.0;
        }
        n += 1;
    }
    if n > 0 {
        let width = if w > 0.0 { w } else { 1.0 };
        for x in &mut h {
            *x /= n as f64 * width;
        }
    }
    h
}

/// A grid of [`DistributionPanel`]s (up to `cols` per row).
pub struct Distributions<'a> {
    pub panels: &'a [DistributionPanel],
    pub title: &'a str,
    /// Label of the value axis (e.g. "log1p(counts)").
    pub x_desc: &'a str,
    pub cols: usize,
    pub bins: usize,
}

/// `(rows, cols)` of a grid of `n` panels, at most `cols` per row.
fn grid_shape(n: usize, cols: usize) -> (usize, usize) {
    let cols = cols.clamp(1, n.max(1));
    (n.div_ceil(cols).max(1), cols)
}

impl Distributions<'_> {
    fn grid(&self) -> (usize, usize) {
        grid_shape(self.panels.len(), self.cols)
    }
}

impl Figure for Distributions<'_> {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = self.grid();
        (340 * cols as u32, 280 * rows as u32 + 40)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let root = title_area(root, self.title, text)?;
        let areas = root.split_evenly(self.grid());
        for (idx, (area, panel)) in areas.iter().zip(self.panels).enumerate() {
            // one legend (first panel): the series are the same in every panel
            let legend = text && idx == 0;
            let Some((lo, hi)) =
                finite_range(panel.series.iter().flat_map(|(_, v)| v.iter().copied()))
            else {
                continue;
            };
            let hi = if hi > lo { hi } else { lo + 1.0 };
            let bins = self.bins.max(2);
            let w = (hi - lo) / bins as f64;
            let dens: Vec<Vec<f64>> = panel
                .series
                .iter()
                .map(|(_, v)| histogram_density(v, lo, hi, bins))
                .collect();
            let ymax = dens
                .iter()
                .flatten()
                .copied()
                .fold(0.0, f64::max)
                .max(1e-12)
                * 1.08;
            let mut chart = ChartBuilder::on(area);
            chart
                .margin(8)
                .x_label_area_size(if text { 28 } else { 0 })
                .y_label_area_size(if text { 48 } else { 0 });
            if text {
                chart.caption(&panel.title, ("sans-serif", 15));
            }
            let mut chart = chart.build_cartesian_2d(lo..hi, 0.0..ymax).map_err(e2s)?;
            if text {
                chart
                    .configure_mesh()
                    .x_desc(self.x_desc)
                    .y_desc("density")
                    .x_labels(5)
                    .y_labels(4)
                    .light_line_style(WHITE.mix(0.0))
                    .label_style(("sans-serif", 11))
                    .draw()
                    .map_err(e2s)?;
            }
            for (k, ((label, _), d)) in panel.series.iter().zip(&dens).enumerate() {
                let c = PALETTE[k % PALETTE.len()];
                chart
                    .draw_series(
                        d.iter()
                            .enumerate()
                            .filter(|(_, &h)| h > 0.0)
                            .map(|(b, &h)| {
                                let x0 = lo + b as f64 * w;
                                Rectangle::new([(x0, 0.0), (x0 + w, h)], c.mix(0.22).filled())
                            }),
                    )
                    .map_err(e2s)?;
                // outline as a step line
                let mut steps = Vec::with_capacity(2 * bins + 2);
                steps.push((lo, 0.0));
                for (b, &h) in d.iter().enumerate() {
                    steps.push((lo + b as f64 * w, h));
                    steps.push((lo + (b + 1) as f64 * w, h));
                }
                steps.push((hi, 0.0));
                let s = chart
                    .draw_series(LineSeries::new(steps, c.stroke_width(2)))
                    .map_err(e2s)?;
                if legend {
                    s.label(label.as_str()).legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled())
                    });
                }
            }
            if legend {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK.mix(0.3))
                    .label_font(("sans-serif", 11))
                    .draw()
                    .map_err(e2s)?;
            }
        }
        Ok(())
    }
}

/// Grid of overlaid histograms, e.g. predicted vs observed expression per gene.
pub fn plot_distributions(
    panels: &[DistributionPanel],
    title: &str,
    x_desc: &str,
    out: &Path,
) -> Result<()> {
    if panels.is_empty()
        || panels
            .iter()
            .all(|p| p.series.iter().all(|s| s.1.is_empty()))
    {
        return Err(DatasetsError::RunDir(format!(
            "{}: no values to plot",
            out.display()
        )));
    }
    save_figure(
        &Distributions {
            panels,
            title,
            x_desc,
            cols: 3,
            bins: 30,
        },
        out,
    )
}

// ------------------------------------------------------------- 2-D density

/// One panel of 2-D points drawn as a log-scaled 2-D histogram over the
/// square `[-extent, extent]²`.
pub struct DensityPanel<'a> {
    pub title: String,
    /// Points (x, y).
    pub points: &'a [(f64, f64)],
}

/// Side-by-side 2-D densities (e.g. data | before | after) with an optional
/// region (shaded light green where `inside(x, y)`).
pub struct Densities<'a> {
    pub panels: &'a [DensityPanel<'a>],
    pub title: &'a str,
    pub extent: f64,
    pub inside: Option<&'a dyn Fn(f64, f64) -> bool>,
    pub bins: usize,
}

impl Figure for Densities<'_> {
    fn size(&self) -> (u32, u32) {
        (380 * self.panels.len().max(1) as u32, 430)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let root = title_area(root, self.title, text)?;
        let areas = root.split_evenly((1, self.panels.len().max(1)));
        let e = self.extent;
        let n = self.bins.max(2);
        let cw = 2.0 * e / n as f64;
        for (area, panel) in areas.iter().zip(self.panels) {
            let mut h = vec![0f64; n * n];
            for &(x, y) in panel.points {
                let (fx, fy) = ((x + e) / cw, (y + e) / cw);
                if fx >= 0.0 && fy >= 0.0 && (fx as usize) < n && (fy as usize) < n {
                    h[fy as usize * n + fx as usize] += 1.0;
                }
            }
            let max = h.iter().copied().fold(0.0, f64::max);
            let mut chart = ChartBuilder::on(area);
            chart
                .margin(8)
                .x_label_area_size(if text { 24 } else { 0 })
                .y_label_area_size(if text { 32 } else { 0 });
            if text {
                chart.caption(&panel.title, ("sans-serif", 15));
            }
            let mut chart = chart.build_cartesian_2d(-e..e, -e..e).map_err(e2s)?;
            if text {
                chart
                    .configure_mesh()
                    .disable_mesh()
                    .x_labels(5)
                    .y_labels(5)
                    .label_style(("sans-serif", 11))
                    .draw()
                    .map_err(e2s)?;
            }
            let cells = (0..n).flat_map(|j| (0..n).map(move |i| (i, j)));
            chart
                .draw_series(cells.filter_map(|(i, j)| {
                    let (x0, y0) = (-e + i as f64 * cw, -e + j as f64 * cw);
                    let c = h[j * n + i];
                    let valid = self
                        .inside
                        .map(|f| f(x0 + cw / 2.0, y0 + cw / 2.0))
                        .unwrap_or(true);
                    let color = if c > 0.0 {
                        let f = ((1.0 + c).ln() / (1.0 + max).ln()).clamp(0.0, 1.0);
                        let g = (230.0 * (1.0 - f)) as u8;
                        if valid {
                            RGBColor(g, g, 255 - (110.0 * f) as u8)
                        } else {
                            RGBColor(255 - (60.0 * f) as u8, g / 2, g / 2)
                        }
                    } else if self.inside.is_some() && valid {
                        RGBColor(222, 238, 222)
                    } else {
                        return None;
                    };
                    Some(Rectangle::new(
                        [(x0, y0), (x0 + cw, y0 + cw)],
                        color.filled(),
                    ))
                }))
                .map_err(e2s)?;
        }
        Ok(())
    }
}

/// Write side-by-side 2-D densities (PNG or SVG).
pub fn plot_densities(
    panels: &[DensityPanel<'_>],
    title: &str,
    extent: f64,
    inside: Option<&dyn Fn(f64, f64) -> bool>,
    out: &Path,
) -> Result<()> {
    if panels.is_empty() {
        return Err(DatasetsError::RunDir(format!(
            "{}: no panels to plot",
            out.display()
        )));
    }
    if !(extent.is_finite() && extent > 0.0) {
        return Err(DatasetsError::RunDir(format!(
            "{}: extent must be positive, got {extent}",
            out.display()
        )));
    }
    save_figure(
        &Densities {
            panels,
            title,
            extent,
            inside,
            bins: 80,
        },
        out,
    )
}

// ------------------------------------------------------------------ bars

/// Grouped bars: one panel per metric; in each, one group per run and one bar
/// per series (e.g. before / after).
pub struct Bars<'a> {
    pub title: &'a str,
    /// Metric names (one panel each).
    pub metrics: &'a [String],
    /// Group names (e.g. run directories).
    pub groups: &'a [String],
    /// Series names (e.g. "before", "after").
    pub series: &'a [String],
    /// `values[metric][group][series]`.
    pub values: &'a [Vec<Vec<f64>>],
}

impl Figure for Bars<'_> {
    fn size(&self) -> (u32, u32) {
        let w = (140 + 90 * self.groups.len() as u32).max(300);
        (w * self.metrics.len().max(1) as u32, 380)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let root = title_area(root, self.title, text)?;
        let areas = root.split_evenly((1, self.metrics.len().max(1)));
        let ns = self.series.len().max(1);
        for (idx, ((area, metric), vals)) in
            areas.iter().zip(self.metrics).zip(self.values).enumerate()
        {
            let legend = text && idx == 0;
            let ymax = vals
                .iter()
                .flatten()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max)
                .max(1e-12)
                * 1.3;
            let ng = self.groups.len().max(1);
            let mut chart = ChartBuilder::on(area);
            chart
                .margin(10)
                .x_label_area_size(if text { 40 } else { 0 })
                .y_label_area_size(if text { 48 } else { 0 });
            if text {
                chart.caption(metric, ("sans-serif", 16));
            }
            let mut chart = chart
                .build_cartesian_2d(0.0..ng as f64, 0.0..ymax)
                .map_err(e2s)?;
            if text {
                let groups = self.groups;
                chart
                    .configure_mesh()
                    .disable_x_mesh()
                    .x_labels(ng * 2 + 1)
                    .x_label_formatter(&|x: &f64| {
                        let g = x - 0.5;
                        let i = g.round();
                        if (g - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < groups.len() {
                            groups[i as usize].clone()
                        } else {
                            String::new()
                        }
                    })
                    .label_style(("sans-serif", 11))
                    .light_line_style(WHITE.mix(0.0))
                    .draw()
                    .map_err(e2s)?;
            }
            let bw = 0.8 / ns as f64;
            for (s, name) in self.series.iter().enumerate() {
                let c = PALETTE[s % PALETTE.len()];
                let drawn = chart
                    .draw_series(vals.iter().enumerate().filter_map(|(g, row)| {
                        let v = *row.get(s)?;
                        v.is_finite().then(|| {
                            let x0 = g as f64 + 0.1 + s as f64 * bw;
                            Rectangle::new([(x0, 0.0), (x0 + bw * 0.92, v)], c.filled())
                        })
                    }))
                    .map_err(e2s)?;
                if legend {
                    drawn.label(name.as_str()).legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled())
                    });
                }
            }
            if legend {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK.mix(0.3))
                    .label_font(("sans-serif", 11))
                    .draw()
                    .map_err(e2s)?;
            }
        }
        Ok(())
    }
}

// -------------------------------------------------------------- molecules

/// CPK-like colours by atomic number (H white-grey, C dark grey, N blue, O red, F/Cl green, S yellow).
fn element_color(z: u8) -> RGBColor {
    match z {
        1 => RGBColor(200, 200, 200),
        6 => RGBColor(60, 60, 60),
        7 => RGBColor(48, 80, 248),
        8 => RGBColor(230, 30, 30),
        9 | 17 => RGBColor(40, 190, 40),
        15 => RGBColor(255, 128, 0),
        16 => RGBColor(220, 200, 40),
        _ => RGBColor(180, 80, 180),
    }
}

/// 2-D coordinates of a molecule: its positions projected on their two
/// principal axes (largest spread first), centred.
pub fn project_2d(m: &molecules::Molecule) -> Vec<(f64, f64)> {
    let n = m.n_atoms();
    if n == 0 {
        return Vec::new();
    }
    let p = &m.positions;
    let mean: Vec<f64> = (0..3)
        .map(|k| (0..n).map(|i| p[[i, k]]).sum::<f64>() / n as f64)
        .collect();
    let mut cov = [[0.0f64; 3]; 3];
    for i in 0..n {
        for a in 0..3 {
            for b in 0..3 {
                cov[a][b] += (p[[i, a]] - mean[a]) * (p[[i, b]] - mean[b]);
            }
        }
    }
    // principal axes by power iteration with deflation (3 × 3, symmetric)
    let mut axes: Vec<[f64; 3]> = Vec::new();
    for start in [[1.0, 0.3, 0.1], [0.2, 1.0, 0.4]] {
        let mut v: [f64; 3] = start;
        for _ in 0..200 {
            let mut w = [0.0; 3];
            for a in 0..3 {
                for b in 0..3 {
                    w[a] += cov[a][b] * v[b];
                }
            }
            for u in &axes {
                let d: f64 = (0..3).map(|k| w[k] * u[k]).sum();
                for k in 0..3 {
                    w[k] -= d * u[k];
                }
            }
            let norm = (w.iter().map(|x| x * x).sum::<f64>()).sqrt();
            if norm < 1e-12 {
                // degenerate (e.g. linear or single atom): any orthogonal axis
                let mut u = if axes.is_empty() {
                    [1.0, 0.0, 0.0]
                } else {
                    [0.0, 1.0, 0.0]
                };
                for a in &axes {
                    let d: f64 = (0..3).map(|k| u[k] * a[k]).sum();
                    for k in 0..3 {
                        u[k] -= d * a[k];
                    }
                }
                let nu = (u.iter().map(|x| x * x).sum::<f64>()).sqrt().max(1e-12);
                v = [u[0] / nu, u[1] / nu, u[2] / nu];
                break;
            }
            v = [w[0] / norm, w[1] / norm, w[2] / norm];
        }
        axes.push(v);
    }
    (0..n)
        .map(|i| {
            let c: Vec<f64> = (0..3).map(|k| p[[i, k]] - mean[k]).collect();
            let x = (0..3).map(|k| c[k] * axes[0][k]).sum();
            let y = (0..3).map(|k| c[k] * axes[1][k]).sum();
            (x, y)
        })
        .collect()
}

/// A grid of 2-D molecule depictions (principal-axis projections): atoms as
/// coloured discs labelled with their element (heavy atoms), bonds as lines
/// (double bonds drawn twice).
pub struct MoleculeGrid<'a> {
    pub molecules: &'a [molecules::Molecule],
    /// One caption per molecule (may be shorter than `molecules`).
    pub captions: &'a [String],
    pub title: &'a str,
    pub cols: usize,
}

impl MoleculeGrid<'_> {
    fn grid(&self) -> (usize, usize) {
        grid_shape(self.molecules.len(), self.cols)
    }
}

impl Figure for MoleculeGrid<'_> {
    fn size(&self) -> (u32, u32) {
        let (r, c) = self.grid();
        (260 * c as u32, 260 * r as u32 + 40)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let root = title_area(root, self.title, text)?;
        let areas = root.split_evenly(self.grid());
        for (k, (area, m)) in areas.iter().zip(self.molecules).enumerate() {
            let xy = project_2d(m);
            let r = xy
                .iter()
                .map(|(x, y)| x.abs().max(y.abs()))
                .fold(1.0f64, f64::max)
                + 0.8;
            let mut chart = ChartBuilder::on(area);
            chart.margin(6);
            if text {
                if let Some(c) = self.captions.get(k) {
                    chart.caption(c, ("sans-serif", 13));
                }
            }
            let mut chart = chart.build_cartesian_2d(-r..r, -r..r).map_err(e2s)?;
            let perp = |a: (f64, f64), b: (f64, f64), off: f64| {
                let (dx, dy) = (b.0 - a.0, b.1 - a.1);
                let l = (dx * dx + dy * dy).sqrt().max(1e-9);
                (-dy / l * off, dx / l * off)
            };
            for (a, b, order, _) in m.bond_list() {
                let (pa, pb) = (xy[a], xy[b]);
                let offsets: &[f64] = match order {
                    molecules::BondOrder::Single => &[0.0],
                    molecules::BondOrder::Double | molecules::BondOrder::Aromatic => &[-0.07, 0.07],
                    molecules::BondOrder::Triple => &[-0.1, 0.0, 0.1],
                };
                for &o in offsets {
                    let (ox, oy) = perp(pa, pb, o * r / 3.0);
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(pa.0 + ox, pa.1 + oy), (pb.0 + ox, pb.1 + oy)],
                            BLACK.mix(0.7).stroke_width(2),
                        )))
                        .map_err(e2s)?;
                }
            }
            for (i, &(x, y)) in xy.iter().enumerate() {
                let z = m.elements[i].z();
                let size = if z == 1 { 4 } else { 8 };
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (x, y),
                        size,
                        element_color(z).filled(),
                    )))
                    .map_err(e2s)?;
                if text && z != 1 && z != 6 {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            m.elements[i].symbol().to_string(),
                            (x, y),
                            ("sans-serif", 11).into_font().color(&WHITE),
                        )))
                        .map_err(e2s)?;
                }
            }
        }
        Ok(())
    }
}

/// Write a grid of 2-D molecule depictions (PNG or SVG).
pub fn plot_molecules(
    mols: &[molecules::Molecule],
    captions: &[String],
    title: &str,
    out: &Path,
) -> Result<()> {
    if mols.is_empty() {
        return Err(DatasetsError::RunDir(format!(
            "{}: no molecules to draw",
            out.display()
        )));
    }
    save_figure(
        &MoleculeGrid {
            molecules: mols,
            captions,
            title,
            cols: 4,
        },
        out,
    )
}

// ------------------------------------------------------------------ graphs

/// A directed graph on a circle: nodes coloured by group (e.g. gene module;
/// grey = none), edges as lines from source to target with an arrow head,
/// red for positive and blue for negative weights, width by |weight|.
pub struct GraphFigure<'a> {
    pub title: &'a str,
    pub nodes: &'a [String],
    pub groups: &'a [Option<usize>],
    /// (source, target, weight).
    pub edges: &'a [(usize, usize, f64)],
}

impl Figure for GraphFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (640, 680)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, text: bool) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let root = title_area(root, self.title, text)?;
        let n = self.nodes.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(20)
            .build_cartesian_2d(-1.25..1.25, -1.25..1.25)
            .map_err(e2s)?;
        let pos: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let a =
                    std::f64::consts::FRAC_PI_2 - 2.0 * std::f64::consts::PI * i as f64 / n as f64;
                (a.cos(), a.sin())
            })
            .collect();
        let wmax = self
            .edges
            .iter()
            .map(|e| e.2.abs())
            .filter(|w| w.is_finite())
            .fold(0.0, f64::max)
            .max(1e-12);
        for &(a, b, w) in self.edges {
            if a >= n || b >= n || a == b || !w.is_finite() {
                continue;
            }
            let c = if w >= 0.0 { PALETTE[4] } else { PALETTE[0] };
            let width = 1 + (3.0 * w.abs() / wmax).round() as u32;
            let (p, q) = (pos[a], pos[b]);
            // stop short of the target node and draw an arrow head there
            let (dx, dy) = (q.0 - p.0, q.1 - p.1);
            let l = (dx * dx + dy * dy).sqrt().max(1e-9);
            let (ux, uy) = (dx / l, dy / l);
            let tip = (q.0 - 0.07 * ux, q.1 - 0.07 * uy);
            let base = (tip.0 - 0.07 * ux, tip.1 - 0.07 * uy);
            let wing = (-uy * 0.035, ux * 0.035);
            let style = c.mix(0.75);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![p, tip],
                    style.stroke_width(width),
                )))
                .map_err(e2s)?;
            chart
                .draw_series(std::iter::once(Polygon::new(
                    vec![
                        tip,
                        (base.0 + wing.0, base.1 + wing.1),
                        (base.0 - wing.0, base.1 - wing.1),
                    ],
                    style.filled(),
                )))
                .map_err(e2s)?;
        }
        for (i, &(x, y)) in pos.iter().enumerate() {
            let c = match self.groups.get(i).copied().flatten() {
                Some(g) => PALETTE[[3, 1, 5, 6, 0, 4][g % 6]],
                None => RGBColor(190, 190, 190),
            };
            chart
                .draw_series(std::iter::once(Circle::new((x, y), 9, c.filled())))
                .map_err(e2s)?;
            if text {
                if let Some(name) = self.nodes.get(i) {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            name.clone(),
                            (x * 1.13 - 0.04, y * 1.13 + 0.03),
                            ("sans-serif", 12),
                        )))
                        .map_err(e2s)?;
                }
            }
        }
        Ok(())
    }
}

/// Write a circular directed-graph picture (PNG or SVG).
pub fn plot_graph(
    nodes: &[String],
    groups: &[Option<usize>],
    edges: &[(usize, usize, f64)],
    title: &str,
    out: &Path,
) -> Result<()> {
    if nodes.is_empty() {
        return Err(DatasetsError::RunDir(format!(
            "{}: no nodes to draw",
            out.display()
        )));
    }
    save_figure(
        &GraphFigure {
            title,
            nodes,
            groups,
            edges,
        },
        out,
    )
}

// ------------------------------------------------------------- notebooks

/// A picture to show inline in an evcxr Jupyter notebook: evaluate an
/// `Inline` as the last expression of a cell (evcxr calls `evcxr_display`).
#[derive(Debug, Clone, PartialEq)]
pub struct Inline {
    pub mime: &'static str,
    pub data: Vec<u8>,
}

impl Inline {
    /// Read a `.png` or `.svg` file.
    pub fn file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mime = match output_ext(path)?.as_str() {
            "svg" => "image/svg+xml",
            _ => "image/png",
        };
        let data = std::fs::read(path).map_err(|source| DatasetsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Inline { mime, data })
    }

    /// The text evcxr reads from stdout: PNG as base64, SVG as text.
    pub fn evcxr_text(&self) -> String {
        let body = if self.mime == "image/png" {
            base64(&self.data)
        } else {
            String::from_utf8_lossy(&self.data).into_owned()
        };
        format!(
            "EVCXR_BEGIN_CONTENT {}\n{}\nEVCXR_END_CONTENT",
            self.mime, body
        )
    }

    /// Called by evcxr to display the value.
    pub fn evcxr_display(&self) {
        println!("{}", self.evcxr_text());
    }
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[((v >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

    fn files(dir: &Path) -> anyhow::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        Ok(names)
    }

    #[test]
    fn histogram_density_integrates_to_one() {
        let v: Vec<f64> = (0..100).map(|i| i as f64 / 10.0).collect();
        let h = histogram_density(&v, 0.0, 9.9, 11);
        let w = 9.9 / 11.0;
        let area: f64 = h.iter().map(|x| x * w).sum();
        assert!((area - 1.0).abs() < 1e-9, "{area}");
        // constant data: everything in one bin, no NaN
        let h = histogram_density(&[2.0, 2.0], 2.0, 2.0, 4);
        assert!(h.iter().all(|x| x.is_finite()));
        assert_eq!(h.iter().filter(|&&x| x > 0.0).count(), 1);
    }

    #[test]
    fn distributions_densities_bars_and_molecules_draw() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let panels: Vec<DistributionPanel> = (0..4)
            .map(|g| DistributionPanel {
                title: format!("gene{g}"),
                series: vec![
                    (
                        "observed".into(),
                        (0..200).map(|i| (i % 17) as f64 + g as f64).collect(),
                    ),
                    (
                        "predicted".into(),
                        (0..150).map(|i| (i % 13) as f64).collect(),
                    ),
                ],
            })
            .collect();
        let pts: Vec<(f64, f64)> = (0..500)
            .map(|i| {
                let t = i as f64 * 0.05;
                (1.7 * t.cos(), 1.7 * t.sin())
            })
            .collect();
        let inside = |x: f64, y: f64| (x * x + y * y).sqrt() > 1.5;
        let mol = molecules::Molecule::new(
            vec![
                molecules::Element(6),
                molecules::Element(8),
                molecules::Element(1),
            ],
            ndarray::array![[0.0, 0.0, 0.0], [1.2, 0.0, 0.1], [-0.5, 0.9, 0.0]],
        )?;
        let mut mol = mol;
        mol.add_bond(0, 1, molecules::BondOrder::Double)?;
        mol.add_bond(0, 2, molecules::BondOrder::Single)?;
        for ext in ["png", "svg"] {
            let p = tmp.path().join(format!("dist.{ext}"));
            plot_distributions(&panels, "t", "log1p(counts)", &p)?;
            assert!(std::fs::metadata(&p)?.len() > 1000);
            let p = tmp.path().join(format!("dens.{ext}"));
            let dp = [
                DensityPanel {
                    title: "a".into(),
                    points: &pts,
                },
                DensityPanel {
                    title: "b".into(),
                    points: &pts[..100],
                },
            ];
            plot_densities(&dp, "ring", 2.5, Some(&inside), &p)?;
            assert!(std::fs::metadata(&p)?.len() > 1000);
            let p = tmp.path().join(format!("bars.{ext}"));
            let metrics = vec!["validity".to_string(), "coverage".to_string()];
            let groups = vec!["fe".to_string(), "actflow".to_string()];
            let series = vec!["before".to_string(), "after".to_string()];
            let values = vec![
                vec![vec![0.9, 0.95], vec![0.9, 0.97]],
                vec![vec![0.2, 0.6], vec![0.2, 0.7]],
            ];
            save_figure(
                &Bars {
                    title: "x",
                    metrics: &metrics,
                    groups: &groups,
                    series: &series,
                    values: &values,
                },
                &p,
            )?;
            assert!(std::fs::metadata(&p)?.len() > 1000);
            let p = tmp.path().join(format!("graph.{ext}"));
            let nodes: Vec<String> = (0..5).map(|i| format!("G{i}")).collect();
            let groups = [Some(0), Some(0), Some(1), None, Some(1)];
            plot_graph(
                &nodes,
                &groups,
                &[(0, 1, 1.5), (2, 4, -0.7), (3, 0, 0.2)],
                "g",
                &p,
            )?;
            assert!(std::fs::metadata(&p)?.len() > 1000);
            let p = tmp.path().join(format!("mol.{ext}"));
            plot_molecules(std::slice::from_ref(&mol), &["CO".to_string()], "m", &p)?;
            assert!(std::fs::metadata(&p)?.len() > 500);
        }
        let png = std::fs::read(tmp.path().join("dist.png"))?;
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(tmp.path().join("dens.svg"))?;
        assert!(svg.contains("<svg"), "no svg root");
        // failures leave nothing behind
        assert!(plot_distributions(&[], "t", "x", &tmp.path().join("e.png")).is_err());
        assert!(plot_densities(&[], "t", 2.5, None, &tmp.path().join("e.png")).is_err());
        let missing = tmp.path().join("no/such/dir/x.png");
        let err = plot_distributions(&panels, "t", "x", &missing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert_eq!(files(tmp.path())?.len(), 10);
        // the depiction keeps bond lengths (projection is a rotation for planar input)
        let xy = project_2d(&mol);
        let d = ((xy[0].0 - xy[1].0).powi(2) + (xy[0].1 - xy[1].1).powi(2)).sqrt();
        let d3 = (1.2f64 * 1.2 + 0.01).sqrt();
        assert!((d - d3).abs() < 0.05, "{d} vs {d3}");
        Ok(())
    }

    #[test]
    fn base64_and_inline() -> anyhow::Result<()> {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0x01]), "//4AAQ==");
        let tmp = tempfile::tempdir()?;
        let p = tmp.path().join("c.png");
        let recs: Vec<_> = (0..10)
            .map(|i| serde_json::json!({"step": i, "loss": 1.0 / (1.0 + i as f64)}))
            .collect();
        plot_curves(&recs, "t", &p)?;
        let s = Inline::file(&p)?.evcxr_text();
        assert!(
            s.starts_with("EVCXR_BEGIN_CONTENT image/png\niVBORw0KGgo"),
            "{}",
            &s[..60]
        );
        assert!(s.ends_with("\nEVCXR_END_CONTENT"));
        let err = Inline::file(tmp.path().join("missing.png"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.png"), "{err}");
        Ok(())
    }
}
