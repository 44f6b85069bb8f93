//! Command-line arguments (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use supernet::model::SearchSpace;
use supernet::training::experiment::Standalone;

#[derive(Parser)]
#[command(
    name = "supernet",
    version,
    about = "Does one-shot accuracy predict stand-alone accuracy? SuperNets on MNIST",
    long_about = "Train a weight-sharing SuperNet on MNIST and ask whether one-shot accuracy predicts \
stand-alone accuracy.\n\nThe search space is data (--space): blocks separated by '/', each block's choices by \
',', a choice an odd kernel size k (a k x k conv), kdD (dilated by D), sepK (depthwise-separable), maxK or \
avgK (stride-1 pools) or 'skip' (the identity). The default, 3,5/3,5, is the \
original study: two blocks, each a 3x3 or a 5x5 conv with 8 filters, so 4 subnets named by their choices: \
00, 10, 01, 11 (one digit per block, block 1 first, the index of the choice in its block).\n\n\
Start with `supernet oneshot` (the study's protocol: 14 epochs, batch 64, Adadelta), then \
`supernet standalone --subnet all`, and compare the two tables.",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print errors only.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more: every subnet each epoch, each logged interval.
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train the SuperNet one-shot, evaluate every subnet
    ///
    /// A random subnet is drawn per minibatch and only its weights change; after every epoch
    /// every subnet of the space is evaluated on the test set.
    Oneshot {
        /// One-shot subnet sampling: `uniform` (the study) or `fair` (FairNAS: every choice of
        /// a block trained equally often, in shuffled rounds).
        #[arg(long, value_enum, default_value_t = SamplingArg::Uniform)]
        sampling: SamplingArg,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Train one subnet (or each of the space) from scratch
    Standalone {
        /// The subnet: one choice index per block, block 1 first, like `1,0` (the 5x5 conv,
        /// then the 3x3, in the default space); or `all`.
        #[arg(long, value_parser = parse_subnets)]
        subnet: SubnetChoice,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Run the whole study and write its report (resumable)
    ///
    /// For each variant and seed: the zero-cost proxies, one-shot training and the stand-alone
    /// ground truth (every subnet or a sample); then rank statistics with intervals and
    /// p-values, figures and report.md.
    Experiment(ExperimentArgs),
    /// Rebuild an experiment's report from its saved results
    ///
    /// Writes report.md, results.json and the figures without training.
    Report {
        /// The experiment's `--out` directory.
        dir: PathBuf,
    },
    /// Evaluate saved weights on the test set
    ///
    /// A one-shot SuperNet: every subnet; a stand-alone one: its trained subnet; an exported
    /// subnet; or a state_dict saved by PyTorch.
    Eval {
        /// A model.safetensors of ours (it says what it holds), an exported subnet, or a file
        /// saved by PyTorch under the same names.
        #[arg(long)]
        weights: PathBuf,
        /// The search space of a file without metadata (PyTorch's); default: inferred from the
        /// tensor names, which cannot show an identity in a Sum SuperNet.
        #[arg(long, value_parser = parse_space)]
        space: Option<SearchSpace>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Write one subnet as a plain CNN for PyTorch
    ///
    /// Only the subnet's weights, under names a plain PyTorch module loads with strict=True
    /// (the README shows the module).
    Export {
        /// The SuperNet's model.safetensors.
        #[arg(long)]
        weights: PathBuf,
        /// The subnet, like `1,0`.
        #[arg(long)]
        subnet: String,
        /// The search space of a file without metadata (as for eval).
        #[arg(long, value_parser = parse_space)]
        space: Option<SearchSpace>,
        /// The file to write (safetensors).
        #[arg(long)]
        out: PathBuf,
    },
    /// Rank a trained SuperNet's subnets on held-out images
    ///
    /// Every subnet, or those an evolutionary search visits within a budget, by one-shot
    /// accuracy on held-out training images; writes the ranking (CSV and JSON) and can export
    /// the best.
    Search(SearchArgs),
    /// List the GPU adapters and the backend `auto` takes
    Devices,
    /// Print a shell completion script
    ///
    /// For example `supernet completions bash > ~/.local/share/bash-completion/completions/supernet`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff)
    ///
    /// For example `supernet manpage > supernet.1; man ./supernet.1`.
    Manpage,
    /// Time training steps and an evaluation pass
    ///
    /// Images per second, seconds per epoch, dispatches per step on the GPU, peak memory.
    Bench {
        #[arg(long = "supernet", value_enum, default_value_t = VariantArg::Sum)]
        variant: VariantArg,
        /// Timed training steps.
        #[arg(long, default_value_t = 200)]
        steps: usize,
        /// Untimed steps first.
        #[arg(long, default_value_t = 20)]
        warmup: usize,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// After the timed steps, as many again with every GPU kernel timed on the device
        /// (timestamp queries, where the adapter has them): a table per kernel.
        #[arg(long)]
        profile: bool,
        #[command(flatten)]
        space: SpaceArgs,
        #[command(flatten)]
        device: DeviceArgs,
    },
}

/// `search`.
#[derive(Args, Clone, Debug)]
pub struct SearchArgs {
    /// The trained SuperNet's model.safetensors.
    #[arg(long)]
    pub weights: PathBuf,
    /// The search space of a file without metadata (as for eval).
    #[arg(long, value_parser = parse_space)]
    pub space: Option<SearchSpace>,
    /// `exhaustive` scores every subnet; `evolution` searches as Single Path One-Shot does.
    #[arg(long, value_enum, default_value_t = StrategyArg::Exhaustive)]
    pub strategy: StrategyArg,
    /// Evolution: distinct subnets to score (default: a quarter of the space).
    #[arg(long)]
    pub budget: Option<usize>,
    /// Evolution: the random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Export the K best subnets as plain networks into --out.
    #[arg(long, default_value_t = 0)]
    pub top: usize,
    /// Rank on the last N training images: the ones `--val N` held out of the SuperNet's
    /// training (give the same N), so the ranking never sees the test set.
    #[arg(long, default_value_t = 10_000)]
    pub val: usize,
    /// Output directory. Default: runs/search-<timestamp>/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    Exhaustive,
    Evolution,
}

/// The search space of a command that builds a model.
#[derive(Args, Clone, Debug)]
pub struct SpaceArgs {
    /// The search space: blocks separated by '/', a block's choices by ',', a choice an odd
    /// kernel size k, kdD (dilated by D), sepK (depthwise-separable), maxK, avgK (stride-1
    /// pools) or 'skip' (the identity; pools and skip not in block 1). Or a preset: study
    /// (3,5/3,5, 4 subnets), large (1,3,5,7/1,3,5,7/1,3,5,7, 64), fixture
    /// (3,5,7/1,3,5,skip/3,5, 24), ops (3,5,3d2,sep3/3,5,3d2,sep3,max3,avg3,skip, 28).
    #[arg(long, default_value = "3,5/3,5", value_parser = parse_space)]
    pub space: SearchSpace,
}

fn parse_standalone(text: &str) -> Result<Standalone, String> {
    match text {
        "all" => Ok(Standalone::All),
        count => match count.parse() {
            Ok(0) | Err(_) => Err(format!("'{count}' is neither all nor a count of subnets")),
            Ok(n) => Ok(Standalone::Sample(n)),
        },
    }
}

/// `--parallel`: `auto` or a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallel {
    Auto,
    Trainings(usize),
}

fn parse_parallel(text: &str) -> Result<Parallel, String> {
    match text {
        "auto" => Ok(Parallel::Auto),
        count => match count.parse() {
            Ok(0) | Err(_) => Err(format!(
                "'{count}' is neither auto nor a count of trainings (1 or more)"
            )),
            Ok(n) => Ok(Parallel::Trainings(n)),
        },
    }
}

/// The most local workers `--workers` starts: each is a process holding the dataset.
pub const MAX_WORKERS: usize = 64;

fn parse_workers(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{text}' is not a count of workers from 1 to {MAX_WORKERS} (each is a process of its own)"
        )),
    }
}

