//! Runs that survive, round two: a kill after the last epoch's state leaves weights that a
//! resume brings up to the state; a resume on other data is refused by name; one writer per
//! run folder; bounded workers and claim timeouts; an export never writes over its input.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{slice_idx, small_mnist, supernet};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8")
}

/// The binary with `args`, killed at `abort_at` if given.
fn command(args: &[&str], abort_at: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_supernet"));
    command
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir());
    if let Some(point) = abort_at {
        command.env("SUPERNET_ABORT_AT", point);
    }
    command
}

fn run(args: &[&str], abort_at: Option<&str>) -> Output {
    command(args, abort_at).output().expect("the binary runs")
}

/// Every tensor's bytes, by name.
fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).expect("weights");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut all: Vec<(String, Vec<u8>)> = file
        .iter()
        .map(|(name, view)| (name.to_string(), view.data().to_vec()))
        .collect();
    all.sort();
    all
}

/// The metrics lines without their timings.
fn accuracies(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            serde_json::json!([m["epoch"], m["train_loss"], m["subnets"], m["validation"]])
        })
        .collect()
}

/// A training of two epochs (unless `extra` says) on `data` into `out`: `oneshot` or
/// `standalone --subnet 1,0`.
fn training<'a>(kind: &'a str, data: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![kind];
    if kind == "standalone" {
        args.extend(["--subnet", "1,0"]);
    }
    if !extra.contains(&"--epochs") {
        args.extend(["--epochs", "2"]);
    }
    args.extend([
        "--backend",
        "cpu",
        "--val",
        "100",
        "--data",
        s(data),
        "--out",
        s(out),
        "-q",
    ]);
    args.extend_from_slice(extra);
    args
}

/// Killed right after the last epoch's state was written, before its weights: the resume has
/// nothing to train, and says so, but writes the weights (and metrics) of the state.
#[test]
fn killed_after_the_last_state_write_the_resume_writes_its_weights() {
    let data = small_mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    for kind in ["oneshot", "standalone"] {
        let reference = dir.path().join(format!("{kind}-reference"));
        let done = run(&training(kind, data.path(), &reference, &[]), None);
        assert!(done.status.success(), "{kind}: {}", stderr(&done));
        let killed = dir.path().join(format!("{kind}-killed"));
        let out = run(&training(kind, data.path(), &killed, &[]), Some("state:2"));
        assert!(!out.status.success(), "{kind}: not killed");
        let resumed = run(
            &training(kind, data.path(), &killed, &["--resume"])
                .into_iter()
                .filter(|a| *a != "-q")
                .collect::<Vec<_>>(),
            None,
        );
        let message = stderr(&resumed);
        assert!(resumed.status.success(), "{kind}: {message}");
        assert!(
            message.contains("nothing left to train"),
            "{kind}: {message}"
        );
        assert_eq!(
            tensors(&killed.join("model.safetensors")),
            tensors(&reference.join("model.safetensors")),
            "{kind}: the weights are not the last epoch's"
        );
        assert_eq!(accuracies(&killed), accuracies(&reference), "{kind}");
    }
}

/// One seed of Sum, uniform sampling, one subnet stand-alone: three jobs.
fn experiment_args<'a>(
    data: &'a Path,
    out: &'a Path,
    epochs: &'a str,
    val: &'a str,
) -> Vec<&'a str> {
    vec![
        "experiment",
        "--backend",
        "cpu",
        "--supernet",
        "sum",
        "--seeds",
        "1",
        "--standalone",
        "1",
        "--epochs",
        epochs,
        "--val",
        val,
        "--kl-images",
        "64",
        "--data",
        s(data),
        "--out",
        s(out),
        "-q",
    ]
}

