//! `cellmol expand` (filled by its issue).
use clap::Subcommand;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum ExpandCommand {}

pub fn run(cmd: ExpandCommand, _global: Global) -> anyhow::Result<()> {
    match cmd {}
}
