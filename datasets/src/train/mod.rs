//! The training-run mechanism shared by LCD, Morph and flow expansion.
//!
//! A run directory moves through three states:
//! - *fresh*: missing or empty;
//! - *interrupted*: holds `checkpoint/` but no `COMPLETE` marker — continue it
//!   with `--resume` (bit-for-bit: weights, optimiser state, RNG state and the
//!   step are all in the checkpoint) or start over with `--force`;
//! - *finished*: holds the `COMPLETE` marker, written last — never overwritten
//!   unless the user says `--force`.
//!
//! [`StopSignal`] turns SIGTERM/SIGUSR1/SIGINT into a flag the loop polls; the
//! loop then checkpoints and returns [`crate::DatasetsError::Interrupted`],
//! which the CLI maps to [`EXIT_REQUEUE`] so batch scripts can requeue.
//! [`MetricsLog`] writes machine-readable JSON lines; [`Progress`] draws a bar on
//! a terminal and plain periodic lines in log files.
mod checkpoint;
mod metrics;
mod overlay;
pub mod plot;
mod progress;
mod rng;
mod signal;

pub use checkpoint::{Checkpoint, RunDir, RunState, COMPLETE_MARKER};
pub use metrics::{read_metrics, MetricsLog};
pub use overlay::toml_over;
pub use progress::Progress;
pub use rng::RngState;
pub use signal::StopSignal;

/// Exit code of a run that stopped on a signal after writing its checkpoint
/// (EX_TEMPFAIL). The sbatch scripts cellmol writes requeue on it.
pub const EXIT_REQUEUE: u8 = 75;