/// The same inside `experiment`: killed after the one-shot training's last state, the rerun
/// finishes the job with the weights the state holds, as an uninterrupted experiment has.
#[test]
fn killed_after_the_last_state_write_an_experiment_keeps_the_final_weights() {
    let data = small_mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    let reference = dir.path().join("reference");
    let done = run(&experiment_args(data.path(), &reference, "2", "200"), None);
    assert!(done.status.success(), "{}", stderr(&done));
    let killed = dir.path().join("killed");
    // The jobs run in order: zero-cost (no training), then the one-shot one.
    let out = run(
        &experiment_args(data.path(), &killed, "2", "200"),
        Some("state:2"),
    );
    assert!(!out.status.success(), "not killed");
    let rerun = run(&experiment_args(data.path(), &killed, "2", "200"), None);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    let job = "sum/seed-1/oneshot-uniform";
    assert_eq!(
        tensors(&killed.join(job).join("model.safetensors")),
        tensors(&reference.join(job).join("model.safetensors")),
        "the weights are not the last epoch's"
    );
    let result = |root: &Path| -> serde_json::Value {
        let text = std::fs::read_to_string(root.join(job).join("result.json")).expect("result");
        let r: serde_json::Value = serde_json::from_str(&text).expect("json");
        let epochs: Vec<_> = r["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|m| serde_json::json!([m["epoch"], m["subnets"], m["validation"]]))
            .collect();
        serde_json::json!([epochs, r["kl_proxy"]])
    };
    assert_eq!(result(&killed), result(&reference));
}

/// `dir` with the shipped MNIST's first `train` training and 500 test images, raw.
fn mnist_slice(train: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    for (prefix, count) in [("train", train), ("t10k", 500)] {
        for kind in ["images-idx3-ubyte", "labels-idx1-ubyte"] {
            let name = format!("{prefix}-{kind}");
            slice_idx(
                &shipped.join(format!("{name}.gz")),
                &dir.path().join(name),
                count,
            );
        }
    }
    dir
}

/// A resume checks the data against what the state recorded: fewer images (which panicked
/// mid-epoch) or the same count with other pixels is refused, naming what changed, and
/// nothing is written; the same data resumes.
#[test]
fn a_resume_on_other_data_is_refused_by_name() {
    let data = small_mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    let run_dir = dir.path().join("run");
    let killed = run(
        &training("oneshot", data.path(), &run_dir, &[]),
        Some("state:1"),
    );
    assert!(!killed.status.success(), "not killed");
    let state = std::fs::read(run_dir.join("training-state.safetensors")).expect("state");
    let smaller = mnist_slice(640);
    let other = mnist_slice(1280);
    let images = other.path().join("train-images-idx3-ubyte");
    let mut bytes = std::fs::read(&images).expect("images");
    bytes[16 + 28 * 14 + 14] ^= 0xff;
    std::fs::write(&images, bytes).expect("write");
    for (data, named) in [
        (&smaller, "the training images: 1280, now 640"),
        (&other, "the training images' pixels"),
    ] {
        let resumed = run(
            &training("oneshot", data.path(), &run_dir, &["--resume"]),
            None,
        );
        let message = stderr(&resumed);
        assert_eq!(resumed.status.code(), Some(1), "{message}");
        assert!(
            message.contains(named) && message.contains("--data"),
            "{message}"
        );
        assert!(!message.contains("panicked"), "{message}");
        let after = std::fs::read(run_dir.join("training-state.safetensors")).expect("state");
        assert!(after == state, "a refused resume wrote the state");
    }
    let resumed = run(
        &training("oneshot", data.path(), &run_dir, &["--resume"]),
        None,
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
}

/// Starts `args` twice at once and waits for both.
fn twice_at_once(args: &[&str]) -> [Output; 2] {
    let spawn = || {
        command(args, None)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawns")
    };
    let (a, b) = (spawn(), spawn());
    [a, b].map(|c| c.wait_with_output().expect("exits"))
}

/// Of two writers started at once on one folder, one trains and the other is refused, naming
/// the holder; the metrics hold each epoch once. The same for two resumes, and an
/// experiment pointed at the run's folder is refused.
#[test]
fn one_writer_per_run_folder() {
    let data = small_mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    let run_dir = dir.path().join("run");
    let lines = |epochs: usize, outputs: &[Output; 2]| {
        let refused: Vec<String> = outputs
            .iter()
            .filter(|o| !o.status.success())
            .map(stderr)
            .collect();
        assert_eq!(refused.len(), 1, "{:?}", outputs.each_ref().map(stderr));
        assert!(
            refused[0].contains("is in use by process") && refused[0].contains("run.lock"),
            "{}",
            refused[0]
        );
        let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics");
        assert_eq!(metrics.lines().count(), epochs, "{metrics}");
        assert!(!run_dir.join("run.lock").exists(), "the lock was left");
    };
    let args = training("oneshot", data.path(), &run_dir, &[]);
    lines(2, &twice_at_once(&args));

    let args = training(
        "oneshot",
        data.path(),
        &run_dir,
        &["--epochs", "3", "--force"],
    );
    assert!(!run(&args, Some("state:1")).status.success(), "not killed");
    let mut resume = args.clone();
    resume.retain(|a| *a != "--force");
    resume.push("--resume");
    lines(3, &twice_at_once(&resume));

    let experiment = run(&experiment_args(data.path(), &run_dir, "2", "200"), None);
    let message = stderr(&experiment);
    assert!(!experiment.status.success(), "{message}");
    assert!(
        message.contains("holds a run, not an experiment"),
        "{message}"
    );
    assert!(!run_dir.join("experiment.json").exists());
    assert!(!run_dir.join("sum").exists());
}

/// A claim timeout under ten heartbeats took live workers' trainings over: refused, before
/// anything is written.
#[test]
fn claim_timeouts_of_zero_and_one_second_are_refused() {
    let data = mnist_slice(300);
    let dir = tempfile::tempdir().expect("temp dir");
    for timeout in ["0", "1"] {
        let out = dir.path().join(timeout);
        let mut args = experiment_args(data.path(), &out, "1", "100");
        args.extend(["--claim-timeout", timeout]);
        let output = run(&args, None);
        let message = stderr(&output);
        assert!(!output.status.success(), "{timeout}: accepted");
        assert!(
            message.contains("--claim-timeout") && message.contains("at least 10"),
            "{message}"
        );
        assert!(
            !out.exists(),
            "{timeout}: the refused experiment wrote its folder"
        );
    }
}

/// `--workers 100000` started a process per worker: refused above the ceiling, before
/// anything is written (running it on the code before would start 99,999 processes, so the
/// test refuses rather than counts them).
#[test]
fn workers_past_the_ceiling_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("experiment");
    let output = supernet(&["experiment", "--workers", "100000", "--out", s(&out)]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("--workers") && message.contains("from 1 to 64"),
        "{message}"
    );
    assert!(!out.exists());
}

/// More workers than trainings left: as many as there are trainings.
#[test]
fn workers_are_at_most_the_trainings_left() {
    let data = mnist_slice(300);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("experiment");
    let mut args = experiment_args(data.path(), &out, "1", "100");
    args.retain(|a| *a != "-q");
    args.extend(["--workers", "5"]);
    let output = run(&args, None);
    let message = stderr(&output);
    assert!(output.status.success(), "{message}");
    assert!(
        message.contains("3 trainings left: 3 workers, not 5"),
        "{message}"
    );
}

/// `export --out` naming its own `--weights` (by any path) is refused; the SuperNet stays.
#[test]
fn export_refuses_to_write_over_its_weights() {
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = dir.path().join("model.safetensors");
    std::fs::copy(
        common::fixture_path("weights/torch_sum_seed3.safetensors"),
        &weights,
    )
    .expect("copy");
    let before = std::fs::read(&weights).expect("weights");
    let other_spelling = dir.path().join(".").join("model.safetensors");
    for out in [&weights, &other_spelling] {
        let output = supernet(&[
            "export",
            "--weights",
            s(&weights),
            "--subnet",
            "0,0",
            "--out",
            s(out),
        ]);
        let message = stderr(&output);
        assert!(!output.status.success(), "{message}");
        assert!(message.contains("is the --weights file"), "{message}");
        assert!(std::fs::read(&weights).expect("weights") == before);
    }
}
