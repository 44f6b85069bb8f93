//! `experiment` and `report`: the whole study, resumable, then its report.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use supernet::data::Dataset;
use supernet::engine::{Backend, CpuBackend, GpuBackend};
use supernet::model::Variant;
use supernet::report::summary::{Predictor, Summary};
use supernet::report::{self, clear_run, write_atomically, RunDir, Start, RUN_FILES};
use supernet::training::claim;
use supernet::training::experiment::{
    job_state, Experiment, Job, JobKind, JobResult, JobState, PLAN_FILE, RESULT_FILE,
};
use supernet::training::resume::STATE_FILE;
use supernet::training::{Mode, TrainConfig, Trainer};

use crate::cli::args::{ExperimentArgs, Parallel, VariantsArg};
use crate::cli::backend::{select, Selected};
use crate::cli::commands::{
    check_memory_of, host_name, load_data_for, protocol_config, sampling, train_one,
};
use crate::cli::output::{self, say, show};
use crate::cli::signals;

pub fn experiment(args: &ExperimentArgs) -> Result<()> {
    let experiment = plan(args);
    experiment.validate()?;
    let out = &args.out;
    refuse_a_run_folder(out)?;
    // Refuse a directory of other settings before training anything.
    let jobs = experiment.jobs();
    let states = jobs
        .iter()
        .map(|job| job_state(out, job, &experiment.config(job), experiment.kl_images))
        .collect::<supernet::Result<Vec<_>>>()
        .context("cannot resume the experiment")?;
    let pending = states
        .iter()
        .filter(|s| matches!(s, JobState::Pending))
        .count();
    remove_dead_claims(args, &jobs, &states);
    say!(
        "experiment in {}: {} trainings, {} finished earlier, {pending} to train",
        out.display(),
        jobs.len(),
        jobs.len() - pending
    );
    if pending == 0 {
        say!("nothing to train");
        return report(out);
    }
    // More workers than trainings left would find nothing to claim.
    let workers = args.workers.min(pending);
    if workers < args.workers {
        say!(
            "{pending} trainings left: {workers} workers, not {}",
            args.workers
        );
    }
    let protocol = &experiment.protocol;
    let data = load_data_for(&args.device, &protocol.space, protocol.validation)?;
    let backend = select(args.device.backend)?;
    let parallel = trainings_at_once(args, protocol, &data, &backend).min(pending);
    check_memory_of(protocol, &data, &args.device, parallel)?;
    say!("backend: {}", backend.describe());
    RunDir::create(out).context("cannot write the output directory")?;
    let plan = serde_json::to_string_pretty(&experiment.plan())?;
    write_atomically(&out.join(PLAN_FILE), format!("{plan}\n").as_bytes())?;
    signals::install()?;
    let others = spawn_workers(workers - 1)?;
    let shared = Shared {
        experiment: &experiment,
        data: &data,
        args,
        failed: AtomicBool::new(false),
    };
    let worked = if parallel == 1 {
        shared.session(&backend).work(&jobs)
    } else {
        say!("{parallel} trainings at once");
        work_in_parallel(&shared, &backend, &jobs, parallel)
    };
    // Stopped or failed, this worker still waits for the others (passing a stop on to them).
    let waited = wait_for_workers(others);
    worked?;
    waited?;
    let unfinished = jobs
        .iter()
        .filter(|job| !out.join(job.dir()).join(RESULT_FILE).is_file())
        .count();
    if unfinished > 0 {
        say!(
            "{unfinished} trainings are held by other workers; the last to finish writes the report (or run `supernet report {}`)",
            out.display()
        );
        return Ok(());
    }
    report(out)
}

/// An experiment's folder holds its plan and job folders; a folder that holds a run of
/// `oneshot`, `standalone` or `search` (or is locked by one) is not one, and mixing the two
/// would mix their files.
fn refuse_a_run_folder(out: &Path) -> Result<()> {
    if out.join(PLAN_FILE).exists() {
        return Ok(());
    }
    let run_files = RUN_FILES
        .into_iter()
        .chain([claim::LOCK_FILE, "ranking.json"])
        .filter(|f| out.join(f).exists());
    let subnet_runs = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("subnet-"))
        .filter(|e| e.path().join("config.json").exists())
        .map(|_| "subnet-*/config.json")
        .take(1);
    let held: Vec<&str> = run_files.chain(subnet_runs).take(3).collect();
    if !held.is_empty() {
        anyhow::bail!(
            "--out: {} holds a run, not an experiment ({}); give an experiment a folder of its own",
            out.display(),
            held.join(", ")
        );
    }
    Ok(())
}

