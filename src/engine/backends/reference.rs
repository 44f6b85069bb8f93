//! The reference backend: the oracle both fast backends (`cpu` and `gpu`) are checked against
//! in `cargo test`.
//!
//! Every kernel is the op's definition written out as plain nested loops, llm.c style: one
//! thread, no SIMD, no buffer pool, no rearranged layouts. It is slow by design and never used
//! for training; its only job is to be obviously right. Storage is the CPU backend's, so tensors
//! move freely between the two in tests.
//!
//! Layouts are the engine's: images NCHW, conv weights `[out][in][k][k]`, linear weights
//! `[out][in]`, every buffer flat and row-major. Every reduction (conv, linear, the column
//! sums, softmax and its loss) and the Adadelta update run in f64 and are rounded to f32 once,
//! at the end: the oracle is more exact than either fast backend (a bias gradient sums 50,000
//! terms at the SuperNet's shapes, where f32 in order loses digits), so the fast ones agree
//! with it to their own rounding, not bit for bit. One-operation kernels (add, scale, axpy,
//! ReLU, gather's normalisation, pooling, concat) are exact in f32 already and stay there.

// Index loops are the point here: `out[n][o] = ...` reads like the formula it implements.
#![allow(clippy::needless_range_loop)]

use crate::engine::backend::{GradInto, Memory};
use crate::engine::backends::cpu::{
    shared, storage, stored_into, CpuBackend, CpuShared, CpuStorage,
};
use crate::engine::ops::accuracy::AccuracyKernel;
use crate::engine::ops::adadelta::{AdadeltaConfig, AdadeltaKernel};
use crate::engine::ops::add::AddKernel;
use crate::engine::ops::conv2d::{Conv2dDims, Conv2dKernel};
use crate::engine::ops::conv_relu_pool::{ConvReluPoolDims, ConvReluPoolKernel, NO_ROUTE};
use crate::engine::ops::gather::{GatherDims, GatherKernel};
use crate::engine::ops::linear::{LinearDims, LinearKernel};
use crate::engine::ops::masked_concat::{ConcatDims, MaskedConcatKernel};
use crate::engine::ops::masked_sum::MaskedSumKernel;
use crate::engine::ops::maxpool2::{MaxPool2Kernel, Pool2Dims};
use crate::engine::ops::reduce::ReduceKernel;
use crate::engine::ops::relu::ReluKernel;
use crate::engine::ops::softmax_xent::{SoftmaxXentKernel, XentDims};
use crate::error::{Error, Result};

#[derive(Debug, Default, Clone, Copy)]
pub struct ReferenceBackend;

impl ReferenceBackend {
    pub fn new() -> Self {
        ReferenceBackend
    }
}

// ---- memory: the CPU backend's buffers ----------------------------------------------------

impl Memory for ReferenceBackend {
    type Storage = CpuStorage;
    type Indices = CpuShared<u32>;
    type Bytes = CpuShared<u8>;

    fn name(&self) -> String {
        "reference".to_string()
    }

    fn upload(&self, data: &[f32]) -> Result<Self::Storage> {
        CpuBackend.upload(data)
    }

    fn download(&self, storage: &Self::Storage, len: usize) -> Result<Vec<f32>> {
        CpuBackend.download(storage, len)
    }

    fn upload_indices(&self, data: &[u32]) -> Result<Self::Indices> {
        CpuBackend.upload_indices(data)
    }

    fn download_indices(&self, indices: &Self::Indices, len: usize) -> Result<Vec<u32>> {
        CpuBackend.download_indices(indices, len)
    }

    fn upload_bytes(&self, data: &[u8]) -> Result<Self::Bytes> {
        CpuBackend.upload_bytes(data)
    }

    fn zeros(&self, len: usize) -> Result<Self::Storage> {
        CpuBackend.zeros(len)
    }

