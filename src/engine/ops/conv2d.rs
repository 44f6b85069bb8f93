//! conv2d: stride 1, "same" padding (`kernel / 2`), with bias, for any odd square kernel.
//!
//! Shapes: x `[N, C, H, W]`, weight `[O, C, K, K]`, bias `[O]` -> out `[N, O, H, W]`.
//! Backward: the input gradient is a gather (a transposed convolution); the weight and bias
//! gradients are per-image partial sums reduced in image order, so they are deterministic.

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::{storage, CpuBackend};
use crate::engine::backends::gpu::kernels::{Entry, ShaderSpec};
use crate::engine::backends::gpu::GpuBackend;
use crate::engine::ops::reduce::{cpu::reduce_rows, ReduceKernel};
use crate::engine::tape::{push_if_required, InputGrad, Op, Tape};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

const OP: &str = "conv2d";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dDims {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
}

impl Conv2dDims {
    /// Checks that x `[N, C, H, W]`, weight `[O, C, K, K]` (K odd) and bias `[O]` fit together.
    pub fn from_shapes(x: &[usize], weight: &[usize], bias: &[usize]) -> Result<Self> {
        let shapes = || format!("x {x:?}, weight {weight:?}, bias {bias:?}");
        let [batch, in_channels, height, width] = *x else {
            return Err(Error::shape(
                OP,
                format!("x must be [N, C, H, W]; got {}", shapes()),
            ));
        };
        let [out_channels, weight_in, kernel, kernel_w] = *weight else {
            return Err(Error::shape(
                OP,
                format!("weight must be [O, C, K, K]; got {}", shapes()),
            ));
        };
        if weight_in != in_channels {
            return Err(Error::shape(
                OP,
                format!(
                    "weight expects {weight_in} input channels, x has {in_channels}; got {}",
                    shapes()
                ),
            ));
        }
        if kernel != kernel_w || kernel % 2 == 0 {
            return Err(Error::shape(
                OP,
                format!(
                    "kernel must be square and odd for same padding; got {}",
                    shapes()
                ),
            ));
        }
        if bias != [out_channels] {
            return Err(Error::shape(
                OP,
                format!("bias must be [{out_channels}]; got {}", shapes()),
            ));
        }
        Ok(Conv2dDims {
            batch,
            in_channels,
            out_channels,
            height,
            width,
            kernel,
        })
    }

    pub fn pad(&self) -> usize {
        self.kernel / 2
    }

    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel * self.kernel
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.height * self.width
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.height * self.width
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.height, self.width]
    }

    fn words(&self) -> [u32; 6] {
        [
            self.batch,
            self.in_channels,
            self.out_channels,
            self.height,
            self.width,
            self.kernel,
        ]
        .map(|v| v as u32)
    }
}

