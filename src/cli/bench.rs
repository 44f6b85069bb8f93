//! `supernet bench`: times one-shot training steps and one evaluation pass on a backend.
//!
//! Method: the data is uploaded and `--warmup` steps run first (pipelines, buffer pools and
//! caches warm); then `--steps` steps are timed from the first to the loss read-back that waits
//! for the last of them, and one evaluation of every subnet of the space on the test set is
//! timed the same way. An epoch is extrapolated from the time per step (60,000 images / batch
//! steps).
//!
//! `--profile` then runs as many steps again with every GPU kernel timed by timestamp queries
//! (each dispatch in a pass of its own, the device waited for at each submit, so only the GPU
//! times of that phase mean anything) and prints a table per kernel: dispatches per step, GPU
//! microseconds per step, share of the GPU time, and the GPU's busy share of an unprofiled
//! step's wall time.

use std::time::Instant;

use anyhow::Result;
use supernet::data::Dataset;
use supernet::engine::{Backend, GpuBackend, KernelProfile};
use supernet::model::{SearchSpace, Variant};
use supernet::training::{Mode, TrainConfig, Trainer};

use crate::cli::backend::Selected;
use crate::cli::output::show;

pub struct BenchArgs {
    pub variant: Variant,
    pub space: SearchSpace,
    pub batch_size: usize,
    pub steps: usize,
    pub warmup: usize,
    pub profile: bool,
}

pub fn run(selected: &Selected, data: &Dataset, args: &BenchArgs) -> Result<()> {
    show!("backend: {}", selected.describe());
    match selected {
        Selected::Cpu(_) if args.profile => {
            anyhow::bail!("--profile times GPU kernels, and the CPU backend was selected: give --backend gpu on a machine with an adapter")
        }
        Selected::Cpu(cpu) => bench_on(cpu, None, data, args),
        Selected::Gpu(gpu) => bench_on(gpu, Some(gpu), data, args),
    }
}

fn bench_on<B: Backend>(
    backend: &B,
    gpu: Option<&GpuBackend>,
    data: &Dataset,
    args: &BenchArgs,
) -> Result<()> {
    let config = TrainConfig {
        space: args.space.clone(),
        batch_size: args.batch_size,
        ..TrainConfig::study(args.variant, Mode::OneShot)
    };
    let mut trainer = Trainer::new(backend, data, config)?;
    trainer.train_steps(args.warmup)?;
    let seconds_before = trainer.step_seconds();
    let gpu_before = gpu.map(GpuCounters::read);

    let started = Instant::now();
    let steps = trainer.train_steps(args.steps)?.len();
    let train_seconds = started.elapsed().as_secs_f64();
    let per_step = train_seconds / steps as f64;
    let images = (steps * args.batch_size) as f64;
    let epoch_steps = data.train.count.div_ceil(args.batch_size);
    // Two lines, so that each fits 80 columns.
    show!(
        "one-shot training ({:?}, space {}, batch {}): {steps} steps in {train_seconds:.3} s",
        args.variant,
        args.space,
        args.batch_size,
    );
    show!(
        "  {:.0} images/s, {:.2} ms/step -> {:.2} s per epoch of {epoch_steps} steps",
        images / train_seconds,
        1e3 * per_step,
        per_step * epoch_steps as f64
    );
    if let (Some(gpu), Some(before)) = (gpu, gpu_before) {
        let per_step = GpuCounters::read(gpu).since(&before, steps as f64);
        let step_cpu = (trainer.step_seconds() - seconds_before) / steps as f64;
        show!(
            "gpu: {:.1} dispatches per step; CPU time per step: {:.3} ms in all",
            per_step.dispatches,
            1e3 * step_cpu,
        );
        show!(
            "  ({:.3} ms encoding commands, {:.3} ms in queue submit)",
            1e3 * per_step.record_seconds,
            1e3 * per_step.submit_seconds
        );
        if args.profile {
            profile(gpu, &mut trainer, args.steps, train_seconds / steps as f64)?;
        }
    }

    let started = Instant::now();
    let subnets = trainer.evaluate_all()?;
    let eval_seconds = started.elapsed().as_secs_f64();
    let evaluated = subnets.len() * data.test.count;
    show!(
        "evaluation: {} subnets x {} test images in {eval_seconds:.3} s, {:.0} images/s",
        subnets.len(),
        data.test.count,
        evaluated as f64 / eval_seconds
    );
    match peak_resident_megabytes() {
        Some(megabytes) => show!("peak resident memory: {megabytes:.0} MB"),
        None => show!("peak resident memory: not available on this system"),
    }
    Ok(())
}