    fn copy_into(
        &self,
        src: &Self::Storage,
        dst: &Self::Storage,
        dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        CpuBackend.copy_into(src, dst, dst_offset, len)
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

// ---- accuracy -----------------------------------------------------------------------------

/// Index of the first maximum of `row` (a later value wins only if strictly larger).
fn first_argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for j in 1..row.len() {
        if row[j] > row[best] {
            best = j;
        }
    }
    best
}

// logits [batch][classes], labels [batch] -> correct [batch]: 1.0 where the row's first
// maximum is at its label, else 0.0.
fn correct_rows(d: &XentDims, logits: &[f32], labels: &[u32]) -> Vec<f32> {
    let mut correct = vec![0.0; d.batch];
    for n in 0..d.batch {
        let row = &logits[n * d.classes..(n + 1) * d.classes];
        if first_argmax(row) == labels[n] as usize {
            correct[n] = 1.0;
        }
    }
    correct
}

impl AccuracyKernel for ReferenceBackend {
    fn correct_rows(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
    ) -> Result<Self::Storage> {
        Ok(storage(correct_rows(d, &logits.borrow(), &labels.borrow())))
    }
}

// ---- adadelta -----------------------------------------------------------------------------

// param, grad, square_avg, acc_delta [len], updated in place, in PyTorch's order. A missing
// gradient is a zero one: the accumulators decay and the parameter keeps its value.
fn adadelta_step(
    c: &AdadeltaConfig,
    param: &mut [f32],
    grad: Option<&[f32]>,
    square_avg: &mut [f32],
    acc_delta: &mut [f32],
) {
    let (rho, eps, lr) = (c.rho as f64, c.eps as f64, c.lr as f64);
    for i in 0..param.len() {
        let g = match grad {
            Some(grad) => grad[i] as f64,
            None => 0.0,
        };
        let square = square_avg[i] as f64 * rho + (1.0 - rho) * g * g;
        let std = (square + eps).sqrt();
        let delta = (acc_delta[i] as f64 + eps).sqrt() / std * g;
        let acc = acc_delta[i] as f64 * rho + (1.0 - rho) * delta * delta;
        square_avg[i] = square as f32;
        acc_delta[i] = acc as f32;
        // Without a gradient the parameter keeps its bits, as in PyTorch (delta is 0).
        param[i] = (param[i] as f64 - lr * delta) as f32;
    }
}

impl AdadeltaKernel for ReferenceBackend {
    fn adadelta_step(
        &self,
        c: &AdadeltaConfig,
        param: &Self::Storage,
        grad: Option<&Self::Storage>,
        square_avg: &Self::Storage,
        acc_delta: &Self::Storage,
        len: usize,
    ) -> Result<()> {
        let grad = grad.map(|g| g.borrow());
        adadelta_step(
            c,
            &mut param.borrow_mut()[..len],
            grad.as_ref().map(|g| &g[..len]),
            &mut square_avg.borrow_mut()[..len],
            &mut acc_delta.borrow_mut()[..len],
        );
        Ok(())
    }
}

// ---- add ----------------------------------------------------------------------------------

// a [len], b [len] -> out [len] = a + b
fn add(a: &[f32], b: &[f32], len: usize) -> Vec<f32> {
    let mut out = vec![0.0; len];
    for i in 0..len {
        out[i] = a[i] + b[i];
    }
    out
}

impl AddKernel for ReferenceBackend {
    fn add_values(
        &self,
        a: &Self::Storage,
        b: &Self::Storage,
        len: usize,
    ) -> Result<Self::Storage> {
        Ok(storage(add(&a.borrow(), &b.borrow(), len)))
    }
}

// ---- conv2d: stride 1, 'same' padding, cross-correlation as in PyTorch, with its geometry ----
// Kernel K (odd), dilation D (tap ky reads row y + ky D - pad), pad D (K - 1) / 2, groups G
// (output o reads the C / G input channels of its group o / (O / G); weight [O][C / G][K][K]).

/// The input row (or column) that kernel tap `k` reads for output row (or column) `pos`:
/// `pos + k D - pad`, or `None` where that falls in the zero padding (which adds nothing).
fn tap_source(d: &Conv2dDims, pos: usize, k: usize, size: usize) -> Option<usize> {
    (pos + k * d.dilation())
        .checked_sub(d.pad())
        .filter(|&i| i < size)
}

/// Flat index of map[n][c][y][x] in a `[batch][channels][h][w]` map of the conv's size.
fn map_at(d: &Conv2dDims, channels: usize, n: usize, c: usize, y: usize, x: usize) -> usize {
    ((n * channels + c) * d.height + y) * d.width + x
}

/// Flat index of weight[o][i][ky][kx], i being the channel's place in o's group.
fn weight_at(d: &Conv2dDims, o: usize, i: usize, ky: usize, kx: usize) -> usize {
    ((o * d.in_per_group() + i) * d.kernel() + ky) * d.kernel() + kx
}

/// The input channel that place `i` of output `o`'s group is.
fn group_channel(d: &Conv2dDims, o: usize, i: usize) -> usize {
    o / d.out_per_group() * d.in_per_group() + i
}

/// One output element, out[n][o][y][x].
#[derive(Clone, Copy)]
struct OutAt {
    n: usize,
    o: usize,
    y: usize,
    x: usize,
}

impl OutAt {
    fn index(self, d: &Conv2dDims) -> usize {
        map_at(d, d.out_channels, self.n, self.o, self.y, self.x)
    }
}

/// Every output element, in row-major order (n, o, y, x).
fn for_each_output(d: &Conv2dDims, mut visit: impl FnMut(OutAt)) {
    for n in 0..d.batch {
        for o in 0..d.out_channels {
            for y in 0..d.height {
                for x in 0..d.width {
                    visit(OutAt { n, o, y, x });
                }
            }
        }
    }
}

/// Every term of output `at`'s sum: `(x index, weight index)` for each input channel of its
/// group and each tap that reads inside the image.
fn for_each_term(d: &Conv2dDims, at: OutAt, mut visit: impl FnMut(usize, usize)) {
    for i in 0..d.in_per_group() {
        let c = group_channel(d, at.o, i);
        for ky in 0..d.kernel() {
            let Some(iy) = tap_source(d, at.y, ky, d.height) else {
                continue;
            };
            for kx in 0..d.kernel() {
                let Some(ix) = tap_source(d, at.x, kx, d.width) else {
                    continue;
                };
                visit(
                    map_at(d, d.in_channels, at.n, c, iy, ix),
                    weight_at(d, at.o, i, ky, kx),
                );
            }
        }
    }
}

/// f64 values rounded to the engine's f32, once.
fn rounded(values: Vec<f64>) -> Vec<f32> {
    values.into_iter().map(|v| v as f32).collect()
}

/// Sum over the group's c, ky, kx of x[n][c][y + ky D - pad][x + kx D - pad] * weight[o][c][ky][kx].
fn conv2d_sum(d: &Conv2dDims, x: &[f32], weight: &[f32], at: OutAt) -> f64 {
    let mut sum = 0.0;
    for_each_term(d, at, |xi, wi| sum += x[xi] as f64 * weight[wi] as f64);
    sum
}

// x [batch][in][h][w], weight [out][in / groups][k][k], bias [out] -> out [batch][out][h][w]
fn conv2d_forward(d: &Conv2dDims, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; d.output_len()];
    for_each_output(d, |at| {
        out[at.index(d)] = (bias[at.o] as f64 + conv2d_sum(d, x, weight, at)) as f32;
    });
    out
}

