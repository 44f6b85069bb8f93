//! masked_concat: channel concatenation with a factor per slot, the mixing of
//! `SuperNetConcat` (`cat(conv3(x) * (1 - c), conv5(x) * c)` before the 1x1 conv).
//!
//! Shapes: `slots` parts of `[N, C, H, W]` -> out `[N, slots * C, H, W]`, part `s` in channels
//! `s*C .. (s+1)*C`. An inactive slot is `None`: never computed, its channels are zero.

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::{computed, CpuBackend};
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend};
use crate::engine::tape::{Backward, GradTargets, InputGrad, Tape};
use crate::engine::tensor::{Tensor, TensorId};
use crate::error::{Error, Result};

const OP: &str = "masked_concat";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConcatDims {
    pub batch: usize,
    /// Channels of one part.
    pub channels: usize,
    /// Pixels of one channel (H * W).
    pub pixels: usize,
    pub slots: usize,
}

impl ConcatDims {
    pub fn part_len(&self) -> usize {
        self.batch * self.channels * self.pixels
    }

    pub fn output_len(&self) -> usize {
        self.part_len() * self.slots
    }

    fn params(&self, slot: usize, factor: f32) -> ConcatParams {
        ConcatParams {
            batch: self.batch as u32,
            channels: self.channels as u32,
            pixels: self.pixels as u32,
            slots: self.slots as u32,
            slot: slot as u32,
            factor,
        }
    }
}

pub trait MaskedConcatKernel: Memory {
    /// Writes `factor * part` into slot `slot` of `out` (whose other slots are untouched).
    fn concat_write_slot(
        &self,
        d: &ConcatDims,
        out: &Self::Storage,
        part: &Self::Storage,
        slot: usize,
        factor: f32,
    ) -> Result<()>;
    /// `factor * grad_out[:, slot]` as a new `[N, C, H, W]` buffer.
    fn concat_read_slot(
        &self,
        d: &ConcatDims,
        grad_out: &Self::Storage,
        slot: usize,
        factor: f32,
    ) -> Result<Self::Storage>;
}

pub(crate) struct Saved {
    dims: ConcatDims,
    /// `(slot, input, factor)` of every active part that needs a gradient.
    parts: Vec<(usize, TensorId, f32)>,
}

impl<B: Backend> Tape<'_, B> {
    pub fn masked_concat(&self, parts: &[Option<(&Tensor<B>, f32)>]) -> Result<Tensor<B>> {
        let active: Vec<(usize, &Tensor<B>, f32)> = parts
            .iter()
            .enumerate()
            .filter_map(|(s, p)| p.map(|(t, f)| (s, t, f)))
            .collect();
        let Some(&(_, first, _)) = active.first() else {
            return Err(Error::shape(OP, "needs at least one active part"));
        };
        let [batch, channels, height, width] = *first.shape() else {
            return Err(Error::shape(
                OP,
                format!("parts must be [N, C, H, W]; got {:?}", first.shape()),
            ));
        };
        if let Some((_, other, _)) = active.iter().find(|(_, t, _)| t.shape() != first.shape()) {
            return Err(Error::shape(
                OP,
                format!(
                    "parts differ in shape: {:?} and {:?}",
                    first.shape(),
                    other.shape()
                ),
            ));
        }
        let dims = ConcatDims {
            batch,
            channels,
            pixels: height * width,
            slots: parts.len(),
        };
        let backend = self.backend();
        let out = backend.zeros(dims.output_len())?;
        for &(slot, part, factor) in &active {
            backend.concat_write_slot(&dims, &out, part.storage(), slot, factor)?;
        }
        let inputs: Vec<&Tensor<B>> = active.iter().map(|(_, t, _)| *t).collect();
        let shape = [batch, channels * parts.len(), height, width];
        let out = Tensor::from_storage(out, &shape, self.tracks(&inputs));
        self.record(&out, || {
            let parts = active
                .iter()
                .filter(|(_, t, _)| t.requires_grad())
                .map(|&(s, t, f)| (s, t.id(), f))
                .collect();
            Saved { dims, parts }
        });
        Ok(out)
    }
}

