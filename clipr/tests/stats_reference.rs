//! The rank-sum test and the BH adjustment against SciPy reference values
//! (`tests/data/stats_reference.json`, made by `tests/data/make_stats_reference.py`).
#![allow(clippy::unwrap_used)]
use clipr::stats::{benjamini_hochberg, rank_sum_test};

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/stats_reference.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn rank_sum_matches_scipy_mannwhitneyu() {
    let r = reference();
    let cases = r["rank_sum"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let (x, y) = (floats(&c["x"]), floats(&c["y"]));
        let got = rank_sum_test(&x, &y);
        let (u, p) = (c["u"].as_f64().unwrap(), c["p"].as_f64().unwrap());
        assert_eq!(got.u, u, "{name}: U");
        let rel = (got.p - p).abs() / p;
        assert!(
            rel < 1e-9,
            "{name}: p = {} vs scipy {p} (rel {rel:e})",
            got.p
        );
        // swapping the samples keeps the two-sided p and flips z
        let sw = rank_sum_test(&y, &x);
        assert!((sw.p - got.p).abs() <= 1e-15 * got.p.max(1e-300), "{name}");
        assert!((sw.z + got.z).abs() < 1e-12, "{name}");
    }
}

#[test]
fn bh_matches_scipy_false_discovery_control() {
    let r = reference();
    let p = floats(&r["bh"]["p"]);
    let want = floats(&r["bh"]["q"]);
    let got = benjamini_hochberg(&p);
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12 * w.max(1e-300),
            "q[{k}] = {g} vs scipy {w}"
        );
    }
}
