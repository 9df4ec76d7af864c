//! `cellmol data` (filled by its issue).
use clap::Subcommand;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum DataCommand {}

pub fn run(cmd: DataCommand, _global: Global) -> anyhow::Result<()> {
    match cmd {}
}