// weight [out][in / groups][k][k], grad_out [batch][out][h][w] -> grad_x [batch][in][h][w]
// The forward run backwards: each product x * w that output `at` summed sends grad * w back
// to the x it read.
fn conv2d_backward_input(d: &Conv2dDims, weight: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let mut grad_x = vec![0.0f64; d.input_len()];
    for_each_output(d, |at| {
        let grad = grad_out[at.index(d)] as f64;
        for_each_term(d, at, |xi, wi| grad_x[xi] += grad * weight[wi] as f64);
    });
    rounded(grad_x)
}

// x [batch][in][h][w], grad_out [batch][out][h][w] -> grad_weight [out][in / groups][k][k],
// grad_bias [out]
// Each product x * w that output `at` summed sends grad * x to its weight; each output sends
// its gradient to its bias. Both sum over the whole batch.
fn conv2d_backward_params(d: &Conv2dDims, x: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut grad_weight = vec![0.0f64; d.weight_len()];
    let mut grad_bias = vec![0.0f64; d.out_channels];
    for_each_output(d, |at| {
        let grad = grad_out[at.index(d)] as f64;
        grad_bias[at.o] += grad;
        for_each_term(d, at, |xi, wi| grad_weight[wi] += grad * x[xi] as f64);
    });
    (rounded(grad_weight), rounded(grad_bias))
}

impl Conv2dKernel for ReferenceBackend {
    fn conv2d_forward(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<Self::Storage> {
        let out = conv2d_forward(d, &x.borrow(), &weight.borrow(), &bias.borrow());
        Ok(storage(out))
    }

    fn conv2d_backward_input(
        &self,
        d: &Conv2dDims,
        weight: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let grad_x = conv2d_backward_input(d, &weight.borrow(), &grad_out.borrow());
        Ok(storage(grad_x))
    }

    fn conv2d_backward_params(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let (grad_weight, grad_bias) = conv2d_backward_params(d, &x.borrow(), &grad_out.borrow());
        Ok((
            stored_into(into.weight, grad_weight),
            stored_into(into.bias, grad_bias),
        ))
    }
}

// ---- conv_relu_pool: conv2d, relu, maxpool2 in turn ----------------------------------------

// weight [out][weight_channels][k][k] -> the part that reads x: [out][in / groups][k][k],
// input channels first_channel .. first_channel + in / groups (a grouped weight: all of it)
fn weight_for_x(d: &ConvReluPoolDims, weight: &[f32]) -> Vec<f32> {
    let c = &d.conv;
    let taps = c.kernel() * c.kernel();
    let mut part = vec![0.0; c.weight_len()];
    for o in 0..c.out_channels {
        for i in 0..c.in_per_group() {
            for tap in 0..taps {
                let from = (o * d.weight_channels + d.first_channel + i) * taps;
                part[weight_at(c, o, i, 0, 0) + tap] = weight[from + tap];
            }
        }
    }
    part
}

// the inverse placement for a gradient: zeros in the channels x does not reach
fn weight_grad_from_x(d: &ConvReluPoolDims, grad: &[f32]) -> Vec<f32> {
    let c = &d.conv;
    let taps = c.kernel() * c.kernel();
    let mut full = vec![0.0; d.weight_len()];
    for o in 0..c.out_channels {
        for i in 0..c.in_per_group() {
            for tap in 0..taps {
                let to = (o * d.weight_channels + d.first_channel + i) * taps;
                full[to + tap] = grad[weight_at(c, o, i, 0, 0) + tap];
            }
        }
    }
    full
}

// x -> (maxpool2(relu(conv2d(x))), route): per window, the flat index of its first maximum
// in the conv output, where that maximum is positive; NO_ROUTE where it is not
fn conv_relu_pool_forward(
    d: &ConvReluPoolDims,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
) -> (Vec<f32>, Vec<u32>) {
    let conv = conv2d_forward(&d.conv, x, &weight_for_x(d, weight), bias);
    let activated = relu_forward(&conv, conv.len());
    let (out, argmax) = maxpool2_forward(&d.pool(), &activated);
    let mut route = vec![NO_ROUTE; out.len()];
    for i in 0..out.len() {
        if out[i] > 0.0 {
            route[i] = argmax[i];
        }
    }
    (out, route)
}

// grad_out [batch][out][h / 2][w / 2] -> the conv output's gradient [batch][out][h][w]: each
// window's gradient at its route, 0 everywhere else
fn routed_grad(d: &ConvReluPoolDims, route: &[u32], grad_out: &[f32]) -> Vec<f32> {
    let mut grad = vec![0.0; d.conv.output_len()];
    for i in 0..d.output_len() {
        if route[i] != NO_ROUTE {
            grad[route[i] as usize] = grad_out[i];
        }
    }
    grad
}

impl ConvReluPoolKernel for ReferenceBackend {
    fn conv_relu_pool_forward(
        &self,
        d: &ConvReluPoolDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Indices)> {
        let (out, route) = conv_relu_pool_forward(d, &x.borrow(), &weight.borrow(), &bias.borrow());
        Ok((storage(out), shared(route)))
    }

    fn conv_relu_pool_backward_input(
        &self,
        d: &ConvReluPoolDims,
        weight: &Self::Storage,
        route: &Self::Indices,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let grad_conv = routed_grad(d, &route.borrow(), &grad_out.borrow());
        let weight = weight_for_x(d, &weight.borrow());
        Ok(storage(conv2d_backward_input(&d.conv, &weight, &grad_conv)))
    }

