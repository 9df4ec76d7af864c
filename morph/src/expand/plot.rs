//! Density pictures of 2-D samples (PNG via plotters): a log-scaled 2-D
//! histogram over `[−EXTENT, EXTENT]²` with the verifier region shaded, so a
//! user sees where the flow puts mass relative to the valid set. No text is
//! drawn (no font dependency); file names say what is shown.
use std::path::Path;

use ndarray::Array2;
use plotters::prelude::*;

use super::toy::{ToyTask, EXTENT};
use super::{ExpandError, Result};

const PIX: u32 = 360;
const BINS: usize = 90;

fn hist(samples: &Array2<f64>) -> (Vec<f64>, f64) {
    let mut h = vec![0f64; BINS * BINS];
    for r in samples.rows() {
        let fx = (r[0] + EXTENT) / (2.0 * EXTENT) * BINS as f64;
        let fy = (r[1] + EXTENT) / (2.0 * EXTENT) * BINS as f64;
        if fx >= 0.0 && fy >= 0.0 && (fx as usize) < BINS && (fy as usize) < BINS {
            h[fy as usize * BINS + fx as usize] += 1.0;
        }
    }
    let max = h.iter().cloned().fold(0.0, f64::max);
    (h, max)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    task: ToyTask,
    samples: &Array2<f64>,
) -> std::result::Result<(), String> {
    area.fill(&WHITE).map_err(|e| e.to_string())?;
    let (w, hgt) = area.dim_in_pixel();
    let cell_w = w as f64 / BINS as f64;
    let cell_h = hgt as f64 / BINS as f64;
    let (h, max) = hist(samples);
    for j in 0..BINS {
        for i in 0..BINS {
            let cx = -EXTENT + (i as f64 + 0.5) / BINS as f64 * 2.0 * EXTENT;
            let cy = -EXTENT + (j as f64 + 0.5) / BINS as f64 * 2.0 * EXTENT;
            let count = h[j * BINS + i];
            let inside = task.sdf(cx, cy) <= 0.0;
            let color = if count > 0.0 {
                // log scale, dark blue = most mass; red tint outside the region
                let f = ((1.0 + count).ln() / (1.0 + max).ln()).clamp(0.0, 1.0);
                let g = (235.0 * (1.0 - f)) as u8;
                if inside {
                    RGBColor(g, g, 255 - (120.0 * f) as u8)
                } else {
                    RGBColor(255 - (80.0 * f) as u8, g / 2, g / 2)
                }
            } else if inside {
                RGBColor(225, 235, 225)
            } else {
                RGBColor(255, 255, 255)
            };
            let x0 = (i as f64 * cell_w) as i32;
            let y0 = ((BINS - 1 - j) as f64 * cell_h) as i32; // y up
            let rect = Rectangle::new(
                [
                    (x0, y0),
                    (
                        (x0 as f64 + cell_w).ceil() as i32,
                        (y0 as f64 + cell_h).ceil() as i32,
                    ),
                ],
                color.filled(),
            );
            area.draw(&rect).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Write one density picture of `samples` to `path` (PNG), atomically.
pub fn density_png(path: &Path, task: ToyTask, samples: &Array2<f64>) -> Result<()> {
    panels_png(path, task, &[samples])
}

/// Side-by-side panels (e.g. data, before, after) in one PNG, atomically.
pub fn panels_png(path: &Path, task: ToyTask, panels: &[&Array2<f64>]) -> Result<()> {
    let err = |reason: String| ExpandError::Plot {
        path: path.to_path_buf(),
        reason,
    };
    let tmp = path.with_extension("tmp.png");
    {
        let root =
            BitMapBackend::new(&tmp, (PIX * panels.len().max(1) as u32, PIX)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (a, s) in areas.iter().zip(panels) {
            let inner = a.margin(4, 4, 4, 4);
            draw_panel(&inner, task, s).map_err(err)?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|source| ExpandError::Io {
        path: path.to_path_buf(),
        source,
    })
}
