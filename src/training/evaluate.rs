//! Evaluation: top-1 accuracy and mean loss, counted on the device; one read-back per
//! evaluation.
//!
//! Evaluating every subnet of a space shares work: a block's output depends only on the
//! choices up to it, so subnets with a common prefix share it. `forward_subnets` walks the
//! prefix tree depth first (one map per depth alive at a time). For `1,3,5,7/1,3,5,7/1,3,5,7`
//! that computes 4 + 16 + 64 block outputs instead of 3 x 64 (44 % of them; weighted by what
//! each costs, about a third of the multiply-adds, 9 M instead of 30 M an image), with the
//! same kernels on the same inputs (so the same bits).

use crate::engine::ops::softmax_xent::XentDims;
use crate::engine::{Backend, Tape, Tensor};
use crate::error::Result;
use crate::model::{BlockMask, Subnet, SuperNet};
use crate::training::device_data::DeviceSplit;
use crate::training::SubnetMetrics;

/// Images per evaluation batch (memory only: the figures do not depend on it).
pub const EVAL_BATCH: usize = 1000;

/// Called with the index of a network and its logits `[N, classes]`.
pub type Visit<'v, B> = dyn FnMut(usize, &Tensor<B>) -> Result<()> + 'v;

/// The logits of every subnet in `subnets` on `images`: `visit(i, logits)` for `subnets[i]`,
/// in the prefix tree's order.
pub fn forward_subnets<B: Backend>(
    tape: &Tape<'_, B>,
    net: &SuperNet<B>,
    images: &Tensor<B>,
    subnets: &[Subnet],
    visit: &mut Visit<'_, B>,
) -> Result<()> {
    let members: Vec<usize> = (0..subnets.len()).collect();
    descend(tape, net, images, subnets, &members, 0, visit)
}

/// `x` enters block `block`; `members` are the subnets whose choices up to it led here.
fn descend<B: Backend>(
    tape: &Tape<'_, B>,
    net: &SuperNet<B>,
    x: &Tensor<B>,
    subnets: &[Subnet],
    members: &[usize],
    block: usize,
    visit: &mut Visit<'_, B>,
) -> Result<()> {
    let space = &net.config.space;
    if block == space.block_count() {
        let logits = net.head(tape, x)?;
        return members.iter().try_for_each(|&i| visit(i, &logits));
    }
    let choices = space.choices(block).len();
    for choice in 0..choices {
        let group: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| subnets[i].choices()[block] as usize == choice)
            .collect();
        if group.is_empty() {
            continue;
        }
        let mask = BlockMask::one_hot(choice, choices);
        let y = net.block_forward(tape, block, x, &mask)?;
        descend(tape, net, &y, subnets, &group, block + 1, visit)?;
    }
    Ok(())
}

/// Accuracy and loss of every subnet in `subnets` on the whole split.
pub fn evaluate_subnets<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    split: &DeviceSplit<B>,
    subnets: &[Subnet],
    batch_size: usize,
) -> Result<Vec<SubnetMetrics>> {
    evaluate_networks(
        backend,
        net,
        split,
        subnets.len(),
        batch_size,
        |tape, images, visit| forward_subnets(tape, net, images, subnets, visit),
    )
}

/// Accuracy and loss of the network selected by `masks` (a subnet, all paths, any factors).
pub fn evaluate<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    split: &DeviceSplit<B>,
    masks: &[BlockMask],
    batch_size: usize,
) -> Result<SubnetMetrics> {
    let [metrics] =
        evaluate_networks(backend, net, split, 1, batch_size, |tape, images, visit| {
            visit(0, &net.forward(tape, images, masks)?)
        })?[..]
    else {
        unreachable!("one network, one result")
    };
    Ok(metrics)
}

/// `networks` networks, whose logits `forward(tape, images, visit)` hands to `visit`, batch by
/// batch; each batch's loss and correct count stay on the device until the end.
fn evaluate_networks<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    split: &DeviceSplit<B>,
    networks: usize,
    batch_size: usize,
    forward: impl Fn(&Tape<'_, B>, &Tensor<B>, &mut Visit<'_, B>) -> Result<()>,
) -> Result<Vec<SubnetMetrics>> {
    let batches = split.count().div_ceil(batch_size);
    // [network][batch]
    let batch_losses = backend.zeros(networks * batches)?;
    let batch_correct = backend.zeros(networks * batches)?;
    let all: Vec<u32> = (0..split.count() as u32).collect();
    let mut sizes = Vec::with_capacity(batches);
    for (b, indices) in all.chunks(batch_size).enumerate() {
        let batch = split.batch(backend, indices)?;
        let tape = Tape::inference(backend);
        let dims = XentDims {
            batch: batch.len,
            classes: net.config.classes,
        };
        forward(&tape, &batch.images, &mut |i, logits| {
            let loss = tape.softmax_cross_entropy(logits, &batch.labels)?;
            let correct = backend.correct_rows(&dims, logits.storage(), &batch.labels)?;
            let correct = backend.reduce_rows(&correct, batch.len, 1)?;
            backend.copy_into(loss.storage(), &batch_losses, i * batches + b, 1)?;
            backend.copy_into(&correct, &batch_correct, i * batches + b, 1)
        })?;
        backend.flush()?;
        sizes.push(batch.len);
    }
    let losses = backend.download(&batch_losses, networks * batches)?;
    let correct = backend.download(&batch_correct, networks * batches)?;
    let count = split.count() as f64;
    Ok(losses
        .chunks(batches)
        .zip(correct.chunks(batches))
        .map(|(losses, correct)| {
            let correct: f64 = correct.iter().map(|&c| c as f64).sum();
            let total_loss: f64 = losses
                .iter()
                .zip(&sizes)
                .map(|(&l, &n)| l as f64 * n as f64)
                .sum();
            SubnetMetrics {
                accuracy: correct / count,
                loss: total_loss / count,
                correct: correct as usize,
            }
        })
        .collect())
}