    fn conv_relu_pool_backward_params(
        &self,
        d: &ConvReluPoolDims,
        x: &Self::Storage,
        route: &Self::Indices,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let grad_conv = routed_grad(d, &route.borrow(), &grad_out.borrow());
        let (grad_weight, grad_bias) = conv2d_backward_params(&d.conv, &x.borrow(), &grad_conv);
        Ok((
            stored_into(into.weight, weight_grad_from_x(d, &grad_weight)),
            stored_into(into.bias, grad_bias),
        ))
    }
}

// ---- gather -------------------------------------------------------------------------------

// images [count][h][w] (u8), indices [batch] -> out [batch][1][h][w] = (byte / 255 - mean) / std
fn gather(d: &GatherDims, images: &[u8], indices: &[u32]) -> Vec<f32> {
    let pixels = d.height * d.width;
    let mut out = vec![0.0; d.batch * pixels];
    for b in 0..d.batch {
        let image = indices[b] as usize;
        for p in 0..pixels {
            let byte = images[image * pixels + p];
            out[b * pixels + p] = (byte as f32 / 255.0 - d.mean) / d.std;
        }
    }
    out
}

impl GatherKernel for ReferenceBackend {
    fn gather_images(
        &self,
        d: &GatherDims,
        images: &Self::Bytes,
        indices: &Self::Indices,
    ) -> Result<Self::Storage> {
        Ok(storage(gather(d, &images.borrow(), &indices.borrow())))
    }
}

// ---- linear -------------------------------------------------------------------------------

// x [batch][in], weight [out][in], bias [out] -> out [batch][out] = x W^T + b
fn linear_forward(d: &LinearDims, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let (ins, outs) = (d.in_features, d.out_features);
    let mut out = vec![0.0; d.batch * outs];
    for n in 0..d.batch {
        for o in 0..outs {
            let mut sum = bias[o] as f64;
            for i in 0..ins {
                sum += x[n * ins + i] as f64 * weight[o * ins + i] as f64;
            }
            out[n * outs + o] = sum as f32;
        }
    }
    out
}

// weight [out][in], grad_out [batch][out] -> grad_x [batch][in] = grad_out W
fn linear_backward_input(d: &LinearDims, weight: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let (ins, outs) = (d.in_features, d.out_features);
    let mut grad_x = vec![0.0; d.batch * ins];
    for n in 0..d.batch {
        for i in 0..ins {
            let mut sum = 0.0f64;
            for o in 0..outs {
                sum += grad_out[n * outs + o] as f64 * weight[o * ins + i] as f64;
            }
            grad_x[n * ins + i] = sum as f32;
        }
    }
    grad_x
}

// x [batch][in], grad_out [batch][out] -> grad_weight [out][in] = grad_out^T x
fn linear_backward_weight(d: &LinearDims, x: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let (ins, outs) = (d.in_features, d.out_features);
    let mut grad_weight = vec![0.0; outs * ins];
    for o in 0..outs {
        for i in 0..ins {
            let mut sum = 0.0f64;
            for n in 0..d.batch {
                sum += grad_out[n * outs + o] as f64 * x[n * ins + i] as f64;
            }
            grad_weight[o * ins + i] = sum as f32;
        }
    }
    grad_weight
}

impl LinearKernel for ReferenceBackend {
    fn linear_forward(
        &self,
        d: &LinearDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<Self::Storage> {
        let out = linear_forward(d, &x.borrow(), &weight.borrow(), &bias.borrow());
        Ok(storage(out))
    }

    fn linear_backward_input(
        &self,
        d: &LinearDims,
        weight: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let grad_x = linear_backward_input(d, &weight.borrow(), &grad_out.borrow());
        Ok(storage(grad_x))
    }

    fn linear_backward_params(
        &self,
        d: &LinearDims,
        x: &Self::Storage,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let grad_weight = linear_backward_weight(d, &x.borrow(), &grad_out.borrow());
        let grad_bias = reduce_rows(&grad_out.borrow(), d.batch, d.out_features);
        Ok((
            stored_into(into.weight, grad_weight),
            stored_into(into.bias, grad_bias),
        ))
    }
}

// ---- masked_concat ------------------------------------------------------------------------

/// Flat index of concat[n][slot * channels + c][p] in `[batch][slots * channels][pixels]`.
fn concat_at(d: &ConcatDims, n: usize, slot: usize, c: usize, p: usize) -> usize {
    ((n * d.slots + slot) * d.channels + c) * d.pixels + p
}

/// Flat index of part[n][c][p] in `[batch][channels][pixels]`.
fn part_at(d: &ConcatDims, n: usize, c: usize, p: usize) -> usize {
    (n * d.channels + c) * d.pixels + p
}

// part [batch][channels][pixels] -> slot `slot` of out [batch][slots * channels][pixels],
// scaled by `factor`; the other slots are left as they are.
fn concat_write_slot(d: &ConcatDims, out: &mut [f32], part: &[f32], slot: usize, factor: f32) {
    for n in 0..d.batch {
        for c in 0..d.channels {
            for p in 0..d.pixels {
                out[concat_at(d, n, slot, c, p)] = factor * part[part_at(d, n, c, p)];
            }
        }
    }
}

// slot `slot` of grad_out [batch][slots * channels][pixels] -> grad_part
// [batch][channels][pixels], scaled by `factor`.
fn concat_read_slot(d: &ConcatDims, grad_out: &[f32], slot: usize, factor: f32) -> Vec<f32> {
    let mut grad_part = vec![0.0; d.part_len()];
    for n in 0..d.batch {
        for c in 0..d.channels {
            for p in 0..d.pixels {
                grad_part[part_at(d, n, c, p)] = factor * grad_out[concat_at(d, n, slot, c, p)];
            }
        }
    }
    grad_part
}

impl MaskedConcatKernel for ReferenceBackend {
    fn concat_write_slot(
        &self,
        d: &ConcatDims,
        out: &Self::Storage,
        part: &Self::Storage,
        slot: usize,
        factor: f32,
    ) -> Result<()> {
        concat_write_slot(d, &mut out.borrow_mut(), &part.borrow(), slot, factor);
        Ok(())
    }

