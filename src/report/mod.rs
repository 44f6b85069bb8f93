//! Results on disk: the run directory with `config.json`, `metrics.jsonl`, `metrics.csv` and
//! `model.safetensors`, each file valid whenever a run stops; and the statistics that compare
//! one-shot with stand-alone rankings.

mod conclusions;
pub mod experiment;
pub mod figures;
mod markdown;
pub mod ranking;
mod run_dir;
pub mod statistics;
pub mod summary;

/// The report's number formats, shared with the terminal tables.
pub use markdown::{interval, p_value, signed};
pub use run_dir::{clear_run, write_atomically, Existing, RunDir, Start, RUN_FILES};
