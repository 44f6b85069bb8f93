//! gather: a minibatch from the resident u8 images, by index, normalised like torchvision's
//! `ToTensor` + `Normalize`: `(byte / 255 - mean) / std`.
//!
//! Shapes: images `[count, H, W]` (u8), indices `[N]` (u32) -> out `[N, 1, H, W]` (f32).

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::{computed, CpuBackend};
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

const OP: &str = "gather";

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GatherDims {
    /// Images held by the resident buffer.
    pub count: usize,
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub mean: f32,
    pub std: f32,
}

impl GatherDims {
    fn pixels(&self) -> usize {
        self.height * self.width
    }

    fn output_len(&self) -> usize {
        self.batch * self.pixels()
    }

    fn params(&self) -> GatherParams {
        GatherParams {
            batch: self.batch as u32,
            pixels: self.pixels() as u32,
            mean: self.mean,
            std_dev: self.std,
        }
    }
}

pub trait GatherKernel: Memory {
    fn gather_images(
        &self,
        d: &GatherDims,
        images: &Self::Bytes,
        indices: &Self::Indices,
    ) -> Result<Self::Storage>;
}

/// The normalised images `indices` (host copy `index_values`, checked against `d.count`).
pub fn gather_images<B: Backend>(
    backend: &B,
    d: &GatherDims,
    images: &B::Bytes,
    indices: &B::Indices,
    index_values: &[u32],
) -> Result<Tensor<B>> {
    if index_values.len() != d.batch {
        return Err(Error::shape(
            OP,
            format!("{} indices for a batch of {}", index_values.len(), d.batch),
        ));
    }
    if let Some(bad) = index_values.iter().find(|&&i| i as usize >= d.count) {
        return Err(Error::invalid(
            OP,
            format!("image index {bad} is out of range for {} images", d.count),
        ));
    }
    let out = backend.gather_images(d, images, indices)?;
    Ok(Tensor::from_storage(
        out,
        &[d.batch, 1, d.height, d.width],
        false,
    ))
}

pub mod cpu {
    use super::GatherDims;

    pub fn gather(d: &GatherDims, images: &[u8], indices: &[u32], out: &mut [f32]) {
        let pixels = d.pixels();
        for (b, &image) in indices.iter().enumerate().take(d.batch) {
            let src = &images[image as usize * pixels..(image as usize + 1) * pixels];
            for (out, &byte) in out[b * pixels..(b + 1) * pixels].iter_mut().zip(src) {
                *out = (byte as f32 / 255.0 - d.mean) / d.std;
            }
        }
    }
}

impl GatherKernel for CpuBackend {
    fn gather_images(
        &self,
        d: &GatherDims,
        images: &Self::Bytes,
        indices: &Self::Indices,
    ) -> Result<Self::Storage> {
        Ok(computed(d.output_len(), |out| {
            cpu::gather(d, &images.borrow(), &indices.borrow(), out)
        }))
    }
}

kernel_params! {
    /// `batch` images of `pixels` bytes each, normalised with `mean` and `std_dev`.
    pub(crate) struct GatherParams { batch: u32, pixels: u32, mean: f32, std_dev: f32 }
}

const GATHER: Entry = Entry::new("gather", &[1, 2, 3]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/gather.wgsl"),
    includes: &[],
    params: GatherParams::FIELDS,
    entries: &[GATHER],
};

impl GatherKernel for GpuBackend {
    fn gather_images(
        &self,
        d: &GatherDims,
        images: &Self::Bytes,
        indices: &Self::Indices,
    ) -> Result<Self::Storage> {
        self.launch_into(
            &SHADER,
            &GATHER,
            &d.params(),
            &[
                bound(images, (d.count * d.pixels()).div_ceil(4)),
                bound(indices, d.batch),
            ],
            d.output_len(),
        )
    }
}
