//! `experiment` and `report` end to end on a small slice of MNIST: every file of the report,
//! resuming (finished trainings skipped, an interrupted one trained again), settings that do
//! not match refused, and the report rebuilt from saved results alone.

use std::path::PathBuf;
use std::process::Output;

mod common;
use common::{small_mnist, supernet};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

struct Experiment {
    data: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl Experiment {
    fn new() -> Self {
        Experiment {
            data: small_mnist(),
            out: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn run(&self, epochs: &str) -> Output {
        let (data, out) = (self.data.path(), self.out.path());
        supernet(&[
            "experiment",
            "--backend",
            "cpu",
            "--supernet",
            "sum",
            "--seeds",
            "1,2",
            "--sampling",
            "uniform,fair",
            "--epochs",
            epochs,
            "--val",
            "200",
            "--kl-images",
            "64",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.out.path().join(relative)
    }
}

const FIGURES: [&str; 4] = [
    "oneshot_accuracy",
    "standalone_accuracy",
    "oneshot_vs_standalone",
    "kl_vs_standalone",
];

/// 2 seeds x (2 one-shot + 4 stand-alone).
const TRAININGS: usize = 12;

fn result_files(experiment: &Experiment) -> Vec<PathBuf> {
    let plan = supernet::training::experiment::read_plan(experiment.out.path()).expect("plan");
    plan.jobs
        .iter()
        .map(|job| experiment.out.path().join(job).join("result.json"))
        .collect()
}

fn check_report(experiment: &Experiment) {
    let text = std::fs::read_to_string(experiment.path("results.json")).expect("results.json");
    let results: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(
        results["runs"].as_array().map(Vec::len),
        Some(4),
        "2 samplings x 2 seeds"
    );
    assert_eq!(results["ranking_set"], "validation");
    let tau = &results["groups"][0]["predictors"]["oneshot_accuracy"]["kendall_tau"];
    assert_eq!(
        tau["values"].as_array().map(Vec::len),
        Some(2),
        "one tau per seed"
    );
    let report = std::fs::read_to_string(experiment.path("report.md")).expect("report.md");
    for expected in [
        "Kendall tau-b",
        "Spearman rho",
        "regret",
        "KL from all paths",
        "KL from the mean",
        "0.9877",
    ] {
        assert!(report.contains(expected), "report.md lacks '{expected}'");
    }
    for figure in FIGURES {
        let svg = std::fs::read_to_string(experiment.path(&format!("figures/{figure}.svg")))
            .expect("svg");
        assert!(
            svg.contains("<svg") && svg.contains("</svg>"),
            "{figure}.svg"
        );
        assert!(
            report.contains(&format!("figures/{figure}.svg")),
            "report.md skips {figure}"
        );
        let png = std::fs::read(experiment.path(&format!("figures/{figure}.png"))).expect("png");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{figure}.png"
        );
    }
}

#[test]
fn experiment_reports_resumes_and_refuses_other_settings() {
    let experiment = Experiment::new();
    let first = experiment.run("2");
    assert!(first.status.success(), "{}", stderr(&first));
    let results = result_files(&experiment);
    assert_eq!(results.len(), TRAININGS);
    assert!(
        results.iter().all(|r| r.is_file()),
        "a training left no result.json"
    );
    check_report(&experiment);
    let printed = String::from_utf8_lossy(&first.stdout);
    assert!(printed.contains("Kendall tau-b"), "{printed}");

    // A rerun trains nothing and leaves every result as it was.
    let before: Vec<Vec<u8>> = results.iter().map(|r| std::fs::read(r).unwrap()).collect();
    let again = experiment.run("2");
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains(&format!("{TRAININGS} finished earlier, 0 to train")),
        "{}",
        stderr(&again)
    );
    let after: Vec<Vec<u8>> = results.iter().map(|r| std::fs::read(r).unwrap()).collect();
    assert!(before == after, "a finished training was trained again");

    // A training stopped half-way (no result.json, a torn metrics line) is trained again from
    // the start; the others are skipped.
    let stopped = results[3].parent().unwrap().to_path_buf();
    std::fs::remove_file(&results[3]).unwrap();
    std::fs::write(stopped.join("metrics.jsonl"), "{\"epoch\": 1, \"lr\"").unwrap();
    let resumed = experiment.run("2");
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains(&format!("{} finished earlier, 1 to train", TRAININGS - 1)),
        "{}",
        stderr(&resumed)
    );
    let metrics = std::fs::read_to_string(stopped.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "stale metrics kept:\n{metrics}");
    assert!(results[3].is_file());

    // Other settings in the same directory: refused before anything is trained.
    let other = experiment.run("3");
    assert!(!other.status.success());
    let message = stderr(&other);
    assert!(
        message.contains("epochs was 2, now 3") && message.contains("--out"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");

    // `report` rebuilds everything from the saved results.
    std::fs::remove_dir_all(experiment.path("figures")).unwrap();
    std::fs::remove_file(experiment.path("report.md")).unwrap();
    std::fs::remove_file(experiment.path("results.json")).unwrap();
    let report = supernet(&["report", experiment.out.path().to_str().unwrap()]);
    assert!(report.status.success(), "{}", stderr(&report));
    check_report(&experiment);
}

#[test]
fn report_of_a_directory_without_an_experiment_names_the_file() {
    let empty = tempfile::tempdir().expect("temp dir");
    let output = supernet(&["report", empty.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("experiment.json") && !message.contains("panicked"),
        "{message}"
    );
}

#[test]
fn experiment_rejects_zero_kl_images_and_too_large_a_holdout_before_writing() {
    let data = small_mnist();
    let out = tempfile::tempdir().expect("temp dir");
    let base = [
        "experiment",
        "--backend",
        "cpu",
        "--data",
        data.path().to_str().unwrap(),
    ];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", out.path().to_str().unwrap()]);
        supernet(&args)
    };
    let holdout = with(&[
        "--val",
        "1280",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--supernet",
        "sum",
    ]);
    assert!(!holdout.status.success());
    assert!(stderr(&holdout).contains("--val"), "{}", stderr(&holdout));
    let kl = with(&["--kl-images", "0"]);
    assert!(!kl.status.success());
    assert!(stderr(&kl).contains("--kl-images"), "{}", stderr(&kl));
    let written = std::fs::read_dir(out.path()).unwrap().count();
    assert_eq!(written, 0, "a refused experiment wrote into --out");
}

/// An experiment over a 9-subnet space with an identity: every subnet trained stand-alone,
/// every one in the results and the report, the study's own numbers left out.
#[test]
fn experiment_over_a_larger_space() {
    let experiment = Experiment::new();
    let (data, out) = (experiment.data.path(), experiment.out.path());
    let output = supernet(&[
        "experiment",
        "--backend",
        "cpu",
        "--supernet",
        "concat",
        "--space",
        "3,5,7/1,skip,3/3",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--kl-images",
        "32",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    // One one-shot training and the 9 subnets stand-alone.
    assert_eq!(result_files(&experiment).len(), 10);
    assert!(experiment.path("concat/seed-1/standalone-220").is_dir());
    let text = std::fs::read_to_string(experiment.path("results.json")).expect("results.json");
    let results: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(results["plan"]["space"], "3,5,7/1,skip,3/3");
    let subnets = results["runs"][0]["subnets"].as_array().expect("subnets");
    let names: Vec<&str> = subnets
        .iter()
        .filter_map(|s| s["subnet"].as_str())
        .collect();
    assert_eq!(names.len(), 9);
    assert_eq!(
        &names[..4],
        ["000", "100", "200", "010"],
        "the space's order"
    );
    let report = std::fs::read_to_string(experiment.path("report.md")).expect("report.md");
    assert!(
        report.contains("| search space | 3,5,7/1,skip,3/3 (9 subnets) |"),
        "{report}"
    );
    assert!(report.contains("[2,2,0]"), "a subnet's row is missing");
    assert!(
        !report.contains("The original study"),
        "the study's numbers are not this space's"
    );
    for figure in FIGURES {
        let png = std::fs::read(experiment.path(&format!("figures/{figure}.png"))).expect("png");
        assert!(png.starts_with(b"\x89PNG"), "{figure}.png");
    }
}
