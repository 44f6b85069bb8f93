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
        assert_eq!(
            tensors(&killed.join("model.safetensors")),
            tensors(&reference.join("model.safetensors")),
            "{kind}: the weights are not the last epoch's"
        );
        assert!(
            message.contains("nothing left to train"),
            "{kind}: {message}"
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
/// the holder; the metrics hold each epoch once. The same for two resumes and two `--force`
/// (whose loser failed on a missing file), and an experiment pointed at the run's folder is
/// refused, as is a training pointed at an experiment's job.
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
    lines(3, &twice_at_once(&args));

    let experiment = run(&experiment_args(data.path(), &run_dir, "2", "200"), None);
    let message = stderr(&experiment);
    assert!(!experiment.status.success(), "{message}");
    assert!(
        message.contains("holds a run, not an experiment"),
        "{message}"
    );
    assert!(!run_dir.join("experiment.json").exists());
    assert!(!run_dir.join("sum").exists());

    let experiment = dir.path().join("experiment");
    let done = run(&experiment_args(data.path(), &experiment, "1", "200"), None);
    assert!(done.status.success(), "{}", stderr(&done));
    let job = experiment.join("sum/seed-1/oneshot-uniform");
    let line = error_line(&run(
        &training("oneshot", data.path(), &job, &["--force"]),
        None,
    ));
    assert!(line.contains("is a training of an experiment"), "{line}");
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

// ---- the unclear cases, settled ----------------------------------------------------------

/// The one `error:` line of a failed run; no panic.
fn error_line(output: &Output) -> String {
    let text = stderr(output);
    assert!(!output.status.success(), "succeeded: {text}");
    assert!(!text.contains("panicked"), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    errors[0].to_string()
}

#[test]
fn flags_are_refused_with_readable_values() {
    let data = small_mnist();
    let line = error_line(&supernet(&["oneshot", "--lr", "0"]));
    assert!(
        line.contains("--lr") && line.contains("'0' is not a positive learning rate"),
        "{line}"
    );
    assert!(!line.contains("0e0"), "{line}");
    let line = error_line(&supernet(&["oneshot", "--max-memory", "inf"]));
    assert!(line.contains("positive finite number of GiB"), "{line}");
    let line = error_line(&supernet(&[
        "oneshot",
        "--max-memory",
        "0.00001",
        "--data",
        s(data.path()),
    ]));
    assert!(
        line.contains("10.5 KiB") && line.contains("--max-memory"),
        "{line}"
    );
    assert!(!line.contains("0.0 GiB"), "{line}");
    let long = "3,".repeat(50_000);
    let line = error_line(&supernet(&["oneshot", "--space", &long]));
    assert!(line.len() < 400, "{} characters", line.len());
    assert!(line.contains("100000 characters long"), "{line}");
}

/// The small MNIST with the raw `name` removed (another file or folder takes its place).
fn without(name: &str) -> tempfile::TempDir {
    let data = small_mnist();
    std::fs::remove_file(data.path().join(name)).expect("remove");
    data
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[test]
fn data_files_in_the_wrong_place_or_shape_are_named() {
    let train = |data: &Path| {
        error_line(&supernet(&[
            "oneshot",
            "--backend",
            "cpu",
            "--data",
            s(data),
        ]))
    };
    let name = "train-images-idx3-ubyte";
    // No images: said so, not "square images whose side is a multiple of 4".
    let data = small_mnist();
    std::fs::write(
        data.path().join(name),
        [0, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 28],
    )
    .expect("write");
    let line = train(data.path());
    assert!(
        line.contains(name) && line.contains("holds no images"),
        "{line}"
    );
    // A folder where a file belongs, and a file where the folder belongs.
    let data = without(name);
    std::fs::create_dir(data.path().join(name)).expect("dir");
    let line = train(data.path());
    assert!(line.contains("is a directory, not an IDX file"), "{line}");
    let file = data.path().join("t10k-labels-idx1-ubyte");
    let line = train(&file);
    assert!(line.contains("is a file; give the directory"), "{line}");
    // Both the raw file and a gzip'd one: which holds the data would be a guess.
    let data = small_mnist();
    let raw = std::fs::read(data.path().join(name)).expect("raw");
    std::fs::write(data.path().join(format!("{name}.gz")), gzip(&raw)).expect("gz");
    let line = train(data.path());
    assert!(line.contains("are both here; keep one"), "{line}");
    // A multi-member gzip is read whole; data after the gzip stream is refused.
    let (head, tail) = raw.split_at(raw.len() / 3);
    let file = data.path().join("members.gz");
    std::fs::write(&file, [gzip(head), gzip(tail)].concat()).expect("write");
    let array = supernet::data::idx::read_idx(&file, 3).expect("two members");
    assert_eq!(array.data.len(), raw.len() - 16);
    std::fs::write(
        &file,
        [gzip(&raw), b"garbage after the stream".to_vec()].concat(),
    )
    .expect("write");
    let error = supernet::data::idx::read_idx(&file, 3).expect_err("trailing garbage");
    assert!(error.to_string().contains("corrupt gzip data"), "{error}");
}

/// A header declaring 4 GB is refused before any of it is read; and `--max-memory` counts
/// the dataset: a limit the model fits in but the model and the data do not is refused.
#[test]
fn max_memory_counts_the_data() {
    let data = without("train-images-idx3-ubyte");
    let mut declared = vec![0, 0, 8, 3];
    for d in [5_000_000u32, 28, 28] {
        declared.extend(d.to_be_bytes());
    }
    declared.extend([0u8; 1000]);
    let file = data.path().join("train-images-idx3-ubyte.gz");
    std::fs::write(&file, gzip(&declared)).expect("write");
    let args = [
        "oneshot",
        "--backend",
        "cpu",
        "--data",
        s(data.path()),
        "--max-memory",
        "1",
    ];
    let line = error_line(&supernet(&args));
    assert!(
        line.contains("announce 3.7 GiB of values") && line.contains("--max-memory"),
        "{line}"
    );

    let data = small_mnist();
    let config = supernet::training::TrainConfig::study(
        supernet::model::Variant::Sum,
        supernet::training::Mode::OneShot,
    );
    // The data is 1.3 MiB: the model and half a megabyte fit, the data does not.
    let limit = (config.estimated_bytes(28) + 500_000.0) / (1u64 << 30) as f64;
    let limit = format!("{limit:.9}");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let args = [
        "oneshot",
        "--backend",
        "cpu",
        "--epochs",
        "1",
        "--data",
        s(data.path()),
        "--max-memory",
        &limit,
        "--out",
        s(&out),
    ];
    let line = error_line(&supernet(&args));
    assert!(line.contains("the data 1.3 MiB decoded"), "{line}");
    assert!(!out.exists());
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).expect("json")).expect("write")
}

/// A copy of `from` whose metadata key `key` is `value` and whose tensor `scaled` (if any)
/// is multiplied by `factor`.
fn rewritten(from: &Path, to: &Path, key: &str, value: &str, scaled: &str, factor: f32) {
    let bytes = std::fs::read(from).expect("weights");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("metadata");
    let mut metadata = meta.metadata().clone().unwrap_or_default();
    metadata.insert(key.to_string(), value.to_string());
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .iter()
        .map(|(name, view)| {
            let mut data = view.data().to_vec();
            if name == scaled {
                for chunk in data.chunks_exact_mut(4) {
                    let v = f32::from_le_bytes(chunk.try_into().unwrap()) * factor;
                    chunk.copy_from_slice(&v.to_le_bytes());
                }
            }
            (name.to_string(), view.shape().to_vec(), data)
        })
        .collect();
    let views = tensors.iter().map(|(name, shape, data)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .expect("view");
        (name.clone(), view)
    });
    let out = safetensors::serialize(views, Some(metadata)).expect("serialize");
    std::fs::write(to, out).expect("write");
}

