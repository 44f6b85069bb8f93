//! `experiment` and `report` end to end on a small slice of MNIST: every file of the report,
//! resuming (finished trainings skipped, an interrupted one trained again), settings that do
//! not match refused, and the report rebuilt from saved results alone.

use std::path::{Path, PathBuf};
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

const FIGURES: [&str; 6] = [
    "rank_agreement",
    "oneshot_vs_standalone",
    "oneshot_accuracy",
    "standalone_accuracy",
    "kl_vs_standalone",
    "zero_cost_vs_standalone",
];

/// 2 seeds x (zero-cost + 2 one-shot + 4 stand-alone).
const TRAININGS: usize = 14;

/// A group's agreement of `predictor` in results.json.
/// A job's result.json under an experiment folder.
fn job_result(root: &std::path::Path, job: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(root.join(job).join("result.json")).expect("result");
    serde_json::from_str(&text).expect("json")
}

/// Each epoch's training loss and subnet accuracies: what a training's numbers are.
fn epochs(result: &serde_json::Value) -> serde_json::Value {
    let epochs: Vec<_> = result["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| serde_json::json!([m["train_loss"], m["subnets"]]))
        .collect();
    serde_json::json!(epochs)
}

fn predictor<'a>(group: &'a serde_json::Value, predictor: &str) -> &'a serde_json::Value {
    group["predictors"]
        .as_array()
        .and_then(|all| all.iter().find(|a| a["predictor"] == predictor))
        .unwrap_or_else(|| panic!("no {predictor} in {group}"))
}

/// Every statistic the report promises, in results.json: tau and rho with an interval and a
/// p-value, top-k overlap, regret at 1 and 3, for one-shot accuracy, the KL proxies and the
/// zero-cost proxies; the noise ceiling of every variant.
fn check_statistics(results: &serde_json::Value, seeds: usize) {
    for group in results["groups"].as_array().expect("groups") {
        for name in [
            "oneshot_accuracy",
            "kl_all_paths",
            "kl_mean_of_subnets",
            "grad_norm",
            "snip",
            "synflow",
        ] {
            let a = predictor(group, name);
            for statistic in ["kendall_tau", "spearman_rho"] {
                let e = &a[statistic];
                assert_eq!(
                    e["values"].as_array().map(Vec::len),
                    Some(seeds),
                    "{name} {statistic}"
                );
                assert!(
                    e["interval"].is_array(),
                    "{name} {statistic}: no interval: {e}"
                );
                let p = e["p_value"]["value"].as_f64().expect("p-value");
                assert!((0.0..=1.0).contains(&p), "{name} {statistic}: p {p}");
            }
            assert!(
                a["top_k"].as_array().is_some_and(|k| !k.is_empty()),
                "{name}: top-k"
            );
            assert!(a["regret"]["mean"].is_number() && a["regret_top3"]["mean"].is_number());
        }
    }
    let ceilings = results["noise_ceilings"]
        .as_array()
        .expect("noise ceilings");
    assert!(!ceilings.is_empty());
    for ceiling in ceilings {
        let pairs = seeds * (seeds - 1) / 2;
        assert_eq!(
            ceiling["pairs"].as_array().map(Vec::len),
            Some(pairs),
            "{ceiling}"
        );
    }
}

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
    check_statistics(&results, 2);
    let report = std::fs::read_to_string(experiment.path("report.md")).expect("report.md");
    for expected in [
        "Kendall tau-b",
        "Spearman rho",
        "95 % interval",
        "regret@3",
        "top-1 overlap",
        "noise ceiling",
        "## Conclusions",
        "SynFlow at init",
        "KL from all paths",
        "KL from the mean",
        "one digit per block, block 1 first: 0 = 3x3, 1 = 5x5",
        "the last 200 training images, held out",
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
    assert!(message.contains("cannot read the experiment"), "{message}");
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
    // The zero-cost proxies, one one-shot training and the 9 subnets stand-alone.
    assert_eq!(result_files(&experiment).len(), 11);
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
        report.contains("| search space | `3,5,7/1,skip,3/3`: 9 subnets |"),
        "{report}"
    );
    assert!(
        report.contains("| 220 | 7x7, 3x3, 3x3 |"),
        "a subnet's row is missing"
    );
    assert!(
        !report.contains("The original study"),
        "the study's numbers are not this space's"
    );
    for figure in FIGURES {
        let png = std::fs::read(experiment.path(&format!("figures/{figure}.png"))).expect("png");
        assert!(png.starts_with(b"\x89PNG"), "{figure}.png");
    }
}

