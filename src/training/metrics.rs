//! What an epoch reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Top-1 accuracy and mean loss of one subnet on an evaluation set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubnetMetrics {
    pub accuracy: f64,
    pub loss: f64,
    pub correct: usize,
}

/// One line of `metrics.jsonl`; epochs count from 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// The schedule's learning rate of the epoch (f64; the optimizer runs its f32 rounding).
    pub lr: f64,
    pub train_loss: f64,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    /// Since the training started, at the end of this epoch's evaluation.
    #[serde(default)]
    pub wall_seconds: f64,
    /// On the test set, by subnet name ("00", "10", ...).
    pub subnets: BTreeMap<String, SubnetMetrics>,
    /// On the held-out training images (`--val`), when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<BTreeMap<String, SubnetMetrics>>,
}

impl EpochMetrics {
    /// The set subnets are ranked on: the held-out images if any, else the test set (as in the
    /// original study).
    pub fn ranking(&self) -> &BTreeMap<String, SubnetMetrics> {
        self.validation.as_ref().unwrap_or(&self.subnets)
    }
}

/// How close to chance a stalled epoch's mean training loss is: within 1 % of ln(classes), the
/// loss of predicting every class alike.
pub const STALL_TOLERANCE: f64 = 0.01;

/// The epochs (from 1) whose mean training loss stayed within 1 % of the chance loss
/// ln(`classes`): a whole epoch without learning (a stall), which a report must name.
pub fn stalled_epochs(history: &[EpochMetrics], classes: usize) -> Vec<usize> {
    let chance = (classes as f64).ln();
    history
        .iter()
        .filter(|m| (m.train_loss - chance).abs() <= STALL_TOLERANCE * chance)
        .map(|m| m.epoch)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize, train_loss: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            lr: 1.0,
            train_loss,
            train_seconds: 0.0,
            eval_seconds: 0.0,
            wall_seconds: 0.0,
            subnets: BTreeMap::new(),
            validation: None,
        }
    }

    /// ln 10 = 2.3026: 2.302 and 2.29 are within 1 %, 2.2 is not.
    #[test]
    fn an_epoch_at_the_chance_loss_is_a_stall() {
        let history = [
            epoch(1, 2.302),
            epoch(2, 2.29),
            epoch(3, 2.2),
            epoch(4, 0.3),
        ];
        assert_eq!(stalled_epochs(&history, 10), [1, 2]);
    }
}
