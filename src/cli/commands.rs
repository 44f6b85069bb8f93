//! The commands: train (one-shot or stand-alone), evaluate saved weights, export a subnet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;
use supernet::data::{self, Dataset};
use supernet::engine::Backend;
use supernet::model::checkpoint::{self, Checkpoint, LoadOptions, Trained};
use supernet::model::{export, SearchSpace, Subnet, Variant};
use supernet::report::{Existing, RunDir, Start};
use supernet::training::claim::{FolderLock, CLAIM_FILE};
use supernet::training::experiment::{PLAN_FILE, RESULT_FILE};
use supernet::training::{
    evaluate_subnets, DeviceSplit, EpochMetrics, Mode, Sampling, SubnetMetrics, TrainConfig,
    Trainer, EVAL_BATCH,
};

use crate::cli::args::{
    BackendArg, DeviceArgs, ProtocolArgs, SamplingArg, SubnetChoice, TrainArgs, VariantArg,
};
use crate::cli::backend::{select, Selected};
use crate::cli::bench::BenchArgs;
use crate::cli::output::say;
use crate::cli::progress::{save_weights, Progress};
use crate::cli::signals;
use crate::cli::tables::{print_table, Entry};

pub(crate) fn variant(arg: VariantArg) -> Variant {
    match arg {
        VariantArg::Sum => Variant::Sum,
        VariantArg::Concat => Variant::Concat,
    }
}

pub fn sampling(arg: SamplingArg) -> Sampling {
    match arg {
        SamplingArg::Uniform => Sampling::Uniform,
        SamplingArg::Fair => Sampling::Fair,
    }
}

/// The protocol flags over the study's defaults.
pub fn protocol_config(args: &ProtocolArgs, variant: Variant, mode: Mode) -> TrainConfig {
    TrainConfig {
        space: args.space.space.clone(),
        channels: args.channels as usize,
        hidden: args.hidden as usize,
        epochs: args.epochs as usize,
        batch_size: args.batch_size as usize,
        lr: args.lr,
        gamma: args.gamma,
        shuffle: !args.no_shuffle,
        validation: args.val as usize,
        ..TrainConfig::study(variant, mode)
    }
}

/// What a training command trains.
pub enum Training {
    OneShot(SamplingArg),
    Standalone(SubnetChoice),
}

fn train_config(args: &TrainArgs, mode: Mode, sampling_arg: SamplingArg) -> Result<TrainConfig> {
    let config = TrainConfig {
        seed: args.seed,
        sampling: sampling(sampling_arg),
        ..protocol_config(&args.protocol, variant(args.variant), mode)
    };
    config.validate()?;
    Ok(config)
}

/// `--data`, or the shipped MNIST wherever it is found (see `data::locate`).
pub fn data_dir(device: &DeviceArgs) -> Result<PathBuf> {
    match &device.data {
        Some(dir) => Ok(dir.clone()),
        None => Ok(data::locate()?),
    }
}

/// The dataset, a file announcing more than `--max-memory` refused before it is read.
pub fn load_data(device: &DeviceArgs) -> Result<Dataset> {
    let dir = data_dir(device)?;
    data::load_within(&dir, max_memory_bytes(device) as u64).context("cannot load the dataset")
}

fn max_memory_bytes(device: &DeviceArgs) -> f64 {
    device.max_memory * GIB
}

const GIB: f64 = (1u64 << 30) as f64;

/// `bytes` in GiB (absurd sizes beyond u64 included), or a smaller unit below one.
fn size(bytes: f64) -> String {
    match bytes {
        b if b >= GIB => format!("{:.1} GiB", b / GIB),
        b => data::idx::size(b as u64),
    }
}

/// Refuses a training larger than `--max-memory` (before anything is allocated or written).
pub fn check_memory(config: &TrainConfig, data: &Dataset, device: &DeviceArgs) -> Result<()> {
    check_memory_of(config, data, device, 1)
}