/// The kernels a backend provides for conv2d.
pub trait Conv2dKernel: Memory {
    fn conv2d_forward(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<Self::Storage>;
    fn conv2d_backward_input(
        &self,
        d: &Conv2dDims,
        weight: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage>;
    /// `(grad_weight, grad_bias)`.
    fn conv2d_backward_params(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Storage)>;
}

/// What the backward pass needs: the input and the weight (the bias only for its identity).
pub(crate) struct Saved<B: Backend> {
    dims: Conv2dDims,
    x: Tensor<B>,
    weight: Tensor<B>,
    bias: Tensor<B>,
}

impl<B: Backend> Tape<'_, B> {
    pub fn conv2d(&self, x: &Tensor<B>, weight: &Tensor<B>, bias: &Tensor<B>) -> Result<Tensor<B>> {
        let dims = Conv2dDims::from_shapes(x.shape(), weight.shape(), bias.shape())?;
        let out =
            self.backend()
                .conv2d_forward(&dims, x.storage(), weight.storage(), bias.storage())?;
        let out = Tensor::from_storage(out, &dims.output_shape(), self.tracks(&[x, weight, bias]));
        self.record(&out, || {
            Op::Conv2d(Saved {
                dims,
                x: x.clone(),
                weight: weight.clone(),
                bias: bias.clone(),
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
    let Saved {
        dims,
        x,
        weight,
        bias,
    } = saved;
    let mut grads = Vec::new();
    if x.requires_grad() {
        let grad_x = backend.conv2d_backward_input(dims, weight.storage(), grad_out.storage())?;
        push_if_required(&mut grads, x, grad_x);
    }
    if weight.requires_grad() || bias.requires_grad() {
        let (grad_weight, grad_bias) =
            backend.conv2d_backward_params(dims, x.storage(), grad_out.storage())?;
        push_if_required(&mut grads, weight, grad_weight);
        push_if_required(&mut grads, bias, grad_bias);
    }
    Ok(grads)
}

/// The CPU twin. Images run in parallel (rayon); within an image the loops are ordered so the
/// innermost one runs along a row (a contiguous, vectorisable slice), while every output
/// element still receives its terms in the same order as in the WGSL kernels (channel, then
/// kernel row, then kernel column).
pub mod cpu {
    use std::ops::Range;

    use rayon::prelude::*;

    use super::Conv2dDims;

    /// The positions `p` in `0..n` for which `p + shift` is also in `0..n`.
    fn overlap(shift: isize, n: usize) -> Range<usize> {
        let start = (-shift).clamp(0, n as isize) as usize;
        let end = (n as isize - shift).clamp(0, n as isize) as usize;
        start..end.max(start)
    }

    /// `dst[p] += w * src[p + shift]` over the rows and columns where both exist.
    fn shifted_axpy(
        d: &Conv2dDims,
        w: f32,
        src: &[f32],
        dst: &mut [f32],
        shift_y: isize,
        shift_x: isize,
    ) {
        let (rows, cols) = (overlap(shift_y, d.height), overlap(shift_x, d.width));
        for y in rows {
            let src_start = (y as isize + shift_y) as usize * d.width
                + (cols.start as isize + shift_x) as usize;
            let src_row = &src[src_start..src_start + cols.len()];
            let dst_row = &mut dst[y * d.width + cols.start..y * d.width + cols.end];
            for (dst, src) in dst_row.iter_mut().zip(src_row) {
                *dst += w * src;
            }
        }
    }

    /// out[n, o, y, x] = bias[o] + sum over c, ky, kx of x[n, c, y + ky - pad, x + kx - pad] * w[o, c, ky, kx].
    pub fn forward(d: &Conv2dDims, x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
        let (hw, k, pad) = (d.height * d.width, d.kernel, d.pad() as isize);
        let images = out
            .par_chunks_mut(d.out_channels * hw)
            .zip(x.par_chunks(d.in_channels * hw));
        images.for_each(|(out, x)| {
            for (o, out) in out.chunks_mut(hw).enumerate() {
                out.fill(bias[o]);
                for (c, x) in x.chunks(hw).enumerate() {
                    for (tap, &w) in weight[(o * d.in_channels + c) * k * k..][..k * k]
                        .iter()
                        .enumerate()
                    {
                        let (ky, kx) = ((tap / k) as isize, (tap % k) as isize);
                        shifted_axpy(d, w, x, out, ky - pad, kx - pad);
                    }
                }
            }
        });
    }

    /// grad_x[n, c, iy, ix] = sum over o, ky, kx of grad_out[n, o, iy - ky + pad, ix - kx + pad] * w[o, c, ky, kx].
    pub fn backward_input(d: &Conv2dDims, weight: &[f32], grad_out: &[f32], grad_x: &mut [f32]) {
        let (hw, k, pad) = (d.height * d.width, d.kernel, d.pad() as isize);
        let images = grad_x
            .par_chunks_mut(d.in_channels * hw)
            .zip(grad_out.par_chunks(d.out_channels * hw));
        images.for_each(|(grad_x, grad_out)| {
            for (c, grad_x) in grad_x.chunks_mut(hw).enumerate() {
                grad_x.fill(0.0);
                for (o, grad_out) in grad_out.chunks(hw).enumerate() {
                    for (tap, &w) in weight[(o * d.in_channels + c) * k * k..][..k * k]
                        .iter()
                        .enumerate()
                    {
                        let (ky, kx) = ((tap / k) as isize, (tap % k) as isize);
                        shifted_axpy(d, w, grad_out, grad_x, pad - ky, pad - kx);
                    }
                }
            }
        });
    }

    /// Per-image weight gradients, `[N, O, C, K, K]`: for each weight, the products of the
    /// image's rows are summed column-wise down the rows, then across the columns in order.
    pub fn weight_partials(d: &Conv2dDims, x: &[f32], grad_out: &[f32], partials: &mut [f32]) {
        let (hw, k, pad) = (d.height * d.width, d.kernel, d.pad() as isize);
        let images = partials
            .par_chunks_mut(d.weight_len())
            .zip(x.par_chunks(d.in_channels * hw))
            .zip(grad_out.par_chunks(d.out_channels * hw));
        images.for_each(|((partials, x), grad_out)| {
            let mut column_sums = vec![0.0f32; d.width];
            for (i, partial) in partials.iter_mut().enumerate() {
                let (tap, c, o) = (
                    i % (k * k),
                    (i / (k * k)) % d.in_channels,
                    i / (k * k * d.in_channels),
                );
                let (ky, kx) = ((tap / k) as isize, (tap % k) as isize);
                column_sums.fill(0.0);
                let x_c = &x[c * hw..(c + 1) * hw];
                shifted_products(
                    d,
                    &grad_out[o * hw..(o + 1) * hw],
                    x_c,
                    &mut column_sums,
                    ky - pad,
                    kx - pad,
                );
                *partial = column_sums.iter().fold(0.0, |acc, v| acc + v);
            }
        });
    }

    /// `sums[p] += a[y, p] * b[y + shift_y, p + shift_x]` down the rows where both exist.
    fn shifted_products(
        d: &Conv2dDims,
        a: &[f32],
        b: &[f32],
        sums: &mut [f32],
        shift_y: isize,
        shift_x: isize,
    ) {
        let (rows, cols) = (overlap(shift_y, d.height), overlap(shift_x, d.width));
        for y in rows {
            let b_start = (y as isize + shift_y) as usize * d.width
                + (cols.start as isize + shift_x) as usize;
            let a_row = &a[y * d.width + cols.start..y * d.width + cols.end];
            for ((sum, a), b) in sums[cols.clone()]
                .iter_mut()
                .zip(a_row)
                .zip(&b[b_start..b_start + cols.len()])
            {
                *sum += a * b;
            }
        }
    }

    /// Per-image bias gradients, `[N, O]`.
    pub fn bias_partials(d: &Conv2dDims, grad_out: &[f32], partials: &mut [f32]) {
        let hw = d.height * d.width;
        for (i, partial) in partials
            .iter_mut()
            .enumerate()
            .take(d.batch * d.out_channels)
        {
            *partial = grad_out[i * hw..(i + 1) * hw]
                .iter()
                .fold(0.0, |acc, v| acc + v);
        }
    }
}

impl Conv2dKernel for CpuBackend {
    fn conv2d_forward(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<Self::Storage> {
        let mut out = vec![0.0; d.output_len()];
        cpu::forward(d, &x.borrow(), &weight.borrow(), &bias.borrow(), &mut out);
        Ok(storage(out))
    }

    fn conv2d_backward_input(
        &self,
        d: &Conv2dDims,
        weight: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let mut grad_x = vec![0.0; d.input_len()];
        cpu::backward_input(d, &weight.borrow(), &grad_out.borrow(), &mut grad_x);
        Ok(storage(grad_x))
    }

    fn conv2d_backward_params(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let mut weight_partials = vec![0.0; d.batch * d.weight_len()];
        cpu::weight_partials(d, &x.borrow(), &grad_out.borrow(), &mut weight_partials);
        let mut bias_partials = vec![0.0; d.batch * d.out_channels];
        cpu::bias_partials(d, &grad_out.borrow(), &mut bias_partials);
        let grad_weight = reduce_rows(&weight_partials, d.batch, d.weight_len());
        let grad_bias = reduce_rows(&bias_partials, d.batch, d.out_channels);
        Ok((storage(grad_weight), storage(grad_bias)))
    }
}

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/conv2d.wgsl"),
    entries: &[
        Entry::new("forward", &[1, 2, 3, 4]),
        Entry::new("backward_input", &[5, 6, 7]),
        Entry::new("weight_partials", &[8, 9, 10]),
        Entry::new("bias_partials", &[11, 12]),
    ],
};

impl Conv2dKernel for GpuBackend {
    fn conv2d_forward(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<Self::Storage> {
        self.launch_into(
            OP,
            "forward",
            &d.words(),
            &[x, weight, bias],
            d.output_len(),
        )
    }

    fn conv2d_backward_input(
        &self,
        d: &Conv2dDims,
        weight: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        self.launch_into(
            OP,
            "backward_input",
            &d.words(),
            &[weight, grad_out],
            d.input_len(),
        )
    }

    fn conv2d_backward_params(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let weight_partials = self.launch_into(
            OP,
            "weight_partials",
            &d.words(),
            &[x, grad_out],
            d.batch * d.weight_len(),
        )?;
        let bias_partials = self.launch_into(
            OP,
            "bias_partials",
            &d.words(),
            &[grad_out],
            d.batch * d.out_channels,
        )?;
        let grad_weight = self.reduce_rows(&weight_partials, d.batch, d.weight_len())?;
        let grad_bias = self.reduce_rows(&bias_partials, d.batch, d.out_channels)?;
        Ok((grad_weight, grad_bias))
    }
}
