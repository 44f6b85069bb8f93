//! `SuperNetSum` and `SuperNetConcat`, as in the study:
//!
//! ```text
//! x [N,1,28,28] -> block1 -> [N,C,14,14] -> block2 -> [N,C,7,7] -> flatten [N, C*49]
//!   -> fc1 -> relu -> fc2 -> logits [N,10]
//! block (Sum):    relu(conv3(x)*m3 + conv5(x)*m5) -> maxpool2
//! block (Concat): relu(mix(cat(conv3(x)*m3, conv5(x)*m5))) -> maxpool2   (mix: 1x1, 2C -> C)
//! ```
//! Parameter names follow the PyTorch `state_dict` (`block1.conv3.weight`, ..., `fc2.bias`).

use rand::Rng;

use crate::engine::{Backend, Tape, Tensor};
use crate::error::{Error, Result};
use crate::model::subnet::{BlockMask, BLOCKS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Sum,
    Concat,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::Sum, Variant::Concat];

    /// "sum" or "concat", as on the command line and in results files.
    pub fn name(&self) -> &'static str {
        match self {
            Variant::Sum => "sum",
            Variant::Concat => "concat",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuperNetConfig {
    pub variant: Variant,
    /// Filters of every conv (8 in the study).
    pub channels: usize,
    /// Width of the hidden layer (32 in the study).
    pub hidden: usize,
    /// Side of the square input images (28 for MNIST).
    pub image_size: usize,
    pub classes: usize,
}

impl SuperNetConfig {
    pub fn mnist(variant: Variant) -> Self {
        SuperNetConfig {
            variant,
            channels: 8,
            hidden: 32,
            image_size: 28,
            classes: 10,
        }
    }

    /// Features entering fc1: C channels of the map after two 2x2 pools.
    pub fn flat_features(&self) -> usize {
        let side = self.image_size / 2 / 2;
        self.channels * side * side
    }

    /// Every parameter's state_dict name and shape, in state_dict order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let c = self.channels;
        let mut shapes = Vec::new();
        for block in 1..=BLOCKS {
            let in_channels = if block == 1 { 1 } else { c };
            for k in [3, 5] {
                shapes.push((
                    format!("block{block}.conv{k}.weight"),
                    vec![c, in_channels, k, k],
                ));
                shapes.push((format!("block{block}.conv{k}.bias"), vec![c]));
            }
            if self.variant == Variant::Concat {
                shapes.push((format!("block{block}.mix.weight"), vec![c, 2 * c, 1, 1]));
                shapes.push((format!("block{block}.mix.bias"), vec![c]));
            }
        }
        shapes.push(("fc1.weight".into(), vec![self.hidden, self.flat_features()]));
        shapes.push(("fc1.bias".into(), vec![self.hidden]));
        shapes.push(("fc2.weight".into(), vec![self.classes, self.hidden]));
        shapes.push(("fc2.bias".into(), vec![self.classes]));
        shapes
    }
}

/// A SuperNet's parameters, by state_dict name, on backend `B`.
pub struct SuperNet<B: Backend> {
    pub config: SuperNetConfig,
    names: Vec<String>,
    params: Vec<Tensor<B>>,
}

impl<B: Backend> SuperNet<B> {
    /// PyTorch's default initialisation: weights and biases uniform in +-1/sqrt(fan_in)
    /// (`kaiming_uniform_(a=sqrt(5))` reduces to that bound).
    pub fn init(backend: &B, config: SuperNetConfig, rng: &mut impl Rng) -> Result<Self> {
        let shapes = config.parameter_shapes();
        let values = shapes.iter().enumerate().map(|(i, (_, shape))| {
            // A bias shares the fan-in of the weight listed just before it.
            let weight_shape = if shape.len() == 1 {
                &shapes[i - 1].1
            } else {
                shape
            };
            let fan_in: usize = weight_shape[1..].iter().product();
            let bound = 1.0 / (fan_in as f32).sqrt();
            let len: usize = shape.iter().product();
            (0..len)
                .map(|_| rng.random_range(-bound..bound))
                .collect::<Vec<f32>>()
        });
        let named: Vec<(String, Vec<f32>)> =
            shapes.iter().map(|(n, _)| n.clone()).zip(values).collect();
        Self::from_values(backend, config, &named)
    }

