//! Shared test support: the GPU backend (or a loud skip), the closeness check, seeded data,
//! and the PyTorch fixtures.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use supernet::engine::{Backend, GpuBackend, Tensor};
use supernet::model::{SearchSpace, Subnet};

/// The GPU backend on the shared context, printing the adapter it runs on. Without an adapter
/// the test is skipped with a message, except under `CI=true`, where that is a failure.
pub fn gpu() -> Option<GpuBackend> {
    match GpuBackend::new() {
        Ok(gpu) => {
            announce(&gpu);
            Some(gpu)
        }
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but the GPU backend is unavailable: {e}")
        }
        Err(e) => {
            // Written past the harness's capture so that the skip is never silent.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: GPU backend unavailable ({e}); on Linux, mesa-vulkan-drivers provides lavapipe");
            None
        }
    }
}

/// Names the adapter once per test binary. Written to stderr directly so that the line shows
/// in the log even though the test harness captures `eprintln!` of passing tests.
fn announce(gpu: &GpuBackend) {
    use std::io::Write;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let name = gpu.context().adapter_name();
        let _ = writeln!(std::io::stderr(), "GPU tests run on adapter: {name}");
    });
}

/// `|got - want| <= atol + rtol * |want|` element by element; on failure the message names the
/// worst element and its difference.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if (excess > 0.0 || excess.is_nan()) && worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((i, excess));
        }
    }
    let max_diff = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).abs())
        .fold(0.0, f64::max);
    if let Some((i, _)) = worst {
        panic!(
            "{what}: element {i} is {} but expected {} (|diff| {:.3e} > atol {atol:e} + rtol {rtol:e} * |expected|); largest |diff| {max_diff:.3e}",
            got[i], want[i], (got[i] as f64 - want[i] as f64).abs()
        );
    }
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `len` values uniform in [-1, 1).
pub fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Multiples of 1/4 in [-1, 1]: every product a multiple of 1/16 and every sum of them exact
/// in f32, so a convolution of them is the same on every backend, in any order, and what
/// follows it (which maximum of a pooling window, whether it is positive) compares exactly,
/// ties and zeros included.
pub fn quarters(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| rng.random_range(-4i32..=4) as f32 / 4.0)
        .collect()
}

pub fn tensor<B: Backend>(backend: &B, data: &[f32], shape: &[usize]) -> Tensor<B> {
    Tensor::from_slice(backend, data, shape).expect("upload")
}

pub fn param<B: Backend>(backend: &B, data: &[f32], shape: &[usize]) -> Tensor<B> {
    Tensor::parameter(backend, data, shape).expect("upload")
}

pub fn values<B: Backend>(backend: &B, t: &Tensor<B>) -> Vec<f32> {
    t.to_vec(backend).expect("download")
}

// ---- PyTorch fixtures (tests/fixtures/torch, see its README) -----------------------------

#[derive(Deserialize, Clone)]
pub struct Json {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Json {
    pub fn f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }

    pub fn u32(&self) -> Vec<u32> {
        self.data.iter().map(|&v| v as u32).collect()
    }
}

#[derive(Deserialize)]
pub struct OpFixture {
    pub op: String,
    pub params: serde_json::Value,
    pub tensors: HashMap<String, Json>,
}

impl OpFixture {
    pub fn tensor(&self, name: &str) -> &Json {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture {} has no tensor {name}", self.op))
    }
}

/// The source tree the tests read their fixtures and data from: the one they were built in, or
/// `SUPERNET_SOURCE_DIR` (test executables carried to another machine, as
/// `scripts/gpu-report.sh` does).
pub fn source_dir() -> PathBuf {
    std::env::var_os("SUPERNET_SOURCE_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

pub fn fixture_path(relative: &str) -> PathBuf {
    source_dir().join("tests/fixtures/torch").join(relative)
}

pub fn load<T: for<'de> Deserialize<'de>>(relative: &str) -> T {
    let path = fixture_path(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file of a fixture folder whose name starts with `prefix`.
pub fn fixture_files(folder: &str, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_path(folder))
        .expect("fixture folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixture {folder}/{prefix}*");
    names.into_iter().map(|n| format!("{folder}/{n}")).collect()
}

/// Runs the `supernet` binary (with a runtime directory, which the Vulkan loader wants): the one
/// built with the tests, or `SUPERNET_BIN` (carried to another machine).
pub fn supernet(args: &[&str]) -> std::process::Output {
    let binary = std::env::var_os("SUPERNET_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_supernet")),
        PathBuf::from,
    );
    std::process::Command::new(binary)
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("the binary runs")
}

// ---- search spaces ---------------------------------------------------------------------------

/// Whether parameter `name` belongs to a conv that `subnet` does not use: in some block, a
/// choice other than the subnet's.
pub fn unused_by(space: &SearchSpace, subnet: &Subnet, name: &str) -> bool {
    space.blocks().iter().enumerate().any(|(b, choices)| {
        choices.iter().enumerate().any(|(c, choice)| {
            let other = c != subnet.choices()[b] as usize;
            let prefix = choice.module().map(|m| format!("block{}.{m}.", b + 1));
            other && prefix.is_some_and(|p| name.starts_with(&p))
        })
    })
}

// ---- small data ------------------------------------------------------------------------------

/// The first `count` images of a shipped IDX file, written raw with its header adjusted.
pub fn slice_idx(from: &Path, to: &Path, count: usize) {
    let bytes = supernet::data::idx::decompressed(from).expect("shipped file");
    let dims = bytes[3] as usize;
    let item: usize = (1..dims)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .product();
    let header = 4 + 4 * dims;
    let mut out = bytes[..header].to_vec();
    out[4..8].copy_from_slice(&(count as u32).to_be_bytes());
    out.extend_from_slice(&bytes[header..header + count * item]);
    std::fs::write(to, out).expect("write slice");
}

/// 1280 training and 500 test images.
pub fn small_mnist() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let shipped = source_dir().join("data/mnist");
    for (prefix, count) in [("train", 1280), ("t10k", 500)] {
        for kind in ["images-idx3-ubyte", "labels-idx1-ubyte"] {
            let name = format!("{prefix}-{kind}");
            let from = shipped.join(format!("{name}.gz"));
            slice_idx(&from, &dir.path().join(name), count);
        }
    }
    dir
}