/// `trainings` at once share `--max-memory`.
pub fn check_memory_of(
    config: &TrainConfig,
    data: &Dataset,
    device: &DeviceArgs,
    trainings: usize,
) -> Result<()> {
    // The decoded dataset once, and per training its copy on the device and the model.
    let limit = max_memory_bytes(device);
    let data_bytes = data.bytes() as f64;
    let per_training = config.estimated_bytes(data.train.rows) + data_bytes;
    let need = data_bytes + trainings as f64 * per_training;
    if need <= limit {
        return Ok(());
    }
    let at_once = match trainings {
        1 => String::new(),
        n => format!(" ({n} trainings at once, --parallel)"),
    };
    anyhow::bail!(
        "--max-memory: this would take about {}{at_once}: the data {} decoded and as much again on the device per training, the model {} (--channels {}, --hidden {}, --batch-size {}); more than the {} allowed; raise --max-memory if the machine has it",
        size(need),
        size(data_bytes),
        size(config.estimated_bytes(data.train.rows)),
        config.channels,
        config.hidden,
        config.batch_size,
        size(limit)
    )
}

/// The data, checked to fit the space and the hold-out, before anything is written.
pub fn load_data_for(device: &DeviceArgs, space: &SearchSpace, hold_out: usize) -> Result<Dataset> {
    let data = load_data(device)?;
    space.check_image_side(data.train.rows)?;
    data.train.check_hold_out(hold_out)?;
    Ok(data)
}

/// `oneshot`, or `standalone` for each chosen subnet: everything is checked (settings, data,
/// backend, output directory) before anything is written.
pub fn train(args: &TrainArgs, training: Training) -> Result<()> {
    let space = &args.protocol.space.space;
    let (modes, sampling_arg): (Vec<Mode>, SamplingArg) = match &training {
        Training::OneShot(sampling) => (vec![Mode::OneShot], *sampling),
        Training::Standalone(SubnetChoice::One(name)) => (
            vec![Mode::Standalone(space.parse_subnet(name)?)],
            SamplingArg::Uniform,
        ),
        Training::Standalone(SubnetChoice::All) => (
            space.subnets().into_iter().map(Mode::Standalone).collect(),
            SamplingArg::Uniform,
        ),
    };
    let configs = modes
        .iter()
        .map(|&mode| train_config(args, mode, sampling_arg))
        .collect::<Result<Vec<_>>>()?;
    let data = load_data_for(&args.device, space, args.protocol.val as usize)?;
    check_memory(&configs[0], &data, &args.device)?;
    let backend = select(args.device.backend)?;
    say!("backend: {}", backend.describe());
    let kind = match training {
        Training::OneShot(_) => "oneshot",
        Training::Standalone(_) => "standalone",
    };
    let existing = match (args.resume, args.force) {
        (true, _) => Existing::Resume,
        (_, true) => Existing::Clear,
        _ => Existing::Refuse,
    };
    // Held until the command ends: a second writer of the folder is refused, naming this one.
    let _lock = args.out.as_deref().map(lock_run_folder).transpose()?;
    let runs = run_dirs(args, &configs, existing)?;
    signals::install()?;
    let mut finals = Vec::new();
    for (config, (run, start)) in configs.iter().zip(runs) {
        let trained = match &backend {
            Selected::Cpu(cpu) => {
                train_one(cpu, &backend, &data, config, &run, &args.device, start)
                    .map(|(history, _)| history)
            }
            Selected::Gpu(gpu) => {
                train_one(gpu, &backend, &data, config, &run, &args.device, start)
                    .map(|(history, _)| history)
            }
        };
        let resume_line = format!("{} --resume --out {}", command_line(), run.path().display());
        let history = trained.map_err(|e| signals::explain(e, &resume_line))?;
        finals.extend(history.last().map(|m| m.subnets.clone()));
        say!("results in {}", run.path().display());
    }
    let merged: BTreeMap<String, SubnetMetrics> = finals.into_iter().flatten().collect();
    print_table(
        &format!(
            "{} {kind}: final test accuracy",
            variant(args.variant).name()
        ),
        &entries(space, &space.subnets(), &merged),
    );
    Ok(())
}

