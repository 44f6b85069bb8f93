//! The commands: train (one-shot or stand-alone), evaluate saved weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;
use supernet::data::{self, mnist, Dataset};
use supernet::engine::Backend;
use supernet::model::{checkpoint, Subnet, Variant};
use supernet::report::RunDir;
use supernet::training::{
    evaluate, DeviceSplit, EpochMetrics, Mode, Sampling, SubnetMetrics, TrainConfig, Trainer,
};

use crate::cli::args::{
    DeviceArgs, ProtocolArgs, SamplingArg, SubnetChoice, TrainArgs, VariantArg,
};
use crate::cli::backend::{select, Selected};
use crate::cli::progress::Progress;

fn variant(arg: VariantArg) -> Variant {
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

fn train_config(args: &TrainArgs, mode: Mode) -> Result<TrainConfig> {
    let config = TrainConfig {
        seed: args.seed,
        sampling: sampling(args.sampling),
        ..protocol_config(&args.protocol, variant(args.variant), mode)
    };
    config.validate()?;
    Ok(config)
}

pub fn data_dir(device: &DeviceArgs) -> PathBuf {
    device.data.clone().unwrap_or_else(mnist::default_dir)
}

pub fn load_data(device: &DeviceArgs) -> Result<Dataset> {
    let dir = data_dir(device);
    data::load(&dir).context("cannot load the dataset")
}

/// `oneshot`, or `standalone` for each chosen subnet: everything is checked (settings, data,
/// backend, output directory) before anything is written.
pub fn train(args: &TrainArgs, subnets: Option<SubnetChoice>) -> Result<()> {
    let modes: Vec<Mode> = match &subnets {
        None => vec![Mode::OneShot],
        Some(SubnetChoice::One(subnet)) => vec![Mode::Standalone(*subnet)],
        Some(SubnetChoice::All) => Subnet::ALL.iter().map(|s| Mode::Standalone(*s)).collect(),
    };
    let configs = modes
        .iter()
        .map(|&mode| train_config(args, mode))
        .collect::<Result<Vec<_>>>()?;
    let data = load_data(&args.device)?;
    data.train.check_hold_out(args.protocol.val as usize)?;
    let backend = select(args.device.backend)?;
    eprintln!("backend: {}", backend.describe());
    let kind = if subnets.is_none() {
        "oneshot"
    } else {
        "standalone"
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
        PathBuf::from("runs").join(format!("{}-{kind}-{stamp}", variant(args.variant).name()))
    });
    let mut finals = Vec::new();
    for config in configs {
        let dir = if modes.len() > 1 {
            out.join(format!("subnet-{}", config.mode.evaluated()[0]))
        } else {
            out.clone()
        };
        let run = RunDir::create(&dir).context("cannot write the output directory")?;
        let history = match &backend {
            Selected::Cpu(cpu) => train_one(cpu, &backend, &data, &config, &run, &args.device)?.0,
            Selected::Gpu(gpu) => train_one(gpu, &backend, &data, &config, &run, &args.device)?.0,
        };
        finals.extend(history.last().map(|m| m.subnets.clone()));
        eprintln!("results in {}", run.path().display());
    }
    let merged: BTreeMap<String, SubnetMetrics> = finals.into_iter().flatten().collect();
    print_table(
        &format!(
            "{} {kind}: final test accuracy",
            variant(args.variant).name()
        ),
        &merged,
    );
    Ok(())
}

/// Writes `config.json`, then trains with progress bars, metrics and weights kept current in
/// `run`; returns the history and the trainer (for what is computed after training).
pub fn train_one<'b, B: Backend>(
    backend: &'b B,
    selected: &Selected,
    data: &Dataset,
    config: &TrainConfig,
    run: &RunDir,
    device: &DeviceArgs,
) -> Result<(Vec<EpochMetrics>, Trainer<'b, B>)> {
    let started = Instant::now();
    let settings = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "command": if config.mode == Mode::OneShot { "oneshot" } else { "standalone" },
        "training": config,
        "backend": selected.describe(),
        "data": data_dir(device),
        "train_images": data.train.count - config.validation,
        "validation_images": config.validation,
        "test_images": data.test.count,
    });
    run.write_json("config.json", &settings)?;
    let mut trainer = Trainer::new(backend, data, config.clone())?;
    let label = format!(
        "{} seed {} {}",
        config.variant.name(),
        config.seed,
        config.mode
    );
    let history = trainer.run(&mut Progress::new(run, label, config.epochs))?;
    eprintln!(
        "{} trained in {:.1} s",
        config.mode,
        started.elapsed().as_secs_f64()
    );
    Ok((history, trainer))
}

/// `eval --weights FILE`: every subnet's test accuracy and mean loss.
pub fn eval(weights: &Path, json_output: bool, device: &DeviceArgs) -> Result<()> {
    let dir = data_dir(device);
    let test = data::load_test(&dir).context("cannot load the test set")?;
    let backend = select(device.backend)?;
    let results = match &backend {
        Selected::Cpu(cpu) => eval_on(cpu, weights, &test)?,
        Selected::Gpu(gpu) => eval_on(gpu, weights, &test)?,
    };
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "subnets": results }))?
        );
    } else {
        eprintln!("backend: {}", backend.describe());
        print_table(&format!("{}: test accuracy", weights.display()), &results);
    }
    Ok(())
}

fn eval_on<B: Backend>(
    backend: &B,
    weights: &Path,
    test: &data::Split,
) -> Result<BTreeMap<String, SubnetMetrics>> {
    let net = checkpoint::load(backend, weights).context("cannot load the weights")?;
    let split = DeviceSplit::upload(backend, test)?;
    Subnet::ALL
        .iter()
        .map(|s| {
            Ok((
                s.to_string(),
                evaluate(backend, &net, &split, &s.masks(), 1000)?,
            ))
        })
        .collect()
}

pub fn print_table(title: &str, subnets: &BTreeMap<String, SubnetMetrics>) {
    println!("{title}");
    println!("  subnet  accuracy  correct  loss");
    for subnet in Subnet::ALL {
        if let Some(m) = subnets.get(&subnet.to_string()) {
            println!(
                "  [{},{}]   {:.4}    {:>6}   {:.4}",
                subnet.0[0], subnet.0[1], m.accuracy, m.correct, m.loss
            );
        }
    }
}

/// `bench`: see `cli::bench`.
pub fn bench(
    variant_arg: VariantArg,
    steps: usize,
    warmup: usize,
    batch_size: usize,
    device: &DeviceArgs,
) -> Result<()> {
    if steps == 0 || batch_size == 0 {
        anyhow::bail!("--steps and --batch-size must be at least 1");
    }
    let data = load_data(device)?;
    let backend = select(device.backend)?;
    let args = crate::cli::bench::BenchArgs {
        variant: variant(variant_arg),
        batch_size,
        steps,
        warmup,
    };
    crate::cli::bench::run(&backend, &data, &args)
}