    fn concat_read_slot(
        &self,
        d: &ConcatDims,
        grad_out: &Self::Storage,
        slot: usize,
        factor: f32,
    ) -> Result<Self::Storage> {
        Ok(storage(concat_read_slot(
            d,
            &grad_out.borrow(),
            slot,
            factor,
        )))
    }
}

// ---- masked_sum ---------------------------------------------------------------------------

// x [len] -> out [len] = factor * x
fn scale(x: &[f32], factor: f32, len: usize) -> Vec<f32> {
    let mut out = vec![0.0; len];
    for i in 0..len {
        out[i] = factor * x[i];
    }
    out
}

// acc [len] += factor * x [len], in place
fn axpy(acc: &mut [f32], x: &[f32], factor: f32, len: usize) {
    for i in 0..len {
        acc[i] += factor * x[i];
    }
}

impl MaskedSumKernel for ReferenceBackend {
    fn scale(&self, x: &Self::Storage, factor: f32, len: usize) -> Result<Self::Storage> {
        Ok(storage(scale(&x.borrow(), factor, len)))
    }

    fn axpy(&self, acc: &Self::Storage, x: &Self::Storage, factor: f32, len: usize) -> Result<()> {
        axpy(&mut acc.borrow_mut(), &x.borrow(), factor, len);
        Ok(())
    }
}

// ---- maxpool2: 2x2 windows, stride 2; an odd last row or column belongs to no window ----

/// Window (oy, ox) of plane `plane`: its maximum and the flat input index of its first
/// maximum, the four values taken in row-major order (top-left, top-right, bottom-left,
/// bottom-right) and a later one winning only if strictly larger.
fn pool_window(d: &Pool2Dims, x: &[f32], plane: usize, oy: usize, ox: usize) -> (f32, u32) {
    let top_left = (plane * d.height + 2 * oy) * d.width + 2 * ox;
    let mut best = top_left;
    for candidate in [top_left + 1, top_left + d.width, top_left + d.width + 1] {
        if x[candidate] > x[best] {
            best = candidate;
        }
    }
    (x[best], best as u32)
}

// x [batch][channels][h][w] -> out, argmax [batch][channels][h / 2][w / 2]
fn maxpool2_forward(d: &Pool2Dims, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let (oh, ow) = (d.out_height(), d.out_width());
    let mut out = vec![0.0; d.output_len()];
    let mut argmax = vec![0; d.output_len()];
    for plane in 0..d.batch * d.channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let i = (plane * oh + oy) * ow + ox;
                (out[i], argmax[i]) = pool_window(d, x, plane, oy, ox);
            }
        }
    }
    (out, argmax)
}

// argmax, grad_out [batch][channels][h / 2][w / 2] -> grad_x [batch][channels][h][w]:
// each window's gradient goes to its argmax, every other input gets 0. Windows do not
// overlap, so no input receives two gradients.
fn maxpool2_backward(d: &Pool2Dims, argmax: &[u32], grad_out: &[f32]) -> Vec<f32> {
    let mut grad_x = vec![0.0; d.input_len()];
    for i in 0..d.output_len() {
        grad_x[argmax[i] as usize] = grad_out[i];
    }
    grad_x
}

impl MaxPool2Kernel for ReferenceBackend {
    fn maxpool2_forward(
        &self,
        d: &Pool2Dims,
        x: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Indices)> {
        let (out, argmax) = maxpool2_forward(d, &x.borrow());
        Ok((storage(out), shared(argmax)))
    }

    fn maxpool2_backward(
        &self,
        d: &Pool2Dims,
        argmax: &Self::Indices,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let grad_x = maxpool2_backward(d, &argmax.borrow(), &grad_out.borrow());
        Ok(storage(grad_x))
    }
}

// ---- reduce -------------------------------------------------------------------------------

// x [rows][cols] -> out [cols]: each column summed over the rows, first to last
fn reduce_rows(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut sums = vec![0.0f64; cols];
    for r in 0..rows {
        for j in 0..cols {
            sums[j] += x[r * cols + j] as f64;
        }
    }
    rounded(sums)
}

impl ReduceKernel for ReferenceBackend {
    fn reduce_rows(&self, x: &Self::Storage, rows: usize, cols: usize) -> Result<Self::Storage> {
        Ok(storage(reduce_rows(&x.borrow(), rows, cols)))
    }
}

// ---- relu ---------------------------------------------------------------------------------

// x [len] -> out [len] = max(x, 0)
fn relu_forward(x: &[f32], len: usize) -> Vec<f32> {
    let mut out = vec![0.0; len];
    for i in 0..len {
        out[i] = x[i].max(0.0);
    }
    out
}

// out, grad_out [len] -> grad_x [len]: the gradient passes where the output is positive
fn relu_backward(out: &[f32], grad_out: &[f32], len: usize) -> Vec<f32> {
    let mut grad_x = vec![0.0; len];
    for i in 0..len {
        if out[i] > 0.0 {
            grad_x[i] = grad_out[i];
        }
    }
    grad_x
}

impl ReluKernel for ReferenceBackend {
    fn relu_forward(&self, x: &Self::Storage, len: usize) -> Result<Self::Storage> {
        Ok(storage(relu_forward(&x.borrow(), len)))
    }