/// Locks `out` for this process, or names the writer that holds it. An experiment's folder is
/// refused: its trainings are its workers' (`experiment` resumes them).
pub fn lock_run_folder(out: &Path) -> Result<FolderLock> {
    if out.join(PLAN_FILE).exists() {
        anyhow::bail!(
            "--out: {} holds an experiment ({PLAN_FILE}); `supernet experiment --out {}` continues it",
            out.display(),
            out.display()
        );
    }
    if let Some(file) = [CLAIM_FILE, RESULT_FILE]
        .iter()
        .find(|f| out.join(f).exists())
    {
        anyhow::bail!(
            "--out: {} is a training of an experiment (it holds {file}); rerun the experiment to continue it",
            out.display()
        );
    }
    let host = host_name().unwrap_or_else(|| "unknown".into());
    FolderLock::acquire(out, &host).context("cannot use the output directory")
}

/// The command line without its `--out`, `--resume` and `--force`, to say how to resume.
fn command_line() -> String {
    let mut words = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(word) = args.next() {
        match word.as_str() {
            "--out" => {
                args.next();
            }
            "--resume" | "--force" => {}
            w if w.starts_with("--out=") => {}
            _ => words.push(word),
        }
    }
    format!("supernet {}", words.join(" "))
}

/// One folder per training, each checked before anything trains: `--out` (a subfolder per
/// subnet for `--subnet all`) as `existing` says, or a new one named after the training.
fn run_dirs(
    args: &TrainArgs,
    configs: &[TrainConfig],
    existing: Existing,
) -> Result<Vec<(RunDir, Start)>> {
    let per_subnet = configs.len() > 1;
    let open =
        |dir: PathBuf| RunDir::open(&dir, existing).context("cannot use the output directory");
    match &args.out {
        Some(out) => configs
            .iter()
            .map(|config| match config.mode {
                Mode::Standalone(subnet) if per_subnet => {
                    open(out.join(format!("subnet-{subnet}")))
                }
                _ => open(out.clone()),
            })
            .collect(),
        None => {
            let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
            let first = &configs[0];
            let mode = match first.mode {
                Mode::Standalone(_) if per_subnet => "standalone-all".to_string(),
                mode => mode.to_string(),
            };
            let name = format!("{}-{mode}-seed{}-{stamp}", first.variant.name(), first.seed);
            let base = RunDir::create_unique(&PathBuf::from("runs").join(name))
                .context("cannot write the output directory")?;
            configs
                .iter()
                .map(|config| match config.mode {
                    Mode::Standalone(subnet) if per_subnet => {
                        let dir = base.path().join(format!("subnet-{subnet}"));
                        let run =
                            RunDir::create(&dir).context("cannot write the output directory")?;
                        Ok((run, Start::Fresh))
                    }
                    _ => Ok((RunDir::create(base.path())?, Start::Fresh)),
                })
                .collect()
        }
    }
}

/// The table rows of the subnets of `subnets` that `metrics` holds, in that order.
pub fn entries(
    space: &SearchSpace,
    subnets: &[Subnet],
    metrics: &BTreeMap<String, SubnetMetrics>,
) -> Vec<Entry> {
    subnets
        .iter()
        .filter_map(|s| {
            let m = metrics.get(&s.to_string())?;
            Some(Entry::new(space, s, s.to_string(), *m))
        })
        .collect()
}