/// The claims a killed worker left in finished jobs' folders.
fn remove_dead_claims(args: &ExperimentArgs, jobs: &[Job], states: &[JobState]) {
    let me = claim::record(&host_name().unwrap_or_else(|| "unknown".into()));
    let timeout = Duration::from_secs(args.claim_timeout);
    for (job, state) in jobs.iter().zip(states) {
        if let JobState::Finished(_) = state {
            claim::remove_dead(&args.out.join(job.dir()), &me, timeout);
        }
    }
}

/// `n` more processes of this command on the same folder, each one worker.
fn spawn_workers(n: usize) -> Result<Vec<std::process::Child>> {
    let exe = std::env::current_exe().context("cannot start workers")?;
    let mut args: Vec<String> = Vec::new();
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--workers" => {
                given.next();
            }
            a if a.starts_with("--workers=") => {}
            _ => args.push(arg),
        }
    }
    (0..n)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(&args)
                .args(["--workers", "1"])
                .spawn()
                .context("cannot start a worker")
        })
        .collect()
}

/// Waits for the local workers. A stop signal to this process is passed on to them, so that
/// a `kill` of the command stops every worker, as Ctrl-C (sent to the whole process group)
/// does; the command then exits as the signal says. It is passed on as SIGUSR1: a worker
/// that Ctrl-C reached already would take a second SIGINT or SIGTERM as "end at once",
/// before writing its state.
fn wait_for_workers(mut workers: Vec<std::process::Child>) -> Result<()> {
    let mut forwarded = None;
    let mut failed = None;
    while !workers.is_empty() {
        if let (None, Some((name, code))) = (forwarded, signals::received()) {
            for worker in &workers {
                // SAFETY: kill(2) on our own child's pid, which it keeps until we reap it.
                unsafe { libc::kill(worker.id() as libc::pid_t, libc::SIGUSR1) };
            }
            forwarded = Some((name, code));
        }
        let mut still = Vec::new();
        for mut worker in workers {
            match worker.try_wait().context("a worker")? {
                Some(status) if !status.success() => failed = Some(status),
                Some(_) => {}
                None => still.push(worker),
            }
        }
        workers = still;
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some((name, code)) = forwarded {
        let line =
            format!("stopped by {name}, every worker with it; rerun the same command to go on");
        return Err(signals::Stopped { line, code }.into());
    }
    match failed {
        Some(status) => {
            anyhow::bail!("a worker failed ({status}); rerun the same command to go on")
        }
        None => Ok(()),
    }
}

/// `report DIR`: statistics, figures and `report.md` from the saved results.
pub fn report(dir: &Path) -> Result<()> {
    let summary = report::experiment::read(dir)
        .with_context(|| format!("cannot read the experiment in {}", dir.display()))?;
    report::experiment::write(dir, &summary)
        .with_context(|| format!("cannot write the report into {}", dir.display()))?;
    print_summary(&summary);
    say!("report in {}", dir.join("report.md").display());
    Ok(())
}

/// The values in their order, each kept once (`--seeds 1,2,1` trains seeds 1 and 2).
fn first_of_each<T: PartialEq>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut kept = Vec::new();
    for value in values {
        if !kept.contains(&value) {
            kept.push(value);
        }
    }
    kept
}

fn plan(args: &ExperimentArgs) -> Experiment {
    let variants = match args.variants {
        VariantsArg::Sum => vec![Variant::Sum],
        VariantsArg::Concat => vec![Variant::Concat],
        VariantsArg::Both => Variant::ALL.to_vec(),
    };
    let samplings = first_of_each(args.sampling.iter().map(|&s| sampling(s)));
    let seeds = first_of_each(args.seeds.iter().copied());
    Experiment {
        variants,
        seeds,
        samplings,
        protocol: protocol_config(&args.protocol, Variant::Sum, Mode::OneShot),
        kl_images: args.kl_images,
        standalone: args.standalone,
    }
}