/// The shortest `--claim-timeout`: ten heartbeats of a second each, so that a live worker's
/// claim is never taken for a dead one's.
pub const MIN_CLAIM_TIMEOUT: u64 = 10;

fn parse_claim_timeout(text: &str) -> Result<u64, String> {
    match text.parse() {
        Ok(n) if n >= MIN_CLAIM_TIMEOUT => Ok(n),
        _ => Err(format!(
            "'{text}' is not a number of seconds of at least {MIN_CLAIM_TIMEOUT} (a claim's heartbeat comes every tenth of it; a shorter timeout takes live workers' trainings over)"
        )),
    }
}

/// A learning rate as the optimizer holds it (f32): 1e39 is inf there, 1e-50 is 0.
fn parse_lr(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(lr) if lr > 0.0 && (lr as f32).is_finite() && (lr as f32) > 0.0 => Ok(lr),
        _ => Err(format!(
            "'{text}' is not a positive learning rate that f32 holds (about 1e-38 to 3e38)"
        )),
    }
}

fn parse_gib(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(gib) if gib.is_finite() && gib > 0.0 => Ok(gib),
        _ => Err(format!(
            "'{text}' is not a positive finite number of GiB (like 8 or 0.5)"
        )),
    }
}

/// The longest `--space` spec read: far more blocks and choices than any image allows, and
/// short enough that an error quoting it stays readable.
const MAX_SPACE_SPEC: usize = 1000;

fn parse_space(text: &str) -> Result<SearchSpace, String> {
    if text.chars().count() > MAX_SPACE_SPEC {
        let start: String = text.chars().take(20).collect();
        return Err(format!(
            "'{start}...' is {} characters long; a space spec has at most {MAX_SPACE_SPEC}",
            text.chars().count()
        ));
    }
    SearchSpace::parse(text).map_err(|e| e.to_string())
}

/// `--subnet`: checked against the space once the space is known.
#[derive(Clone, Debug)]
pub enum SubnetChoice {
    All,
    One(String),
}

