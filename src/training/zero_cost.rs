//! Zero-cost proxies: scores of each subnet at initialisation, from one batch, with no
//! training at all (the baseline of Abdelfattah et al., ICLR 2021, that a one-shot SuperNet
//! has to beat):
//! - `grad_norm`: the L2 norm of the loss's gradient over the subnet's parameters;
//! - `snip`: the sum of |θ ⊙ ∂L/∂θ| over them (Lee et al., ICLR 2019);
//! - `synflow`: the sum of θ ⊙ ∂R/∂θ with every parameter replaced by its absolute value and R
//!   the sum of the logits on an all-ones image (Tanaka et al., NeurIPS 2020): no data at all.
//!
//! A larger score is read as a better subnet for all three.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Backend, Tape, Tensor};
use crate::error::Result;
use crate::model::{BlockMask, SuperNet};
use crate::training::kl_proxy::sample_with_seed;
use crate::training::DeviceSplit;

/// The batch is the same for every seed and variant.
const BATCH_SEED: u64 = 0x5a43;

/// Each proxy's score of every subnet of the space, by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZeroCost {
    /// Images in the batch, and the split they come from ("validation" or "training").
    pub images: usize,
    pub split: String,
    pub grad_norm: BTreeMap<String, f64>,
    pub snip: BTreeMap<String, f64>,
    pub synflow: BTreeMap<String, f64>,
}

/// The proxies of every subnet of `net` (at initialisation) on a fixed sample of `images`
/// images of `split`.
pub fn zero_cost<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    split: &DeviceSplit<B>,
    split_name: &str,
    images: usize,
) -> Result<ZeroCost> {
    let indices = sample_with_seed(BATCH_SEED, split.count(), images);
    let batch = split.batch(backend, &indices)?;
    let values = host_values(backend, net.parameters())?;
    let absolute = absolute_net(backend, net, &values)?;
    let ones = ones_image(backend, net)?;
    let space = &net.config.space;
    let mut proxies = ZeroCost {
        images: indices.len(),
        split: split_name.to_string(),
        grad_norm: BTreeMap::new(),
        snip: BTreeMap::new(),
        synflow: BTreeMap::new(),
    };
    for subnet in space.subnets() {
        let masks = space.masks(&subnet);
        let name = subnet.to_string();
        let tape = Tape::new(backend);
        let loss = net.loss(&tape, &batch.images, &batch.labels, &masks)?;
        let grads = tape.backward(&loss)?;
        let (mut squares, mut saliency) = (0.0, 0.0);
        for (param, theta) in net.parameters().iter().zip(&values) {
            let Some(grad) = grads.get(param) else {
                continue;
            };
            for (g, t) in grad.to_vec(backend)?.iter().zip(theta) {
                squares += (*g as f64).powi(2);
                saliency += (*g as f64 * *t as f64).abs();
            }
        }
        proxies.grad_norm.insert(name.clone(), squares.sqrt());
        proxies.snip.insert(name.clone(), saliency);
        proxies
            .synflow
            .insert(name, synflow(backend, &absolute, &values, &ones, &masks)?);
    }
    Ok(proxies)
}

fn host_values<B: Backend>(backend: &B, params: &[Tensor<B>]) -> Result<Vec<Vec<f32>>> {
    params.iter().map(|p| p.to_vec(backend)).collect()
}

/// The same network with every parameter replaced by its absolute value.
fn absolute_net<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    values: &[Vec<f32>],
) -> Result<SuperNet<B>> {
    let named: Vec<(String, Vec<f32>)> = net
        .named_parameters()
        .zip(values)
        .map(|((name, _), v)| (name.to_string(), v.iter().map(|x| x.abs()).collect()))
        .collect();
    SuperNet::from_values(backend, net.config.clone(), &named)
}

/// One all-ones image `[1, 1, S, S]`.
fn ones_image<B: Backend>(backend: &B, net: &SuperNet<B>) -> Result<Tensor<B>> {
    let side = net.config.image_size;
    Tensor::from_slice(backend, &vec![1.0; side * side], &[1, 1, side, side])
}

/// sum of |θ| ⊙ ∂R/∂|θ|, R = the sum of the logits of the all-ones image.
/// `values`: the parameters (their absolute values are `absolute`'s).
fn synflow<B: Backend>(
    backend: &B,
    absolute: &SuperNet<B>,
    values: &[Vec<f32>],
    ones: &Tensor<B>,
    masks: &[BlockMask],
) -> Result<f64> {
    let tape = Tape::new(backend);
    let logits = absolute.forward(&tape, ones, masks)?;
    let upstream = Tensor::from_slice(backend, &vec![1.0; logits.numel()], logits.shape())?;
    let grads = tape.backward_from(&logits, upstream)?;
    let mut score = 0.0;
    for (param, theta) in absolute.parameters().iter().zip(values) {
        let Some(grad) = grads.get(param) else {
            continue;
        };
        for (g, t) in grad.to_vec(backend)?.iter().zip(theta) {
            score += *g as f64 * t.abs() as f64;
        }
    }
    Ok(score)
}
