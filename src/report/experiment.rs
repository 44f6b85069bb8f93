//! An experiment's report, rebuilt from the saved results alone: `results.json` (every number),
//! `report.md` and the figures (SVG and PNG).

use std::path::Path;

use crate::error::{Error, Result};
use crate::report::summary::{summarise, Summary};
use crate::report::{figures, markdown, write_atomically};
use crate::training::experiment::{check_result, read_plan, read_result, PLAN_FILE, RESULT_FILE};

pub const RESULTS_FILE: &str = "results.json";
pub const REPORT_FILE: &str = "report.md";
pub const FIGURES_DIR: &str = "figures";

/// Reads the plan and every job's result in `dir` and computes every statistic.
pub fn read(dir: &Path) -> Result<Summary> {
    let plan = read_plan(dir)?;
    let unfinished: Vec<String> = plan
        .jobs
        .iter()
        .filter(|job| !dir.join(job).join(RESULT_FILE).is_file())
        .map(|job| job.display().to_string())
        .collect();
    if !unfinished.is_empty() {
        let first: Vec<&str> = unfinished.iter().take(3).map(String::as_str).collect();
        return Err(Error::Format {
            path: dir.join(PLAN_FILE),
            detail: format!(
                "{} of its {} trainings are not finished ({}{}); the report needs every one: let the experiment's workers finish, or rerun `supernet experiment` with its settings",
                unfinished.len(),
                plan.jobs.len(),
                first.join(", "),
                if unfinished.len() > 3 { ", ..." } else { "" }
            ),
        });
    }
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