/// Writes `config.json` (a new run) or rewrites the metrics from the training state (a
/// resumed one), then trains with progress bars, metrics, weights and the state kept current
/// in `run`; returns the history and the trainer (for what is computed after training).
pub fn train_one<'b, B: Backend>(
    backend: &'b B,
    selected: &Selected,
    data: &Dataset,
    config: &TrainConfig,
    run: &RunDir,
    device: &DeviceArgs,
    start: Start,
) -> Result<(Vec<EpochMetrics>, Trainer<'b, B>)> {
    let started = Instant::now();
    let mut trainer = if start == Start::Resume {
        let trainer = Trainer::resume(backend, data, config.clone(), &run.state_path())
            .context("cannot resume the training")?;
        let done = trainer.history().len();
        let at_epoch_end = trainer.resumed_step() == 0;
        if at_epoch_end && done > 0 {
            // A kill between the state and the weights leaves the weights an epoch behind:
            // they are the state's, written before the metrics that name its epochs.
            save_weights(backend, &trainer.net, run, config)?;
        }
        let order: Vec<String> = config
            .mode
            .evaluated(&config.space)
            .iter()
            .map(Subnet::to_string)
            .collect();
        run.rewrite_metrics(trainer.history(), &order)?;
        match trainer.resumed_step() {
            0 => say!("resuming after epoch {done} of {}", config.epochs),
            step => say!(
                "resuming after epoch {done} of {}, at step {step} of epoch {}",
                config.epochs,
                done + 1
            ),
        }
        if at_epoch_end && done >= config.epochs {
            say!("nothing left to train: the weights and metrics of epoch {done} written from the training state");
        }
        trainer
    } else {
        if start == Start::Restart {
            say!(
                "resuming after epoch 0 of {}: no epoch had ended",
                config.epochs
            );
        }
        write_config(selected, data, config, run, device)?;
        Trainer::new(backend, data, config.clone())?
    };
    trainer.save_state_to(run.state_path());
    if let Some(flag) = signals::flag() {
        trainer.stop_on(flag);
    }
    let mut progress = Progress::new(run, config);
    let history = trainer.run(&mut progress)?;
    say!(
        "{} trained in {:.1} s",
        config.mode,
        started.elapsed().as_secs_f64()
    );
    Ok((history, trainer))
}

/// `config.json`: every setting and where it ran.
fn write_config(
    selected: &Selected,
    data: &Dataset,
    config: &TrainConfig,
    run: &RunDir,
    device: &DeviceArgs,
) -> Result<()> {
    let settings = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("SUPERNET_COMMIT"),
        "command_line": std::env::args().collect::<Vec<_>>(),
        "started_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "host": host_name(),
        "command": if config.mode == Mode::OneShot { "oneshot" } else { "standalone" },
        "training": config,
        "backend": selected.describe(),
        "data": data_dir(device)?,
        "train_images": data.train.count - config.validation,
        "validation_images": config.validation,
        "test_images": data.test.count,
    });
    run.write_json("config.json", &settings)?;
    Ok(())
}

