//! `cellmol clipr` (filled by its issue).
use clap::Args;

use super::Global;

#[derive(Debug, Args)]
pub struct CliprArgs {
    /// Trained LCD model directory.
    pub model_dir: std::path::PathBuf,
}

pub fn run(args: CliprArgs, _global: Global) -> anyhow::Result<()> {
    anyhow::bail!("clipr on {}: not implemented yet", args.model_dir.display())
}
