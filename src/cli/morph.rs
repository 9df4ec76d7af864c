//! `cellmol morph` (filled by its issue).
use clap::Subcommand;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum MorphCommand {}

pub fn run(cmd: MorphCommand, _global: Global) -> anyhow::Result<()> {
    match cmd {}
}
