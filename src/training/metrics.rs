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
    pub lr: f64,
    pub train_loss: f64,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    /// By subnet name ("00", "10", ...).
    pub subnets: BTreeMap<String, SubnetMetrics>,
}