    fn relu_backward(
        &self,
        out: &Self::Storage,
        grad_out: &Self::Storage,
        len: usize,
    ) -> Result<Self::Storage> {
        Ok(storage(relu_backward(
            &out.borrow(),
            &grad_out.borrow(),
            len,
        )))
    }
}

// ---- softmax_xent -------------------------------------------------------------------------

/// ln(sum of exp(z)) over `row`, shifted by the row's maximum so that no exp overflows.
fn log_sum_exp(row: &[f32]) -> f64 {
    let mut max = row[0] as f64;
    for &z in row {
        max = max.max(z as f64);
    }
    let mut sum = 0.0f64;
    for &z in row {
        sum += (z as f64 - max).exp();
    }
    max + sum.ln()
}

/// Every label must name a class (as the CPU twin checks).
fn check_labels(d: &XentDims, labels: &[u32]) -> Result<()> {
    for &label in labels.iter().take(d.batch) {
        if label as usize >= d.classes {
            return Err(Error::invalid(
                "softmax_xent",
                format!("label {label} is not below the {} classes", d.classes),
            ));
        }
    }
    Ok(())
}

// logits [batch][classes], labels [batch] -> loss [1] = mean over rows of lse(row) - row[label]
fn softmax_xent_forward(d: &XentDims, logits: &[f32], labels: &[u32]) -> Result<Vec<f32>> {
    check_labels(d, labels)?;
    let mut total = 0.0f64;
    for n in 0..d.batch {
        let row = &logits[n * d.classes..(n + 1) * d.classes];
        total += log_sum_exp(row) - row[labels[n] as usize] as f64;
    }
    Ok(vec![(total / d.batch as f64) as f32])
}

// logits [batch][classes], labels [batch], grad_loss [1] -> grad [batch][classes]
// = (softmax(row) - onehot(label)) * grad_loss / batch: the loss is a mean over the batch.
fn softmax_xent_backward(
    d: &XentDims,
    logits: &[f32],
    labels: &[u32],
    grad_loss: f32,
) -> Result<Vec<f32>> {
    check_labels(d, labels)?;
    let scale = grad_loss as f64 / d.batch as f64;
    let mut grad = vec![0.0; d.batch * d.classes];
    for n in 0..d.batch {
        let row = &logits[n * d.classes..(n + 1) * d.classes];
        let lse = log_sum_exp(row);
        for j in 0..d.classes {
            let target = if j == labels[n] as usize { 1.0 } else { 0.0 };
            grad[n * d.classes + j] = (((row[j] as f64 - lse).exp() - target) * scale) as f32;
        }
    }
    Ok(grad)
}

impl SoftmaxXentKernel for ReferenceBackend {
    fn softmax_xent_forward(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
    ) -> Result<Self::Storage> {
        let loss = softmax_xent_forward(d, &logits.borrow(), &labels.borrow())?;
        Ok(storage(loss))
    }

