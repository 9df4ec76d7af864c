//! `cellmol mol` (filled by its issue).
use clap::Subcommand;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum MolCommand {}

pub fn run(cmd: MolCommand, _global: Global) -> anyhow::Result<()> {
    match cmd {}
}
