//! The SuperNet over a search space, in two variants (`Sum` and `Concat`):
//!
//! ```text
//! x [N,1,S,S] -> block 1 -> [N,C,S/2,S/2] -> ... -> block B -> [N,C,s,s] -> flatten [N, C*s*s]
//!   -> fc1 -> relu -> fc2 -> logits [N,10]            (s = S halved B times, floor)
//! block (Sum):    relu(sum_j m_j * op_j(x)) -> maxpool2
//! block (Concat): relu(mix(cat_j(m_j * op_j(x)))) -> maxpool2   (mix: 1x1 conv, K*C -> C)
//! ```
//! `op_j` is the block's j-th choice, of any kind (`model::choices`: a conv, dilated or
//! separable, a stride-1 pool, the identity); `m` is one-hot for a subnet, all ones for the
//! "all paths" network. With the study's space `3,5/3,5` this is exactly the study's
//! `SuperNetSum` / `SuperNetConcat`. Parameter names follow the PyTorch `state_dict`
//! (`block1.conv3.weight`, `block1.sep3.depthwise.weight`, `block2.mix.bias`, ..., `fc2.bias`);
//! a choice without parameters has none.

use rand::Rng;

use crate::engine::{Backend, Tape, Tensor};
use crate::error::{Error, Result};
use crate::model::space::{Choice, SearchSpace};
use crate::model::subnet::{BlockMask, Subnet};

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

    pub fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuperNetConfig {
    pub variant: Variant,
    /// The blocks and their choices (the study's `3,5/3,5` by default).
    pub space: SearchSpace,
    /// Filters of every conv (8 in the study).
    pub channels: usize,
    /// Width of the hidden layer (32 in the study).
    pub hidden: usize,
    /// Side of the square input images (28 for MNIST).
    pub image_size: usize,
    pub classes: usize,
}

/// A parameter's state_dict name and shape.
pub struct ParameterShape {
    pub name: String,
    pub shape: Vec<usize>,
}

impl SuperNetConfig {
    /// The study's SuperNet for MNIST: space `3,5/3,5`, 8 channels, hidden 32.
    pub fn mnist(variant: Variant) -> Self {
        SuperNetConfig {
            variant,
            space: SearchSpace::study(),
            channels: 8,
            hidden: 32,
            image_size: 28,
            classes: 10,
        }
    }

    /// Side of the map entering fc1: the image after one 2x2 pool per block.
    pub fn final_side(&self) -> usize {
        self.space.side_after(self.image_size)
    }

    /// Features entering fc1: C channels of the final map.
    pub fn flat_features(&self) -> usize {
        self.channels * self.final_side() * self.final_side()
    }

    /// Channels entering block `block` (counted from 0): the image's one, then C.
    pub fn in_channels(&self, block: usize) -> usize {
        if block == 0 {
            1
        } else {
            self.channels
        }
    }

    /// The parameters of `subnet` as a plain network (what `export` writes): its choice in
    /// each block, a Concat block's mix cut to one slot, and the head. A baseline predictor.
    pub fn subnet_parameters(&self, subnet: &Subnet) -> usize {
        let c = self.channels;
        let mix = if self.variant == Variant::Concat {
            c * c + c
        } else {
            0
        };
        let blocks: usize = (self.space.path(subnet).iter().enumerate())
            .map(|(b, choice)| choice.parameter_count(self.in_channels(b), c) + mix)
            .sum();
        let head = self.hidden * (self.flat_features() + 1) + self.classes * (self.hidden + 1);
        blocks + head
    }

    /// The multiply-adds of `subnet` per image (a pool's comparisons or additions counted as
    /// one each): its choices and mixes at each block's input side, and the head. A baseline
    /// predictor.
    pub fn subnet_operations(&self, subnet: &Subnet) -> f64 {
        let c = self.channels;
        let mut side = self.image_size;
        let mut total = 0.0;
        for (b, choice) in self.space.path(subnet).iter().enumerate() {
            total += choice.operations(self.in_channels(b), c, side);
            if self.variant == Variant::Concat {
                total += (c * c * side * side) as f64;
            }
            side /= 2;
        }
        total + (self.flat_features() * self.hidden + self.hidden * self.classes) as f64
    }

