//! Property tests of the network: E(3) equivariance of positions and mixture
//! means, invariance of every logit/rate, permutation equivariance, inert
//! padding and zero centre of mass.
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use morph::model::{MorphNet, NetDims, NetInput, NetOutput};
use proptest::prelude::*;

fn net(dev: &Device) -> (VarMap, MorphNet) {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, dev);
    let dims = NetDims {
        n_types: 4,
        n_charges: 3,
        n_bonds: 5,
        hidden: 16,
        n_layers: 2,
        n_mix: 3,
        coords_range: 15.0,
        agg_norm: 5.0,
        bounded_mixture: true,
    };
    (vm.clone(), MorphNet::new(dims, vb).unwrap())
}

/// Rotation from a unit quaternion built from 4 numbers.
fn rotation(q: [f64; 4]) -> [[f32; 3]; 3] {
    let n = (q.iter().map(|v| v * v).sum::<f64>()).sqrt().max(1e-6);
    let [w, x, y, z] = q.map(|v| v / n);
    [
        [
            w * w + x * x - y * y - z * z,
            2.0 * (x * y - w * z),
            2.0 * (x * z + w * y),
        ],
        [
            2.0 * (x * y + w * z),
            w * w - x * x + y * y - z * z,
            2.0 * (y * z - w * x),
        ],
        [
            2.0 * (x * z - w * y),
            2.0 * (y * z + w * x),
            w * w - x * x - y * y + z * z,
        ],
    ]
    .map(|r| r.map(|v| v as f32))
}

fn input(xs: &[f32], n: usize, n_real: usize, dev: &Device) -> NetInput {
    let b = 1;
    let mut mask = vec![0f32; n];
    mask[..n_real].iter_mut().for_each(|m| *m = 1.0);
    let a: Vec<u32> = (0..n).map(|i| (i % 4) as u32).collect();
    let c: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    let mut e = vec![0u32; n * n];
    for i in 0..n_real {
        for j in 0..n_real {
            if i != j && (i + j) % 3 == 0 {
                e[i * n + j] = ((i + j) % 5) as u32;
            }
        }
    }
    NetInput {
        x: Tensor::from_vec(xs.to_vec(), (b, n, 3), dev).unwrap(),
        a: Tensor::from_vec(a, (b, n), dev).unwrap(),
        c: Tensor::from_vec(c, (b, n), dev).unwrap(),
        e: Tensor::from_vec(e, (b, n, n), dev).unwrap(),
        mask: Tensor::from_vec(mask, (b, n), dev).unwrap(),
        t: Tensor::new(&[0.4f32], dev).unwrap(),
        cond: Tensor::new(&[0.3f32], dev).unwrap(),
        cond_on: Tensor::new(&[1f32], dev).unwrap(),
    }
}

fn v(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn invariants(o: &NetOutput) -> Vec<Vec<f32>> {
    vec![
        v(&o.type_logits),
        v(&o.charge_logits),
        v(&o.bond_logits),
        v(&o.sub_a),
        v(&o.del),
        v(&o.sub_e),
        v(&o.ins_raw),
        v(&o.mix_logits),
        v(&o.mix_logstd),
        v(&o.mix_type),
        v(&o.mix_charge),
    ]
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())))
}

