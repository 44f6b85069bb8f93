//! The training observer of the command line: a progress bar per epoch, a summary line per
//! epoch, and the run directory kept current (metrics appended, weights saved).

use indicatif::{ProgressBar, ProgressStyle};
use supernet::engine::Backend;
use supernet::model::{checkpoint, SuperNet};
use supernet::report::RunDir;
use supernet::training::{EpochMetrics, Observer, SubnetMetrics};

pub struct Progress<'a> {
    run: &'a RunDir,
    label: String,
    epochs: usize,
    bar: Option<ProgressBar>,
}

impl<'a> Progress<'a> {
    pub fn new(run: &'a RunDir, label: String, epochs: usize) -> Self {
        Progress {
            run,
            label,
            epochs,
            bar: None,
        }
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
        let accuracies = |set: &std::collections::BTreeMap<String, SubnetMetrics>| {
            set.iter()
                .map(|(name, s)| format!("{name} {:.4}", s.accuracy))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let validation = m
            .validation
            .as_ref()
            .map(|v| format!("  validation accuracy {}", accuracies(v)))
            .unwrap_or_default();
        eprintln!(
            "{} epoch {}/{}: lr {:.4}  train loss {:.4}  test accuracy {}{validation}  ({:.1} s train, {:.1} s eval)",
            self.label, m.epoch, self.epochs, m.lr, m.train_loss, accuracies(&m.subnets), m.train_seconds, m.eval_seconds
        );
        self.run.append_epoch(m)?;
        checkpoint::save(backend, net, &self.run.model_path())
    }
}