/// This machine's name, where the system tells it.
pub fn host_name() -> Option<String> {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    from_kernel
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// `eval --weights FILE`: the test accuracy and mean loss of what the file holds (every
/// subnet of a one-shot SuperNet, the trained one of a stand-alone one, an exported subnet).
pub fn eval(
    weights: &Path,
    space: Option<&SearchSpace>,
    json_output: bool,
    device: &DeviceArgs,
) -> Result<()> {
    let dir = data_dir(device)?;
    let test = data::load_test(&dir).context("cannot load the test set")?;
    let backend = select(device.backend)?;
    let options = LoadOptions {
        space: space.cloned(),
        image_size: Some(test.rows),
    };
    let (trained, read_space, entries) = match &backend {
        Selected::Cpu(cpu) => eval_on(cpu, weights, &options, &test)?,
        Selected::Gpu(gpu) => eval_on(gpu, weights, &options, &test)?,
    };
    if json_output {
        let subnets: BTreeMap<&str, &SubnetMetrics> = entries
            .iter()
            .map(|e| (e.name.as_str(), &e.metrics))
            .collect();
        // Asked for explicitly, so printed under --quiet too (and dropped by a closed pipe).
        let text = serde_json::to_string_pretty(&json!({ "subnets": subnets }))?;
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    } else {
        say!("backend: {}", backend.describe());
        if trained == Trained::Unknown && space.is_none() {
            // An identity in a Sum block has no tensors, so the names cannot show it.
            say!("no metadata: space {read_space} read from the tensor names (--space gives it)");
        }
        let what = match &trained {
            Trained::OneShot => "a one-shot SuperNet, every subnet".to_string(),
            Trained::Standalone(s) => format!("subnet {s} trained stand-alone"),
            Trained::Exported { subnet, space } => {
                format!("subnet {subnet} of {space}, exported")
            }
            Trained::Unknown => "no metadata, every subnet".to_string(),
        };
        print_table(
            &format!("{} ({what}): test accuracy", weights.display()),
            &entries,
        );
    }
    Ok(())
}

fn eval_on<B: Backend>(
    backend: &B,
    weights: &Path,
    options: &LoadOptions,
    test: &data::Split,
) -> Result<(Trained, SearchSpace, Vec<Entry>)> {
    let Checkpoint { net, trained, .. } =
        checkpoint::read(backend, weights, options).context("cannot load the weights")?;
    check_classes(net.config.classes, test, weights)?;
    let split = DeviceSplit::upload(backend, test)?;
    let space = &net.config.space;
    let subnets = trained.evaluated(space);
    let metrics = evaluate_subnets(backend, &net, &split, &subnets, EVAL_BATCH)?;
    let losses = subnets
        .iter()
        .zip(&metrics)
        .map(|(s, m)| (s.to_string(), m.loss));
    check_losses(weights, losses)?;
    let entries = subnets
        .iter()
        .zip(metrics)
        .map(|(s, m)| Entry::new(space, s, trained.name(s), m))
        .collect();
    Ok((trained, space.clone(), entries))
}

/// Finite weights can still overflow f32 on the way to the loss (values near 3e38): a NaN
/// loss is an error naming the subnet, not a row of the table.
pub fn check_losses(weights: &Path, losses: impl Iterator<Item = (String, f64)>) -> Result<()> {
    for (subnet, loss) in losses {
        if !loss.is_finite() {
            anyhow::bail!(
                "{}: subnet {subnet}'s loss is {loss}: the weights are finite, but too large for f32 arithmetic",
                weights.display()
            );
        }
    }
    Ok(())
}

/// The labels must be classes the weights predict.
pub fn check_classes(classes: usize, split: &data::Split, weights: &Path) -> Result<()> {
    let largest = split.labels.iter().copied().max().unwrap_or(0) as usize;
    if largest >= classes {
        anyhow::bail!(
            "{} predicts {classes} classes (fc2.weight), but the labels go up to {largest}",
            weights.display()
        );
    }
    Ok(())
}

/// `export --weights W --subnet S --out FILE`.
pub fn export(weights: &Path, subnet: &str, space: Option<&SearchSpace>, out: &Path) -> Result<()> {
    if same_file(weights, out) {
        anyhow::bail!(
            "--out {} is the --weights file: the SuperNet would be replaced by one subnet; give another --out",
            out.display()
        );
    }
    let cpu = supernet::engine::CpuBackend::new();
    let options = LoadOptions {
        space: space.cloned(),
        image_size: None,
    };
    let Checkpoint { net, trained, .. } =
        checkpoint::read(&cpu, weights, &options).context("cannot load the weights")?;
    if let Trained::Exported { .. } = trained {
        anyhow::bail!("{} is an exported subnet already", weights.display());
    }
    let subnet = net.config.space.parse_subnet(subnet)?;
    export::export(&cpu, &net, &subnet, out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    say!(
        "subnet {subnet} ({}) of {} written to {}",
        net.config.space.describe(&subnet),
        net.config.space,
        out.display()
    );
    if let Trained::Standalone(trained) = trained.clone() {
        if trained != subnet {
            say!("warning: the weights were trained stand-alone as subnet {trained}; subnet {subnet} is untrained");
        }
    }
    Ok(())
}

/// Whether `a` and `b` name one existing file (by another path or a link included).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b || same_inode(&a, &b),
        _ => false,
    }
}

#[cfg(unix)]
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// `bench`: see `cli::bench`.
pub fn bench(args: &BenchArgs, device: &DeviceArgs) -> Result<()> {
    if args.steps == 0 || args.batch_size == 0 {
        anyhow::bail!("--steps and --batch-size must be at least 1");
    }
    if args.profile && device.backend == BackendArg::Cpu {
        anyhow::bail!("--profile times GPU kernels: give --backend gpu");
    }
    let data = load_data_for(device, &args.space, 0)?;
    let config = TrainConfig {
        space: args.space.clone(),
        batch_size: args.batch_size,
        ..TrainConfig::study(args.variant, Mode::OneShot)
    };
    check_memory(&config, &data, device)?;
    let backend = select(device.backend)?;
    crate::cli::bench::run(&backend, &data, args)
}