impl<B: Backend> Backward<B> for Saved {
    fn backward(&self, backend: &B, _targets: &GradTargets, grad_out: &Tensor<B>) -> Result<Vec<InputGrad<B>>> {
        let saved = self;
    let d = &saved.dims;
    saved
        .parts
        .iter()
        .map(|&(slot, id, factor)| {
            let grad = backend.concat_read_slot(d, grad_out.storage(), slot, factor)?;
            let shape = [
                d.batch,
                d.channels,
                grad_out.shape()[2],
                grad_out.shape()[3],
            ];
            Ok((id, Tensor::from_storage(grad, &shape, false)))
        })
        .collect()
}
}

/// The CPU twin: an image's part is one contiguous run of `C * H * W` values, copied (scaled)
/// to or from its slot's run in the concatenation.
pub mod cpu {
    use super::ConcatDims;

    /// The run of image `n`'s slot `slot` in the concatenation.
    fn slot_range(d: &ConcatDims, n: usize, slot: usize) -> std::ops::Range<usize> {
        let run = d.channels * d.pixels;
        let start = (n * d.slots + slot) * run;
        start..start + run
    }

    pub fn write_slot(d: &ConcatDims, out: &mut [f32], part: &[f32], slot: usize, factor: f32) {
        let run = d.channels * d.pixels;
        for (n, image) in part.chunks_exact(run).take(d.batch).enumerate() {
            for (out, value) in out[slot_range(d, n, slot)].iter_mut().zip(image) {
                *out = factor * value;
            }
        }
    }

    pub fn read_slot(
        d: &ConcatDims,
        grad_out: &[f32],
        slot: usize,
        factor: f32,
        grad_part: &mut [f32],
    ) {
        let run = d.channels * d.pixels;
        for (n, image) in grad_part.chunks_exact_mut(run).take(d.batch).enumerate() {
            for (grad, value) in image.iter_mut().zip(&grad_out[slot_range(d, n, slot)]) {
                *grad = factor * value;
            }
        }
    }
}

impl MaskedConcatKernel for CpuBackend {
    fn concat_write_slot(
        &self,
        d: &ConcatDims,
        out: &Self::Storage,
        part: &Self::Storage,
        slot: usize,
        factor: f32,
    ) -> Result<()> {
        cpu::write_slot(d, &mut out.borrow_mut(), &part.borrow(), slot, factor);
        Ok(())
    }

    fn concat_read_slot(
        &self,
        d: &ConcatDims,
        grad_out: &Self::Storage,
        slot: usize,
        factor: f32,
    ) -> Result<Self::Storage> {
        Ok(computed(d.part_len(), |grad_part| {
            cpu::read_slot(d, &grad_out.borrow(), slot, factor, grad_part)
        }))
    }
}

kernel_params! {
    /// Slot `slot` of `slots`, each `channels` x `pixels` per image, scaled by `factor`.
    pub(crate) struct ConcatParams {
        batch: u32, channels: u32, pixels: u32, slots: u32, slot: u32, factor: f32,
    }
}

const WRITE_SLOT: Entry = Entry::new("write_slot", &[1, 2]);
const READ_SLOT: Entry = Entry::new("read_slot", &[3, 4]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/masked_concat.wgsl"),
    includes: &[],
    params: ConcatParams::FIELDS,
    entries: &[WRITE_SLOT, READ_SLOT],
};

impl MaskedConcatKernel for GpuBackend {
    fn concat_write_slot(
        &self,
        d: &ConcatDims,
        out: &Self::Storage,
        part: &Self::Storage,
        slot: usize,
        factor: f32,
    ) -> Result<()> {
        self.launch(
            &SHADER,
            &WRITE_SLOT,
            &d.params(slot, factor),
            &[bound(part, d.part_len()), bound(out, d.output_len())],
            d.part_len(),
        )
    }

    fn concat_read_slot(
        &self,
        d: &ConcatDims,
        grad_out: &Self::Storage,
        slot: usize,
        factor: f32,
    ) -> Result<Self::Storage> {
        self.launch_into(
            &SHADER,
            &READ_SLOT,
            &d.params(slot, factor),
            &[bound(grad_out, d.output_len())],
            d.part_len(),
        )
    }
}
