//! masked_sum: `out = sum of factor_i * part_i` over the active parts, the mixing of
//! `SuperNetSum` (`conv3(x) * (1 - c) + conv5(x) * c`).
//!
//! An inactive branch is not computed at all: it is simply left out of `parts`, so it receives
//! no gradient. A single part with factor 1 is returned as is (no kernel, no tape node).

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::{computed, CpuBackend};
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend};
use crate::engine::tape::{Backward, GradTargets, InputGrad, Tape};
use crate::engine::tensor::{Tensor, TensorId};
use crate::error::{Error, Result};

const OP: &str = "masked_sum";

pub trait MaskedSumKernel: Memory {
    /// `factor * x` into a new buffer.
    fn scale(&self, x: &Self::Storage, factor: f32, len: usize) -> Result<Self::Storage>;
    /// `acc += factor * x`, in place.
    fn axpy(&self, acc: &Self::Storage, x: &Self::Storage, factor: f32, len: usize) -> Result<()>;
}

pub(crate) struct Saved {
    /// `(input, factor)` of every part that needs a gradient.
    parts: Vec<(TensorId, f32)>,
}

impl<B: Backend> Tape<'_, B> {
    /// Weighted sum of same-shaped tensors; `parts` holds only the active branches.
    pub fn masked_sum(&self, parts: &[(&Tensor<B>, f32)]) -> Result<Tensor<B>> {
        let Some(&(first, first_factor)) = parts.first() else {
            return Err(Error::shape(OP, "needs at least one active part"));
        };
        if let Some((other, _)) = parts.iter().find(|(t, _)| t.shape() != first.shape()) {
            return Err(Error::shape(
                OP,
                format!(
                    "parts differ in shape: {:?} and {:?}",
                    first.shape(),
                    other.shape()
                ),
            ));
        }
        if parts.len() == 1 && first_factor == 1.0 {
            return Ok(first.clone());
        }
        let backend = self.backend();
        let len = first.numel();
        let sum = backend.scale(first.storage(), first_factor, len)?;
        for (part, factor) in &parts[1..] {
            backend.axpy(&sum, part.storage(), *factor, len)?;
        }
        let inputs: Vec<&Tensor<B>> = parts.iter().map(|(t, _)| *t).collect();
        let out = Tensor::from_storage(sum, first.shape(), self.tracks(&inputs));
        self.record(&out, || {
            Saved {
                parts: parts
                    .iter()
                    .filter(|(t, _)| t.requires_grad())
                    .map(|(t, f)| (t.id(), *f))
                    .collect(),
            }
        });
        Ok(out)
    }
}

impl<B: Backend> Backward<B> for Saved {
    fn backward(&self, backend: &B, _targets: &GradTargets, grad_out: &Tensor<B>) -> Result<Vec<InputGrad<B>>> {
        let saved = self;
    saved
        .parts
        .iter()
        .map(|&(id, factor)| {
            let grad = if factor == 1.0 {
                grad_out.clone()
            } else {
                let scaled = backend.scale(grad_out.storage(), factor, grad_out.numel())?;
                Tensor::from_storage(scaled, grad_out.shape(), false)
            };
            Ok((id, grad))
        })
        .collect()
}
}

pub mod cpu {
    pub fn scale(x: &[f32], factor: f32, out: &mut [f32]) {
        for (out, x) in out.iter_mut().zip(x) {
            *out = factor * x;
        }
    }

    pub fn axpy(acc: &mut [f32], x: &[f32], factor: f32) {
        for (acc, x) in acc.iter_mut().zip(x) {
            *acc += factor * x;
        }
    }
}

impl MaskedSumKernel for CpuBackend {
    fn scale(&self, x: &Self::Storage, factor: f32, len: usize) -> Result<Self::Storage> {
        Ok(computed(len, |out| {
            cpu::scale(&x.borrow()[..len], factor, out)
        }))
    }

    fn axpy(&self, acc: &Self::Storage, x: &Self::Storage, factor: f32, len: usize) -> Result<()> {
        cpu::axpy(&mut acc.borrow_mut()[..len], &x.borrow()[..len], factor);
        Ok(())
    }
}

kernel_params! {
    /// `scale` and `axpy`: `len` elements times `factor`.
    pub(crate) struct ScaleParams { len: u32, factor: f32 }
}

impl ScaleParams {
    fn of(len: usize, factor: f32) -> Self {
        ScaleParams {
            len: len as u32,
            factor,
        }
    }
}

const SCALE: Entry = Entry::new("scale", &[1, 2]);
const AXPY: Entry = Entry::new("axpy", &[3, 4]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/masked_sum.wgsl"),
    includes: &[],
    params: ScaleParams::FIELDS,
    entries: &[SCALE, AXPY],
};

impl MaskedSumKernel for GpuBackend {
    fn scale(&self, x: &Self::Storage, factor: f32, len: usize) -> Result<Self::Storage> {
        self.launch_into(
            &SHADER,
            &SCALE,
            &ScaleParams::of(len, factor),
            &[bound(x, len)],
            len,
        )
    }

    fn axpy(&self, acc: &Self::Storage, x: &Self::Storage, factor: f32, len: usize) -> Result<()> {
        self.launch(
            &SHADER,
            &AXPY,
            &ScaleParams::of(len, factor),
            &[bound(x, len), bound(acc, len)],
            len,
        )
    }
}