fn parse_subnets(text: &str) -> Result<SubnetChoice, String> {
    Ok(match text {
        "all" => SubnetChoice::All,
        name => SubnetChoice::One(name.to_string()),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VariantArg {
    Sum,
    Concat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SamplingArg {
    Uniform,
    Fair,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// A hardware GPU if there is one, else the CPU.
    Auto,
    Gpu,
    Cpu,
}

/// Where the data is and what runs it.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Backend: `auto` takes a hardware GPU when there is one (a software adapter such as
    /// lavapipe is slower than the CPU path), else the CPU.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Refuse a training whose estimated memory (the dataset as decoded included) passes
    /// this many GiB; a data file announcing more is refused before it is read.
    #[arg(long, default_value_t = 8.0, value_parser = parse_gib)]
    pub max_memory: f64,
    /// A directory with the four MNIST-style IDX files (gzip'd or raw); Fashion-MNIST works too.
    /// Default: the copy of MNIST shipped in data/mnist.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// The training protocol shared by every command that trains; the defaults are the study's.
#[derive(Args, Clone, Debug)]
pub struct ProtocolArgs {
    #[command(flatten)]
    pub space: SpaceArgs,
    #[arg(long, default_value_t = 14)]
    pub epochs: u32,
    #[arg(long, default_value_t = 64)]
    pub batch_size: u32,
    /// Adadelta learning rate.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = parse_lr)]
    pub lr: f64,
    /// Learning-rate factor after every epoch.
    #[arg(long, default_value_t = 0.7, allow_negative_numbers = true)]
    pub gamma: f64,
    /// Filters of every conv.
    #[arg(long, default_value_t = 8)]
    pub channels: u32,
    /// Width of the hidden layer.
    #[arg(long, default_value_t = 32)]
    pub hidden: u32,
    /// Keep the training file's order (the original study) instead of shuffling every epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Hold the last N training images out of training and evaluate on them after every epoch;
    /// the experiment then ranks subnets on them and reports the test set apart.
    #[arg(long, default_value_t = 0)]
    pub val: u32,
}

/// One training command (`oneshot`, `standalone`).
#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// SuperNet variant: `sum` adds the branch outputs, `concat` concatenates them before a 1x1 conv.
    #[arg(long = "supernet", value_enum, default_value_t = VariantArg::Sum)]
    pub variant: VariantArg,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
    /// Output directory. Default: runs/<supernet>-<mode>-seed<seed>-<timestamp>/ (with a
    /// suffix when taken). One that holds a run is refused unless --resume or --force.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last epoch end (or where a signal stopped it).
    #[arg(long, requires = "out", conflicts_with = "force")]
    pub resume: bool,
    /// Clear the run in --out and start over.
    #[arg(long, requires = "out")]
    pub force: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `experiment`: the whole study over variants, seeds and sampling strategies.
#[derive(Args, Clone, Debug)]
pub struct ExperimentArgs {
    /// Variants to study: `sum`, `concat` or `both`.
    #[arg(long = "supernet", value_enum, default_value_t = VariantsArg::Both)]
    pub variants: VariantsArg,
    /// Seeds, comma-separated; each gives one SuperNet training per variant and sampling, and the stand-alone trainings of the ground truth.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
    /// One-shot sampling strategies to compare, comma-separated: `uniform`, `fair`.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "uniform")]
    pub sampling: Vec<SamplingArg>,
    /// Images (a fixed sample of the held-out ones with --val, else of the training images)
    /// the KL-divergence proxy averages over.
    #[arg(long, default_value_t = 1024)]
    pub kl_images: usize,
    /// The stand-alone ground truth: `all` subnets of the space, or a seeded uniform sample of
    /// N of them (the same for every seed and variant, recorded in experiment.json).
    #[arg(long, default_value = "all", value_parser = parse_standalone)]
    pub standalone: Standalone,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
    /// Output directory; rerunning with the same one skips every finished training. Several
    /// `experiment` processes (on one machine or many, over a shared filesystem) may work on
    /// one folder at once: each job is claimed by one of them.
    #[arg(long, default_value = "runs/experiment")]
    pub out: PathBuf,
    /// Start this many local workers on the folder (processes of this command): at most
    /// the trainings left (more would find nothing to claim) and at most 64.
    #[arg(long, default_value_t = 1, value_parser = parse_workers)]
    pub workers: usize,
    /// Trainings each worker runs at once, each on a thread of its own: on a GPU they share
    /// the device (each with its own command encoders), so one training's gaps (reading back,
    /// evaluating, a small batch's short kernels) are filled by the others' work. `auto`: 4 on
    /// a hardware GPU, else 1 (the CPU path already keeps every core busy).
    #[arg(long, default_value = "auto", value_parser = parse_parallel)]
    pub parallel: Parallel,
    /// Seconds after its last heartbeat that another worker's claim counts as dead and is
    /// taken over (keep it well above the clock skew between hosts). At least 10: a claim's
    /// heartbeat comes every tenth of it, and at least every second.
    #[arg(long, default_value_t = 600, value_parser = parse_claim_timeout)]
    pub claim_timeout: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VariantsArg {
    Sum,
    Concat,
    Both,
}
