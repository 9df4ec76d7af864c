//! The fused CPU kernels (`morph::fused`) against candle's own ops: values
//! and gradients, small and multi-block sizes, non-contiguous inputs, and the
//! fallback for other dtypes.
use candle_core::{DType, Device, Tensor, Var};
use morph::fused::{bias_silu, silu};

fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

fn data(rows: usize, cols: usize, seed: u64) -> Tensor {
    // values spanning the saturating ranges of σ (−12 … 12)
    let mut s = seed;
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 24.0
        })
        .collect();
    Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
}

#[test]
fn silu_matches_candle_values_and_gradients() {
    // one block and several blocks (parallel path)
    for (rows, cols) in [(7, 5), (300, 256)] {
        let x = Var::from_tensor(&data(rows, cols, 1)).unwrap();
        let w = data(rows, cols, 2);
        let ours = silu(x.as_tensor()).unwrap();
        let theirs = x.as_tensor().silu().unwrap();
        assert!(max_rel(&ours, &theirs) < 1e-6, "silu values {rows}x{cols}");
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (a, b) = (g1.get(&x).unwrap(), g2.get(&x).unwrap());
        assert!(
            max_rel(a, b) < 1e-5,
            "silu gradient {rows}x{cols}: {}",
            max_rel(a, b)
        );
    }
}

#[test]
fn bias_silu_matches_candle_values_and_gradients() {
    for (rows, cols) in [(3, 4), (513, 96)] {
        let z = Var::from_tensor(&data(rows, cols, 3)).unwrap();
        let b = Var::from_tensor(&data(1, cols, 4).squeeze(0).unwrap()).unwrap();
        let w = data(rows, cols, 5);
        let ours = bias_silu(z.as_tensor(), b.as_tensor()).unwrap();
        let theirs = z
            .as_tensor()
            .broadcast_add(b.as_tensor())
            .unwrap()
            .silu()
            .unwrap();
        assert!(max_rel(&ours, &theirs) < 1e-6, "values {rows}x{cols}");
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in [("z", &z), ("b", &b)] {
            let (a, c) = (g1.get(v).unwrap(), g2.get(v).unwrap());
            // the bias gradient sums `rows` terms in a different order
            assert!(
                max_rel(a, c) < 1e-4,
                "{name} gradient {rows}x{cols}: {}",
                max_rel(a, c)
            );
        }
    }
}

#[test]
fn non_contiguous_input_and_other_dtypes() {
    let x = data(6, 10, 7);
    let xt = x.t().unwrap(); // [10, 6], strided
    assert!(!xt.is_contiguous());
    let ours = silu(&xt).unwrap();
    assert!(max_rel(&ours, &xt.silu().unwrap()) < 1e-6);
    // f64 takes candle's path and gives the same values
    let x64 = x.to_dtype(DType::F64).unwrap();
    let y64 = silu(&x64).unwrap();
    assert_eq!(y64.dtype(), DType::F64);
    let b64 = Tensor::zeros(10, DType::F64, &Device::Cpu).unwrap();
    let yb = bias_silu(&x64, &b64).unwrap();
    let d: f64 = (y64 - yb)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(d, 0.0);
}

#[test]
fn bias_shape_mismatch_is_an_error() {
    let z = data(4, 6, 8);
    let b = Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap();
    let e = bias_silu(&z, &b).unwrap_err().to_string();
    assert!(e.contains("bias shape"), "{e}");
}