    fn softmax_xent_backward(
        &self,
        d: &XentDims,
        logits: &Self::Storage,
        labels: &Self::Indices,
        grad_loss: &Self::Storage,
    ) -> Result<Self::Storage> {
        let grad_loss = grad_loss.borrow()[0];
        let grad = softmax_xent_backward(d, &logits.borrow(), &labels.borrow(), grad_loss)?;
        Ok(storage(grad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::conv2d::ConvGeometry;

    /// Values agree to a few float roundings.
    fn assert_close(actual: &[f32], expected: &[f32]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!(
                (a - e).abs() <= 1e-6 * e.abs().max(1.0),
                "{actual:?} vs {expected:?}"
            );
        }
    }

    /// One 3x3 image, one channel in and out, a 3x3 kernel.
    const ONE_3X3: Conv2dDims = Conv2dDims {
        batch: 1,
        in_channels: 1,
        out_channels: 1,
        height: 3,
        width: 3,
        geometry: ConvGeometry::plain(3),
    };

    /// 3x3 image 1..9, a 3x3 kernel of ones, bias 1, 'same' padding: each output is 1 plus the
    /// sum of its neighbourhood, cut off at the border.
    ///   1 2 3      1+(1+2+4+5)=13  1+(1+2+3+4+5+6)=22  1+(2+3+5+6)=17
    ///   4 5 6  ->  1+(1+2+4+5+7+8)=28     1+45=46      1+(2+3+5+6+8+9)=34
    ///   7 8 9      1+(4+5+7+8)=25  1+(4+5+6+7+8+9)=40  1+(5+6+8+9)=29
    #[test]
    fn conv2d_ones_kernel_sums_neighbourhoods() {
        let d = ONE_3X3;
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let out = conv2d_forward(&d, &x, &[1.0; 9], &[1.0]);
        assert_close(&out, &[13., 22., 17., 28., 46., 34., 25., 40., 29.]);

        // All-ones output gradient: each input gets one per output whose window covers it
        // (4 at a corner, 6 on an edge, 9 in the middle).
        let grad_x = conv2d_backward_input(&d, &[1.0; 9], &[1.0; 9]);
        assert_close(&grad_x, &[4., 6., 4., 6., 9., 6., 4., 6., 4.]);

        // Tap (ky, kx) sees the block of x shifted by (ky - 1, kx - 1): tap (0, 0) reads the
        // top-left 2x2 (1+2+4+5 = 12), the middle tap all of x (45), and so on: the sums above
        // less the bias. The bias gradient counts the 9 outputs.
        let (grad_weight, grad_bias) = conv2d_backward_params(&d, &x, &[1.0; 9]);
        assert_close(&grad_weight, &[12., 21., 16., 27., 45., 33., 24., 39., 28.]);
        assert_close(&grad_bias, &[9.0]);
    }

    /// Cross-correlation, not convolution: a centred 1 picks out the kernel flipped,
    /// out[y][x] = w[2 - y][2 - x]; and a centred output gradient sends the kernel back
    /// unflipped, grad_x[y][x] = w[y][x].
    #[test]
    fn conv2d_delta_shows_kernel_orientation() {
        let d = ONE_3X3;
        let weight: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut delta = [0.0; 9];
        delta[4] = 1.0;
        let out = conv2d_forward(&d, &delta, &weight, &[0.0]);
        assert_close(&out, &[9., 8., 7., 6., 5., 4., 3., 2., 1.]);
        let grad_x = conv2d_backward_input(&d, &weight, &delta);
        assert_close(&grad_x, &weight);
    }

    /// Two output channels over two input channels: out[o] = bias[o] + sum over c of the
    /// 1x1 weight[o][c] times x[c]; x = [[1, 2], [3, 4]] per channel pixel.
    ///   o = 0: w = (1, 10), bias 0.5 -> 1*1 + 10*3 + 0.5 = 31.5, 1*2 + 10*4 + 0.5 = 42.5
    ///   o = 1: w = (2, -1), bias 0   -> 2*1 - 3 = -1,         2*2 - 4 = 0
    #[test]
    fn conv2d_pointwise_mixes_channels() {
        let d = Conv2dDims {
            batch: 1,
            in_channels: 2,
            out_channels: 2,
            height: 1,
            width: 2,
            geometry: ConvGeometry::plain(1),
        };
        let out = conv2d_forward(&d, &[1., 2., 3., 4.], &[1., 10., 2., -1.], &[0.5, 0.0]);
        assert_close(&out, &[31.5, 42.5, -1.0, 0.0]);
    }

    /// One 3x4 plane (the odd last row belongs to no window) and a second plane.
    ///   plane 0: 1 3 2 2    window (0,0): 1 3 / 3 0 -> 3, first at index 1 (top-right
    ///            3 0 0 2              beats the equal bottom-left at index 4)
    ///            9 9 9 9    window (0,1): 2 2 / 0 2 -> 2, first at index 2 (top-left)
    ///   plane 1: zeros but a 5 at row 1, column 3: window (0,0) is all ties -> index
    ///            12 + 0 = 12; window (0,1) -> 5 at index 12 + 7 = 19.
    #[test]
    fn maxpool2_keeps_the_first_maximum() {
        let d = Pool2Dims {
            batch: 1,
            channels: 2,
            height: 3,
            width: 4,
        };
        let mut x = vec![1., 3., 2., 2., 3., 0., 0., 2., 9., 9., 9., 9.];
        x.extend([0.0; 12]);
        x[12 + 7] = 5.0;
        let (out, argmax) = maxpool2_forward(&d, &x);
        assert_close(&out, &[3., 2., 0., 5.]);
        assert_eq!(argmax, [1, 2, 12, 19]);

        let grad_x = maxpool2_backward(&d, &argmax, &[10., 20., 30., 40.]);
        let mut expected = vec![0.0; 24];
        (expected[1], expected[2], expected[12], expected[19]) = (10., 20., 30., 40.);
        assert_close(&grad_x, &expected);
    }

    /// Row 0: logits (0, ln 3), label 0: softmax (1/4, 3/4), loss -ln(1/4) = ln 4.
    /// Row 1: logits (0, 0), label 1: softmax (1/2, 1/2), loss ln 2.
    /// Mean: (ln 4 + ln 2) / 2 = 1.5 ln 2 = 1.0397208.
    /// Backward with grad_loss 2 over a batch of 2 (scale 1): softmax - onehot =
    /// (1/4 - 1, 3/4) = (-0.75, 0.75) and (0.5, 0.5 - 1) = (0.5, -0.5).
    #[test]
    fn softmax_xent_two_classes_by_hand() {
        let d = XentDims {
            batch: 2,
            classes: 2,
        };
        let logits = [0.0, 3f32.ln(), 0.0, 0.0];
        let loss = softmax_xent_forward(&d, &logits, &[0, 1]).unwrap();
        assert_close(&loss, &[1.5 * 2f32.ln()]);
        let grad = softmax_xent_backward(&d, &logits, &[0, 1], 2.0).unwrap();
        assert_close(&grad, &[-0.75, 0.75, 0.5, -0.5]);
    }

    #[test]
    fn softmax_xent_rejects_a_label_past_the_classes() {
        let d = XentDims {
            batch: 1,
            classes: 2,
        };
        let err = softmax_xent_forward(&d, &[0.0, 0.0], &[2]).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert!(softmax_xent_backward(&d, &[0.0, 0.0], &[2], 1.0).is_err());
    }

    /// PyTorch's defaults (lr 1, rho 0.9, eps 1e-6), param 1, grad 2, fresh accumulators:
    ///   square_avg = 0.9 * 0 + 0.1 * 2 * 2 = 0.4
    ///   std        = sqrt(0.4 + 1e-6) = 0.63245632
    ///   delta      = sqrt(0 + 1e-6) / std * 2 = 0.002 / 0.63245632 = 0.0031622737
    ///   acc_delta  = 0.9 * 0 + 0.1 * delta^2 = 9.999975e-7
    ///   param      = 1 - 1 * delta = 0.99683773
    #[test]
    fn adadelta_one_step_by_hand() {
        let c = AdadeltaConfig::default();
        assert_eq!((c.lr, c.rho, c.eps), (1.0, 0.9, 1e-6));
        let (mut param, mut square_avg, mut acc_delta) = ([1.0], [0.0], [0.0]);
        adadelta_step(
            &c,
            &mut param,
            Some(&[2.0]),
            &mut square_avg,
            &mut acc_delta,
        );
        assert_close(&square_avg, &[0.4]);
        assert!((acc_delta[0] - 9.999975e-7).abs() < 1e-12, "{acc_delta:?}");
        assert_close(&param, &[0.99683773]);
    }

    /// No gradient: the accumulators decay by rho (0.4 -> 0.36, 1e-6 -> 9e-7) and the
    /// parameter keeps its exact value.
    #[test]
    fn adadelta_without_gradient_only_decays() {
        let c = AdadeltaConfig::default();
        let (mut param, mut square_avg, mut acc_delta) = ([0.123], [0.4], [1e-6]);
        adadelta_step(&c, &mut param, None, &mut square_avg, &mut acc_delta);
        assert_eq!(param, [0.123]);
        assert_close(&square_avg, &[0.36]);
        assert!((acc_delta[0] - 9e-7).abs() < 1e-12, "{acc_delta:?}");
    }

    /// Bytes 51 and 102 are 0.2 and 0.4 of 255; with mean 0.5 and std 0.5:
    /// (0.2 - 0.5) / 0.5 = -0.6, (0.4 - 0.5) / 0.5 = -0.2, 0 -> -1, 255 -> 1.
    #[test]
    fn gather_normalises_the_indexed_images() {
        let d = GatherDims {
            count: 2,
            batch: 2,
            height: 1,
            width: 2,
            mean: 0.5,
            std: 0.5,
        };
        let out = gather(&d, &[0, 255, 51, 102], &[1, 0]);
        assert_close(&out, &[-0.6, -0.2, -1.0, 1.0]);
    }

    /// x (1, 2), weight rows (1, 2), (3, 4), (5, 6), bias (0.5, 0, -1):
    ///   out = (1 + 4 + 0.5, 3 + 8, 5 + 12 - 1) = (5.5, 11, 16)
    /// grad_out (1, 0, 1): grad_x = 1 * (1, 2) + 1 * (5, 6) = (6, 8);
    ///   grad_weight[o] = grad_out[o] * x = (1, 2), (0, 0), (1, 2).
    #[test]
    fn linear_by_hand() {
        let d = LinearDims {
            batch: 1,
            in_features: 2,
            out_features: 3,
        };
        let weight = [1., 2., 3., 4., 5., 6.];
        let out = linear_forward(&d, &[1., 2.], &weight, &[0.5, 0.0, -1.0]);
        assert_close(&out, &[5.5, 11., 16.]);
        assert_close(
            &linear_backward_input(&d, &weight, &[1., 0., 1.]),
            &[6., 8.],
        );
        let grad_weight = linear_backward_weight(&d, &[1., 2.], &[1., 0., 1.]);
        assert_close(&grad_weight, &[1., 2., 0., 0., 1., 2.]);
    }

    /// Two images of one 2-pixel channel in slot 1 of 2, factor 0.5: image n's run in the
    /// concatenation is (slot 0, slot 1), so out = (0, 0, 0.5, 1 | 0, 0, 1.5, 2); reading slot
    /// 1 back with factor 2 gives the part again.
    #[test]
    fn masked_concat_writes_and_reads_a_slot() {
        let d = ConcatDims {
            batch: 2,
            channels: 1,
            pixels: 2,
            slots: 2,
        };
        let mut out = vec![0.0; d.output_len()];
        concat_write_slot(&d, &mut out, &[1., 2., 3., 4.], 1, 0.5);
        assert_close(&out, &[0., 0., 0.5, 1., 0., 0., 1.5, 2.]);
        assert_close(&concat_read_slot(&d, &out, 1, 2.0), &[1., 2., 3., 4.]);
    }

    /// Row 0 (1, 3, 3): first maximum at 1, label 2 -> 0. Row 1 (2, 1, 0): maximum at 0,
    /// label 0 -> 1.
    #[test]
    fn correct_rows_uses_the_first_maximum() {
        let d = XentDims {
            batch: 2,
            classes: 3,
        };
        let correct = correct_rows(&d, &[1., 3., 3., 2., 1., 0.], &[2, 0]);
        assert_eq!(correct, [0.0, 1.0]);
    }

    #[test]
    fn small_elementwise_kernels_by_hand() {
        // Columns of (1 2 3 / 4 5 6): 5, 7, 9.
        assert_eq!(reduce_rows(&[1., 2., 3., 4., 5., 6.], 2, 3), [5., 7., 9.]);
        assert_eq!(relu_forward(&[-1., 0., 2.], 3), [0., 0., 2.]);
        // The gradient passes only where the output is positive (not at 0).
        assert_eq!(relu_backward(&[0., 0., 2.], &[5., 6., 7.], 3), [0., 0., 7.]);
        assert_eq!(add(&[1., 2.], &[10., 20.], 2), [11., 22.]);
        assert_eq!(scale(&[1., -2.], 3.0, 2), [3., -6.]);
        let mut acc = [1., 1.];
        axpy(&mut acc, &[2., 4.], 0.5, 2);
        assert_eq!(acc, [2., 3.]);
    }

    /// Through the trait: storage is the CPU backend's, so buffers move between the two.
    #[test]
    fn shares_storage_with_the_cpu_backend() {
        let reference = ReferenceBackend::new();
        assert_eq!(reference.name(), "reference");
        let a = CpuBackend.upload(&[1.0, 2.0]).unwrap();
        let b = reference.upload(&[3.0, 4.0]).unwrap();
        let sum = reference.add_values(&a, &b, 2).unwrap();
        assert_eq!(CpuBackend.download(&sum, 2).unwrap(), [4.0, 6.0]);
    }
}
