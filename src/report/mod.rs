//! Results on disk: the run directory with `config.json`, `metrics.jsonl`, `metrics.csv` and
//! `model.safetensors`, each file valid whenever a run stops; and the statistics that compare
//! one-shot with stand-alone rankings.

pub mod ranking;
mod run_dir;

pub use run_dir::{write_atomically, RunDir};
