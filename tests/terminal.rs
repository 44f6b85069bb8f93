//! What a newcomer sees: the binary under a pseudo-terminal 80 columns wide (progress bars
//! drawn as on a real terminal), the help, `--quiet`, the loader's silence without a runtime
//! directory, completions and the manual page, and metrics.csv as other tools read it.

mod common;

use std::process::Command;

use common::{small_mnist, supernet};

/// `script` (util-linux) gives the command a pseudo-terminal. Without it the check cannot
/// run: under CI that is a failure, elsewhere a loud skip.
fn have_script() -> bool {
    let found = Command::new("script").arg("--version").output().is_ok();
    if !found && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but `script` (util-linux) is missing: the terminal test cannot run");
    }
    if !found {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no `script` to run the binary under a terminal"
        );
    }
    found
}

/// Escape sequences out, then every piece between carriage returns and newlines: what the
/// terminal shows on one line at a time.
fn screen_lines(raw: &str) -> Vec<String> {
    let mut clean = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters, then one final letter.
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        clean.push(c);
    }
    clean
        .split(['\r', '\n'])
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn under_an_80_column_terminal_every_line_fits_and_the_evaluation_shows() {
    if !have_script() {
        return;
    }
    let data = small_mnist();
    let out = tempfile::tempdir().expect("temp dir");
    let binary = env!("CARGO_BIN_EXE_supernet");
    for space in ["3,5/3,5", "large"] {
        let run = out.path().join(space.replace(['/', ','], "-"));
        let command = format!(
            "stty cols 80 rows 24; {binary} oneshot --epochs 2 --val 200 --space {space} --backend cpu --data {} --out {}",
            data.path().display(),
            run.display()
        );
        let output = Command::new("script")
            .args(["-q", "-e", "-c", &command, "/dev/null"])
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .expect("script runs");
        let raw = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{space}: {raw}");
        let lines = screen_lines(&raw);
        let wide: Vec<&String> = lines.iter().filter(|l| l.chars().count() > 80).collect();
        assert!(
            wide.is_empty(),
            "{space}: lines wider than 80 columns: {wide:#?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("evaluating")),
            "{space}: no evaluation phase shown: {lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("eta")),
            "{space}: no ETA: {lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("  val ")),
            "{space}: no validation line"
        );
    }
}

#[test]
fn a_bare_command_prints_the_help() {
    let output = supernet(&[]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("Usage: supernet") && help.contains("Commands:"),
        "{help}"
    );
    assert!(
        help.lines().count() > 10,
        "the help squashed into one line: {help}"
    );
    assert!(help.lines().all(|l| l.chars().count() <= 80), "{help}");
}

#[test]
fn quiet_prints_nothing_on_success_and_the_error_on_failure() {
    let data = small_mnist();
    let out = tempfile::tempdir().expect("temp dir");
    let run = out.path().join("run");
    let ok = supernet(&[
        "oneshot",
        "--quiet",
        "--epochs",
        "1",
        "--backend",
        "cpu",
        "--data",
        data.path().to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(ok.status.success());
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "");
    assert_eq!(String::from_utf8_lossy(&ok.stderr), "");
    assert!(run.join("metrics.csv").is_file());
    let failed = supernet(&["oneshot", "--quiet", "--epochs", "0"]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("--epochs"));
}

/// Without XDG_RUNTIME_DIR (ssh, containers) the Vulkan loader says nothing on a run that
/// works.
#[test]
fn no_loader_noise_without_a_runtime_directory() {
    let output = Command::new(env!("CARGO_BIN_EXE_supernet"))
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("the binary runs");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}

#[test]
fn completions_and_the_manual_page() {
    for shell in ["bash", "zsh", "fish"] {
        let output = supernet(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains("oneshot") && script.contains("space"),
            "{shell}"
        );
    }
    let page = supernet(&["manpage"]);
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.starts_with(".ie") && page.contains(".TH supernet 1"),
        "{page}"
    );
}

/// metrics.csv of a run with --val: a header naming each column with its split and unit, and
/// every row with as many fields.
#[test]
fn metrics_csv_reads_as_a_table_with_its_validation_columns() {
    let data = small_mnist();
    let out = tempfile::tempdir().expect("temp dir");
    let run = out.path().join("run");
    let trained = supernet(&[
        "oneshot",
        "--epochs",
        "2",
        "--val",
        "200",
        "--backend",
        "cpu",
        "--data",
        data.path().to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).expect("metrics.csv");
    let header = reader.headers().expect("header").clone();
    for column in [
        "epoch",
        "lr",
        "train_loss_nats",
        "wall_seconds",
        "test_accuracy_00",
        "test_loss_nats_11",
        "val_accuracy_10",
        "val_loss_nats_01",
        "val_correct_11",
    ] {
        assert!(
            header.iter().any(|h| h == column),
            "no column {column}: {header:?}"
        );
    }
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a row")).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let lr = header.iter().position(|h| h == "lr").expect("lr");
    assert_eq!(
        &rows[1][lr], "0.7",
        "the schedule's learning rate, not its f32 rounding"
    );
    let json = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics.jsonl");
    assert_eq!(json.lines().count(), 2);
}

#[test]
fn standalone_does_not_offer_sampling() {
    let output = supernet(&["standalone", "--subnet", "1,0", "--sampling", "fair"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--sampling"), "{stderr}");
}