    /// Every parameter's state_dict name and shape, in state_dict order: per block its
    /// choices' parameters in choice order (as each kind lists them), then (Concat) its mix;
    /// then fc1 and fc2. A weight comes right before its bias. `SuperNet::from_values` reads the tensors back in this order.
    pub fn parameter_shapes(&self) -> Vec<ParameterShape> {
        let c = self.channels;
        let mut shapes = Vec::new();
        for (b, choices) in self.space.blocks().iter().enumerate() {
            let block = b + 1;
            for choice in choices {
                let Some(module) = choice.module() else {
                    continue;
                };
                for p in choice.parameters(self.in_channels(b), c) {
                    shapes.push(ParameterShape {
                        name: format!("block{block}.{module}.{}", p.name),
                        shape: p.shape,
                    });
                }
            }
            if self.variant == Variant::Concat {
                let mix = vec![c, choices.len() * c, 1, 1];
                shapes.extend(layer_shapes(&format!("block{block}.mix"), mix));
            }
        }
        shapes.extend(layer_shapes("fc1", vec![self.hidden, self.flat_features()]));
        shapes.extend(layer_shapes("fc2", vec![self.classes, self.hidden]));
        shapes
    }
}

/// `{name}.weight` of shape `weight` and its bias.
fn layer_shapes(name: &str, weight: Vec<usize>) -> [ParameterShape; 2] {
    let out = weight[0];
    [
        ParameterShape {
            name: format!("{name}.weight"),
            shape: weight,
        },
        ParameterShape {
            name: format!("{name}.bias"),
            shape: vec![out],
        },
    ]
}

/// A layer's weight and bias (a conv or a linear layer).
pub struct Layer<B: Backend> {
    pub weight: Tensor<B>,
    pub bias: Tensor<B>,
}

/// One choice of a block, with its parameters in `Choice::parameters` order.
pub struct Branch<B: Backend> {
    pub choice: Choice,
    pub params: Vec<Tensor<B>>,
}

impl<B: Backend> Branch<B> {
    fn forward(&self, tape: &Tape<'_, B>, x: &Tensor<B>) -> Result<Tensor<B>> {
        self.choice.forward(tape, x, &self.params)
    }
}

/// A block's choices in order and, for Concat, the 1x1 conv that mixes their slots.
pub struct Block<B: Backend> {
    pub branches: Vec<Branch<B>>,
    pub mix: Option<Layer<B>>,
}

/// A SuperNet's parameters on backend `B`: typed per block for the forward pass, and as one
/// list in state_dict order (the order the optimizer keeps its state in).
pub struct SuperNet<B: Backend> {
    pub config: SuperNetConfig,
    blocks: Vec<Block<B>>,
    fc1: Layer<B>,
    fc2: Layer<B>,
    names: Vec<String>,
    params: Vec<Tensor<B>>,
}