/// Runs `steps` more steps with every kernel timed and prints the table.
fn profile<B: Backend>(
    gpu: &GpuBackend,
    trainer: &mut Trainer<B>,
    steps: usize,
    step_seconds: f64,
) -> Result<()> {
    let timed = gpu.start_profiling()?;
    let steps = trainer.train_steps(steps)?.len();
    let mut kernels = gpu.stop_profiling()?;
    if !timed {
        show!("profile: the adapter offers no timestamp queries; dispatch counts only");
    }
    kernels.sort_by(|a, b| {
        let time = |k: &KernelProfile| k.gpu_seconds.unwrap_or(0.0);
        time(b)
            .total_cmp(&time(a))
            .then(b.dispatches.cmp(&a.dispatches))
    });
    print_profile(&kernels, steps as f64, step_seconds);
    Ok(())
}

fn print_profile(kernels: &[KernelProfile], steps: f64, step_seconds: f64) {
    let total: f64 = kernels.iter().filter_map(|k| k.gpu_seconds).sum();
    let dispatches: u64 = kernels.iter().map(|k| k.dispatches).sum();
    show!(
        "  {:<28} {:>15} {:>12} {:>7}",
        "kernel",
        "dispatches/step",
        "GPU us/step",
        "share"
    );
    for kernel in kernels {
        let name = format!("{}.{}", kernel.shader, kernel.entry);
        let per_step = kernel.dispatches as f64 / steps;
        let (micros, share) = match kernel.gpu_seconds {
            Some(seconds) => (
                format!("{:.1}", 1e6 * seconds / steps),
                format!("{:.1} %", 100.0 * seconds / total.max(f64::MIN_POSITIVE)),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        show!("  {name:<28} {per_step:>15.1} {micros:>12} {share:>7}");
    }
    let timed = kernels.iter().any(|k| k.gpu_seconds.is_some());
    let busy = 1e6 * total / steps;
    let busy_text = if timed {
        format!("{busy:.1}")
    } else {
        "-".to_string()
    };
    let all = dispatches as f64 / steps;
    show!("  {:<28} {all:>15.1} {busy_text:>12}", "all kernels");
    if timed {
        show!(
            "GPU busy {busy:.0} us of an unprofiled step's {:.0} us of wall time ({:.0} %)",
            1e6 * step_seconds,
            100.0 * busy / (1e6 * step_seconds)
        );
    }
}

/// The process's peak resident set (VmHWM), where the OS reports it (Linux).
fn peak_resident_megabytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kilobytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes / 1024.0)
}

/// The GPU backend's counters, to difference around the timed steps.
struct GpuCounters {
    dispatches: f64,
    record_seconds: f64,
    submit_seconds: f64,
}

impl GpuCounters {
    fn read(gpu: &GpuBackend) -> Self {
        GpuCounters {
            dispatches: gpu.dispatch_count() as f64,
            record_seconds: gpu.record_seconds(),
            submit_seconds: gpu.submit_seconds(),
        }
    }

    /// Per step since `before`.
    fn since(&self, before: &GpuCounters, steps: f64) -> GpuCounters {
        GpuCounters {
            dispatches: (self.dispatches - before.dispatches) / steps,
            record_seconds: (self.record_seconds - before.record_seconds) / steps,
            submit_seconds: (self.submit_seconds - before.submit_seconds) / steps,
        }
    }
}
