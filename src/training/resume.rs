//! A training's state, written at every epoch end and where a signal stopped it, so that a
//! killed or stopped run continues bit for bit: the weights and Adadelta accumulators, the
//! positions of the random streams, where in the schedule it is, the losses of the epoch so
//! far and the metrics of the epochs done (`training-state.safetensors`).
//!
//! Killed at an arbitrary point, a run resumes from its last epoch end and recomputes at most
//! that one epoch; stopped by a signal, it resumes at the step after the last one it finished.

use std::collections::HashMap;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::data::DataDigest;
use crate::error::{Error, Result};
use crate::model::checkpoint;
use crate::training::EpochMetrics;

/// The file, in the run's directory.
pub const STATE_FILE: &str = "training-state.safetensors";
/// `format` of the file's metadata.
const FORMAT: &str = "supernet-training-state";
pub(crate) const VERSION: u32 = 1;

/// A ChaCha stream's position: its seed, stream and word.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    /// 32 bytes, hex.
    seed: String,
    stream: u64,
    /// A u128, in decimal (JSON numbers are not that wide).
    word_pos: String,
}

impl RngState {
    pub fn of(rng: &ChaCha12Rng) -> Self {
        RngState {
            seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    pub fn rng(&self) -> Result<ChaCha12Rng> {
        let bad = || Error::invalid("training state", "a random stream's position is corrupt");
        if self.seed.len() != 64 {
            return Err(bad());
        }
        let mut seed = [0u8; 32];
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&self.seed[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        let mut rng = ChaCha12Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos.parse().map_err(|_| bad())?);
        Ok(rng)
    }
}

/// What a fair sampler has left of its rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerState {
    pub rng: RngState,
    pub rounds: Vec<Vec<u8>>,
}

/// Everything of a training but its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    pub version: u32,
    /// The settings (`TrainConfig` as JSON): a resume with other settings is refused.
    pub config: serde_json::Value,
    /// The epochs finished.
    pub history: Vec<EpochMetrics>,
    /// The epoch to train next, or in progress (from 1).
    pub epoch: usize,
    /// Steps of `epoch` done, and their losses.
    pub step: usize,
    pub epoch_losses: Vec<f32>,
    /// The order stream at the start of `epoch`: the epoch's order is drawn from it again.
    pub order_at_epoch_start: RngState,
    pub sampler: SamplerState,
    /// Seconds spent in training steps so far.
    pub step_seconds: f64,
    /// The data trained on (absent in states written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataDigest>,
}

/// The tensors: each parameter and its two Adadelta accumulators, by state_dict name.
pub struct Tensors {
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub square_avg: Vec<Vec<f32>>,
    pub acc_delta: Vec<Vec<f32>>,
}

fn name(kind: &str, param: &str) -> String {
    format!("{kind}/{param}")
}

/// Writes `state` and `tensors` to `path`, atomically.
pub fn save(path: &Path, state: &TrainingState, tensors: &Tensors) -> Result<()> {
    let mut all = Vec::new();
    for (i, (param, shape, values)) in tensors.params.iter().enumerate() {
        all.push((name("param", param), shape.clone(), values.clone()));
        all.push((
            name("square_avg", param),
            shape.clone(),
            tensors.square_avg[i].clone(),
        ));
        all.push((
            name("acc_delta", param),
            shape.clone(),
            tensors.acc_delta[i].clone(),
        ));
    }
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        (
            "state".to_string(),
            serde_json::to_string(state).expect("the state serialises"),
        ),
    ]);
    checkpoint::write(&all, metadata, path)
}

/// Reads a state written by `save`; the tensors of `params` (state_dict names, in order).
pub fn load(path: &Path, params: &[&str]) -> Result<(TrainingState, Tensors)> {
    let (mut tensors, metadata) = checkpoint::read_tensors(path)?;
    let bad = |detail: String| Error::Format {
        path: path.to_path_buf(),
        detail,
    };
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad("not a training state of this program".into()));
    }
    let state: TrainingState = serde_json::from_str(metadata.get("state").map_or("", |s| s))
        .map_err(|e| bad(format!("the training state is corrupt: {e}")))?;
    if state.version != VERSION {
        return Err(bad(format!(
            "a training state of version {}, this program reads {VERSION}",
            state.version
        )));
    }
    let mut take = |kind: &str, param: &str| {
        tensors
            .remove(&name(kind, param))
            .ok_or_else(|| bad(format!("missing tensor {}", name(kind, param))))
    };
    let mut out = Tensors {
        params: Vec::new(),
        square_avg: Vec::new(),
        acc_delta: Vec::new(),
    };
    for param in params {
        let (shape, values) = take("param", param)?;
        out.params.push((param.to_string(), shape, values));
        out.square_avg.push(take("square_avg", param)?.1);
        out.acc_delta.push(take("acc_delta", param)?.1);
    }
    Ok((state, out))
}

#[cfg(test)]
mod tests {
    use rand::{Rng, RngCore};

    use super::*;

    /// The metrics a state holds are read back as the same numbers, to the bit: a resume
    /// rewrites the earlier metrics lines from them (serde_json's default parser may miss
    /// by an ulp; its `float_roundtrip` parser does not).
    #[test]
    fn the_metrics_of_a_state_read_back_to_the_bit() {
        let mut rng = ChaCha12Rng::seed_from_u64(7);
        let values: Vec<f64> = (0..20_000)
            .map(|i| {
                let x: f64 = rng.random();
                x * 10f64.powi(i % 9 - 4)
            })
            .collect();
        let text = serde_json::to_string(&values).expect("json");
        let back: Vec<f64> = serde_json::from_str(&text).expect("json");
        let missed = values
            .iter()
            .zip(&back)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(missed, 0, "{missed} of {} values changed", values.len());
    }

    /// The stream continues where it was, and is the one `StdRng` gives for the same seed (the
    /// trainer's streams were `StdRng`, so every earlier run keeps its draws).
    #[test]
    fn a_stream_resumes_where_it_stopped() {
        let mut rng = ChaCha12Rng::seed_from_u64(42);
        let mut std = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..37 {
            assert_eq!(rng.next_u32(), std.next_u32());
        }
        let _: f64 = rng.random();
        let saved = RngState::of(&rng);
        let text = serde_json::to_string(&saved).expect("json");
        let mut restored = serde_json::from_str::<RngState>(&text)
            .expect("json")
            .rng()
            .expect("rng");
        for _ in 0..100 {
            assert_eq!(restored.next_u64(), rng.next_u64());
        }
    }
}