/// `--parallel`'s trainings at once. `auto`: on a hardware GPU up to 4, as many as fit in
/// `--max-memory` together (at least 1, which `check_memory_of` then judges alone); on the
/// CPU (whose kernels already use every core) or a software adapter (the same cores), 1.
fn trainings_at_once(
    args: &ExperimentArgs,
    protocol: &TrainConfig,
    data: &Dataset,
    backend: &Selected,
) -> usize {
    let hardware_gpu = matches!(backend, Selected::Gpu(gpu) if !gpu.context().is_software());
    match args.parallel {
        Parallel::Trainings(n) => n,
        Parallel::Auto if hardware_gpu => {
            // As `check_memory_of` counts: the data once, and per training its copy and model.
            let limit = args.device.max_memory * (1u64 << 30) as f64;
            let data_bytes = data.bytes() as f64;
            let per_training = protocol.estimated_bytes(data.train.rows) + data_bytes;
            let fit = (limit - data_bytes) / per_training;
            (fit.floor() as usize).clamp(1, 4)
        }
        Parallel::Auto => 1,
    }
}

/// `parallel` threads work the plan at once, each with its own backend: on the GPU a backend
/// of its own (buffers, command encoders) on the one shared device. A thread that fails stops
/// the others from claiming more; the first error is returned.
fn work_in_parallel(
    shared: &Shared,
    backend: &Selected,
    jobs: &[Job],
    parallel: usize,
) -> Result<()> {
    let device = match backend {
        Selected::Cpu(_) => None,
        Selected::Gpu(gpu) => Some(gpu.shared_context()),
    };
    let work = |worker: usize| -> Result<()> {
        // A thread that fails, or panics, stops the others claiming more.
        let _on_panic = StopOnPanic(&shared.failed);
        output::set_tag(&format!("[{worker}] "));
        let backend = match &device {
            None => Selected::Cpu(CpuBackend::new()),
            Some(ctx) => Selected::Gpu(GpuBackend::with_context(ctx.clone())),
        };
        let outcome = shared.session(&backend).work(jobs);
        if outcome.is_err() {
            shared.failed.store(true, Ordering::SeqCst);
        }
        outcome
    };
    let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
        let others: Vec<_> = (2..=parallel)
            .map(|worker| scope.spawn(move || work(worker)))
            .collect();
        // Worker 1 is this thread, which on the CPU is one of rayon's workers (see `main`).
        let first = work(1);
        output::set_tag("");
        let panicked = || Err(anyhow::anyhow!("a training thread panicked"));
        let rest = others
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| panicked()));
        std::iter::once(first).chain(rest).collect()
    });
    outcomes.into_iter().collect()
}

/// Sets the flag when dropped by a panic's unwinding.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// What every training of one `experiment` invocation shares, across its threads.
struct Shared<'a> {
    experiment: &'a Experiment,
    data: &'a Dataset,
    args: &'a ExperimentArgs,
    /// Set by a thread that failed: the others claim nothing more.
    failed: AtomicBool,
}

impl<'a> Shared<'a> {
    fn session<'s>(&'s self, backend: &'s Selected) -> Session<'s> {
        Session {
            experiment: self.experiment,
            data: self.data,
            backend,
            args: self.args,
            failed: &self.failed,
        }
    }
}

/// One thread's view: the shared plan and data, and its backend.
struct Session<'a> {
    experiment: &'a Experiment,
    data: &'a Dataset,
    backend: &'a Selected,
    args: &'a ExperimentArgs,
    failed: &'a AtomicBool,
}

