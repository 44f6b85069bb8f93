//! The binary's faults: every bad input gets a one-line error naming the flag, file or value,
//! a non-zero exit, no panic, and nothing half-written.

use std::path::Path;
use std::process::Output;

mod common;
use common::supernet;

/// The error line (the Vulkan loader may add unrelated lines of its own, not starting with
/// "error: " followed by our wording).
fn error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
    assert!(
        !stderr.contains("RUST_BACKTRACE"),
        "a backtrace hint was printed:\n{stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: ") && !l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line, got:\n{stderr}");
    errors[0].to_string()
}

fn assert_fails(args: &[&str], expected: &[&str]) -> String {
    let output = supernet(args);
    assert!(!output.status.success(), "{args:?} succeeded");
    let line = error_line(&output);
    for word in expected {
        assert!(
            line.contains(word),
            "{args:?}: '{line}' does not mention '{word}'"
        );
    }
    line
}

#[test]
fn zero_epochs() {
    assert_fails(&["oneshot", "--epochs", "0"], &["--epochs", "at least 1"]);
}

#[test]
fn zero_batch_size() {
    assert_fails(
        &["standalone", "--subnet", "1,0", "--batch-size", "0"],
        &["--batch-size", "at least 1"],
    );
}

#[test]
fn bad_subnet() {
    assert_fails(
        &["standalone", "--subnet", "2,0"],
        &["--subnet", "'2,0'", "0 (3x3) or 1 (5x5)"],
    );
}

#[test]
fn profile_on_the_cpu_backend() {
    assert_fails(
        &["bench", "--backend", "cpu", "--profile"],
        &["--profile", "--backend gpu"],
    );
}

#[test]
fn zero_trainings_at_once() {
    assert_fails(
        &["experiment", "--parallel", "0"],
        &["--parallel", "'0'", "count of trainings"],
    );
}

#[test]
fn missing_data_directory() {
    assert_fails(
        &["oneshot", "--data", "/nonexistent/mnist"],
        &["/nonexistent/mnist", "not found"],
    );
}

/// A directory holding the four test-set and training files, one of them altered.
fn altered_data(name: &str, alter: impl Fn(&mut Vec<u8>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    for file in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::copy(
            shipped.join(format!("{file}.gz")),
            dir.path().join(format!("{file}.gz")),
        )
        .expect("copy");
    }
    let target = dir.path().join(name);
    let mut bytes = supernet::data::idx::decompressed(&dir.path().join(format!("{name}.gz")))
        .expect("readable");
    alter(&mut bytes);
    std::fs::remove_file(dir.path().join(format!("{name}.gz"))).expect("remove");
    std::fs::write(&target, bytes).expect("write");
    dir
}

#[test]
fn truncated_file() {
    let data = altered_data("t10k-labels-idx1-ubyte", |bytes| {
        bytes.truncate(bytes.len() - 10)
    });
    let dir = data.path().to_str().expect("utf-8 path");
    assert_fails(
        &["oneshot", "--data", dir],
        &["t10k-labels-idx1-ubyte", "10000", "9990"],
    );
}

#[test]
fn corrupt_file() {
    let data = altered_data("train-images-idx3-ubyte", |bytes| bytes[2] = 0x0d);
    let dir = data.path().to_str().expect("utf-8 path");
    assert_fails(
        &["oneshot", "--data", dir],
        &["train-images-idx3-ubyte", "magic number"],
    );
}

#[test]
fn corrupt_gzip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    for file in std::fs::read_dir(&shipped).expect("data dir") {
        let file = file.expect("entry").path();
        std::fs::copy(&file, dir.path().join(file.file_name().expect("name"))).expect("copy");
    }
    let labels = dir.path().join("train-labels-idx1-ubyte.gz");
    let mut bytes = std::fs::read(&labels).expect("read");
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&labels, bytes).expect("write");
    assert_fails(
        &["oneshot", "--data", dir.path().to_str().expect("utf-8")],
        &["train-labels-idx1-ubyte.gz", "gzip"],
    );
}

#[test]
fn unwritable_output_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").expect("write");
    let out = blocker.join("run");
    assert_fails(
        &[
            "oneshot",
            "--backend",
            "cpu",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        &["output directory", "a-file"],
    );
}

