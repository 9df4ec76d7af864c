//! Shared by the tests that compare the fused CPU kernels with candle ops.
use std::collections::HashMap;

use lcd::rng::TensorRng;
use lcd::stage2::ScoreNet;

/// Give every parameter of `net` random values of scale 1/√fan-in (biases
/// and the zero-initialised condition paths included), so that no term of a
/// compared output or gradient is trivially zero.
pub fn randomise(net: &ScoreNet, rng: &mut TensorRng) -> anyhow::Result<()> {
    let mut map = HashMap::new();
    for name in net.params.names() {
        let t = net.params.get(&name)?;
        let fan = t.dims()[0].max(1) as f64;
        map.insert(name, (rng.normal(t.dims())? * (1.0 / fan.sqrt()))?);
    }
    net.params.assign("", &map)?;
    Ok(())
}
