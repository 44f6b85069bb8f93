//! maxpool2: 2x2 max-pool, stride 2, floor on odd sizes (a 7x7 map pools to 3x3).
//!
//! Shapes: x `[N, C, H, W]` -> out `[N, C, H/2, W/2]`. The forward keeps the flat input index of
//! the first maximum in row-major window order (ties are common after ReLU, as in PyTorch);
//! the backward is a gather over input elements, so it needs no atomics.

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::{computed, output, shared, storage, CpuBackend};
use crate::engine::backends::gpu::kernels::{Entry, ShaderSpec};
use crate::engine::backends::gpu::GpuBackend;
use crate::engine::tape::{InputGrad, Op, Tape};
use crate::engine::tensor::{Tensor, TensorId};
use crate::error::{Error, Result};

const OP: &str = "maxpool2";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2Dims {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Pool2Dims {
    pub fn from_shape(x: &[usize]) -> Result<Self> {
        let [batch, channels, height, width] = *x else {
            return Err(Error::shape(
                OP,
                format!("x must be [N, C, H, W]; got {x:?}"),
            ));
        };
        if height < 2 || width < 2 {
            return Err(Error::shape(
                OP,
                format!("x must be at least 2x2; got {x:?}"),
            ));
        }
        Ok(Pool2Dims {
            batch,
            channels,
            height,
            width,
        })
    }

    pub fn out_height(&self) -> usize {
        self.height / 2
    }

    pub fn out_width(&self) -> usize {
        self.width / 2
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.channels * self.height * self.width
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.channels * self.out_height() * self.out_width()
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [
            self.batch,
            self.channels,
            self.out_height(),
            self.out_width(),
        ]
    }

    fn words(&self) -> [u32; 4] {
        [self.batch, self.channels, self.height, self.width].map(|v| v as u32)
    }
}

pub trait MaxPool2Kernel: Memory {
    /// `(out, argmax)`: argmax holds the flat input index of each window's first maximum.
    fn maxpool2_forward(
        &self,
        d: &Pool2Dims,
        x: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Indices)>;
    fn maxpool2_backward(
        &self,
        d: &Pool2Dims,
        argmax: &Self::Indices,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage>;
}

pub(crate) struct Saved<B: Backend> {
    dims: Pool2Dims,
    input: TensorId,
    argmax: B::Indices,
}

impl<B: Backend> Tape<'_, B> {
    pub fn maxpool2(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        let dims = Pool2Dims::from_shape(x.shape())?;
        let (out, argmax) = self.backend().maxpool2_forward(&dims, x.storage())?;
        let out = Tensor::from_storage(out, &dims.output_shape(), self.tracks(&[x]));
        self.record(&out, || {
            Op::MaxPool2(Saved {
                dims,
                input: x.id(),
                argmax,
            })
        });
        Ok(out)
    }
}

pub(crate) fn backward<B: Backend>(
    backend: &B,
    saved: &Saved<B>,
    grad_out: &Tensor<B>,
) -> Result<Vec<InputGrad<B>>> {
    let d = &saved.dims;
    let grad_x = backend.maxpool2_backward(d, &saved.argmax, grad_out.storage())?;
    let shape = [d.batch, d.channels, d.height, d.width];
    Ok(vec![(
        saved.input,
        Tensor::from_storage(grad_x, &shape, false),
    )])
}

pub mod cpu {
    use rayon::prelude::*;

    use super::Pool2Dims;
    use crate::engine::backends::cpu::vectorised_fn;

    /// Window (oy, ox) scanned row by row; a later value wins only if larger. Planes run in
    /// parallel.
    pub fn forward(d: &Pool2Dims, x: &[f32], out: &mut [f32], argmax: &mut [u32]) {
        let plane_in = d.height * d.width;
        let plane_out = d.out_height() * d.out_width();
        let planes = out
            .par_chunks_mut(plane_out)
            .zip(argmax.par_chunks_mut(plane_out))
            .enumerate();
        planes.for_each(|(plane, (out, argmax))| {
            let base = plane * plane_in;
            pool_plane(&x[base..base + plane_in], d.width, base as u32, out, argmax);
        });
    }

    vectorised_fn! {
        /// One plane; comparisons select rather than branch (ties after ReLU are common).
        fn pool_plane(x: &[f32], width: usize, base: u32, out: &mut [f32], argmax: &mut [u32]) {
            let out_width = width / 2;
            let rows = out.chunks_exact_mut(out_width).zip(argmax.chunks_exact_mut(out_width));
            for (oy, (out, argmax)) in rows.enumerate() {
                let top = &x[2 * oy * width..(2 * oy + 1) * width];
                let bottom = &x[(2 * oy + 1) * width..(2 * oy + 2) * width];
                for (ox, (out, argmax)) in out.iter_mut().zip(argmax.iter_mut()).enumerate() {
                    let mut best = top[2 * ox];
                    let mut offset = 0;
                    for (value, candidate) in [(top[2 * ox + 1], 1), (bottom[2 * ox], width), (bottom[2 * ox + 1], width + 1)] {
                        let larger = value > best;
                        best = if larger { value } else { best };
                        offset = if larger { candidate } else { offset };
                    }
                    *out = best;
                    *argmax = base + (2 * oy * width + 2 * ox + offset) as u32;
                }
            }
        }
    }

    /// Each window's gradient goes to its argmax. Windows do not overlap, so this scatter
    /// writes every input element at most once: the same result as the GPU's gather.
    /// Planes run in parallel: a plane's argmax indices all fall inside its own input plane.
    pub fn backward(d: &Pool2Dims, argmax: &[u32], grad_out: &[f32], grad_x: &mut [f32]) {
        let plane_in = d.height * d.width;
        let plane_out = d.out_height() * d.out_width();
        let planes = grad_x[..d.input_len()]
            .par_chunks_mut(plane_in)
            .zip(argmax[..d.output_len()].par_chunks(plane_out))
            .zip(grad_out[..d.output_len()].par_chunks(plane_out))
            .enumerate();
        planes.for_each(|(plane, ((grad_x, argmax), grad_out))| {
            let base = plane * plane_in;
            grad_x.fill(0.0);
            for (&index, &grad) in argmax.iter().zip(grad_out) {
                grad_x[index as usize - base] = grad;
            }
        });
    }
}

impl MaxPool2Kernel for CpuBackend {
    fn maxpool2_forward(
        &self,
        d: &Pool2Dims,
        x: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Indices)> {
        let mut out = output(d.output_len());
        let mut argmax = vec![0; d.output_len()];
        cpu::forward(d, &x.borrow(), &mut out, &mut argmax);
        Ok((storage(out), shared(argmax)))
    }

    fn maxpool2_backward(
        &self,
        d: &Pool2Dims,
        argmax: &Self::Indices,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        Ok(computed(d.input_len(), |grad_x| {
            cpu::backward(d, &argmax.borrow(), &grad_out.borrow(), grad_x)
        }))
    }
}

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/maxpool2.wgsl"),
    entries: &[
        Entry::new("forward", &[1, 2, 3]),
        Entry::new("backward", &[4, 5, 6]),
    ],
};

impl MaxPool2Kernel for GpuBackend {
    fn maxpool2_forward(
        &self,
        d: &Pool2Dims,
        x: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Indices)> {
        let out = self.alloc_values(OP, d.output_len())?;
        let argmax = self.launch_into(OP, "forward", &d.words(), &[x, &out], d.output_len())?;
        Ok((out, argmax))
    }

    fn maxpool2_backward(
        &self,
        d: &Pool2Dims,
        argmax: &Self::Indices,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        self.launch_into(
            OP,
            "backward",
            &d.words(),
            &[argmax, grad_out],
            d.input_len(),
        )
    }
}
