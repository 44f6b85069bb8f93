//! Runs that survive: killed at a step, between the state and the weights, between the
//! weights and the metrics line, or in the middle of an atomic write, a run resumed with
//! `--resume` ends with the weights of an uninterrupted run, bit for bit (CPU), recomputing at
//! most the epoch it was killed in; stopped by SIGTERM it exits 143 and resumes the same way.
//! A folder that holds a run is refused unless `--resume` or `--force`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{small_mnist, supernet};

fn train(data: &Path, out: &Path, extra: &[&str], abort_at: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_supernet"));
    command
        .args([
            "oneshot",
            "--epochs",
            "3",
            "--backend",
            "cpu",
            "--sampling",
            "fair",
            "--val",
            "100",
        ])
        .args([
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir());
    if let Some(point) = abort_at {
        command.env("SUPERNET_ABORT_AT", point);
    }
    command.output().expect("the binary runs")
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
            serde_json::json!([
                m["epoch"],
                m["lr"],
                m["train_loss"],
                m["subnets"],
                m["validation"]
            ])
        })
        .collect()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn killed_anywhere_a_resumed_run_ends_bit_for_bit_as_an_uninterrupted_one() {
    let data = small_mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    let reference = dir.path().join("reference");
    assert!(train(data.path(), &reference, &[], None).status.success());
    let want = tensors(&reference.join("model.safetensors"));
    // (kill point, epochs that must be kept); 19 steps an epoch (1,180 images, batch 64).
    let cases = [
        ("step:7", 0),
        ("step:45", 2),
        ("state:2", 2),
        ("weights:1", 1),
        // Atomic writes: config.json, then each epoch's state and weights.
        ("partial:4", 1),
        ("partial:5", 2),
    ];
    for (point, kept) in cases {
        let run = dir.path().join(point.replace(':', "-"));
        let killed = train(data.path(), &run, &[], Some(point));
        assert!(!killed.status.success(), "{point}: the run was not killed");
        let resumed = train(data.path(), &run, &["--resume"], None);
        let message = stderr(&resumed);
        assert!(resumed.status.success(), "{point}: {message}");
        let after: usize = message
            .lines()
            .find_map(|l| {
                l.strip_prefix("resuming after epoch ")?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{point}: no resume line in {message}"));
        assert!(
            after >= kept,
            "{point}: resumed after epoch {after}, {kept} were done"
        );
        assert_eq!(
            tensors(&run.join("model.safetensors")),
            want,
            "{point}: other weights"
        );
        assert_eq!(
            accuracies(&run),
            accuracies(&reference),
            "{point}: other metrics"
        );
        let csv = std::fs::read_to_string(run.join("metrics.csv")).expect("csv");
        assert_eq!(
            csv.lines().count(),
            4,
            "{point}: a header and 3 epochs:\n{csv}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&run)
            .expect("run")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "{point}: {leftovers:?}");
    }
}

/// SIGTERM mid-training: the current step finishes, the state is written, one line says how
/// to resume, exit 143; resumed, the same weights as without the signal. SIGKILL in the second
/// epoch: resumed from the first epoch's end, the same weights again.
#[test]
fn sigterm_stops_after_the_step_and_the_run_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let full = |out: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_supernet"));
        c.args([
            "oneshot",
            "--epochs",
            "2",
            "--backend",
            "cpu",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("XDG_RUNTIME_DIR", std::env::temp_dir());
        c
    };
    let reference = dir.path().join("reference");
    assert!(full(&reference).arg("-q").status().expect("runs").success());
    let run = dir.path().join("stopped");
    let mut child = full(&run)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawns");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    // The handlers are in place once the training has said what it trains.
    let started = lines
        .by_ref()
        .map_while(|l| l.ok())
        .any(|l| l.contains("epochs"));
    assert!(started, "the training never started");
    std::thread::sleep(std::time::Duration::from_millis(700));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(143), "{rest:#?}");
    let line = rest
        .iter()
        .find(|l| l.starts_with("stopped by SIGTERM"))
        .expect("a stop line");
    assert!(line.contains("--resume --out"), "{line}");
    assert!(run.join("training-state.safetensors").is_file());
    // "stopped by SIGTERM in epoch E after S steps; ...": the resume says where it picks up.
    let words: Vec<&str> = line.split([' ', ';']).collect();
    let (epoch, steps) = (words[5], words[7]);
    let resumed = full(&run).args(["--resume"]).output().expect("runs");
    let message = stderr(&resumed);
    assert!(resumed.status.success(), "{message}");
    if steps != "0" {
        let at = format!("at step {steps} of epoch {epoch}");
        assert!(message.contains(&at), "{line}\n{message}");
    }
    assert_eq!(
        tensors(&run.join("model.safetensors")),
        tensors(&reference.join("model.safetensors"))
    );

    // SIGKILL in the second epoch (after the first one's state): resumed from that epoch end.
    let killed = dir.path().join("killed");
    let mut child = full(&killed)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawns");
    let state = killed.join("training-state.safetensors");
    let waited = std::time::Instant::now();
    while !state.exists() && waited.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let status = child.wait().expect("exits");
    assert!(!status.success(), "the run ended before the kill");
    let resumed = full(&killed).args(["--resume"]).output().expect("runs");
    let message = stderr(&resumed);
    assert!(resumed.status.success(), "{message}");
    // A SIGKILL leaves the state of the last epoch end: no step to pick up at.
    assert!(
        message.contains("resuming after epoch 1 of 2\n"),
        "{message}"
    );
    assert_eq!(
        tensors(&killed.join("model.safetensors")),
        tensors(&reference.join("model.safetensors"))
    );
}

#[test]
fn a_folder_holding_a_run_is_refused_unless_resume_or_force() {
    let data = small_mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    let args = |extra: &[&str]| {
        let mut all = vec![
            "oneshot",
            "--epochs",
            "1",
            "--backend",
            "cpu",
            "--data",
            data.path().to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ];
        all.extend_from_slice(extra);
        supernet(&all)
    };
    assert!(args(&["-q"]).status.success());
    let again = args(&[]);
    assert!(!again.status.success());
    let message = stderr(&again);
    assert!(
        message.contains("already holds a run") && message.contains("--force"),
        "{message}"
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    assert_eq!(metrics.lines().count(), 1, "the refused run wrote metrics");
    assert!(args(&["-q", "--force"]).status.success());
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    assert_eq!(metrics.lines().count(), 1, "--force kept the old metrics");
    let empty = dir.path().join("empty");
    let nothing = supernet(&["oneshot", "--resume", "--out", empty.to_str().unwrap()]);
    assert!(
        stderr(&nothing).contains("holds no run to resume"),
        "{}",
        stderr(&nothing)
    );
}
