//! Evaluation: top-1 accuracy and mean loss of a subnet, counted on the device; one read-back
//! per evaluation.

use crate::engine::ops::softmax_xent::XentDims;
use crate::engine::{Backend, Tape};
use crate::error::Result;
use crate::model::{BlockMask, SuperNet};
use crate::training::device_data::DeviceSplit;
use crate::training::SubnetMetrics;

pub fn evaluate<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    split: &DeviceSplit<B>,
    masks: &[BlockMask; 2],
    batch_size: usize,
) -> Result<SubnetMetrics> {
    let batches = split.count().div_ceil(batch_size);
    let batch_losses = backend.zeros(batches)?;
    let batch_correct = backend.zeros(batches)?;
    let all: Vec<u32> = (0..split.count() as u32).collect();
    let mut sizes = Vec::with_capacity(batches);
    for (b, indices) in all.chunks(batch_size).enumerate() {
        let batch = split.batch(backend, indices)?;
        let tape = Tape::inference(backend);
        let logits = net.forward(&tape, &batch.images, masks)?;
        let loss = tape.softmax_cross_entropy(&logits, &batch.labels)?;
        let dims = XentDims {
            batch: batch.len,
            classes: net.config.classes,
        };
        let correct = backend.correct_rows(&dims, logits.storage(), &batch.labels)?;
        let correct = backend.reduce_rows(&correct, batch.len, 1)?;
        backend.copy_into(loss.storage(), &batch_losses, b, 1)?;
        backend.copy_into(&correct, &batch_correct, b, 1)?;
        backend.flush()?;
        sizes.push(batch.len);
    }
    let losses = backend.download(&batch_losses, batches)?;
    let correct: f64 = backend
        .download(&batch_correct, batches)?
        .iter()
        .map(|&c| c as f64)
        .sum();
    let total_loss: f64 = losses
        .iter()
        .zip(&sizes)
        .map(|(&l, &n)| l as f64 * n as f64)
        .sum();
    let count = split.count() as f64;
    Ok(SubnetMetrics {
        accuracy: correct / count,
        loss: total_loss / count,
        correct: correct as usize,
    })
}
