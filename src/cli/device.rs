//! The one place where a compute device is chosen (`--device cpu|cuda:N`).
use anyhow::{bail, Context};
use candle_core::Device;

/// Parse a `--device` value and open the device. `cuda:N` fails with a clear
/// message when the binary was built without the `cuda` feature or no GPU is
/// present; it never silently falls back to the CPU.
pub fn select(spec: &str) -> anyhow::Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    if spec == "cpu" {
        static HINT: std::sync::Once = std::sync::Once::new();
        HINT.call_once(|| {
            if let Some(h) = lcd::blas::core_hint() {
                eprintln!("note: {h}");
            }
        });
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.as_str() {
        "cuda" | "gpu" => 0,
        s if s.starts_with("cuda:") => s[5..]
            .parse::<usize>()
            .with_context(|| format!("--device {spec}: expected cuda:N with N a GPU index"))?,
        _ => bail!("--device {spec}: expected `cpu` or `cuda:N`"),
    };
    if !candle_core::utils::cuda_is_available() {
        bail!("--device {spec}: this cellmol was built without the `cuda` feature (see README, CUDA build)");
    }
    Device::new_cuda(ordinal)
        .with_context(|| format!("--device {spec}: could not open CUDA device {ordinal}"))
}
