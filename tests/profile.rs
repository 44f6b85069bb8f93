//! `bench --profile`: a row per GPU kernel, its dispatches adding up to the step's, and a GPU
//! time for each where the adapter has timestamp queries.

mod common;
use common::supernet;

/// A row of the table: the kernel, dispatches per step and GPU microseconds ("-" untimed).
fn rows(stdout: &str) -> Vec<(String, f64, Option<f64>)> {
    stdout
        .lines()
        .skip_while(|line| !line.contains("dispatches/step"))
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with("all kernels"))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dispatches = fields[1].parse().expect("dispatches per step");
            (fields[0].to_string(), dispatches, fields[2].parse().ok())
        })
        .collect()
}

/// The `N` of "gpu: N dispatches per step", from the unprofiled steps.
fn dispatches_per_step(stdout: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|line| line.starts_with("gpu: "))
        .expect("a dispatch count line");
    line["gpu: ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a dispatch count")
}

#[test]
fn bench_profile_times_every_kernel_of_a_step() {
    let Some(gpu) = common::gpu() else { return };
    let data = common::small_mnist();
    let data = data.path().to_str().expect("a UTF-8 path");
    let output = supernet(&[
        "bench",
        "--backend",
        "gpu",
        "--data",
        data,
        "--steps",
        "3",
        "--warmup",
        "1",
        "--profile",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let rows = rows(&stdout);
    let kernels: Vec<&str> = rows.iter().map(|(name, _, _)| name.as_str()).collect();
    for kernel in [
        "conv_relu_pool.forward",
        "conv_relu_pool.param_grads",
        "softmax_xent.backward",
        "adadelta.step",
    ] {
        assert!(kernels.contains(&kernel), "no row for {kernel}:\n{stdout}");
    }
    // Each row is rounded to 0.1, so the sum may be off by 0.05 a row.
    let profiled: f64 = rows.iter().map(|(_, dispatches, _)| dispatches).sum();
    let slack = 0.05 * rows.len() as f64 + 1e-9;
    assert!(
        (profiled - dispatches_per_step(&stdout)).abs() <= slack,
        "{stdout}"
    );

    if gpu.context().has_timestamps() {
        for (name, _, micros) in &rows {
            assert!(
                // A number, not "-" (a tiny kernel may round to 0.0 us).
                micros.is_some_and(|us| us >= 0.0),
                "{name} untimed:\n{stdout}"
            );
        }
        assert!(stdout.contains("GPU busy"), "{stdout}");
    } else {
        assert!(stdout.contains("no timestamp queries"), "{stdout}");
        assert!(
            rows.iter().all(|(_, _, micros)| micros.is_none()),
            "{stdout}"
        );
    }
}