/// A learning rate that blows the weights up: the run stops at the first non-finite loss,
/// naming its epoch and step, and what was written (config.json) is complete and valid.
#[test]
fn non_finite_loss_stops_the_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let line = assert_fails(
        &[
            "oneshot",
            "--backend",
            "cpu",
            "--lr",
            "1e30",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        &["diverged", "epoch 1", "step"],
    );
    assert!(line.contains("NaN") || line.contains("inf"), "{line}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("config.json"))
            .expect("valid JSON");
    assert_eq!(config["training"]["lr"], 1e30);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .expect("run dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "half-written files: {leftovers:?}");
}

#[test]
fn missing_weights_file() {
    assert_fails(
        &[
            "eval",
            "--weights",
            "/nonexistent/model.safetensors",
            "--backend",
            "cpu",
        ],
        &["/nonexistent/model.safetensors"],
    );
}

#[test]
fn weights_that_are_not_safetensors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, b"definitely not safetensors").expect("write");
    assert_fails(
        &[
            "eval",
            "--weights",
            path.to_str().expect("utf-8"),
            "--backend",
            "cpu",
        ],
        &["model.safetensors", "safetensors"],
    );
}

#[test]
fn help_names_every_command() {
    let output = supernet(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in [
        "oneshot",
        "standalone",
        "experiment",
        "report",
        "eval",
        "devices",
        "bench",
    ] {
        assert!(help.contains(command), "--help does not mention {command}");
    }
}

#[test]
fn bench_reports_speed_and_memory() {
    let output = supernet(&["bench", "--backend", "cpu", "--steps", "3", "--warmup", "1"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "images/s",
        "s per epoch of 938 steps",
        "evaluation: 4 subnets x 10000",
        "peak resident memory",
    ] {
        assert!(
            report.contains(expected),
            "bench output lacks '{expected}':\n{report}"
        );
    }
}

#[test]
fn bench_rejects_zero_steps() {
    assert_fails(&["bench", "--backend", "cpu", "--steps", "0"], &["--steps"]);
}

#[test]
fn bad_space_spec() {
    assert_fails(
        &["oneshot", "--space", "3,4/3,5"],
        &["--space", "'3,4/3,5'", "choice '4'", "odd"],
    );
    assert_fails(
        &["oneshot", "--space", "skip,3/3"],
        &["--space", "block 1 choice 'skip'"],
    );
}

/// Checked against the data before anything is written.
#[test]
fn space_deeper_than_the_images_allow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    assert_fails(
        &[
            "oneshot",
            "--backend",
            "cpu",
            "--space",
            "3/3/3/3/3",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        &["--space", "5 blocks", "at most 4"],
    );
    assert!(!out.exists(), "a refused run wrote its output directory");
}

#[test]
fn subnet_outside_the_space() {
    assert_fails(
        &["standalone", "--space", "fixture", "--subnet", "1,4,1"],
        &[
            "--subnet",
            "'1,4,1'",
            "block 2 takes 0 (1x1), 1 (3x3), 2 (5x5) or 3 (skip)",
        ],
    );
}

/// PyTorch's weights hold no space: one that the tensors contradict is refused, naming the
/// tensor.
#[test]
fn eval_with_a_space_the_weights_contradict() {
    let weights = common::fixture_path("weights/torch_sum_seed3.safetensors");
    assert_fails(
        &[
            "eval",
            "--weights",
            weights.to_str().expect("utf-8"),
            "--space",
            "3,5,7/3,5",
            "--backend",
            "cpu",
        ],
        &[
            "torch_sum_seed3.safetensors",
            "missing tensor block1.conv7.weight",
        ],
    );
}

#[test]
fn export_of_a_subnet_outside_the_space() {
    let weights = common::fixture_path("weights/torch_sum_seed3.safetensors");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("subnet.safetensors");
    assert_fails(
        &[
            "export",
            "--weights",
            weights.to_str().expect("utf-8"),
            "--subnet",
            "2,1",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        &["--subnet", "'2,1'", "block 1 takes"],
    );
    assert!(!out.exists(), "a refused export wrote its file");
}

#[test]
fn bench_in_a_larger_space() {
    let output = supernet(&[
        "bench",
        "--backend",
        "cpu",
        "--space",
        "fixture",
        "--steps",
        "2",
        "--warmup",
        "1",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains("evaluation: 24 subnets x 10000"),
        "bench output:\n{report}"
    );
}
