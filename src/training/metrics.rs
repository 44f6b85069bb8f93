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
