//! Small hand-built molecules (CH4, H2O, NH3, CH3OH, C2H6, HCN-like) with
//! near-equilibrium geometry, randomly rotated, for CLI tests that need an SDF
//! without the QM9 download. Shared by `morph_cli.rs` and `expand_cli.rs`.
use std::path::Path;

use molecules::{BondOrder, Element, Molecule};

type Atom = (&'static str, [f64; 3]);

fn templates() -> Vec<(Vec<Atom>, Vec<(usize, usize, BondOrder)>)> {
    let s = BondOrder::Single;
    let t = 0.629; // 1.09 Å / √3
    vec![
        (
            vec![
                ("C", [0.0, 0.0, 0.0]),
                ("H", [t, t, t]),
                ("H", [-t, -t, t]),
                ("H", [-t, t, -t]),
                ("H", [t, -t, -t]),
            ],
            vec![(0, 1, s), (0, 2, s), (0, 3, s), (0, 4, s)],
        ),
        (
            vec![
                ("O", [0.0, 0.0, 0.0]),
                ("H", [0.96, 0.0, 0.0]),
                ("H", [-0.24, 0.93, 0.0]),
            ],
            vec![(0, 1, s), (0, 2, s)],
        ),
        (
            vec![
                ("N", [0.0, 0.0, 0.0]),
                ("H", [1.01, 0.0, 0.0]),
                ("H", [-0.34, 0.95, 0.0]),
                ("H", [-0.34, -0.48, 0.82]),
            ],
            vec![(0, 1, s), (0, 2, s), (0, 3, s)],
        ),
        (
            vec![
                ("C", [0.0, 0.0, 0.0]),
                ("O", [1.43, 0.0, 0.0]),
                ("H", [1.75, 0.9, 0.0]),
                ("H", [-0.36, 1.03, 0.0]),
                ("H", [-0.36, -0.51, 0.89]),
                ("H", [-0.36, -0.51, -0.89]),
            ],
            vec![(0, 1, s), (1, 2, s), (0, 3, s), (0, 4, s), (0, 5, s)],
        ),
        (
            vec![
                ("C", [0.0, 0.0, 0.0]),
                ("C", [1.53, 0.0, 0.0]),
                ("H", [-0.36, 1.03, 0.0]),
                ("H", [-0.36, -0.51, 0.89]),
                ("H", [-0.36, -0.51, -0.89]),
                ("H", [1.89, -1.03, 0.0]),
                ("H", [1.89, 0.51, 0.89]),
                ("H", [1.89, 0.51, -0.89]),
            ],
            vec![
                (0, 1, s),
                (0, 2, s),
                (0, 3, s),
                (0, 4, s),
                (1, 5, s),
                (1, 6, s),
                (1, 7, s),
            ],
        ),
        (
            vec![
                ("C", [0.0, 0.0, 0.0]),
                ("N", [1.16, 0.0, 0.0]),
                ("H", [-1.07, 0.0, 0.0]),
            ],
            vec![(0, 1, BondOrder::Triple), (0, 2, s)],
        ),
    ]
}

/// Rotation about a random axis from a simple LCG (deterministic per index).
fn rotation(k: usize) -> [[f64; 3]; 3] {
    let a = 0.7 + 1.3 * k as f64;
    let b = 0.3 + 0.9 * k as f64;
    let (ca, sa, cb, sb) = (a.cos(), a.sin(), b.cos(), b.sin());
    // Rz(a) · Rx(b)
    [
        [ca, -sa * cb, sa * sb],
        [sa, ca * cb, -ca * sb],
        [0.0, sb, cb],
    ]
}

/// `n` molecules cycling through the templates, each rotated differently.
pub fn toy_molecules(n: usize) -> Vec<Molecule> {
    let temps = templates();
    (0..n)
        .map(|k| {
            let (atoms, bonds) = &temps[k % temps.len()];
            let r = rotation(k);
            let elements: Vec<Element> = atoms
                .iter()
                .map(|(e, _)| Element::from_symbol(e).expect("element"))
                .collect();
            let pos = ndarray::Array2::from_shape_fn((atoms.len(), 3), |(i, d)| {
                let p = atoms[i].1;
                r[d][0] * p[0] + r[d][1] * p[1] + r[d][2] * p[2]
            });
            let mut m = Molecule::new(elements, pos).expect("molecule");
            for &(i, j, o) in bonds {
                m.add_bond(i, j, o).expect("bond");
            }
            m.title = format!("toy_{k}");
            m
        })
        .collect()
}

/// Write [`toy_molecules`] to an SDF file.
pub fn write_toy_sdf(path: &Path, n: usize) {
    let mols = toy_molecules(n);
    let mut buf = Vec::new();
    molecules::write_sdf(&mut buf, mols.iter()).expect("write sdf");
    std::fs::write(path, buf).expect("write toy sdf");
}

/// A full Morph config TOML with a tiny network (the `--config` file
/// replaces the preset), `steps` optimisation steps, checkpoints every `ckpt`.
pub fn tiny_config(steps: usize, ckpt: usize) -> String {
    format!(
        "[net]\nhidden = 16\nn_layers = 2\nn_mix = 3\n\n[train]\nbatch_size = 4\nlr = 0.001\nwarmup_steps = 2\nsteps = {steps}\nema_decay = 0.9\ncheckpoint_every = {ckpt}\nval_frac = 0.1\nseed = 5\n\n[sample]\nsteps = 8\nbatch_size = 16\n"
    )
}