impl Session<'_> {
    /// Works the plan: claims each unfinished job no live worker holds, trains it, releases
    /// it; stops when a pass finds nothing left to claim.
    fn work(&self, jobs: &[Job]) -> Result<()> {
        let host = host_name().unwrap_or_else(|| "unknown".into());
        let me = claim::record(&host);
        let timeout = Duration::from_secs(self.args.claim_timeout);
        let heartbeat = Duration::from_secs((self.args.claim_timeout / 10).clamp(1, 60));
        loop {
            let mut trained = 0;
            for job in jobs {
                if self.failed.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let dir = self.args.out.join(job.dir());
                if dir.join(RESULT_FILE).is_file() {
                    continue;
                }
                let claim::Found::Won(record) = claim::claim(&dir, &me, timeout)? else {
                    continue;
                };
                let held = claim::Held::start(&dir, record, heartbeat);
                // Finished by another worker between our look and our claim.
                let outcome = if dir.join(RESULT_FILE).is_file() {
                    Ok(())
                } else {
                    self.run_job(job)
                };
                held.release();
                outcome?;
                trained += 1;
            }
            if trained == 0 {
                return Ok(());
            }
        }
    }

    /// Trains `job`: a training that stopped part-way continues from its state; one that left
    /// no state (killed before its first epoch end) starts again, its files cleared.
    fn run_job(&self, job: &Job) -> Result<()> {
        let dir = self.args.out.join(job.dir());
        let resume = dir.join(STATE_FILE).is_file() && job.kind != JobKind::ZeroCost;
        let start = if resume { Start::Resume } else { Start::Fresh };
        if !resume {
            clear_run(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        let run = RunDir::create(&dir).context("cannot write the output directory")?;
        let result = match self.backend {
            Selected::Cpu(cpu) => self.train_job(cpu, job, &run, start),
            Selected::Gpu(gpu) => self.train_job(gpu, job, &run, start),
        };
        let result = result.map_err(|e| signals::explain(e, &rerun_line()))?;
        // Last, and atomically: the marker that this training is finished.
        let text = serde_json::to_string_pretty(&result)?;
        write_atomically(&dir.join(RESULT_FILE), format!("{text}\n").as_bytes())?;
        say!("{}: finished", job.dir().display());
        Ok(())
    }

    /// Trains `job` into `run`; after a one-shot training, the KL proxy. A zero-cost job
    /// only scores the subnets at initialisation.
    fn train_job<B: Backend>(
        &self,
        backend: &B,
        job: &Job,
        run: &RunDir,
        start: Start,
    ) -> Result<JobResult> {
        let started = Instant::now();
        let config = self.experiment.config(job);
        if job.kind == JobKind::ZeroCost {
            let trainer = Trainer::new(backend, self.data, config.clone())?;
            let mut result = JobResult::new(job, &config, self.backend.describe());
            result.test_images = Some(self.data.test.count);
            result.zero_cost = Some(trainer.zero_cost(config.batch_size)?);
            result.wall_seconds = started.elapsed().as_secs_f64();
            say!("{}: zero-cost proxies of every subnet", job.dir().display());
            return Ok(result);
        }
        let device = &self.args.device;
        let (history, trainer) = train_one(
            backend,
            self.backend,
            self.data,
            &config,
            run,
            device,
            start,
        )?;
        // A resumed training's history holds the time of the epochs before the resume too.
        let training_seconds = started
            .elapsed()
            .as_secs_f64()
            .max(history.last().map_or(0.0, |m| m.wall_seconds));
        let proxy_started = Instant::now();
        let mut result = JobResult::new(job, &config, self.backend.describe());
        result.test_images = Some(self.data.test.count);
        if let JobKind::OneShot(_) = job.kind {
            result.kl_proxy = Some(trainer.kl_proxy(self.experiment.kl_images)?);
        }
        result.wall_seconds = training_seconds + proxy_started.elapsed().as_secs_f64();
        result.stalled_epochs =
            supernet::training::stalled_epochs(&history, supernet::training::experiment::CLASSES);
        result.history = history;
        Ok(result)
    }
}

/// The command line as it was given.
fn rerun_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("supernet {}", args.join(" "))
}

/// One-shot accuracy's rank statistics on the terminal; the rest is in `report.md`.
fn print_summary(summary: &Summary) {
    show!(
        "one-shot accuracy vs stand-alone test accuracy\n  {} subnets, {} seed{}, ranked on the {} set",
        summary.subnets.len(),
        summary.plan.seeds.len(),
        if summary.plan.seeds.len() == 1 { "" } else { "s" },
        summary.ranking_set
    );
    show!("  group              Kendall tau-b  95 % interval    p         regret");
    for group in &summary.groups {
        let Some(a) = group.predictor(Predictor::OneshotAccuracy) else {
            continue;
        };
        let tau = &a.kendall_tau;
        show!(
            "  {:<18} {:<14} {:<16} {:<9} {:.4}",
            format!("{}, {}", group.variant, group.sampling),
            report::signed(tau.spread.mean),
            report::interval(tau),
            report::p_value(tau.p_value),
            a.regret.mean.unwrap_or(f64::NAN)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::first_of_each;

    #[test]
    fn repeated_values_are_kept_once_in_their_first_place() {
        assert_eq!(first_of_each([1u64, 2, 1, 3, 2].into_iter()), [1, 2, 3]);
    }
}