/// An experiment's report and its folder: unfinished trainings named, a result in another
/// job's folder, a plan of a later version, `--standalone` past the space, a dead worker's
/// claim in a finished job; `search` never writes over a used `--out`; a weights file whose
/// `held_out` is not a count, and finite weights that overflow f32, are errors.
#[test]
fn experiments_reports_and_searches_refuse_what_they_cannot_mean() {
    let data = mnist_slice(300);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("experiment");
    let args = experiment_args(data.path(), &out, "1", "100");
    let first = run(&args, None);
    assert!(first.status.success(), "{}", stderr(&first));
    let report = || supernet(&["report", s(&out)]);
    let oneshot = out.join("sum/seed-1/oneshot-uniform");

    let result = oneshot.join("result.json");
    let aside = dir.path().join("result.json");
    std::fs::rename(&result, &aside).expect("move");
    let line = error_line(&report());
    assert!(
        line.contains("1 of its 3 trainings are not finished (sum/seed-1/oneshot-uniform)"),
        "{line}"
    );
    let mut moved = read_json(&aside);
    moved["seed"] = 2.into();
    write_json(&result, &moved);
    let line = error_line(&report());
    assert!(
        line.contains("is the result of sum/seed-2/oneshot-uniform"),
        "{line}"
    );
    std::fs::rename(&aside, &result).expect("move back");

    let plan_path = out.join("experiment.json");
    let plan = read_json(&plan_path);
    let mut later = plan.clone();
    later["version"] = "99.0.0".into();
    write_json(&plan_path, &later);
    let line = error_line(&report());
    assert!(line.contains("version 99.0.0"), "{line}");
    write_json(&plan_path, &plan);
    assert!(report().status.success());

    let mut five = args.clone();
    five[8] = "5";
    assert_eq!(args[7], "--standalone");
    let line = error_line(&run(&five, None));
    assert!(
        line.contains("--standalone 5: the space 3,5/3,5 has 4 subnets"),
        "{line}"
    );

    // A claim of a process of this host that is gone, left in a finished job's folder.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host");
    let dead =
        serde_json::json!({"host": host.trim(), "pid": u32::MAX - 1, "started": 1, "heartbeat": 1});
    write_json(&oneshot.join("claim.json"), &dead);
    assert!(run(&args, None).status.success());
    assert!(
        !oneshot.join("claim.json").exists(),
        "the dead claim is still there"
    );

    let weights = oneshot.join("model.safetensors");
    let search = |to: &Path| {
        supernet(&[
            "search",
            "--weights",
            s(&weights),
            "--val",
            "100",
            "--backend",
            "cpu",
            "--data",
            s(data.path()),
            "--out",
            s(to),
        ])
    };
    let ranked = dir.path().join("ranked");
    assert!(search(&ranked).status.success());
    let before = std::fs::read(ranked.join("ranking.json")).expect("ranking");
    let line = error_line(&search(&ranked));
    assert!(line.contains("already holds ranking.json"), "{line}");
    assert!(std::fs::read(ranked.join("ranking.json")).expect("ranking") == before);
    let line = error_line(&search(&oneshot));
    assert!(line.contains("is a training of an experiment"), "{line}");

    let eval = |w: &Path| {
        supernet(&[
            "eval",
            "--weights",
            s(w),
            "--backend",
            "cpu",
            "--data",
            s(data.path()),
        ])
    };
    let negative = dir.path().join("negative.safetensors");
    rewritten(&weights, &negative, "held_out", "-5", "", 1.0);
    let line = error_line(&eval(&negative));
    assert!(
        line.contains("held_out '-5' is not a count of images"),
        "{line}"
    );
    let huge = dir.path().join("huge.safetensors");
    rewritten(&weights, &huge, "held_out", "100", "fc2.weight", 1e37);
    let line = error_line(&eval(&huge));
    assert!(line.contains("too large for f32 arithmetic"), "{line}");
}

