//! The training observer of the command line: a progress bar per epoch, a summary line per
//! epoch, and the run directory kept current (metrics appended, weights saved).

use std::collections::BTreeMap;

use indicatif::{ProgressBar, ProgressStyle};
use supernet::engine::Backend;
use supernet::model::checkpoint::{self, Trained};
use supernet::model::{SearchSpace, Subnet, SuperNet};
use supernet::report::RunDir;
use supernet::training::{EpochMetrics, Mode, Observer, SubnetMetrics, TrainConfig};

use crate::cli::commands::entries;
use crate::cli::tables;

pub struct Progress<'a> {
    run: &'a RunDir,
    label: String,
    epochs: usize,
    space: SearchSpace,
    /// The subnets evaluated, in the space's order.
    subnets: Vec<Subnet>,
    trained: Trained,
    bar: Option<ProgressBar>,
}

impl<'a> Progress<'a> {
    pub fn new(run: &'a RunDir, label: String, config: &TrainConfig) -> Self {
        Progress {
            run,
            label,
            epochs: config.epochs,
            space: config.space.clone(),
            subnets: config.mode.evaluated(&config.space),
            trained: match config.mode {
                Mode::OneShot => Trained::OneShot,
                Mode::Standalone(subnet) => Trained::Standalone(subnet),
            },
            bar: None,
        }
    }

    fn accuracies(&self, set: &BTreeMap<String, SubnetMetrics>) -> String {
        tables::accuracies(&entries(&self.space, &self.subnets, set))
    }
}

impl Observer for Progress<'_> {
    fn epoch_started(&mut self, epoch: usize, steps: usize) {
        let bar = ProgressBar::new(steps as u64);
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} steps  {msg}  ({elapsed})",
        )
        .expect("valid template");
        bar.set_style(style.progress_chars("=> "));
        bar.set_prefix(format!("{} epoch {epoch}/{}", self.label, self.epochs));
        self.bar = Some(bar);
    }

    fn steps_done(&mut self, steps: usize, recent_loss: f64, images_per_second: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(steps as u64);
            bar.set_message(format!(
                "loss {recent_loss:.4}  {images_per_second:.0} img/s"
            ));
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
        let validation = m
            .validation
            .as_ref()
            .map(|v| format!("  validation accuracy {}", self.accuracies(v)))
            .unwrap_or_default();
        eprintln!(
            "{} epoch {}/{}: lr {:.4}  train loss {:.4}  test accuracy {}{validation}  ({:.1} s train, {:.1} s eval)",
            self.label, m.epoch, self.epochs, m.lr, m.train_loss, self.accuracies(&m.subnets), m.train_seconds, m.eval_seconds
        );
        self.run.append_epoch(m)?;
        checkpoint::save(backend, net, &self.trained, &self.run.model_path())
    }
}
