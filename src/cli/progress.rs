//! The training observer of the command line: one line naming the training, a progress bar
//! per epoch (step count, loss, speed, ETA, then the evaluation), a short summary per epoch,
//! and the run directory kept current (weights saved, then the metrics line of the epoch).
//! Every line fits 80 columns.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use supernet::engine::Backend;
use supernet::model::checkpoint::{self, Trained};
use supernet::model::{SearchSpace, Subnet, SuperNet};
use supernet::report::RunDir;
use supernet::training::{EpochMetrics, Mode, Observer, SubnetMetrics, TrainConfig};

use crate::cli::commands::entries;
use crate::cli::output::{self, detail, say, wrap, Level};
use crate::cli::tables;

/// The width every line keeps to.
pub const WIDTH: usize = 80;

pub struct Progress<'a> {
    run: &'a RunDir,
    epochs: usize,
    space: SearchSpace,
    /// The subnets evaluated, in the space's order.
    subnets: Vec<Subnet>,
    trained: Trained,
    /// `--val`: recorded in the weights.
    held_out: usize,
    bar: Option<ProgressBar>,
}

impl<'a> Progress<'a> {
    pub fn new(run: &'a RunDir, config: &TrainConfig) -> Self {
        let epochs = if config.epochs == 1 {
            "epoch"
        } else {
            "epochs"
        };
        say!(
            "{} {}, seed {}, space {}: {} {epochs}",
            config.variant.name(),
            config.mode,
            config.seed,
            config.space,
            config.epochs
        );
        Progress {
            run,
            epochs: config.epochs,
            space: config.space.clone(),
            subnets: config.mode.evaluated(&config.space),
            trained: trained(config.mode),
            held_out: config.validation,
            bar: None,
        }
    }

    /// `lead` and the accuracies of `set`, wrapped to `WIDTH`: every subnet of a small space
    /// (or with --verbose), else the best few and the worst.
    fn accuracy_lines(&self, lead: &str, set: &BTreeMap<String, SubnetMetrics>) -> Vec<String> {
        let entries = entries(&self.space, &self.subnets, set);
        let items = if output::level() == Level::Verbose {
            entries
                .iter()
                .map(|e| format!("{} {:.4}", e.name, e.metrics.accuracy))
                .collect()
        } else {
            tables::accuracy_items(&entries)
        };
        // A tag starts every line.
        wrap(lead, &items, WIDTH - output::tag().chars().count())
    }
}

/// What a training of `mode` says its weights are.
fn trained(mode: Mode) -> Trained {
    match mode {
        Mode::OneShot => Trained::OneShot,
        Mode::Standalone(subnet) => Trained::Standalone(subnet),
    }
}

/// `net` as the run's `model.safetensors`, as an epoch end writes it.
pub fn save_weights<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    run: &RunDir,
    config: &TrainConfig,
) -> supernet::Result<()> {
    let path = run.model_path();
    checkpoint::save_trained(
        backend,
        net,
        &trained(config.mode),
        config.validation,
        &path,
    )
}

fn bar(steps: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if output::level() == Level::Quiet || !output::tag().is_empty() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{prefix} [{wide_bar}] {pos:>4}/{len} {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

impl Observer for Progress<'_> {
    fn epoch_started(&mut self, epoch: usize, steps: usize) {
        self.bar = Some(bar(steps, epoch, self.epochs));
    }

    fn step(&mut self, steps: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(steps as u64);
        }
    }

    fn steps_done(&mut self, steps: usize, recent_loss: f64, images_per_second: f64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "loss {recent_loss:.3} {:.0}k img/s",
                images_per_second / 1e3
            ));
            if output::level() == Level::Verbose {
                bar.suspend(|| {
                    detail!(
                        "  step {steps}: loss {recent_loss:.4}, {images_per_second:.0} images/s"
                    )
                });
            }
        }
    }

    fn evaluating(&mut self, subnets: usize, images: usize) {
        if let Some(bar) = &self.bar {
            let what = if subnets == 1 { "subnet" } else { "subnets" };
            bar.set_style(
                ProgressStyle::with_template("{prefix} {spinner} {msg} {elapsed}")
                    .expect("valid template"),
            );
            bar.set_message(format!("evaluating {subnets} {what} on {images} images"));
        }
    }

    fn epoch_finished<B: Backend>(
        &mut self,
        backend: &B,
        net: &SuperNet<B>,
        m: &EpochMetrics,
    ) -> supernet::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        say!(
            "epoch {}/{}  lr {:.4}  loss {:.4}  {:.1} s train + {:.1} s eval",
            m.epoch,
            self.epochs,
            m.lr,
            m.train_loss,
            m.train_seconds,
            m.eval_seconds
        );
        for line in self.accuracy_lines("  test  ", &m.subnets) {
            say!("{line}");
        }
        if let Some(validation) = &m.validation {
            for line in self.accuracy_lines("  val   ", validation) {
                say!("{line}");
            }
        }
        // The weights first: a metrics line never names an epoch whose weights are not on disk.
        let path = self.run.model_path();
        checkpoint::save_trained(backend, net, &self.trained, self.held_out, &path)?;
        supernet::failpoint::pass("weights");
        let order: Vec<String> = self.subnets.iter().map(Subnet::to_string).collect();
        self.run.append_epoch(m, &order)
    }
}
