//! Property tests: random molecules survive SDF (V2000 and V3000, CRLF) and
//! XYZ round trips through our writer and reader.
use molecules::sdf::{parse_sdf_bytes, write_sdf_version, CtabVersion, SdfReadOptions};
use molecules::{BondOrder, BondStereo, Element, Molecule};
use ndarray::Array2;
use proptest::prelude::*;

fn molecule() -> impl Strategy<Value = Molecule> {
    (1usize..40).prop_flat_map(|n| {
        (
            prop::collection::vec(
                prop::sample::select(vec![1u8, 5, 6, 7, 8, 9, 15, 16, 17, 35, 53]),
                n,
            ),
            prop::collection::vec(-3i8..=3, n),
            prop::collection::vec(prop::sample::select(vec![0u16, 0, 0, 2, 13, 15]), n),
            prop::collection::vec(-500.0f64..500.0, 3 * n),
            prop::collection::vec((0..n, 0..n, 0u8..4, 0u8..3), 0..2 * n),
            "[A-Za-z0-9 _-]{0,30}",
            prop::collection::vec(("[a-z][a-z0-9_]{0,10}", "[ -~&&[^<>]]{1,20}"), 0..4),
        )
            .prop_map(|(els, ch, iso, pos, bonds, title, props)| {
                let n = els.len();
                let pos = Array2::from_shape_vec((n, 3), pos)
                    .expect("shape")
                    .mapv(|x| (x * 1e4).round() / 1e4);
                let mut m = Molecule::new(els.into_iter().map(Element).collect(), pos).expect("ok");
                m.charges = ch;
                m.isotopes = iso;
                m.title = title.trim_end().to_string();
                for (a, b, o, s) in bonds {
                    if a != b {
                        let o = [
                            BondOrder::Single,
                            BondOrder::Double,
                            BondOrder::Triple,
                            BondOrder::Aromatic,
                        ][o as usize];
                        let s = [BondStereo::None, BondStereo::Up, BondStereo::Down][s as usize];
                        let s = if o == BondOrder::Single {
                            s
                        } else {
                            BondStereo::None
                        };
                        let _ = m.add_bond_stereo(a, b, o, s);
                    }
                }
                let mut seen = std::collections::HashSet::new();
                for (k, v) in props {
                    if seen.insert(k.clone()) {
                        m.properties.push((k, v.trim().to_string()));
                    }
                }
                m.properties.retain(|(_, v)| !v.is_empty());
                m
            })
    })
}

fn normalise(m: &Molecule) -> Vec<(usize, usize, BondOrder, BondStereo)> {
    m.bond_list().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn sdf_round_trip(m in molecule()) {
        for v in [CtabVersion::Auto, CtabVersion::V3000] {
            let mut out = Vec::new();
            write_sdf_version(&mut out, [&m], v).expect("write");
            let text = String::from_utf8(out).expect("utf8");
            for t in [text.clone(), text.replace('\n', "\r\n")] {
                let back = parse_sdf_bytes(t.as_bytes(), "p", &SdfReadOptions::default()).expect("read").molecules;
                prop_assert_eq!(back.len(), 1);
                let b = &back[0];
                prop_assert_eq!(&b.elements, &m.elements);
                prop_assert_eq!(&b.charges, &m.charges);
                prop_assert_eq!(&b.isotopes, &m.isotopes);
                prop_assert_eq!(&b.title, &m.title);
                prop_assert_eq!(&b.properties, &m.properties);
                prop_assert_eq!(normalise(b), normalise(&m));
                prop_assert!((&b.positions - &m.positions).iter().all(|d| d.abs() < 1e-9));
            }
        }
        let mut x = Vec::new();
        molecules::write_xyz(&mut x, [&m]).expect("xyz");
        let back = molecules::xyz::parse_xyz_bytes(&x, "x").expect("xyz read");
        prop_assert_eq!(&back[0].elements, &m.elements);
        prop_assert!((&back[0].positions - &m.positions).iter().all(|d| d.abs() < 1e-6));
    }
}