#[test]
fn gather_add_silu_matches_candle_values_and_gradients() {
    use morph::fused::{gather_add_silu, PairIndex};
    use std::sync::Arc;
    // 3 molecules' worth of atoms, pairs in (i, j) order with repeats
    let (n, h) = (11usize, 40usize);
    let mut src = Vec::new();
    let mut dst = Vec::new();
    for i in 0..n as u32 {
        for j in 0..n as u32 {
            if i != j && (i + j) % 3 != 0 {
                src.push(i);
                dst.push(j);
            }
        }
    }
    // enough pairs for several parallel blocks
    let reps = 12;
    let src: Vec<u32> = src.iter().cycle().take(src.len() * reps).cloned().collect();
    let dst: Vec<u32> = dst.iter().cycle().take(dst.len() * reps).cloned().collect();
    let p = src.len();
    let st = Tensor::from_vec(src.clone(), p, &Device::Cpu).unwrap();
    let dt = Tensor::from_vec(dst.clone(), p, &Device::Cpu).unwrap();
    let idx = PairIndex {
        src: Arc::new(src),
        dst: Arc::new(dst),
    };
    let a = Var::from_tensor(&data(p, h, 11)).unwrap();
    let s = Var::from_tensor(&(data(n, h, 12) * 0.3).unwrap()).unwrap();
    let d = Var::from_tensor(&(data(n, h, 13) * 0.3).unwrap()).unwrap();
    let w = data(p, h, 14);
    let ours =
        gather_add_silu(a.as_tensor(), s.as_tensor(), d.as_tensor(), &idx, &st, &dt).unwrap();
    let theirs = a
        .as_tensor()
        .add(&s.as_tensor().index_select(&st, 0).unwrap())
        .unwrap()
        .add(&d.as_tensor().index_select(&dt, 0).unwrap())
        .unwrap()
        .silu()
        .unwrap();
    assert!(max_rel(&ours, &theirs) < 1e-6);
    let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let g2 = (theirs * &w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, v) in [("a", &a), ("s", &s), ("d", &d)] {
        let (x, y) = (g1.get(v).unwrap(), g2.get(v).unwrap());
        assert!(max_rel(x, y) < 1e-4, "{name} gradient: {}", max_rel(x, y));
    }
    // an index out of range is an error, not a panic
    let bad = PairIndex {
        src: Arc::new(vec![n as u32; p]),
        dst: idx.dst.clone(),
    };
    let e = gather_add_silu(a.as_tensor(), s.as_tensor(), d.as_tensor(), &bad, &st, &dt)
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn gated_scatter_matches_candle_values_and_gradients() {
    use morph::fused::{gated_scatter, PairIndex};
    use std::sync::Arc;
    let (n, h) = (40usize, 64usize);
    // sorted sources (the EGNN's pair order), some atoms without pairs, and
    // an unsorted permutation of the same pairs
    let mut src: Vec<u32> = Vec::new();
    for i in 0..n as u32 {
        if i % 7 != 3 {
            src.extend(std::iter::repeat_n(i, 10 + (i as usize * 7) % 41));
        }
    }
    let mut unsorted = src.clone();
    unsorted.reverse();
    for src in [src, unsorted] {
        let p = src.len();
        assert!(p * h > 1 << 15, "large enough for the parallel path");
        let st = Tensor::from_vec(src.clone(), p, &Device::Cpu).unwrap();
        let idx = PairIndex {
            src: Arc::new(src.clone()),
            dst: Arc::new(src),
        };
        let m = Var::from_tensor(&data(p, h, 21)).unwrap();
        let gate = Var::from_tensor(&(data(p, 1, 22) * 0.05).unwrap()).unwrap();
        let w = data(n, h, 23);
        let ours = gated_scatter(m.as_tensor(), gate.as_tensor(), &idx, &st, n).unwrap();
        let theirs = Tensor::zeros((n, h), DType::F32, &Device::Cpu)
            .unwrap()
            .index_add(
                &st,
                &m.as_tensor().broadcast_mul(gate.as_tensor()).unwrap(),
                0,
            )
            .unwrap();
        assert!(
            max_rel(&ours, &theirs) < 1e-5,
            "values {}",
            max_rel(&ours, &theirs)
        );
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in [("m", &m), ("gate", &gate)] {
            let (x, y) = (g1.get(v).unwrap(), g2.get(v).unwrap());
            assert!(max_rel(x, y) < 1e-4, "{name} gradient: {}", max_rel(x, y));
        }
    }
}
