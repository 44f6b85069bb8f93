//! The training loop, written once for every backend.
//!
//! Per step: gather the batch on the device, forward the drawn subnet, backward, Adadelta on
//! every parameter, the loss copied into a per-epoch log buffer, and one submit. The log is
//! read back every `log_every` steps (progress and the divergence check), never inside a step.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

use crate::data::{DataDigest, Dataset};
use crate::engine::{Adadelta, AdadeltaConfig, Backend, Tape};
use crate::error::{Error, Result};
use crate::model::{SearchSpace, Subnet, SuperNet, SuperNetConfig};
use crate::training::config::differences;
use crate::training::config::{Mode, TrainConfig};
use crate::training::device_data::DeviceSplit;
use crate::training::evaluate::evaluate_subnets;
use crate::training::resume::{self, RngState, Tensors, TrainingState};
use crate::training::zero_cost::{zero_cost, ZeroCost};
use crate::training::{
    kl_proxy, EpochMetrics, KlProxy, Sampling, StepLr, SubnetMetrics, SubnetSampler,
};

/// Told about progress; the CLI draws bars and writes files, tests record.
pub trait Observer {
    fn epoch_started(&mut self, _epoch: usize, _steps: usize) {}
    /// After every step is recorded (on the GPU: before it has run), without a read-back.
    fn step(&mut self, _steps: usize) {}
    /// `recent_loss`: mean loss of the steps since the last call.
    fn steps_done(&mut self, _steps: usize, _recent_loss: f64, _images_per_second: f64) {}
    /// Before `subnets` subnets are evaluated on `images` images (test and held-out).
    fn evaluating(&mut self, _subnets: usize, _images: usize) {}
    fn epoch_finished<B: Backend>(
        &mut self,
        _backend: &B,
        _net: &SuperNet<B>,
        _metrics: &EpochMetrics,
    ) -> Result<()> {
        Ok(())
    }
}

/// Observes nothing.
pub struct Silent;
impl Observer for Silent {}

/// Independent random streams, so that turning shuffling off does not change which subnets are
/// drawn, and the same seed always gives the same run. (ChaCha12, the algorithm of `StdRng`,
/// named for its stream positions, which a resumed run restores.)
struct Streams {
    init: ChaCha12Rng,
    order: ChaCha12Rng,
    subnets: SubnetSampler,
}

impl Streams {
    fn new(seed: u64, sampling: Sampling, space: SearchSpace) -> Self {
        let stream = |k: u64| {
            ChaCha12Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(k))
        };
        Streams {
            init: stream(0),
            order: stream(1),
            subnets: SubnetSampler::new(sampling, space, stream(2)),
        }
    }
}

pub struct Trainer<'b, B: Backend> {
    backend: &'b B,
    config: TrainConfig,
    train: DeviceSplit<B>,
    test: DeviceSplit<B>,
    validation: Option<DeviceSplit<B>>,
    pub net: SuperNet<B>,
    optimizer: Adadelta<B>,
    streams: Streams,
    /// Time spent recording and submitting steps (on the CPU backend: running them).
    step_seconds: f64,
    /// The epochs finished.
    history: Vec<EpochMetrics>,
    /// The epoch to train next (from 1), and (resumed mid-epoch) its steps already done and
    /// their losses.
    epoch: usize,
    resumed_step: usize,
    resumed_losses: Vec<f32>,
    /// Where the state is written at every epoch end and on a stop.
    state_file: Option<PathBuf>,
    /// Set by a signal: stop after the current step.
    stop: Option<Arc<AtomicBool>>,
    /// What the state records of the data, for a resume to check.
    data: DataDigest,
}

impl<'b, B: Backend> Trainer<'b, B> {
    /// Uploads the data (holding out the validation images, if any) and initialises the
    /// network (PyTorch's default initialisation).
    pub fn new(backend: &'b B, data: &Dataset, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        config.space.check_image_side(data.train.rows)?;
        // Copy the training images only when some are held out.
        let (train, validation) = match config.validation {
            0 => (Cow::Borrowed(&data.train), None),
            count => {
                let mut train = data.train.clone();
                let validation = train.split_off_last(count)?;
                (Cow::Owned(train), Some(validation))
            }
        };
        let mut streams = Streams::new(config.seed, config.sampling, config.space.clone());
        let net_config = SuperNetConfig {
            variant: config.variant,
            space: config.space.clone(),
            channels: config.channels,
            hidden: config.hidden,
            image_size: data.train.rows,
            classes: crate::data::mnist::CLASSES,
        };
        let net = SuperNet::init(backend, net_config, &mut streams.init)?;
        let optimizer = Adadelta::new(
            backend,
            net.parameters(),
            AdadeltaConfig {
                lr: config.lr as f32,
                ..Default::default()
            },
        )?;
        Ok(Trainer {
            backend,
            train: DeviceSplit::upload(backend, &train)?,
            test: DeviceSplit::upload(backend, &data.test)?,
            validation: validation
                .map(|split| DeviceSplit::upload(backend, &split))
                .transpose()?,
            config,
            net,
            optimizer,
            streams,
            step_seconds: 0.0,
            history: Vec::new(),
            epoch: 1,
            resumed_step: 0,
            resumed_losses: Vec::new(),
            state_file: None,
            stop: None,
            data: data.digest(),
        })
    }

