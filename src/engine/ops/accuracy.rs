//! accuracy: whether each row's arg-max (the first maximum) is its label, as 1.0 or 0.0, so that
//! evaluation counts correct predictions on the device (`reduce_rows` sums the rows).
//!
//! Shapes: logits `[N, K]`, labels `[N]` (u32) -> correct `[N]`.

use crate::engine::backend::Memory;
use crate::engine::backends::cpu::{computed, CpuBackend};
use crate::engine::backends::gpu::kernels::{Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend};
use crate::engine::ops::softmax_xent::{XentDims, XentParams};
use crate::error::Result;

const OP: &str = "accuracy";

pub trait AccuracyKernel: Memory {
    fn correct_rows(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
    ) -> Result<Self::Storage>;
}

pub mod cpu {
    use super::XentDims;

    /// Index of the first maximum of `row`.
    pub fn argmax(row: &[f32]) -> usize {
        (1..row.len()).fold(0, |best, j| if row[j] > row[best] { j } else { best })
    }

    pub fn correct_rows(d: &XentDims, logits: &[f32], labels: &[u32], correct: &mut [f32]) {
        for (n, correct) in correct.iter_mut().enumerate().take(d.batch) {
            let row = &logits[n * d.classes..(n + 1) * d.classes];
            *correct = if argmax(row) == labels[n] as usize {
                1.0
            } else {
                0.0
            };
        }
    }
}

impl AccuracyKernel for CpuBackend {
    fn correct_rows(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
    ) -> Result<Self::Storage> {
        Ok(computed(d.batch, |correct| {
            cpu::correct_rows(d, &logits.borrow(), &labels.borrow(), correct)
        }))
    }
}

const CORRECT_ROWS: Entry = Entry::new("correct_rows", &[1, 2, 3]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/accuracy.wgsl"),
    includes: &[],
    params: XentParams::FIELDS,
    entries: &[CORRECT_ROWS],
};

impl AccuracyKernel for GpuBackend {
    fn correct_rows(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
    ) -> Result<Self::Storage> {
        self.launch_into(
            &SHADER,
            &CORRECT_ROWS,
            &d.params(),
            &[bound(logits, d.batch * d.classes), bound(labels, d.batch)],
            d.batch,
        )
    }
}
