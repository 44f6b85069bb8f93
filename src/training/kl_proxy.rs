//! The KL-divergence proxy of Bender et al. (ICML 2018): after one-shot training, how far each
//! subnet's predicted class distribution lies from a reference's, as the symmetrized KL
//! divergence averaged over a fixed sample of images (of the held-out ones with `--val`, else
//! of the training images: the split is recorded). Two references: the "all paths
//! on" SuperNet (every choice of every block active) and the mean prediction of every subnet
//! of the space.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::engine::{Backend, Tape, Tensor};
use crate::error::Result;
use crate::model::SuperNet;
use crate::training::evaluate::{forward_subnets, Visit};
use crate::training::kl_math::{log_mean_distribution, log_softmax, symmetric_kl};
use crate::training::DeviceSplit;

/// The sample is the same for every seed and variant, so proxies are comparable across runs.
const SAMPLE_SEED: u64 = 0x4b4c;
const BATCH: usize = 512;

/// Mean symmetrized KL divergence of each subnet (by name) from each reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KlProxy {
    pub images: usize,
    /// Where the images come from: "validation" (held out) or "training".
    #[serde(default = "training_split")]
    pub split: String,
    /// The images asked for (`--kl-images`; `images` is fewer if the split is smaller).
    #[serde(default)]
    pub requested: Option<usize>,
    pub all_paths: BTreeMap<String, f64>,
    pub mean_of_subnets: BTreeMap<String, f64>,
}

fn training_split() -> String {
    "training".to_string()
}

/// `images` of `count` images drawn without replacement by a fixed seed (all of them if
/// fewer), in increasing order.
pub fn sample_indices(count: usize, images: usize) -> Vec<u32> {
    sample_with_seed(SAMPLE_SEED, count, images)
}

pub(crate) fn sample_with_seed(seed: u64, count: usize, images: usize) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut indices: Vec<u32> = rand::seq::index::sample(&mut rng, count, images.min(count))
        .into_iter()
        .map(|i| i as u32)
        .collect();
    indices.sort_unstable();
    indices
}

/// The proxy of every subnet on a fixed sample of `images` images of `split`, named by
/// `split_name`.
pub fn kl_proxy<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    split: &DeviceSplit<B>,
    split_name: &str,
    images: usize,
) -> Result<KlProxy> {
    let indices = sample_indices(split.count(), images);
    let space = &net.config.space;
    let subnets = space.subnets();
    let by_subnet = log_predictions(
        backend,
        net,
        split,
        &indices,
        subnets.len(),
        |tape, x, visit| forward_subnets(tape, net, x, &subnets, visit),
    )?;
    let all_paths = space.all_paths();
    let [all_paths] = &log_predictions(backend, net, split, &indices, 1, |tape, x, visit| {
        visit(0, &net.forward(tape, x, &all_paths)?)
    })?[..] else {
        unreachable!("one network, one set of predictions")
    };
    let mean_of_subnets: Vec<Vec<f64>> = (0..indices.len())
        .map(|i| log_mean_distribution(&by_subnet.iter().map(|s| &s[i][..]).collect::<Vec<_>>()))
        .collect();
    let mean_kl = |reference: &[Vec<f64>]| -> BTreeMap<String, f64> {
        subnets
            .iter()
            .zip(&by_subnet)
            .map(|(subnet, predictions)| {
                let total: f64 = predictions
                    .iter()
                    .zip(reference)
                    .map(|(p, r)| symmetric_kl(p, r))
                    .sum();
                (subnet.to_string(), total / indices.len() as f64)
            })
            .collect()
    };
    Ok(KlProxy {
        images: indices.len(),
        split: split_name.to_string(),
        requested: Some(images),
        all_paths: mean_kl(all_paths),
        mean_of_subnets: mean_kl(&mean_of_subnets),
    })
}

/// Log-probabilities `[network][image][class]` of `networks` networks, whose logits
/// `forward(tape, images, visit)` hands to `visit`.
fn log_predictions<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    split: &DeviceSplit<B>,
    indices: &[u32],
    networks: usize,
    forward: impl Fn(&Tape<'_, B>, &Tensor<B>, &mut Visit<'_, B>) -> Result<()>,
) -> Result<Vec<Vec<Vec<f64>>>> {
    let classes = net.config.classes;
    let mut predictions = vec![Vec::with_capacity(indices.len()); networks];
    for chunk in indices.chunks(BATCH) {
        let batch = split.batch(backend, chunk)?;
        let tape = Tape::inference(backend);
        forward(&tape, &batch.images, &mut |i, logits| {
            backend.flush()?;
            let values = backend.download(logits.storage(), chunk.len() * classes)?;
            predictions[i].extend(values.chunks(classes).map(|row| {
                let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
                log_softmax(&row)
            }));
            Ok(())
        })?;
    }
    Ok(predictions)
}
