//! Criterion benches for the molecules hot paths: SDF parsing (serial and
//! rayon), EDM bond perception (small molecules, and a large one that takes
//! the spatial-grid path), stability, RDKit-free validity/class keys and the
//! full EDM metrics (`compute_metrics`, plus the all-RDKit `evaluate_all`
//! it replaces for comparison).
//!
//! Input: the first 2 000 QM9 molecules from the project venv's `qm9pack`
//! (scripts/setup.sh installs it); without it, synthetic zig-zag alkanes so
//! the benches still run. `cargo bench -p molecules --bench mol`.
use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use molecules::metrics::{compute_metrics, protocol_view, Protocol};
use molecules::sdf::{parse_sdf_bytes, SdfReadOptions};
use molecules::stability::{check_stability, ValenceTable};
use molecules::{Element, Molecule};
use ndarray::Array2;

const N_MOLS: usize = 2000;

fn qm9pack_dir() -> Option<PathBuf> {
    let lib = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/lib"));
    std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages/qm9pack"))
        .find(|p| p.is_dir())
}

/// Zig-zag alkane CnH(2n+2) with tetrahedral-ish hydrogens (C–C 1.54 Å,
/// C–H 1.09 Å); consecutive molecules differ in length.
fn alkane(n_c: usize) -> Molecule {
    let mut els = Vec::new();
    let mut pos: Vec<[f64; 3]> = Vec::new();
    for i in 0..n_c {
        let x = 1.26 * i as f64;
        let y = if i % 2 == 0 { 0.0 } else { 0.89 };
        els.push(Element::C);
        pos.push([x, y, 0.0]);
    }
    for i in 0..n_c {
        let [x, y, _] = pos[i];
        let dy = if i % 2 == 0 { -0.63 } else { 0.63 };
        for dz in [-0.89, 0.89] {
            els.push(Element::H);
            pos.push([x, y + dy, dz]);
        }
        if i == 0 || i + 1 == n_c {
            els.push(Element::H);
            pos.push([x + if i == 0 { -1.03 } else { 1.03 }, y - dy * 0.5, 0.0]);
        }
    }
    let flat: Vec<f64> = pos.iter().flatten().copied().collect();
    let p = Array2::from_shape_vec((els.len(), 3), flat).expect("shape");
    Molecule::new(els, p).expect("molecule")
}

fn inputs() -> Vec<Molecule> {
    if let Some(dir) = qm9pack_dir() {
        let cfg = molecules::qm9::Qm9Config {
            infer_bonds: true,
            limit: Some(N_MOLS),
            ..Default::default()
        };
        if let Ok(m) = molecules::qm9::import_qm9(&dir, &cfg) {
            if !m.is_empty() {
                return m;
            }
        }
    }
    eprintln!("qm9pack not found in .venv: benchmarking synthetic alkanes");
    (0..N_MOLS)
        .map(|i| {
            let mut m = alkane(1 + i % 9);
            molecules::bonds::infer_bonds(&mut m);
            m
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mols = inputs();
    let n = mols.len() as u64;
    let mut sdf = Vec::new();
    molecules::write_sdf(&mut sdf, &mols).expect("write");

    let mut g = c.benchmark_group("sdf_parse");
    g.throughput(Throughput::Elements(n));
    for parallel in [false, true] {
        let opts = SdfReadOptions {
            skip_bad: false,
            parallel,
        };
        g.bench_function(if parallel { "rayon" } else { "serial" }, |b| {
            b.iter(|| parse_sdf_bytes(black_box(&sdf), "bench", &opts).expect("parse"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("bond_perception");
    g.throughput(Throughput::Elements(n));
    g.bench_function("qm9_all_pairs", |b| {
        b.iter(|| {
            mols.iter()
                .map(|m| molecules::bonds::infer_bond_list(&m.elements, &m.positions).len())
                .sum::<usize>()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("bond_perception_large");
    for n_c in [100, 1000] {
        let big = alkane(n_c);
        g.throughput(Throughput::Elements(big.n_atoms() as u64));
        g.bench_with_input(BenchmarkId::new("grid", big.n_atoms()), &big, |b, m| {
            b.iter(|| molecules::bonds::infer_bond_list(&m.elements, &m.positions).len())
        });
    }
    g.finish();

    let views: Vec<Molecule> = mols
        .iter()
        .map(|m| protocol_view(m, Protocol::Edm))
        .collect();
    let mut g = c.benchmark_group("metrics");
    g.throughput(Throughput::Elements(n));
    g.bench_function("stability_edm", |b| {
        b.iter(|| {
            views
                .iter()
                .filter(|v| check_stability(v, ValenceTable::Edm).0)
                .count()
        })
    });
    g.bench_function("plain_validity_and_keys", |b| {
        b.iter(|| {
            mols.iter()
                .filter_map(|m| molecules::plain::evaluate_edm(&m.elements, &m.positions))
                .filter(|p| p.valid)
                .count()
        })
    });
    g.bench_function("compute_metrics_edm", |b| {
        b.iter(|| compute_metrics(black_box(&mols), Protocol::Edm, None))
    });
    #[cfg(feature = "rdkit")]
    g.bench_function("evaluate_all_rdkit_edm", |b| {
        b.iter(|| molecules::metrics::evaluate_all(black_box(&mols), Protocol::Edm).len())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
