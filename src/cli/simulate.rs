//! `cellmol simulate` (filled by its issue).
use clap::Subcommand;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum SimulateCommand {}

pub fn run(cmd: SimulateCommand, _global: Global) -> anyhow::Result<()> {
    match cmd {}
}
