//! `cellmol lcd` (filled by its issue).
use clap::Subcommand;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum LcdCommand {}

pub fn run(cmd: LcdCommand, _global: Global) -> anyhow::Result<()> {
    match cmd {}
}