    /// Builds the network from `(name, values)` pairs; every parameter of `config` must be
    /// present with the right number of values, and nothing else.
    pub fn from_values(
        backend: &B,
        config: SuperNetConfig,
        named: &[(String, Vec<f32>)],
    ) -> Result<Self> {
        let shapes = config.parameter_shapes();
        if let Some((extra, _)) = named
            .iter()
            .find(|(n, _)| !shapes.iter().any(|(s, _)| s == n))
        {
            return Err(Error::invalid(
                "supernet",
                format!("unexpected parameter {extra}"),
            ));
        }
        let mut params = Vec::with_capacity(shapes.len());
        for (name, shape) in &shapes {
            let (_, values) = named
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| Error::invalid("supernet", format!("missing parameter {name}")))?;
            let expected: usize = shape.iter().product();
            if values.len() != expected {
                return Err(Error::invalid(
                    "supernet",
                    format!(
                        "{name} has {} values, expected {expected} for shape {shape:?}",
                        values.len()
                    ),
                ));
            }
            params.push(Tensor::parameter(backend, values, shape)?);
        }
        Ok(SuperNet {
            config,
            names: shapes.into_iter().map(|(n, _)| n).collect(),
            params,
        })
    }

    /// Every parameter, in state_dict order (the order the optimizer keeps its state in).
    pub fn parameters(&self) -> &[Tensor<B>] {
        &self.params
    }

    pub fn named_parameters(&self) -> impl Iterator<Item = (&str, &Tensor<B>)> {
        self.names.iter().map(String::as_str).zip(&self.params)
    }

    pub fn parameter(&self, name: &str) -> Result<&Tensor<B>> {
        self.named_parameters()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::invalid("supernet", format!("no parameter {name}")))
    }

    /// Logits `[N, classes]` of the subnet selected by `masks` on images `[N, 1, S, S]`.
    pub fn forward(
        &self,
        tape: &Tape<'_, B>,
        images: &Tensor<B>,
        masks: &[BlockMask; BLOCKS],
    ) -> Result<Tensor<B>> {
        let mut x = images.clone();
        for (block, mask) in masks.iter().enumerate() {
            x = self.block(tape, block + 1, &x, mask)?;
        }
        let x = tape.flatten(&x)?;
        let x = tape.relu(&tape.linear(
            &x,
            self.parameter("fc1.weight")?,
            self.parameter("fc1.bias")?,
        )?)?;
        tape.linear(
            &x,
            self.parameter("fc2.weight")?,
            self.parameter("fc2.bias")?,
        )
    }

    /// Mean cross-entropy of the subnet's predictions against `labels`.
    pub fn loss(
        &self,
        tape: &Tape<'_, B>,
        images: &Tensor<B>,
        labels: &B::Indices,
        masks: &[BlockMask; BLOCKS],
    ) -> Result<Tensor<B>> {
        let logits = self.forward(tape, images, masks)?;
        tape.softmax_cross_entropy(&logits, labels)
    }

    /// One block: the active convs (an inactive one is never computed), mixed, ReLU, pool.
    fn block(
        &self,
        tape: &Tape<'_, B>,
        block: usize,
        x: &Tensor<B>,
        mask: &BlockMask,
    ) -> Result<Tensor<B>> {
        let conv = |k: usize, factor: f32| -> Result<Option<(Tensor<B>, f32)>> {
            if factor == 0.0 {
                return Ok(None);
            }
            let weight = self.parameter(&format!("block{block}.conv{k}.weight"))?;
            let bias = self.parameter(&format!("block{block}.conv{k}.bias"))?;
            Ok(Some((tape.conv2d(x, weight, bias)?, factor)))
        };
        let branches = [conv(3, mask.conv3)?, conv(5, mask.conv5)?];
        let mixed = match self.config.variant {
            Variant::Sum => {
                let active: Vec<(&Tensor<B>, f32)> =
                    branches.iter().flatten().map(|(t, f)| (t, *f)).collect();
                tape.masked_sum(&active)?
            }
            Variant::Concat => {
                let slots: Vec<Option<(&Tensor<B>, f32)>> = branches
                    .iter()
                    .map(|b| b.as_ref().map(|(t, f)| (t, *f)))
                    .collect();
                let concatenated = tape.masked_concat(&slots)?;
                let weight = self.parameter(&format!("block{block}.mix.weight"))?;
                let bias = self.parameter(&format!("block{block}.mix.bias"))?;
                tape.conv2d(&concatenated, weight, bias)?
            }
        };
        tape.maxpool2(&tape.relu(&mixed)?)
    }
}