fn apply(r: &[[f32; 3]; 3], shift: [f32; 3], xs: &[f32]) -> Vec<f32> {
    xs.chunks(3)
        .flat_map(|p| {
            (0..3).map(move |a| r[a][0] * p[0] + r[a][1] * p[1] + r[a][2] * p[2] + shift[a])
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn rotation_translation_equivariance(
        xs in proptest::collection::vec(-2.0f32..2.0, 18),
        q in proptest::array::uniform4(-1.0f64..1.0),
        shift in proptest::array::uniform3(-3.0f32..3.0),
    ) {
        let dev = Device::Cpu;
        let (_vm, net) = net(&dev);
        let n = 6;
        let r = rotation(q);
        let o1 = net.forward(&input(&xs, n, n, &dev)).unwrap();
        let o2 = net.forward(&input(&apply(&r, shift, &xs), n, n, &dev)).unwrap();
        // Positions come out centred: rotation acts, the translation is removed.
        let want = apply(&r, [0.0; 3], &v(&o1.x1));
        prop_assert!(close(&want, &v(&o2.x1), 1e-4), "x1 not equivariant");
        let want_mix = apply(&r, [0.0; 3], &v(&o1.mix_mean));
        prop_assert!(close(&want_mix, &v(&o2.mix_mean), 1e-4), "mixture means not equivariant");
        for (k, (a, b)) in invariants(&o1).iter().zip(invariants(&o2).iter()).enumerate() {
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            prop_assert!(close(a, b, 1e-4), "invariant output {k} changed by {worst}");
        }
        // Centre of mass stays zero.
        let x1 = v(&o1.x1);
        for d in 0..3 {
            let m: f32 = x1.chunks(3).map(|p| p[d]).sum::<f32>() / n as f32;
            prop_assert!(m.abs() < 1e-5);
        }
    }
}

#[test]
fn permutation_equivariance() {
    let dev = Device::Cpu;
    let (_vm, net) = net(&dev);
    let n = 5;
    let xs: Vec<f32> = (0..15).map(|k| ((k * 7 % 11) as f32 - 5.0) / 3.0).collect();
    let inp = input(&xs, n, n, &dev);
    let perm = [3u32, 0, 4, 1, 2];
    let p = Tensor::new(&perm, &dev).unwrap();
    let pinp = NetInput {
        x: inp.x.index_select(&p, 1).unwrap(),
        a: inp.a.index_select(&p, 1).unwrap(),
        c: inp.c.index_select(&p, 1).unwrap(),
        e: inp
            .e
            .index_select(&p, 1)
            .unwrap()
            .contiguous()
            .unwrap()
            .index_select(&p, 2)
            .unwrap(),
        mask: inp.mask.index_select(&p, 1).unwrap(),
        ..inp.clone()
    };
    let o = net.forward(&inp).unwrap();
    let po = net.forward(&pinp).unwrap();
    let chk = |a: &Tensor, b: &Tensor| {
        let a = a.contiguous().unwrap().index_select(&p, 1).unwrap();
        assert!(close(&v(&a), &v(b), 1e-4));
    };
    chk(&o.x1, &po.x1);
    chk(&o.type_logits, &po.type_logits);
    chk(&o.del, &po.del);
    chk(&o.ins_raw, &po.ins_raw);
    chk(&o.mix_mean, &po.mix_mean);
    let pair = |t: &Tensor| {
        t.contiguous()
            .unwrap()
            .index_select(&p, 1)
            .unwrap()
            .contiguous()
            .unwrap()
            .index_select(&p, 2)
            .unwrap()
    };
    assert!(close(&v(&pair(&o.bond_logits)), &v(&po.bond_logits), 1e-4));
    assert!(close(&v(&pair(&o.sub_e)), &v(&po.sub_e), 1e-4));
}

#[test]
fn padding_is_inert() {
    let dev = Device::Cpu;
    let (_vm, net) = net(&dev);
    let xs: Vec<f32> = (0..12).map(|k| ((k * 5 % 7) as f32 - 3.0) / 2.0).collect();
    let o_small = net.forward(&input(&xs, 4, 4, &dev)).unwrap();
    // Same 4 atoms plus 3 padded slots holding garbage positions.
    let mut xp = xs.clone();
    xp.extend([9.0, -7.0, 3.0, 100.0, 2.0, 1.0, -5.0, 5.0, 5.0]);
    let o_pad = net.forward(&input(&xp, 7, 4, &dev)).unwrap();
    let first = |t: &Tensor| v(&t.narrow(1, 0, 4).unwrap());
    assert!(close(&first(&o_small.x1), &first(&o_pad.x1), 1e-4));
    assert!(close(
        &first(&o_small.type_logits),
        &first(&o_pad.type_logits),
        1e-4
    ));
    assert!(close(
        &first(&o_small.ins_raw),
        &first(&o_pad.ins_raw),
        1e-4
    ));
    assert!(close(
        &first(&o_small.mix_mean),
        &first(&o_pad.mix_mean),
        1e-4
    ));
    let pair_small = v(&o_small.bond_logits);
    let pair_pad = v(&o_pad
        .bond_logits
        .narrow(1, 0, 4)
        .unwrap()
        .narrow(2, 0, 4)
        .unwrap());
    assert!(close(&pair_small, &pair_pad, 1e-4));
    // Padded positions come out as zero.
    assert!(v(&o_pad.x1.narrow(1, 4, 3).unwrap())
        .iter()
        .all(|&x| x == 0.0));
}
