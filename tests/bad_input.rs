//! Bad input of every kind: a one-line error naming the file, flag or value, a non-zero exit,
//! no panic, nothing written; and thousands of mutated IDX and safetensors files fed to the
//! readers, which must answer with errors, never a panic.

mod common;

use std::io::Write;
use std::path::Path;

use common::{small_mnist, supernet};
use rand::{Rng, SeedableRng};
use supernet::engine::CpuBackend;
use supernet::model::checkpoint::{self, LoadOptions, Trained};
use supernet::model::{SuperNet, SuperNetConfig, Variant};

/// The one error line of a failed run (no panic, no backtrace), which must hold `words`.
fn fails(args: &[&str], words: &[&str]) -> String {
    let output = supernet(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
    for word in words {
        assert!(
            errors[0].contains(word),
            "{args:?}: '{}' lacks '{word}'",
            errors[0]
        );
    }
    errors[0].to_string()
}

fn idx_header(dims: &[u32]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
    bytes
}

/// The small MNIST with `name` (a raw file of it) replaced by `bytes`.
fn with_file(name: &str, bytes: &[u8]) -> tempfile::TempDir {
    let data = small_mnist();
    std::fs::write(data.path().join(name), bytes).expect("write");
    data
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

#[test]
fn idx_dimensions_whose_product_overflows() {
    let header = idx_header(&[6000, 1 << 31, 1 << 31]);
    let data = with_file("train-images-idx3-ubyte", &header);
    let out = data.path().join("run");
    fails(
        &[
            "oneshot",
            "--backend",
            "cpu",
            "--data",
            path(data.path()),
            "--out",
            path(&out),
        ],
        &[
            "train-images-idx3-ubyte",
            "more values than memory can hold",
        ],
    );
    assert!(!out.exists());
    let data = with_file("t10k-images-idx3-ubyte", &header);
    let weights = common::fixture_path("weights/torch_sum_seed3.safetensors");
    fails(
        &[
            "eval",
            "--weights",
            path(&weights),
            "--backend",
            "cpu",
            "--data",
            path(data.path()),
        ],
        &["t10k-images-idx3-ubyte", "more values than memory can hold"],
    );
}

#[test]
fn empty_images_and_train_and_test_of_different_sizes() {
    let data = with_file("train-images-idx3-ubyte", &idx_header(&[1280, 0, 0]));
    let out = data.path().join("run");
    fails(
        &[
            "oneshot",
            "--backend",
            "cpu",
            "--data",
            path(data.path()),
            "--out",
            path(&out),
        ],
        &["train-images-idx3-ubyte", "0x0"],
    );
    let mut images = idx_header(&[500, 32, 32]);
    images.extend(vec![0u8; 500 * 32 * 32]);
    let data = with_file("t10k-images-idx3-ubyte", &images);
    let out = data.path().join("run");
    fails(
        &[
            "oneshot",
            "--backend",
            "cpu",
            "--data",
            path(data.path()),
            "--out",
            path(&out),
        ],
        &[
            "t10k-images-idx3-ubyte",
            "32x32 test images",
            "train-images-idx3-ubyte",
            "28x28",
        ],
    );
    assert!(
        !out.exists(),
        "config.json written before the sizes were checked"
    );
}

#[test]
fn models_and_batches_past_the_memory_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    for flag in [
        ["--channels", "4294967295"],
        ["--hidden", "4294967295"],
        ["--channels", "1000"],
        ["--batch-size", "100000"],
    ] {
        let line = fails(
            &[
                "oneshot",
                "--backend",
                "cpu",
                flag[0],
                flag[1],
                "--out",
                path(&out),
            ],
            &["--max-memory", "GiB", flag[0]],
        );
        assert!(!out.exists(), "{line}");
    }
    fails(&["oneshot", "--max-memory", "0"], &["--max-memory"]);
}

#[test]
fn learning_rates_that_f32_cannot_hold_and_negative_values() {
    for lr in ["1e39", "1e-50", "-1", "nan"] {
        fails(&["oneshot", "--backend", "cpu", "--lr", lr], &["--lr"]);
    }
    fails(&["oneshot", "--gamma", "-0.5"], &["--gamma", "positive"]);
    fails(&["oneshot", "--gamma", "1e-30"], &["--gamma", "epoch 14"]);
}

#[test]
fn weights_with_nan_and_weights_of_other_classes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cpu = CpuBackend::new();
    let config = SuperNetConfig::mnist(Variant::Sum);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let net = SuperNet::init(&cpu, config.clone(), &mut rng).expect("init");
    let mut named: Vec<(String, Vec<f32>)> = net
        .named_parameters()
        .map(|(n, p)| (n.to_string(), p.to_vec(&cpu).expect("values")))
        .collect();
    named
        .iter_mut()
        .find(|(n, _)| n == "block2.conv5.weight")
        .expect("param")
        .1[7] = f32::NAN;
    let broken = SuperNet::from_values(&cpu, config.clone(), &named).expect("net");
    let nan = dir.path().join("nan.safetensors");
    checkpoint::save(&cpu, &broken, &Trained::OneShot, &nan).expect("save");
    fails(
        &["eval", "--weights", path(&nan), "--backend", "cpu"],
        &["nan.safetensors", "block2.conv5.weight", "NaN"],
    );
    let five = SuperNetConfig {
        classes: 5,
        ..config
    };
    let net = SuperNet::init(&cpu, five, &mut rng).expect("init");
    let classes = dir.path().join("five.safetensors");
    checkpoint::save(&cpu, &net, &Trained::OneShot, &classes).expect("save");
    fails(
        &["eval", "--weights", path(&classes), "--backend", "cpu"],
        &["five.safetensors", "5 classes", "labels go up to 9"],
    );
}