/// The study on a seeded sample of the space: `--standalone 4` of the 6 subnets of
/// `3,5/3,5,7`, both variants, seeds 1 and 2; the sample recorded in the plan and the same
/// for every seed and variant; a rerun trains nothing; the statistics are all there.
#[test]
fn experiment_on_a_sample_of_the_space() {
    let experiment = Experiment::new();
    let (data, out) = (experiment.data.path(), experiment.out.path());
    let run = || {
        supernet(&[
            "experiment",
            "--backend",
            "cpu",
            "--space",
            "3,5/3,5,7",
            "--epochs",
            "1",
            "--seeds",
            "1,2",
            "--standalone",
            "4",
            "--kl-images",
            "32",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let first = run();
    assert!(first.status.success(), "{}", stderr(&first));
    let plan = supernet::training::experiment::read_plan(out).expect("plan");
    assert_eq!(plan.standalone, "4");
    assert_eq!(plan.standalone_subnets.len(), 4);
    // 2 variants x 2 seeds x (zero-cost + one-shot + 4 stand-alone).
    assert_eq!(result_files(&experiment).len(), 24);
    for variant in ["sum", "concat"] {
        for seed in [1, 2] {
            for subnet in &plan.standalone_subnets {
                let dir = format!("{variant}/seed-{seed}/standalone-{subnet}/result.json");
                assert!(experiment.path(&dir).is_file(), "{dir}");
            }
        }
    }
    let again = run();
    assert!(
        stderr(&again).contains("24 finished earlier, 0 to train"),
        "{}",
        stderr(&again)
    );
    let text = std::fs::read_to_string(experiment.path("results.json")).expect("results.json");
    let results: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(results["subnets"].as_array().map(Vec::len), Some(4));
    check_statistics(&results, 2);
    let zero = std::fs::read_to_string(experiment.path("sum/seed-1/zero-cost/result.json"))
        .expect("zero-cost");
    let zero: serde_json::Value = serde_json::from_str(&zero).expect("JSON");
    assert_eq!(
        zero["zero_cost"]["synflow"].as_object().map(|m| m.len()),
        Some(6),
        "every subnet of the space"
    );
}

/// A one-epoch experiment on the small slice (`args` name the backend, seeds and samplings),
/// run into `one` with `flag 1` and into `many` with `flag n`; returns the second's log, both
/// having succeeded.
fn run_alone_and_shared(args: &[&str], flag: &str, n: &str, one: &Path, many: &Path) -> String {
    let data = small_mnist();
    let run = |out: &Path, count: &str| {
        let mut all = vec!["experiment", "--supernet", "sum", "--epochs", "1"];
        all.extend(args);
        all.extend(["--kl-images", "16", flag, count]);
        all.extend(["--data", data.path().to_str().unwrap()]);
        all.extend(["--out", out.to_str().unwrap()]);
        supernet(&all)
    };
    let single = run(one, "1");
    assert!(single.status.success(), "{}", stderr(&single));
    let shared = run(many, n);
    let log = stderr(&shared);
    assert!(shared.status.success(), "{log}");
    log
}

/// Every job of the experiment in `many`: its one "finished" line in `log` (returned, each),
/// and the same numbers as in `one`; and the report written.
fn each_job_once_and_alike(log: &str, one: &Path, many: &Path) -> Vec<String> {
    let plan = supernet::training::experiment::read_plan(many).expect("plan");
    let mut finished_lines = Vec::new();
    for job in &plan.jobs {
        let finished = format!("{}: finished", job.display());
        let lines: Vec<&str> = log.lines().filter(|l| l.ends_with(&finished)).collect();
        assert_eq!(
            lines.len(),
            1,
            "{} finished {} times:\n{log}",
            job.display(),
            lines.len()
        );
        finished_lines.push(lines[0].to_string());
        let read = |root: &Path| -> serde_json::Value {
            let r = job_result(root, job);
            serde_json::json!([epochs(&r), r["kl_proxy"], r["zero_cost"]])
        };
        assert_eq!(read(many), read(one), "{}", job.display());
        assert!(
            !many.join(job).join("claim.json").exists(),
            "a claim was left"
        );
    }
    assert!(many.join("report.md").is_file());
    finished_lines
}

/// Three workers on one folder: every job runs exactly once, and the results are those of a
/// single worker.
#[test]
fn three_workers_share_one_experiment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (one, three) = (dir.path().join("one"), dir.path().join("three"));
    let args = [
        "--backend",
        "cpu",
        "--seeds",
        "1,2",
        "--sampling",
        "uniform,fair",
    ];
    let log = run_alone_and_shared(&args, "--workers", "3", &one, &three);
    let finished = each_job_once_and_alike(&log, &one, &three);
    assert_eq!(finished.len(), 14);
}

/// Trainings in flight at once on one GPU (`--parallel 3`: threads, each with a backend of its
/// own on the one device): every job runs once, its lines tagged by its thread, and each gives
/// the bits it gives when the trainings run one after another.
#[test]
fn trainings_in_flight_at_once_on_one_gpu() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (one, three) = (dir.path().join("one"), dir.path().join("three"));
    let args = ["--backend", "gpu", "--seeds", "1"];
    let log = run_alone_and_shared(&args, "--parallel", "3", &one, &three);
    assert!(log.contains("3 trainings at once"), "{log}");
    let finished = each_job_once_and_alike(&log, &one, &three);
    let threads: std::collections::BTreeSet<&str> = finished
        .iter()
        .map(|line| line.split(']').next().unwrap_or_default())
        .collect();
    assert!(
        threads.len() > 1 && threads.iter().all(|t| t.starts_with('[')),
        "not several tagged threads:\n{log}"
    );
}

/// An experiment killed inside a training: the rerun resumes that training from its state
/// and ends with the results of an uninterrupted experiment.
#[test]
fn a_killed_experiment_resumes_its_training() {
    let data = small_mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |out: &std::path::Path, abort_at: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_supernet"));
        command
            .args([
                "experiment",
                "--backend",
                "cpu",
                "--supernet",
                "sum",
                "--seeds",
                "1",
            ])
            .args([
                "--epochs",
                "2",
                "--kl-images",
                "16",
                "--data",
                data.path().to_str().unwrap(),
            ])
            .args(["--out", out.to_str().unwrap()])
            .env("XDG_RUNTIME_DIR", std::env::temp_dir());
        if let Some(point) = abort_at {
            command.env("SUPERNET_ABORT_AT", point);
        }
        command.output().expect("runs")
    };
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    assert!(run(&whole, None).status.success());
    // Step 65: the stand-alone training of 00 in its second epoch (the one-shot training
    // before it took 40 steps, 20 an epoch).
    assert!(!run(&killed, Some("step:65")).status.success());
    let again = run(&killed, None);
    let log = stderr(&again);
    assert!(again.status.success(), "{log}");
    assert!(log.contains("resuming after epoch 1 of 2"), "{log}");
    let plan = supernet::training::experiment::read_plan(&whole).expect("plan");
    for job in &plan.jobs {
        let history = |root: &std::path::Path| epochs(&job_result(root, job));
        assert_eq!(history(&killed), history(&whole), "{}", job.display());
    }
}
