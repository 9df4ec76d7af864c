//! Heat maps of effect matrices (PNG or SVG by extension), and
//! [`plot_clipr`], which redraws one from a `cellmol clipr` output directory.
//!
//! Picture: rows = source (regulator) genes, columns = target genes, both in
//! the module leaf order; a diverging blue–white–red scale saturating at the
//! 99th percentile of the off-diagonal `|a|` (shown on a colour bar with its
//! values); black lines between modules; a title; gene names on both axes
//! when `d ≤` [`LABEL_MAX`]. Large matrices are pooled into blocks keeping the
//! entry of largest `|a|` (so strong edges stay visible): at most
//! [`PNG_CELLS_MAX`] cells per side in PNG, [`SVG_CELLS_MAX`] in SVG (every
//! cell is an SVG element). Text needs a system font
//! ([`datasets::train::plot::ensure_font`]); without one the picture is drawn
//! without text.
use std::path::{Path, PathBuf};

use ndarray::Array2;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{CliprError, Result};
use crate::modules::{gene_modules, ModuleOptions};

/// Gene names are written on the axes up to this many genes.
pub const LABEL_MAX: usize = 60;
/// Cells per side of a PNG heat map before pooling.
pub const PNG_CELLS_MAX: usize = 800;
/// Cells per side of an SVG heat map before pooling.
pub const SVG_CELLS_MAX: usize = 200;

/// Everything a heat map shows besides the matrix.
#[derive(Debug, Clone)]
pub struct HeatmapSpec<'a> {
    pub genes: &'a [String],
    /// Display order of the genes (a permutation of `0..d`).
    pub order: &'a [usize],
    /// Module of each gene (`None` = none); lines are drawn where it changes along `order`.
    pub module: &'a [Option<usize>],
    pub title: &'a str,
}

fn export_err(path: &Path, e: impl std::fmt::Display) -> CliprError {
    CliprError::Export {
        path: path.into(),
        message: e.to_string(),
    }
}

fn diverging(v: f64) -> RGBColor {
    let v = v.clamp(-1.0, 1.0);
    let fade = (255.0 * (1.0 - v.abs())).round() as u8;
    if v >= 0.0 {
        RGBColor(255, fade, fade)
    } else {
        RGBColor(fade, fade, 255)
    }
}

/// 99th percentile of the off-diagonal `|a|` (at least 1e-12).
pub fn color_scale(a: &Array2<f64>) -> f64 {
    let d = a.nrows();
    let mut v: Vec<f64> = Vec::with_capacity(d * d);
    for ((i, j), x) in a.indexed_iter() {
        if i != j && x.is_finite() {
            v.push(x.abs());
        }
    }
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64) * 0.99) as usize)
        .or(v.last())
        .copied()
        .unwrap_or(1.0)
        .max(1e-12)
}

fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 0.01 && v.abs() < 1e4 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// Draws the heat map of `a` into `path` (`.png` or `.svg`), atomically.
pub fn heatmap(path: &Path, a: &Array2<f64>, spec: &HeatmapSpec<'_>) -> Result<()> {
    let d = a.nrows();
    if d == 0 || a.ncols() != d {
        return Err(export_err(
            path,
            format!("expected a non-empty square matrix, got {:?}", a.shape()),
        ));
    }
    if spec.genes.len() != d || spec.order.len() != d || spec.module.len() != d {
        return Err(CliprError::Shape {
            context: format!("heat map {}", path.display()),
            expected: format!("{d} gene names, order entries and module labels"),
            found: format!(
                "{}, {}, {}",
                spec.genes.len(),
                spec.order.len(),
                spec.module.len()
            ),
        });
    }
    let mut seen = vec![false; d];
    for &g in spec.order {
        if g >= d || std::mem::replace(&mut seen[g], true) {
            return Err(export_err(path, "the gene order is not a permutation"));
        }
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext != "png" && ext != "svg" {
        return Err(export_err(path, "expected a .png or .svg output path"));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // the temp name keeps the extension, which selects the encoder
    let tmp = dir.join(format!(".{stem}.tmp{}.{ext}", std::process::id()));
    let longest = spec
        .genes
        .iter()
        .map(|g| g.chars().count())
        .max()
        .unwrap_or(0);
    let layout = Layout::new(
        d,
        if ext == "svg" {
            SVG_CELLS_MAX
        } else {
            PNG_CELLS_MAX
        },
        longest,
    );
    let drawn = if ext == "svg" {
        draw(
            SVGBackend::new(&tmp, layout.size).into_drawing_area(),
            a,
            spec,
            &layout,
            path,
        )
    } else {
        draw(
            BitMapBackend::new(&tmp, layout.size).into_drawing_area(),
            a,
            spec,
            &layout,
            path,
        )
    };
    let renamed = drawn.and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|source| CliprError::Io {
            path: path.into(),
            source,
        })
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// Pixel geometry of a heat map.
struct Layout {
    /// Genes per displayed cell (1 = no pooling).
    block: usize,
    /// Displayed cells per side.
    cells: usize,
    /// Pixels per displayed cell.
    cell: i32,
    text: bool,
    labels: bool,
    label_font: i32,
    /// Top-left corner of the matrix.
    x0: i32,
    y0: i32,
    size: (u32, u32),
}

impl Layout {
    fn new(d: usize, max_cells: usize, longest_name: usize) -> Self {
        let block = d.div_ceil(max_cells).max(1);
        let cells = d.div_ceil(block);
        let cell = (800 / cells).clamp(1, 24) as i32;
        let text = datasets::train::plot::ensure_font();
        let labels = text && d <= LABEL_MAX;
        let label_font = (cell - 2).clamp(7, 13);
        // room for gene names: ~0.62 em per character, at most 16 characters shown
        let label_px = if labels {
            (label_font as f64 * 0.62 * longest_name.min(16) as f64) as i32 + 8
        } else {
            0
        };
        let title_h = if text { 44 } else { 10 };
        let axis_h = if text { 26 } else { 0 };
        let x0 = 10 + axis_h + label_px;
        let y0 = title_h;
        let side = cell * cells as i32;
        let bar = if text { 110 } else { 40 };
        let width = x0 + side + 20 + bar;
        let height = y0 + side + label_px + axis_h + 12;
        Layout {
            block,
            cells,
            cell,
            text,
            labels,
            label_font,
            x0,
            y0,
            size: (width as u32, height as u32),
        }
    }
}

fn short(name: &str) -> String {
    if name.chars().count() <= 16 {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(15).collect();
        s.push('…');
        s
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    a: &Array2<f64>,
    spec: &HeatmapSpec<'_>,
    lay: &Layout,
    out: &Path,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| export_err(out, e);
    root.fill(&WHITE).map_err(err)?;
    let d = a.nrows();
    let vmax = color_scale(a);
    let ord = spec.order;
    let (b, n, cs) = (lay.block, lay.cells, lay.cell);
    // cells (pooled: the entry of largest |a| in the block)
    for r in 0..n {
        let rows = &ord[r * b..((r + 1) * b).min(d)];
        for c in 0..n {
            let cols = &ord[c * b..((c + 1) * b).min(d)];
            let mut v = 0.0f64;
            for &i in rows {
                for &j in cols {
                    let x = a[[i, j]];
                    if x.is_finite() && x.abs() > v.abs() {
                        v = x;
                    }
                }
            }
            let (x, y) = (lay.x0 + c as i32 * cs, lay.y0 + r as i32 * cs);
            root.draw(&Rectangle::new(
                [(x, y), (x + cs, y + cs)],
                diverging(v / vmax).filled(),
            ))
            .map_err(err)?;
        }
    }
    let side = cs * n as i32;
    let (x_end, y_end) = (lay.x0 + side, lay.y0 + side);
    // module boundaries
    for p in 1..d {
        if spec.module[ord[p]] != spec.module[ord[p - 1]] {
            let off = (p as f64 / b as f64 * cs as f64).round() as i32;
            let (x, y) = (lay.x0 + off, lay.y0 + off);
            root.draw(&PathElement::new(vec![(x, lay.y0), (x, y_end)], BLACK))
                .map_err(err)?;
            root.draw(&PathElement::new(vec![(lay.x0, y), (x_end, y)], BLACK))
                .map_err(err)?;
        }
    }
    root.draw(&Rectangle::new(
        [(lay.x0, lay.y0), (x_end, y_end)],
        BLACK.stroke_width(1),
    ))
    .map_err(err)?;
    // colour bar: +vmax at the top, −vmax at the bottom
    let bx = x_end + 20;
    let steps = 100;
    for s in 0..steps {
        let v = 1.0 - 2.0 * (s as f64 + 0.5) / steps as f64;
        let y = lay.y0 + (side as f64 * s as f64 / steps as f64) as i32;
        let y1 = lay.y0 + (side as f64 * (s + 1) as f64 / steps as f64) as i32;
        root.draw(&Rectangle::new(
            [(bx, y), (bx + 16, y1.max(y + 1))],
            diverging(v).filled(),
        ))
        .map_err(err)?;
    }
    root.draw(&Rectangle::new(
        [(bx, lay.y0), (bx + 16, y_end)],
        BLACK.stroke_width(1),
    ))
    .map_err(err)?;
    if !lay.text {
        return root.present().map_err(err);
    }
    let font = |size: i32| ("sans-serif", size).into_font().color(&BLACK);
    for k in 0..=4 {
        let frac = k as f64 / 4.0;
        let y = lay.y0 + (side as f64 * frac).round() as i32;
        let v = vmax * (1.0 - 2.0 * frac);
        root.draw(&PathElement::new(vec![(bx + 16, y), (bx + 20, y)], BLACK))
            .map_err(err)?;
        let label = match k {
            0 => format!("≥ {}", tick_label(v)),
            4 => format!("≤ {}", tick_label(v)),
            _ => tick_label(v),
        };
        root.draw(&Text::new(
            label,
            (bx + 23, y),
            font(11).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
    }
    root.draw(&Text::new(
        "effect",
        (bx, lay.y0 - 6),
        font(12).pos(Pos::new(HPos::Left, VPos::Bottom)),
    ))
    .map_err(err)?;
    // title and axis captions
    let (w, _) = root.dim_in_pixel();
    root.draw(&Text::new(
        spec.title.to_string(),
        (w as i32 / 2, 14),
        font(18).pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .map_err(err)?;
    let row_caption = if b > 1 {
        format!("source gene (regulator); {b} genes per cell")
    } else {
        "source gene (regulator)".to_string()
    };
    root.draw(&Text::new(
        row_caption,
        (12, lay.y0 + side / 2),
        font(13)
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .map_err(err)?;
    let (_, h) = root.dim_in_pixel();
    root.draw(&Text::new(
        "target gene",
        (lay.x0 + side / 2, h as i32 - 6),
        font(13).pos(Pos::new(HPos::Center, VPos::Bottom)),
    ))
    .map_err(err)?;
    if lay.labels {
        let lf = lay.label_font;
        for (p, &g) in ord.iter().enumerate() {
            let mid = p as i32 * cs + cs / 2;
            let name = short(&spec.genes[g]);
            root.draw(&Text::new(
                name.clone(),
                (lay.x0 - 4, lay.y0 + mid),
                font(lf).pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(err)?;
            root.draw(&Text::new(
                name,
                (lay.x0 + mid, y_end + 4),
                font(lf)
                    .transform(FontTransform::Rotate90)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(err)?;
        }
    }
    root.present().map_err(err)
}

/// Reads an effect matrix written as `effects.tsv` (header `source`, then
/// target genes; one row per source gene, same order as the header).
pub fn read_effects_tsv(path: &Path) -> Result<(Vec<String>, Array2<f64>)> {
    let text = std::fs::read_to_string(path).map_err(|source| CliprError::Io {
        path: path.into(),
        source,
    })?;
    let bad = |line: usize, message: String| CliprError::Parse {
        path: path.into(),
        line,
        message,
    };
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| bad(1, "empty file".into()))?;
    let mut cols = header.split('\t');
    if cols.next() != Some("source") {
        return Err(bad(1, "expected a header starting with `source`".into()));
    }
    let genes: Vec<String> = cols.map(str::to_string).collect();
    let d = genes.len();
    if d == 0 {
        return Err(bad(1, "no gene columns".into()));
    }
    let mut a = Array2::<f64>::zeros((d, d));
    let mut n_rows = 0usize;
    for (k, line) in lines.enumerate() {
        let ln = k + 2;
        if line.is_empty() {
            continue;
        }
        if n_rows == d {
            return Err(bad(ln, format!("more than {d} rows")));
        }
        let mut f = line.split('\t');
        let name = f.next().unwrap_or_default();
        if name != genes[n_rows] {
            return Err(bad(
                ln,
                format!(
                    "row gene {name:?}, expected {:?} (header order)",
                    genes[n_rows]
                ),
            ));
        }
        let mut n = 0usize;
        for (j, v) in f.enumerate() {
            if j >= d {
                return Err(bad(ln, format!("more than {d} values")));
            }
            a[[n_rows, j]] = v
                .trim()
                .parse::<f64>()
                .map_err(|_| bad(ln, format!("column {}: {v:?} is not a number", j + 2)))?;
            n += 1;
        }
        if n != d {
            return Err(bad(ln, format!("{n} values, expected {d}")));
        }
        n_rows += 1;
    }
    if n_rows != d {
        return Err(bad(
            text.lines().count(),
            format!("{n_rows} rows, expected {d}"),
        ));
    }
    Ok((genes, a))
}

/// Module labels and leaf order from `modules.tsv` (`gene`, `module`,
/// `leaf_order`), aligned to `genes`.
pub fn read_modules_tsv(path: &Path, genes: &[String]) -> Result<(Vec<usize>, Vec<Option<usize>>)> {
    let text = std::fs::read_to_string(path).map_err(|source| CliprError::Io {
        path: path.into(),
        source,
    })?;
    let bad = |line: usize, message: String| CliprError::Parse {
        path: path.into(),
        line,
        message,
    };
    let mut lines = text.lines();
    if lines.next() != Some("gene\tmodule\tleaf_order") {
        return Err(bad(
            1,
            "expected the header `gene\tmodule\tleaf_order`".into(),
        ));
    }
    let d = genes.len();
    let pos: std::collections::HashMap<&str, usize> = genes
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let mut order = vec![usize::MAX; d];
    let mut module = vec![None; d];
    let mut seen = vec![false; d];
    for (k, line) in lines.enumerate() {
        let ln = k + 2;
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 3 {
            return Err(bad(ln, format!("{} fields, expected 3", f.len())));
        }
        let g = *pos
            .get(f[0])
            .ok_or_else(|| bad(ln, format!("gene {:?} is not in the effect matrix", f[0])))?;
        if std::mem::replace(&mut seen[g], true) {
            return Err(bad(ln, format!("gene {:?} listed twice", f[0])));
        }
        module[g] = if f[1].is_empty() {
            None
        } else {
            Some(
                f[1].parse()
                    .map_err(|_| bad(ln, format!("module {:?} is not an integer", f[1])))?,
            )
        };
        let p: usize = f[2]
            .parse()
            .map_err(|_| bad(ln, format!("leaf_order {:?} is not an integer", f[2])))?;
        if p >= d || order[p] != usize::MAX {
            return Err(bad(ln, format!("leaf_order {p} out of range or repeated")));
        }
        order[p] = g;
    }
    if seen.iter().any(|&s| !s) {
        return Err(bad(
            text.lines().count(),
            format!("expected all {d} genes of the effect matrix"),
        ));
    }
    Ok((order, module))
}

/// Estimator result directories (holding `effects.tsv`) behind `input`: the
/// directory itself, or its sub-directories for a `cellmol clipr -o OUT`
/// directory (sorted), or the parent of an `effects.tsv` file.
pub fn result_dirs(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()]);
    }
    if input.join("effects.tsv").is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    if !input.is_dir() {
        return Err(CliprError::param(
            "input",
            format!("{}: no such file or directory", input.display()),
        ));
    }
    let mut subs: Vec<PathBuf> = std::fs::read_dir(input)
        .map_err(|source| CliprError::Io {
            path: input.into(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("effects.tsv").is_file())
        .collect();
    subs.sort();
    if subs.is_empty() {
        return Err(CliprError::param(
            "input",
            format!(
                "{}: no effects.tsv here or in a sub-directory (expected `cellmol clipr -o` output)",
                input.display()
            ),
        ));
    }
    Ok(subs)
}

/// The single estimator directory behind `input` (see [`result_dirs`]); an
/// error naming them when there are several.
pub fn resolve_result_dir(input: &Path) -> Result<PathBuf> {
    let mut dirs = result_dirs(input)?;
    if dirs.len() == 1 {
        return Ok(dirs.remove(0));
    }
    Err(CliprError::param(
        "input",
        format!(
            "{}: several estimator results ({}): give one of them",
            input.display(),
            dirs.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// The estimator named in `dir/summary.json`, else the directory name.
pub fn estimator_name(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["estimator"].as_str().map(str::to_string))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "effects".into())
}

/// Redraws the heat map of a CLIPR result into `out` (`.png` or `.svg`).
///
/// `input`: an estimator directory of `cellmol clipr -o OUT` (`OUT/published`,
/// …), `OUT` itself when it holds a single estimator, or an `effects.tsv`.
/// Uses `modules.tsv` beside it for order and modules (recomputed with the
/// default module options when absent) and `summary.json` for the title.
pub fn plot_clipr(input: &Path, out: &Path) -> Result<()> {
    let dir = resolve_result_dir(input)?;
    let effects = if input.is_file() {
        input.to_path_buf()
    } else {
        dir.join("effects.tsv")
    };
    let (genes, a) = read_effects_tsv(&effects)?;
    let modules_path = dir.join("modules.tsv");
    let (order, module) = if modules_path.is_file() {
        read_modules_tsv(&modules_path, &genes)?
    } else {
        let m = gene_modules(&a, &ModuleOptions::default())?;
        (m.leaf_order, m.module)
    };
    let estimator = dir
        .join("summary.json")
        .is_file()
        .then(|| estimator_name(&dir));
    let n_modules = module
        .iter()
        .flatten()
        .collect::<std::collections::HashSet<_>>()
        .len();
    let title = format!(
        "CLIPR effects{}: {} genes, {} modules",
        estimator.map(|e| format!(" ({e})")).unwrap_or_default(),
        genes.len(),
        n_modules
    );
    heatmap(
        out,
        &a,
        &HeatmapSpec {
            genes: &genes,
            order: &order,
            module: &module,
            title: &title,
        },
    )
}
