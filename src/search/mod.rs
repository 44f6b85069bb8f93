//! Search: rank the subnets of a trained SuperNet by their one-shot accuracy on held-out
//! images, every subnet of the space (`Exhaustive`) or the ones an evolutionary search visits
//! within a budget (`evolution`). The ranking is written as CSV and JSON.

pub mod evolution;

use std::path::Path;

use serde::Serialize;

use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::files::write_atomically;
use crate::model::{Subnet, SuperNet};
use crate::training::{evaluate_subnets, DeviceSplit, SubnetMetrics, EVAL_BATCH};
pub use evolution::{evolve, EvolutionConfig, Scored};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Exhaustive,
    Evolution(EvolutionConfig),
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Exhaustive => "exhaustive",
            Strategy::Evolution(_) => "evolution",
        }
    }
}

/// One subnet of the ranking.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranked {
    /// 1 = the best.
    pub rank: usize,
    pub subnet: String,
    /// What the subnet is, block by block: "5x5, skip, 5x5".
    pub choices: String,
    pub accuracy: f64,
    pub correct: usize,
    /// Mean cross-entropy (nats).
    pub loss: f64,
    /// Evolution: the generation that proposed it (0 = the initial population).
    pub generation: usize,
}

/// Scores subnets of `net` on `split` with `strategy`; best first, ties by order of scoring.
pub fn search<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    split: &DeviceSplit<B>,
    strategy: Strategy,
) -> Result<Vec<Ranked>> {
    let space = &net.config.space;
    let mut metrics: Vec<(Subnet, SubnetMetrics)> = Vec::new();
    let mut score = |batch: &[Subnet]| -> Result<Vec<f64>> {
        let scored = evaluate_subnets(backend, net, split, batch, EVAL_BATCH)?;
        metrics.extend(batch.iter().copied().zip(scored.iter().copied()));
        Ok(scored.iter().map(|m| m.accuracy).collect())
    };
    let ranking: Vec<Scored> = match strategy {
        Strategy::Exhaustive => {
            let subnets = space.subnets();
            let scores = score(&subnets)?;
            let mut all: Vec<Scored> = subnets
                .iter()
                .zip(scores)
                .map(|(&subnet, score)| Scored {
                    subnet,
                    score,
                    generation: 0,
                })
                .collect();
            all.sort_by(|a, b| b.score.total_cmp(&a.score));
            all
        }
        Strategy::Evolution(config) => evolve(space, config, &mut score)?,
    };
    ranking
        .iter()
        .enumerate()
        .map(|(i, scored)| {
            let (_, m) = metrics
                .iter()
                .find(|(s, _)| *s == scored.subnet)
                .ok_or_else(|| Error::invalid("search", "a ranked subnet was never evaluated"))?;
            Ok(Ranked {
                rank: i + 1,
                subnet: scored.subnet.to_string(),
                choices: space.describe(&scored.subnet),
                accuracy: m.accuracy,
                correct: m.correct,
                loss: m.loss,
                generation: scored.generation,
            })
        })
        .collect()
}

/// `ranking.csv` (one row per subnet) and `ranking.json` (the search's settings in `about`,
/// then the rows) in `dir`, each written atomically.
pub fn write_ranking(dir: &Path, about: &serde_json::Value, ranking: &[Ranked]) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    for row in ranking {
        csv.serialize(row)
            .map_err(|e| Error::invalid("search", e.to_string()))?;
    }
    let csv = csv
        .into_inner()
        .map_err(|e| Error::invalid("search", e.to_string()))?;
    write_atomically(&dir.join("ranking.csv"), &csv)?;
    let json = serde_json::json!({ "about": about, "ranking": ranking });
    let text = serde_json::to_string_pretty(&json).expect("the ranking serialises");
    write_atomically(&dir.join("ranking.json"), format!("{text}\n").as_bytes())
}
