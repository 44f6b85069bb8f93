//! What a training run is: the network, the protocol and the seed.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{SearchSpace, Subnet, Variant};
use crate::training::Sampling;

/// One-shot trains the SuperNet with a subnet drawn per minibatch; stand-alone trains one
/// fixed subnet from scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    OneShot,
    Standalone(Subnet),
}

impl Mode {
    /// The subnets evaluated after every epoch: all of the space, or the one trained.
    pub fn evaluated(&self, space: &SearchSpace) -> Vec<Subnet> {
        match self {
            Mode::OneShot => space.subnets(),
            Mode::Standalone(subnet) => vec![*subnet],
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::OneShot => write!(f, "oneshot"),
            Mode::Standalone(subnet) => write!(f, "standalone-{subnet}"),
        }
    }
}

/// The study's protocol by default: batch 64, 14 epochs, Adadelta lr 1.0 decayed by 0.7
/// per epoch, seed 1; shuffled every epoch unless `shuffle` is off (the original's file order).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainConfig {
    #[serde(serialize_with = "variant_name")]
    pub variant: Variant,
    #[serde(serialize_with = "mode_name")]
    pub mode: Mode,
    /// The SuperNet's blocks and their choices (serialised as its spec, `3,5/3,5`).
    pub space: SearchSpace,
    pub channels: usize,
    pub hidden: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub gamma: f64,
    pub seed: u64,
    pub shuffle: bool,
    /// How one-shot training draws each minibatch's subnet.
    #[serde(serialize_with = "sampling_name")]
    pub sampling: Sampling,
    /// The last `validation` training images are held out (not trained on) and evaluated
    /// after every epoch beside the test set; 0 = none.
    pub validation: usize,
    /// Images per evaluation batch (memory only; results do not depend on it).
    pub eval_batch_size: usize,
    /// Steps between loss read-backs (progress, divergence check).
    pub log_every: usize,
}

fn variant_name<S: serde::Serializer>(v: &Variant, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

fn sampling_name<S: serde::Serializer>(v: &Sampling, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

fn mode_name<S: serde::Serializer>(m: &Mode, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&m.to_string())
}

impl TrainConfig {
    pub fn study(variant: Variant, mode: Mode) -> Self {
        TrainConfig {
            variant,
            mode,
            space: SearchSpace::study(),
            channels: 8,
            hidden: 32,
            epochs: 14,
            batch_size: 64,
            lr: 1.0,
            gamma: 0.7,
            seed: 1,
            shuffle: true,
            sampling: Sampling::Uniform,
            validation: 0,
            eval_batch_size: crate::training::EVAL_BATCH,
            log_every: 50,
        }
    }

    pub fn validate(&self) -> Result<()> {
        // Named by their command-line flags, where the values come from.
        let counts = [
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--channels", self.channels),
            ("--hidden", self.hidden),
            ("eval batch size", self.eval_batch_size),
            ("log interval", self.log_every),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, v)| *v == 0) {
            return Err(Error::invalid(
                "training",
                format!("{name} must be at least 1, got 0"),
            ));
        }
        // Checked as the optimizer will hold it: 1e39 is inf in f32, 1e-50 is 0.
        let lr = self.lr as f32;
        if !(self.lr > 0.0 && lr.is_finite() && lr > 0.0) {
            return Err(Error::invalid(
                "training",
                format!(
                    "--lr must be a positive number that f32 holds (about 1e-38 to 3e38), got {:e}",
                    self.lr
                ),
            ));
        }
        if let Mode::Standalone(subnet) = self.mode {
            if !self.space.contains(&subnet) {
                return Err(Error::invalid(
                    "--subnet",
                    format!("{subnet} is not a subnet of the space {}", self.space),
                ));
            }
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(Error::invalid(
                "training",
                format!("--gamma must be a positive number, got {}", self.gamma),
            ));
        }
        let schedule = crate::training::StepLr {
            initial: self.lr,
            gamma: self.gamma,
        };
        let last = schedule.lr(self.epochs - 1);
        if !(last.is_finite() && last > 0.0) {
            return Err(Error::invalid(
                "training",
                format!(
                    "--gamma {:e} makes the learning rate of epoch {} {last:e} in f32; the optimizer needs a positive finite one",
                    self.gamma, self.epochs
                ),
            ));
        }
        Ok(())
    }
}

impl TrainConfig {
    /// A rough upper bound of the memory a training of this config takes on `image_side`-pixel
    /// images, in bytes (f64, so that absurd sizes do not overflow): the parameters with their
    /// gradients and two Adadelta accumulators, a training batch's activations and gradients,
    /// an evaluation batch's activations.
    pub fn estimated_bytes(&self, image_side: usize) -> f64 {
        let c = self.channels as f64;
        let (mut params, mut per_image) = (0.0, (image_side * image_side) as f64);
        let mut side = image_side as f64;
        for (b, choices) in self.space.blocks().iter().enumerate() {
            let c_in = if b == 0 { 1.0 } else { c };
            let k = choices.len() as f64;
            for choice in choices {
                params += choice.parameter_count(c_in as usize, self.channels) as f64;
                per_image += choice.hidden_activations(c_in as usize, side as usize);
            }
            if self.variant == crate::model::Variant::Concat {
                params += c * k * c + c;
            }
            // Each choice's output, the mix, the ReLU, the pool (and its indices).
            per_image += side * side * c * (k + 4.0);
            side = (side / 2.0).floor();
        }
        let hidden = self.hidden as f64;
        params += hidden * (c * side * side + 1.0) + 10.0 * (hidden + 1.0);
        per_image += hidden * 2.0 + 20.0;
        let floats = params * 4.0
            + self.batch_size as f64 * per_image * 3.0
            + self.eval_batch_size as f64 * per_image * 1.5;
        floats * 4.0
    }

    /// Refuses a training whose estimate passes `limit` bytes, naming the flags.
    pub fn check_memory(&self, image_side: usize, limit: f64) -> Result<()> {
        let need = self.estimated_bytes(image_side);
        if need > limit {
            return Err(Error::invalid(
                "--max-memory",
                format!(
                    "this training would take about {:.1} GiB (--channels {}, --hidden {}, --batch-size {}), more than the {:.1} GiB allowed; raise --max-memory if the machine has it",
                    need / GIB,
                    self.channels,
                    self.hidden,
                    self.batch_size,
                    limit / GIB
                ),
            ));
        }
        Ok(())
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// `name (was X, now Y)` for every top-level setting that differs.
pub fn differences(was: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    let (Some(was), Some(now)) = (was.as_object(), now.as_object()) else {
        return vec!["settings".to_string()];
    };
    let mut keys: Vec<&String> = was.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| was.get(*k) != now.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.map_or("-".to_string(), |v| v.to_string());
            format!("{k} was {}, now {}", show(was.get(k)), show(now.get(k)))
        })
        .collect()
}
