//! Stop requests from the scheduler or the user. SLURM sends SIGTERM on
//! preemption / `scontrol requeue` and (with `--signal=B:USR1@T`) SIGUSR1 a
//! while before the time limit; Ctrl-C is SIGINT. The training loop polls
//! [`StopSignal::requested`] between steps, checkpoints and stops.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::{DatasetsError, Result};

/// A flag set by SIGTERM, SIGUSR1 or SIGINT.
#[derive(Clone, Debug)]
pub struct StopSignal {
    flag: Arc<AtomicUsize>,
}

impl StopSignal {
    /// Register the handlers (process-wide; safe to call more than once).
    pub fn install() -> Result<Self> {
        let flag = Arc::new(AtomicUsize::new(0));
        for sig in [
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGUSR1,
            signal_hook::consts::SIGINT,
        ] {
            signal_hook::flag::register_usize(sig, Arc::clone(&flag), sig as usize).map_err(
                |e| DatasetsError::RunDir(format!("cannot install handler for signal {sig}: {e}")),
            )?;
        }
        Ok(StopSignal { flag })
    }

    /// A flag no signal sets (library use, tests).
    pub fn never() -> Self {
        StopSignal {
            flag: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The signal number that asked the run to stop, if any.
    pub fn requested(&self) -> Option<i32> {
        match self.flag.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s as i32),
        }
    }

    /// Ask for a stop from code (tests, step budgets).
    pub fn request(&self, sig: i32) {
        self.flag.store(sig.max(1) as usize, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigusr1_sets_the_flag() -> anyhow::Result<()> {
        let stop = StopSignal::install()?;
        assert_eq!(stop.requested(), None);
        signal_hook::low_level::raise(signal_hook::consts::SIGUSR1)?;
        assert_eq!(stop.requested(), Some(signal_hook::consts::SIGUSR1));
        Ok(())
    }
}