impl<B: Backend> SuperNet<B> {
    /// PyTorch's default initialisation: weights and biases uniform in +-1/sqrt(fan_in)
    /// (`kaiming_uniform_(a=sqrt(5))` reduces to that bound), drawn in state_dict order.
    pub fn init(backend: &B, config: SuperNetConfig, rng: &mut impl Rng) -> Result<Self> {
        let shapes = config.parameter_shapes();
        let values = shapes.iter().enumerate().map(|(i, p)| {
            // A bias shares the fan-in of the weight listed just before it.
            let weight_shape = if p.shape.len() == 1 {
                &shapes[i - 1].shape
            } else {
                &p.shape
            };
            let fan_in: usize = weight_shape[1..].iter().product();
            if fan_in == 0 {
                return Err(Error::invalid(
                    "supernet",
                    format!("{} has no inputs (shape {weight_shape:?})", p.name),
                ));
            }
            let bound = 1.0 / (fan_in as f32).sqrt();
            let len: usize = p.shape.iter().product();
            Ok((0..len)
                .map(|_| rng.random_range(-bound..bound))
                .collect::<Vec<f32>>())
        });
        let named = shapes
            .iter()
            .map(|p| p.name.clone())
            .zip(values)
            .map(|(name, values)| Ok((name, values?)))
            .collect::<Result<Vec<_>>>()?;
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
            .find(|(n, _)| !shapes.iter().any(|p| &p.name == n))
        {
            return Err(Error::invalid(
                "supernet",
                format!(
                    "unexpected parameter {extra} for the space {}",
                    config.space
                ),
            ));
        }
        let mut ordered: Vec<&[f32]> = Vec::with_capacity(shapes.len());
        for ParameterShape { name, shape } in &shapes {
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
            ordered.push(values);
        }
        // One group, so that the optimizer can step them together (see `Adadelta`).
        let storages = backend.upload_group(&ordered)?;
        let lens: Vec<usize> = ordered.iter().map(|v| v.len()).collect();
        let mut slots = backend.gradient_slots(&lens)?.map(Vec::into_iter);
        let params: Vec<Tensor<B>> = (storages.into_iter().zip(&shapes))
            .map(|(storage, p)| {
                let slot = slots.as_mut().and_then(Iterator::next);
                Tensor::parameter_in(storage, &p.shape, slot)
            })
            .collect();
        let (blocks, fc1, fc2) = typed(&config, &params);
        Ok(SuperNet {
            config,
            blocks,
            fc1,
            fc2,
            names: shapes.into_iter().map(|p| p.name).collect(),
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

    /// The parameters of block `block` (counted from 0).
    pub fn block(&self, block: usize) -> &Block<B> {
        &self.blocks[block]
    }

    /// Logits `[N, classes]` of the network selected by `masks` (one per block) on images
    /// `[N, 1, S, S]`.
    pub fn forward(
        &self,
        tape: &Tape<'_, B>,
        images: &Tensor<B>,
        masks: &[BlockMask],
    ) -> Result<Tensor<B>> {
        if masks.len() != self.blocks.len() {
            return Err(Error::invalid(
                "supernet",
                format!(
                    "{} block masks for {} blocks",
                    masks.len(),
                    self.blocks.len()
                ),
            ));
        }
        let mut x = images.clone();
        for (block, mask) in masks.iter().enumerate() {
            x = self.block_forward(tape, block, &x, mask)?;
        }
        self.head(tape, &x)
    }

    /// Mean cross-entropy of the network's predictions against `labels`.
    pub fn loss(
        &self,
        tape: &Tape<'_, B>,
        images: &Tensor<B>,
        labels: &B::Indices,
        masks: &[BlockMask],
    ) -> Result<Tensor<B>> {
        let logits = self.forward(tape, images, masks)?;
        tape.softmax_cross_entropy(&logits, labels)
    }

    /// Block `block` (counted from 0): its active choices (an inactive one is never
    /// computed), mixed, ReLU, pool.
    pub fn block_forward(
        &self,
        tape: &Tape<'_, B>,
        block: usize,
        x: &Tensor<B>,
        mask: &BlockMask,
    ) -> Result<Tensor<B>> {
        let params = &self.blocks[block];
        if mask.factors().len() != params.branches.len() {
            return Err(Error::invalid(
                "supernet",
                format!(
                    "block {} has {} choices, the mask {} factors",
                    block + 1,
                    params.branches.len(),
                    mask.factors().len()
                ),
            ));
        }
        let mut active = (params.branches.iter().zip(mask.factors()).enumerate())
            .filter(|(_, (_, &factor))| factor != 0.0);
        if let (Some((slot, (branch, &1.0))), None) = (active.next(), active.next()) {
            if let Some(out) = one_choice_block(tape, params, x, slot, branch)? {
                return Ok(out);
            }
        }
        let outputs = params
            .branches
            .iter()
            .zip(mask.factors())
            .map(|(branch, &factor)| {
                if factor == 0.0 {
                    return Ok(None);
                }
                Ok(Some((branch.forward(tape, x)?, factor)))
            })
            .collect::<Result<Vec<_>>>()?;
        let slots: Vec<Option<(&Tensor<B>, f32)>> = outputs
            .iter()
            .map(|o| o.as_ref().map(|(t, f)| (t, *f)))
            .collect();
        let mixed = match &params.mix {
            None => tape.masked_sum(&slots.iter().flatten().copied().collect::<Vec<_>>())?,
            Some(mix) => {
                let concatenated = tape.masked_concat(&slots)?;
                tape.conv2d(&concatenated, &mix.weight, &mix.bias)?
            }
        };
        tape.maxpool2(&tape.relu(&mixed)?)
    }

    /// The head on the last block's output: flatten, fc1, ReLU, fc2.
    pub fn head(&self, tape: &Tape<'_, B>, x: &Tensor<B>) -> Result<Tensor<B>> {
        let x = tape.flatten(x)?;
        let x = tape.relu(&tape.linear(&x, &self.fc1.weight, &self.fc1.bias)?)?;
        tape.linear(&x, &self.fc2.weight, &self.fc2.bias)
    }
}

/// A block whose one active choice has factor 1, with ReLU and pool fused into the conv before
/// them (`conv_relu_pool`): the choice's last conv (Sum), or the mix reading the choice's slot
/// (Concat: the other slots would hold zeros). `None` for a Sum block's choice that does not
/// end in a conv (a pool, the identity).
fn one_choice_block<B: Backend>(
    tape: &Tape<'_, B>,
    block: &Block<B>,
    x: &Tensor<B>,
    slot: usize,
    branch: &Branch<B>,
) -> Result<Option<Tensor<B>>> {
    let Some(mix) = &block.mix else {
        return branch.choice.forward_relu_pool(tape, x, &branch.params);
    };
    let chosen = branch.forward(tape, x)?;
    // [N, C, H, W]; conv_relu_pool refuses another shape.
    let channels = chosen.shape().get(1).copied().unwrap_or(0);
    tape.conv_relu_pool(&chosen, &mix.weight, &mix.bias, slot * channels)
        .map(Some)
}

/// The typed view of `params`, which are in `config.parameter_shapes()` order.
fn typed<B: Backend>(
    config: &SuperNetConfig,
    params: &[Tensor<B>],
) -> (Vec<Block<B>>, Layer<B>, Layer<B>) {
    let mut tensors = params.iter().cloned();
    let mut take = |count: usize| -> Vec<Tensor<B>> { tensors.by_ref().take(count).collect() };
    let mut blocks = Vec::new();
    for (b, choices) in config.space.blocks().iter().enumerate() {
        let in_channels = config.in_channels(b);
        let branches = (choices.iter())
            .map(|&choice| Branch {
                choice,
                params: take(choice.parameters(in_channels, config.channels).len()),
            })
            .collect();
        let mix = (config.variant == Variant::Concat).then(|| layer(take(2)));
        blocks.push(Block { branches, mix });
    }
    let fc1 = layer(take(2));
    let fc2 = layer(take(2));
    (blocks, fc1, fc2)
}

/// A weight and its bias.
fn layer<B: Backend>(tensors: Vec<Tensor<B>>) -> Layer<B> {
    let [weight, bias] = <[Tensor<B>; 2]>::try_from(tensors)
        .unwrap_or_else(|_| panic!("a weight and a bias per layer"));
    Layer { weight, bias }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand, the study's `00` (Sum): 3x3 1 -> 8 (72 + 8), 3x3 8 -> 8 (576 + 8), fc1
    /// 392 -> 32 (12,544 + 32), fc2 32 -> 10 (320 + 10); its multiply-adds per image: 72 x 784,
    /// 576 x 196, 392 x 32 and 32 x 10. Concat adds a one-slot mix (64 + 8) per block.
    #[test]
    fn a_subnet_counts_its_parameters_and_operations() {
        let sum = SuperNetConfig::mnist(Variant::Sum);
        let subnet = sum.space.parse_subnet("00").expect("00");
        assert_eq!(sum.subnet_parameters(&subnet), 80 + 584 + 12_576 + 330);
        let operations = 72.0 * 784.0 + 576.0 * 196.0 + 392.0 * 32.0 + 320.0;
        assert_eq!(sum.subnet_operations(&subnet), operations);
        let concat = SuperNetConfig::mnist(Variant::Concat);
        assert_eq!(concat.subnet_parameters(&subnet), 13_570 + 2 * 72);
        let ops = SuperNetConfig {
            space: SearchSpace::parse("ops").expect("ops"),
            ..sum
        };
        // sep3 then max3: 9 + 1 + 8 + 8 in block 1, nothing in block 2.
        let pooled = ops.space.parse_subnet("34").expect("34");
        assert_eq!(ops.subnet_parameters(&pooled), 26 + 12_576 + 330);
    }
}
