//! An experiment's report, rebuilt from the saved results alone: `results.json` (every number),
//! `report.md` and the figures (SVG and PNG).

use std::path::Path;

use crate::error::Result;
use crate::report::summary::{summarise, Summary};
use crate::report::{figures, markdown, write_atomically};
use crate::training::experiment::{check_result, read_plan, read_result, RESULT_FILE};

pub const RESULTS_FILE: &str = "results.json";
pub const REPORT_FILE: &str = "report.md";
pub const FIGURES_DIR: &str = "figures";

/// Reads the plan and every job's result in `dir` and computes every statistic.
pub fn read(dir: &Path) -> Result<Summary> {
    let plan = read_plan(dir)?;
    let results = plan
        .jobs
        .iter()
        .map(|job| {
            let path = dir.join(job).join(RESULT_FILE);
            let result = read_result(&path)?;
            check_result(&plan, &path, &result)?;
            Ok(result)
        })
        .collect::<Result<Vec<_>>>()?;
    summarise(plan, &results)
}

/// Writes the figures, `results.json` and `report.md` of `summary` into `dir`.
pub fn write(dir: &Path, summary: &Summary) -> Result<()> {
    figures::write_all(summary, &dir.join(FIGURES_DIR))?;
    let json = serde_json::to_string_pretty(summary).expect("results serialise to JSON");
    write_atomically(&dir.join(RESULTS_FILE), format!("{json}\n").as_bytes())?;
    write_atomically(&dir.join(REPORT_FILE), markdown::render(summary).as_bytes())
}