/// A resume rewrites the metrics of the epochs before it from the state: the same bytes.
#[test]
fn a_resume_keeps_the_metrics_lines_byte_for_byte() {
    let data = small_mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    let run_dir = dir.path().join("run");
    let args = training("oneshot", data.path(), &run_dir, &["--epochs", "3"]);
    assert!(!run(&args, Some("state:3")).status.success(), "not killed");
    let jsonl = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics");
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).expect("metrics");
    let mut resume = args.clone();
    resume.push("--resume");
    assert!(run(&resume, None).status.success());
    let after = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics");
    assert!(after.starts_with(&jsonl), "{jsonl}\n---\n{after}");
    let after = std::fs::read_to_string(run_dir.join("metrics.csv")).expect("metrics");
    assert!(after.starts_with(&csv), "{csv}\n---\n{after}");
}

/// Every `result.json` under `dir`.
fn results(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.path() {
            p if p.is_dir() => results(&p),
            p => usize::from(p.ends_with("result.json")),
        })
        .sum()
}

/// SIGTERM to the command of `--workers 2` stops both workers (the other one used to train
/// every remaining training), and the command exits 143 after them.
#[test]
fn sigterm_to_the_command_stops_every_worker() {
    let data = small_mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("experiment");
    let mut args = experiment_args(data.path(), &out, "4", "200");
    args[8] = "all";
    args.extend(["--workers", "2"]);
    let mut child = command(&args, None)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let started = std::time::Instant::now();
    let state = out.join("sum/seed-1/oneshot-uniform/training-state.safetensors");
    while !state.exists() && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(143));
    let finished = results(&out);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        results(&out),
        finished,
        "a worker went on after the command ended"
    );
    assert!(finished < 6, "every training finished before the signal");
}

/// Ctrl-C reaches the whole process group: every worker stops after its step (the command's
/// own notice to them, SIGUSR1, is not a second SIGINT that would end them at once), and the
/// command exits 130 after them.
#[test]
fn ctrl_c_stops_the_command_and_its_workers() {
    use std::os::unix::process::CommandExt;
    let data = small_mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("experiment");
    let mut args = experiment_args(data.path(), &out, "4", "200");
    args[8] = "all";
    args.extend(["--workers", "2"]);
    let mut child = command(&args, None)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let started = std::time::Instant::now();
    let state = out.join("sum/seed-1/oneshot-uniform/training-state.safetensors");
    while !state.exists() && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let group = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(130));
    let finished = results(&out);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        results(&out),
        finished,
        "a worker went on after the command ended"
    );
    assert!(finished < 6, "every training finished before the signal");
    // Each stopped training kept its state: none was ended at once by a second signal.
    let unfinished_without_state = ["oneshot-uniform", "standalone-00", "standalone-10"]
        .iter()
        .map(|job| out.join("sum/seed-1").join(job))
        .filter(|job| job.exists() && !job.join("result.json").exists())
        .filter(|job| !job.join("training-state.safetensors").exists())
        .count();
    assert_eq!(unfinished_without_state, 0);
}
