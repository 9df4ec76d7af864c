//! Serialisable RNG state, so `--resume` continues the random stream exactly.
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The complete state of a ChaCha8 generator: seed, stream and word position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: [u8; 32],
    pub stream: u64,
    /// u128 word position as a decimal string (JSON numbers are f64).
    pub word_pos: String,
}

impl RngState {
    pub fn capture(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    pub fn restore(&self) -> crate::Result<ChaCha8Rng> {
        let pos: u128 = self.word_pos.parse().map_err(|_| {
            crate::DatasetsError::RunDir(format!(
                "checkpoint RNG word position `{}` is not an integer",
                self.word_pos
            ))
        })?;
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn restored_stream_continues_exactly() -> anyhow::Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let _burn: Vec<u32> = (0..17).map(|_| rng.random()).collect();
        let state = RngState::capture(&rng);
        let json = serde_json::to_string(&state)?;
        let mut back = serde_json::from_str::<RngState>(&json)?.restore()?;
        let a: Vec<u64> = (0..100).map(|_| rng.random()).collect();
        let b: Vec<u64> = (0..100).map(|_| back.random()).collect();
        assert_eq!(a, b);
        Ok(())
    }
}
