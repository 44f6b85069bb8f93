//! softmax_xent: fused, numerically stable log-softmax + negative log-likelihood, mean over the
//! batch (PyTorch's `nll_loss(log_softmax(z))`).
//!
//! Shapes: logits `[N, K]`, labels `[N]` (u32 class indices) -> loss `[1]`.
//! Per row: `lse = max + ln(sum exp(z - max))`, `loss_n = lse - z[label]`; the mean sums rows in
//! order. Backward: `grad = (exp(z - lse) - onehot(label)) * grad_loss / N`.

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::{output, storage, CpuBackend};
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend, WORKGROUP_SIZE};
use crate::engine::tape::{Backward, GradTargets, InputGrad, Tape};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

const OP: &str = "softmax_xent";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XentDims {
    pub batch: usize,
    pub classes: usize,
}

impl XentDims {
    pub fn from_shape(logits: &[usize]) -> Result<Self> {
        match *logits {
            [batch, classes] if batch > 0 && classes > 0 => Ok(XentDims { batch, classes }),
            _ => Err(Error::shape(
                OP,
                format!("logits must be [N, K] with N, K > 0; got {logits:?}"),
            )),
        }
    }

    pub(crate) fn params(&self) -> XentParams {
        XentParams {
            batch: self.batch as u32,
            classes: self.classes as u32,
        }
    }
}

pub trait SoftmaxXentKernel: Memory {
    /// The mean loss, as a one-element buffer.
    fn softmax_xent_forward(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
    ) -> Result<Self::Storage>;
    fn softmax_xent_backward(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
        grad_loss: &Self::Storage,
    ) -> Result<Self::Storage>;
}

pub(crate) struct Saved<B: Backend> {
    dims: XentDims,
    logits: Tensor<B>,
    labels: B::Indices,
}

impl<B: Backend> Tape<'_, B> {
    /// Mean cross-entropy of `logits` against `labels` (one class index per row, each < K).
    pub fn softmax_cross_entropy(
        &self,
        logits: &Tensor<B>,
        labels: &B::Indices,
    ) -> Result<Tensor<B>> {
        let dims = XentDims::from_shape(logits.shape())?;
        let loss = self
            .backend()
            .softmax_xent_forward(&dims, logits.storage(), labels)?;
        let loss = Tensor::from_storage(loss, &[1], self.tracks(&[logits]));
        self.record(&loss, || {
            Saved {
                dims,
                logits: logits.clone(),
                labels: labels.clone(),
            }
        });
        Ok(loss)
    }
}

impl<B: Backend> Backward<B> for Saved<B> {
    fn backward(&self, backend: &B, _targets: &GradTargets, grad_loss: &Tensor<B>) -> Result<Vec<InputGrad<B>>> {
        let saved = self;
    let Saved {
        dims,
        logits,
        labels,
    } = saved;
    let grad =
        backend.softmax_xent_backward(dims, logits.storage(), labels, grad_loss.storage())?;
    Ok(vec![(
        logits.id(),
        Tensor::from_storage(grad, logits.shape(), false),
    )])
}
}

pub mod cpu {
    use super::{XentDims, OP};
    use crate::error::{Error, Result};

    /// log-sum-exp of one row, shifted by its maximum so no exp overflows.
    pub fn row_lse(row: &[f32]) -> f32 {
        let max = row.iter().fold(row[0], |m, &z| m.max(z));
        let sum = row.iter().fold(0.0f32, |acc, &z| acc + (z - max).exp());
        max + sum.ln()
    }

    fn check_labels(d: &XentDims, labels: &[u32]) -> Result<()> {
        match labels
            .iter()
            .take(d.batch)
            .find(|&&l| l as usize >= d.classes)
        {
            Some(bad) => Err(Error::invalid(
                OP,
                format!("label {bad} is not below the {} classes", d.classes),
            )),
            None => Ok(()),
        }
    }

    pub fn forward(d: &XentDims, logits: &[f32], labels: &[u32]) -> Result<f32> {
        check_labels(d, labels)?;
        let total = (0..d.batch).fold(0.0f32, |acc, n| {
            let row = &logits[n * d.classes..(n + 1) * d.classes];
            acc + (row_lse(row) - row[labels[n] as usize])
        });
        Ok(total / d.batch as f32)
    }

    pub fn backward(
        d: &XentDims,
        logits: &[f32],
        labels: &[u32],
        grad_loss: f32,
        grad: &mut [f32],
    ) -> Result<()> {
        check_labels(d, labels)?;
        let scale = grad_loss / d.batch as f32;
        for n in 0..d.batch {
            let row = &logits[n * d.classes..(n + 1) * d.classes];
            let lse = row_lse(row);
            for (j, z) in row.iter().enumerate() {
                let target = if j == labels[n] as usize { 1.0 } else { 0.0 };
                grad[n * d.classes + j] = ((z - lse).exp() - target) * scale;
            }
        }
        Ok(())
    }
}

impl SoftmaxXentKernel for CpuBackend {
    fn softmax_xent_forward(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
    ) -> Result<Self::Storage> {
        Ok(storage(vec![cpu::forward(
            d,
            &logits.borrow(),
            &labels.borrow(),
        )?]))
    }

    fn softmax_xent_backward(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
        grad_loss: &Self::Storage,
    ) -> Result<Self::Storage> {
        let mut grad = output(d.batch * d.classes);
        cpu::backward(
            d,
            &logits.borrow(),
            &labels.borrow(),
            grad_loss.borrow()[0],
            &mut grad,
        )?;
        Ok(storage(grad))
    }
}

kernel_params! {
    /// `batch` rows of `classes` logits (also the accuracy kernel's).
    pub(crate) struct XentParams { batch: u32, classes: u32 }
}

const LOSS: Entry = Entry::new("loss", &[1, 2, 3]);
const BACKWARD: Entry = Entry::new("backward", &[6, 7, 8, 9]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/softmax_xent.wgsl"),
    includes: &[],
    params: XentParams::FIELDS,
    entries: &[LOSS, BACKWARD],
};

impl SoftmaxXentKernel for GpuBackend {
    /// Labels are validated where they are made (the dataset); out-of-range reads in WGSL are
    /// clamped, never undefined.
    fn softmax_xent_forward(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
    ) -> Result<Self::Storage> {
        // One workgroup: its invocations take the rows, the first adds them in order.
        self.launch_with_output(
            &SHADER,
            &LOSS,
            &d.params(),
            &[bound(logits, d.batch * d.classes), bound(labels, d.batch)],
            1,
            WORKGROUP_SIZE as usize,
        )
    }

    fn softmax_xent_backward(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
        grad_loss: &Self::Storage,
    ) -> Result<Self::Storage> {
        let len = d.batch * d.classes;
        self.launch_into(
            &SHADER,
            &BACKWARD,
            &d.params(),
            &[
                bound(logits, len),
                bound(labels, d.batch),
                bound(grad_loss, 1),
            ],
            len,
        )
    }
}