/// A small finished experiment, then each result broken in turn: `report` refuses it.
#[test]
fn report_refuses_results_experiment_would_not_have_trained() {
    let data = small_mnist();
    let out = tempfile::tempdir().expect("temp dir");
    let trained = supernet(&[
        "experiment",
        "--backend",
        "cpu",
        "--supernet",
        "sum",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--kl-images",
        "16",
        "--data",
        path(data.path()),
        "--out",
        path(out.path()),
    ]);
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let result = out.path().join("sum/seed-1/standalone-10/result.json");
    let original = std::fs::read_to_string(&result).expect("result");
    let edit = |from: &str, to: &str| {
        assert!(original.contains(from), "{from}");
        std::fs::write(&result, original.replacen(from, to, 1)).expect("write");
    };
    let report = || supernet(&["report", path(out.path())]);
    edit("\"lr\": 1.0", "\"lr\": 0.5");
    let message = String::from_utf8_lossy(&report().stderr).into_owned();
    assert!(
        message.contains("standalone-10") && message.contains("lr was 1.0, now 0.5"),
        "{message}"
    );
    edit("\"version\": 1", "\"version\": 2");
    let message = String::from_utf8_lossy(&report().stderr).into_owned();
    assert!(message.contains("format 2"), "{message}");
    let accuracy = original.find("\"accuracy\": ").expect("an accuracy");
    let end = original[accuracy..].find(',').expect("a comma") + accuracy;
    std::fs::write(
        &result,
        format!(
            "{}\"accuracy\": 1.5{}",
            &original[..accuracy],
            &original[end..]
        ),
    )
    .expect("write");
    let message = String::from_utf8_lossy(&report().stderr).into_owned();
    assert!(
        message.contains("1.5") && message.contains("not a fraction"),
        "{message}"
    );
    std::fs::write(&result, &original).expect("restore");
    assert!(report().status.success());
}

/// 10 images announced, then 64 MiB of zeros inflating from a few dozen KiB: the reader
/// stops one byte past what the header announces and refuses the rest.
#[test]
fn a_gzip_bomb_is_refused_without_inflating_it() {
    let data = small_mnist();
    let mut bytes = idx_header(&[10, 28, 28]);
    bytes.extend(vec![0u8; 64 << 20]);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&bytes).expect("gzip");
    let bomb = encoder.finish().expect("gzip");
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    std::fs::remove_file(data.path().join("t10k-images-idx3-ubyte")).expect("remove");
    let file = data.path().join("t10k-images-idx3-ubyte.gz");
    std::fs::write(&file, &bomb).expect("write");
    let started = std::time::Instant::now();
    let error = supernet::data::idx::read_idx(&file, 3).expect_err("a bomb");
    assert!(
        error
            .to_string()
            .contains("announce 7840 values, and more data follows"),
        "{error}"
    );
    assert!(
        started.elapsed().as_secs_f64() < 2.0,
        "it inflated the bomb"
    );
}

/// Seeded: random bytes, flipped bits, truncations and huge dimensions in IDX files, and
/// the same in safetensors files: the readers answer with errors, never a panic.
#[test]
fn mutated_files_give_errors_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1d);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut idx = idx_header(&[3, 4, 4]);
    idx.extend((0..48).map(|i| i as u8));
    let weights = std::fs::read(common::fixture_path("weights/torch_sum_seed3.safetensors"))
        .expect("weights");
    let cpu = CpuBackend::new();
    for case in 0..3000 {
        let (original, is_idx) = if case % 2 == 0 {
            (&idx, true)
        } else {
            (&weights, false)
        };
        let mut bytes = original.clone();
        match rng.random_range(0..5) {
            0 => {
                let n = rng.random_range(0..bytes.len());
                bytes.truncate(n);
            }
            1 => {
                for _ in 0..rng.random_range(1..8) {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] ^= 1 << rng.random_range(0..8);
                }
            }
            2 => {
                let i = rng.random_range(0..bytes.len().min(64));
                bytes[i] = rng.random();
            }
            3 => {
                // A huge count in a header field.
                let i = 4 * rng.random_range(0..4usize);
                let end = (i + 4).min(bytes.len());
                bytes[i..end].fill(0xff);
            }
            _ => {
                bytes = (0..rng.random_range(0..200))
                    .map(|_| rng.random())
                    .collect()
            }
        }
        let file = dir.path().join(if is_idx {
            "case.idx"
        } else {
            "case.safetensors"
        });
        std::fs::write(&file, &bytes).expect("write");
        let outcome = std::panic::catch_unwind(|| {
            if is_idx {
                let _ = supernet::data::idx::read_idx(&file, 3);
            } else {
                let _ = checkpoint::read(&cpu, &file, &LoadOptions::default());
            }
        });
        assert!(outcome.is_ok(), "case {case} panicked: {bytes:02x?}");
    }
}