    /// A training continued from the state in `path` (see `resume`), with the same settings.
    pub fn resume(
        backend: &'b B,
        data: &Dataset,
        config: TrainConfig,
        path: &Path,
    ) -> Result<Self> {
        let mut trainer = Self::new(backend, data, config)?;
        let names: Vec<&str> = trainer.net.named_parameters().map(|(n, _)| n).collect();
        let (state, tensors) = resume::load(path, &names)?;
        let now = serde_json::to_value(&trainer.config).expect("settings serialise");
        let mut differing = differences(&state.config, &now);
        if let Some(was) = &state.data {
            differing.extend(was.differences(&trainer.data));
        }
        if !differing.is_empty() {
            return Err(Error::Format {
                path: path.to_path_buf(),
                detail: format!(
                    "holds a training of other settings or data ({}); give the same settings and --data to resume",
                    differing.join(", ")
                ),
            });
        }
        let named: Vec<(String, Vec<f32>)> = tensors
            .params
            .into_iter()
            .map(|(name, _, values)| (name, values))
            .collect();
        trainer.net = SuperNet::from_values(backend, trainer.net.config.clone(), &named)?;
        for (i, (square_avg, acc_delta)) in tensors
            .square_avg
            .iter()
            .zip(&tensors.acc_delta)
            .enumerate()
        {
            trainer
                .optimizer
                .restore(backend, i, square_avg, acc_delta)?;
        }
        trainer.streams.order = state.order_at_epoch_start.rng()?;
        trainer.streams.subnets.restore(&state.sampler)?;
        trainer.history = state.history;
        trainer.epoch = state.epoch;
        trainer.resumed_step = state.step;
        trainer.resumed_losses = state.epoch_losses;
        trainer.step_seconds = state.step_seconds;
        Ok(trainer)
    }

    /// Writes the state to `path` at every epoch end and when stopped.
    pub fn save_state_to(&mut self, path: PathBuf) {
        self.state_file = Some(path);
    }

    /// Stops after the step during which `flag` is set, the state written.
    pub fn stop_on(&mut self, flag: Arc<AtomicBool>) {
        self.stop = Some(flag);
    }

    /// The steps of the epoch in progress a resumed training had done before it stopped (0
    /// when it stopped at an epoch's end, or was not resumed).
    pub fn resumed_step(&self) -> usize {
        self.resumed_step
    }

    /// The epochs finished so far (of a resumed training: before the resume too).
    pub fn history(&self) -> &[EpochMetrics] {
        &self.history
    }

    fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Writes the state: epoch `epoch` with `losses` of its steps done, its order drawn from
    /// `order_at_epoch_start`.
    fn save_state(
        &self,
        epoch: usize,
        losses: Vec<f32>,
        order_at_epoch_start: RngState,
    ) -> Result<()> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let backend = self.backend;
        let params = self
            .net
            .named_parameters()
            .map(|(name, p)| Ok((name.to_string(), p.shape().to_vec(), p.to_vec(backend)?)))
            .collect::<Result<Vec<_>>>()?;
        let accumulator = |i: usize, which: usize| {
            let (square_avg, acc_delta) = self.optimizer.state(i);
            let storage = if which == 0 { square_avg } else { acc_delta };
            backend.download(storage, params[i].2.len())
        };
        let tensors = Tensors {
            square_avg: (0..params.len())
                .map(|i| accumulator(i, 0))
                .collect::<Result<_>>()?,
            acc_delta: (0..params.len())
                .map(|i| accumulator(i, 1))
                .collect::<Result<_>>()?,
            params,
        };
        let state = TrainingState {
            version: resume::VERSION,
            config: serde_json::to_value(&self.config).expect("settings serialise"),
            history: self.history.clone(),
            epoch,
            step: losses.len(),
            epoch_losses: losses,
            order_at_epoch_start,
            sampler: self.streams.subnets.state(),
            step_seconds: self.step_seconds,
            data: Some(self.data.clone()),
        };
        resume::save(path, &state, &tensors)
    }

    /// Every epoch left: train, then evaluate the subnets of the mode on the test set; the
    /// state is written after each. Returns every epoch's metrics (resumed ones included).
    pub fn run(&mut self, observer: &mut impl Observer) -> Result<Vec<EpochMetrics>> {
        let schedule = StepLr {
            initial: self.config.lr,
            gamma: self.config.gamma,
        };
        let wall_before = self.history.last().map_or(0.0, |m| m.wall_seconds);
        let run_started = Instant::now();
        while self.epoch <= self.config.epochs {
            let epoch = self.epoch;
            self.optimizer.config.lr = schedule.lr(epoch - 1);
            let started = Instant::now();
            let train_loss = self.train_epoch(epoch, observer)?;
            let train_seconds = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let evaluated = self.config.mode.evaluated(&self.config.space).len();
            let images = self.test.count() + self.validation.as_ref().map_or(0, |v| v.count());
            observer.evaluating(evaluated, images);
            let subnets = self.evaluate_all()?;
            let validation = self.evaluate_validation()?;
            let metrics = EpochMetrics {
                epoch,
                lr: schedule.lr_f64(epoch - 1),
                train_loss,
                train_seconds,
                eval_seconds: started.elapsed().as_secs_f64(),
                wall_seconds: wall_before + run_started.elapsed().as_secs_f64(),
                subnets,
                validation,
            };
            self.history.push(metrics.clone());
            self.epoch += 1;
            // The state first: the observer's weights and metrics line never run ahead of it.
            self.save_state(self.epoch, Vec::new(), RngState::of(&self.streams.order))?;
            crate::failpoint::pass("state");
            observer.epoch_finished(self.backend, &self.net, &metrics)?;
            if self.stop_requested() && self.epoch <= self.config.epochs {
                return Err(Error::Interrupted {
                    epoch: self.epoch,
                    step: 0,
                });
            }
        }
        Ok(self.history.clone())
    }

    /// Trains the first `steps` minibatches of an epoch (order and subnets drawn as in `run`)
    /// and returns each step's subnet and loss, read back once at the end.
    pub fn train_steps(&mut self, steps: usize) -> Result<Vec<(Subnet, f32)>> {
        let order = self.epoch_order();
        let loss_log = self.backend.zeros(steps)?;
        let mut subnets = Vec::with_capacity(steps);
        for (step, indices) in order.chunks(self.config.batch_size).take(steps).enumerate() {
            let subnet = self.next_subnet();
            self.train_step(indices, subnet, &loss_log, step)?;
            subnets.push(subnet);
        }
        let losses = self.backend.download(&loss_log, subnets.len())?;
        Ok(subnets.into_iter().zip(losses).collect())
    }

    /// Every subnet of the mode on the test set.
    pub fn evaluate_all(&self) -> Result<BTreeMap<String, SubnetMetrics>> {
        self.evaluate_split(&self.test)
    }

    /// Every subnet of the mode on the held-out training images, if any were held out.
    pub fn evaluate_validation(&self) -> Result<Option<BTreeMap<String, SubnetMetrics>>> {
        self.validation
            .as_ref()
            .map(|split| self.evaluate_split(split))
            .transpose()
    }

    fn evaluate_split(&self, split: &DeviceSplit<B>) -> Result<BTreeMap<String, SubnetMetrics>> {
        let subnets = self.config.mode.evaluated(&self.config.space);
        let metrics = evaluate_subnets(
            self.backend,
            &self.net,
            split,
            &subnets,
            self.config.eval_batch_size,
        )?;
        Ok(subnets.iter().map(Subnet::to_string).zip(metrics).collect())
    }

    /// One epoch (of a resumed training: from its first step not done); returns the mean
    /// training loss over its images. Stopped, it writes the state and returns `Interrupted`.
    fn train_epoch(&mut self, epoch: usize, observer: &mut impl Observer) -> Result<f64> {
        let order_at_epoch_start = RngState::of(&self.streams.order);
        let order = self.epoch_order();
        let batch_size = self.config.batch_size;
        let steps = order.len().div_ceil(batch_size);
        let loss_log = self.backend.zeros(steps)?;
        let first = std::mem::take(&mut self.resumed_step);
        let earlier = std::mem::take(&mut self.resumed_losses);
        let losses_so_far = |log: &B::Storage, done: usize| -> Result<Vec<f32>> {
            let mut losses = self.backend.download(log, done)?;
            losses[..first].copy_from_slice(&earlier);
            Ok(losses)
        };
        observer.epoch_started(epoch, steps);
        observer.step(first);
        let (mut logged, mut since) = (first, Instant::now());
        for (step, indices) in order.chunks(batch_size).enumerate().skip(first) {
            let subnet = self.next_subnet();
            self.train_step(indices, subnet, &loss_log, step)?;
            let done = step + 1;
            observer.step(done);
            crate::failpoint::pass("step");
            if self.stop_requested() && done < steps {
                let losses = losses_so_far(&loss_log, done)?;
                self.save_state(epoch, losses, order_at_epoch_start)?;
                return Err(Error::Interrupted { epoch, step: done });
            }
            if done % self.config.log_every == 0 || done == steps {
                let losses = losses_so_far(&loss_log, done)?;
                check_finite(&losses, logged, epoch)?;
                let recent = &losses[logged..done];
                let images = ((done - logged) * batch_size).min(order.len() - logged * batch_size);
                observer.steps_done(
                    done,
                    mean(recent),
                    images as f64 / since.elapsed().as_secs_f64(),
                );
                (logged, since) = (done, Instant::now());
            }
        }
        // Each step's loss is its batch's mean: weight by batch size (the last may be short).
        let losses = losses_so_far(&loss_log, steps)?;
        let weighted: f64 = order
            .chunks(batch_size)
            .zip(&losses)
            .map(|(batch, &loss)| loss as f64 * batch.len() as f64)
            .sum();
        Ok(weighted / order.len() as f64)
    }

    /// The KL proxy of every subnet on a fixed sample of `images` held-out images, or
    /// training images when none are held out.
    pub fn kl_proxy(&self, images: usize) -> Result<KlProxy> {
        let (split, name) = self.ranking_split();
        kl_proxy(self.backend, &self.net, split, name, images)
    }

    /// The zero-cost proxies of every subnet, on the network as it is now (at
    /// initialisation, before `run`), from one batch of `images` images of the ranking split.
    pub fn zero_cost(&self, images: usize) -> Result<ZeroCost> {
        let (split, name) = self.ranking_split();
        zero_cost(self.backend, &self.net, split, name, images)
    }

    /// The held-out images if any, else the training images, and the split's name.
    fn ranking_split(&self) -> (&DeviceSplit<B>, &'static str) {
        match &self.validation {
            Some(validation) => (validation, "validation"),
            None => (&self.train, "training"),
        }
    }

    /// Seconds spent in training steps so far, not counting read-backs: on the GPU the CPU time
    /// to record and submit them, on the CPU backend the work itself.
    pub fn step_seconds(&self) -> f64 {
        self.step_seconds
    }

    fn train_step(
        &mut self,
        indices: &[u32],
        subnet: Subnet,
        loss_log: &B::Storage,
        step: usize,
    ) -> Result<()> {
        let started = Instant::now();
        let backend = self.backend;
        let batch = self.train.batch(backend, indices)?;
        let tape = Tape::new(backend);
        let masks = self.config.space.masks(&subnet);
        let loss = self.net.loss(&tape, &batch.images, &batch.labels, &masks)?;
        let grads = tape.backward(&loss)?;
        self.optimizer
            .step(backend, self.net.parameters(), &grads)?;
        backend.copy_into(loss.storage(), loss_log, step, 1)?;
        backend.flush()?;
        self.step_seconds += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// The images of an epoch: shuffled, or in the file's order as in the original study.
    fn epoch_order(&mut self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.train.count() as u32).collect();
        if self.config.shuffle {
            order.shuffle(&mut self.streams.order);
        }
        order
    }

    /// One-shot: drawn by the sampling strategy; stand-alone: always the same one.
    fn next_subnet(&mut self) -> Subnet {
        match self.config.mode {
            Mode::OneShot => self.streams.subnets.next_subnet(),
            Mode::Standalone(subnet) => subnet,
        }
    }
}

fn mean(values: &[f32]) -> f64 {
    values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64
}

/// Stops the run at the first non-finite loss, naming its epoch and step (counted from 1).
fn check_finite(losses: &[f32], from: usize, epoch: usize) -> Result<()> {
    match losses
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, l)| !l.is_finite())
    {
        Some((step, loss)) => Err(Error::Diverged {
            epoch,
            step: step + 1,
            loss: *loss,
        }),
        None => Ok(()),
    }
}
