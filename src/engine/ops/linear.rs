//! linear: `out = x W^T + b`, PyTorch's `nn.Linear`.
//!
//! Shapes: x `[N, I]`, weight `[O, I]`, bias `[O]` -> out `[N, O]`. The weight gradient sums over
//! the batch in order, the bias gradient is grad_out's column sums in row order: both deterministic
//! (on the GPU one kernel computes both).

use crate::engine::backend::{Backend, GradInto, Memory};
use crate::engine::backends::cpu::{computed, output, stored_into, CpuBackend};
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend};
use crate::engine::ops::reduce::cpu::reduce_rows;
use crate::engine::tape::{Backward, GradTargets, InputGrad, Tape, push_if_required};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

const OP: &str = "linear";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearDims {
    pub batch: usize,
    pub in_features: usize,
    pub out_features: usize,
}

impl LinearDims {
    /// Checks x `[N, I]`, weight `[O, I]`, bias `[O]`.
    pub fn from_shapes(x: &[usize], weight: &[usize], bias: &[usize]) -> Result<Self> {
        let shapes = || format!("x {x:?}, weight {weight:?}, bias {bias:?}");
        let (&[batch, in_features], &[out_features, weight_in]) = (x, weight) else {
            return Err(Error::shape(
                OP,
                format!("x must be [N, I] and weight [O, I]; got {}", shapes()),
            ));
        };
        if weight_in != in_features {
            return Err(Error::shape(
                OP,
                format!(
                    "weight expects {weight_in} input features, x has {in_features}; got {}",
                    shapes()
                ),
            ));
        }
        if bias != [out_features] {
            return Err(Error::shape(
                OP,
                format!("bias must be [{out_features}]; got {}", shapes()),
            ));
        }
        Ok(LinearDims {
            batch,
            in_features,
            out_features,
        })
    }

    fn params(&self) -> LinearParams {
        LinearParams {
            batch: self.batch as u32,
            in_features: self.in_features as u32,
            out_features: self.out_features as u32,
        }
    }
}

pub trait LinearKernel: Memory {
    fn linear_forward(
        &self,
        d: &LinearDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<Self::Storage>;
    fn linear_backward_input(
        &self,
        d: &LinearDims,
        weight: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage>;
    /// `(grad_weight, grad_bias)`, written `into` the slots given.
    fn linear_backward_params(
        &self,
        d: &LinearDims,
        x: &Self::Storage,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)>;
}

pub(crate) struct Saved<B: Backend> {
    dims: LinearDims,
    x: Tensor<B>,
    weight: Tensor<B>,
    bias: Tensor<B>,
}

impl<B: Backend> Tape<'_, B> {
    pub fn linear(&self, x: &Tensor<B>, weight: &Tensor<B>, bias: &Tensor<B>) -> Result<Tensor<B>> {
        let dims = LinearDims::from_shapes(x.shape(), weight.shape(), bias.shape())?;
        let out =
            self.backend()
                .linear_forward(&dims, x.storage(), weight.storage(), bias.storage())?;
        let out = Tensor::from_storage(
            out,
            &[dims.batch, dims.out_features],
            self.tracks(&[x, weight, bias]),
        );
        self.record(&out, || {
            Saved {
                dims,
                x: x.clone(),
                weight: weight.clone(),
                bias: bias.clone(),
            }
        });
        Ok(out)
    }
}

impl<B: Backend> Backward<B> for Saved<B> {
    fn backward(&self, backend: &B, targets: &GradTargets, grad_out: &Tensor<B>) -> Result<Vec<InputGrad<B>>> {
        let saved = self;
    let Saved {
        dims,
        x,
        weight,
        bias,
    } = saved;
    let mut grads = Vec::new();
    if x.requires_grad() {
        let grad_x = backend.linear_backward_input(dims, weight.storage(), grad_out.storage())?;
        push_if_required(&mut grads, x, grad_x);
    }
    if weight.requires_grad() || bias.requires_grad() {
        let into = targets.of(weight, bias);
        let (grad_weight, grad_bias) =
            backend.linear_backward_params(dims, x.storage(), grad_out.storage(), into)?;
        push_if_required(&mut grads, weight, grad_weight);
        push_if_required(&mut grads, bias, grad_bias);
    }
    Ok(grads)
}
}

/// The CPU twin. Each output row is a sum of scaled rows (`acc += x[i] * row_i`), so the
/// innermost loop runs along contiguous memory and vectorises, while every element still gets
/// its terms in the order of `shaders/linear.wgsl`. Rows of the batch run in parallel.
/// The CPU twin. Each output row is a sum of scaled rows (`acc += x[i] * row_i`), so the
/// innermost loop runs along contiguous memory and vectorises, while every element still gets
/// its terms in the order of `shaders/linear.wgsl`. Rows run in parallel.
pub mod cpu {
    use rayon::prelude::*;

    use super::LinearDims;
    use crate::engine::backends::cpu::vectorised_fn;

    /// `acc += scale * row`, element by element.
    #[inline(always)]
    fn add_scaled(acc: &mut [f32], scale: f32, row: &[f32]) {
        for (acc, value) in acc.iter_mut().zip(row) {
            *acc += scale * value;
        }
    }

    /// Multiply-adds a parallel task should hold at least: below that, handing it to another
    /// thread costs more than it saves (the 32 -> 10 layer runs on one thread).
    const TASK_WORK: usize = 1 << 14;

    /// Rows per task for rows of `row_work` multiply-adds each.
    fn rows_per_task(row_work: usize) -> usize {
        (TASK_WORK / row_work.max(1)).max(1)
    }

    /// Columns summed together in registers: four 256-bit vectors, independent chains of
    /// additions (a sum kept in memory would wait on its own store for every row).
    const BLOCK: usize = 32;

    vectorised_fn! {
        /// `acc = start`, then `acc += scales[r] * rows[r]` for every row in order; blocks of
        /// 32 columns at a time, then the rest.
        fn sum_scaled_rows(acc: &mut [f32], start: Option<&[f32]>, scales: &[f32], rows: &[f32]) {
            match start {
                Some(start) => acc.copy_from_slice(start),
                None => acc.fill(0.0),
            }
            let width = acc.len();
            let (blocks, rest) = acc.as_chunks_mut::<BLOCK>();
            for (b, block) in blocks.iter_mut().enumerate() {
                let mut sums = *block;
                for (&scale, row) in scales.iter().zip(rows.chunks_exact(width)) {
                    let row: &[f32; BLOCK] = row[b * BLOCK..][..BLOCK].try_into().expect("a block");
                    for (sum, value) in sums.iter_mut().zip(row) {
                        *sum += scale * value;
                    }
                }
                *block = sums;
            }
            let done = width - rest.len();
            for (&scale, row) in scales.iter().zip(rows.chunks_exact(width)) {
                add_scaled(rest, scale, &row[done..]);
            }
        }
    }

    /// out[n, o] = bias[o] + sum over i (in order) of x[n, i] * weight[o, i].
    pub fn forward(d: &LinearDims, x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
        let (i_len, o_len) = (d.in_features, d.out_features);
        let weight_t = transpose(weight, o_len, i_len);
        let rows = out.par_chunks_mut(o_len).zip(x.par_chunks(i_len));
        let rows = rows.with_min_len(rows_per_task(i_len * o_len));
        rows.for_each(|(out, x)| sum_scaled_rows(out, Some(&bias[..o_len]), x, &weight_t));
    }

    /// grad_x[n, i] = sum over o (in order) of grad_out[n, o] * weight[o, i].
    pub fn backward_input(d: &LinearDims, weight: &[f32], grad_out: &[f32], grad_x: &mut [f32]) {
        let (i_len, o_len) = (d.in_features, d.out_features);
        let rows = grad_x.par_chunks_mut(i_len).zip(grad_out.par_chunks(o_len));
        let rows = rows.with_min_len(rows_per_task(i_len * o_len));
        rows.for_each(|(grad_x, grad_out)| sum_scaled_rows(grad_x, None, grad_out, weight));
    }

    /// grad_weight[o, i] = sum over n (in order) of grad_out[n, o] * x[n, i].
    pub fn backward_weight(d: &LinearDims, x: &[f32], grad_out: &[f32], grad_weight: &mut [f32]) {
        let (i_len, o_len) = (d.in_features, d.out_features);
        let grad_out_t = transpose(&grad_out[..d.batch * o_len], d.batch, o_len);
        let rows = grad_weight
            .par_chunks_mut(i_len)
            .zip(grad_out_t.par_chunks(d.batch))
            .with_min_len(rows_per_task(d.batch * i_len));
        rows.for_each(|(grad_row, grads)| sum_scaled_rows(grad_row, None, grads, x));
    }

    /// `[rows, cols]` -> `[cols, rows]`.
    fn transpose(matrix: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut out = vec![0.0; rows * cols];
        for (r, row) in matrix.chunks_exact(cols).enumerate() {
            for (c, &value) in row.iter().enumerate() {
                out[c * rows + r] = value;
            }
        }
        out
    }
}

impl LinearKernel for CpuBackend {
    fn linear_forward(
        &self,
        d: &LinearDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<Self::Storage> {
        Ok(computed(d.batch * d.out_features, |out| {
            cpu::forward(d, &x.borrow(), &weight.borrow(), &bias.borrow(), out)
        }))
    }

    fn linear_backward_input(
        &self,
        d: &LinearDims,
        weight: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        Ok(computed(d.batch * d.in_features, |grad_x| {
            cpu::backward_input(d, &weight.borrow(), &grad_out.borrow(), grad_x)
        }))
    }

    fn linear_backward_params(
        &self,
        d: &LinearDims,
        x: &Self::Storage,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let mut grad_weight = output(d.out_features * d.in_features);
        cpu::backward_weight(d, &x.borrow(), &grad_out.borrow(), &mut grad_weight);
        let grad_bias = reduce_rows(&grad_out.borrow(), d.batch, d.out_features);
        Ok((
            stored_into(into.weight, grad_weight),
            stored_into(into.bias, grad_bias),
        ))
    }
}

kernel_params! {
    pub(crate) struct LinearParams { batch: u32, in_features: u32, out_features: u32 }
}

const FORWARD: Entry = Entry::new("forward", &[1, 2, 3, 4]);
const BACKWARD_INPUT: Entry = Entry::new("backward_input", &[5, 6, 7]);
const BACKWARD_PARAMS: Entry = Entry::new("backward_params", &[8, 9, 10, 11]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/linear.wgsl"),
    includes: &[],
    params: LinearParams::FIELDS,
    entries: &[FORWARD, BACKWARD_INPUT, BACKWARD_PARAMS],
};

impl LinearKernel for GpuBackend {
    fn linear_forward(
        &self,
        d: &LinearDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<Self::Storage> {
        let len = d.batch * d.out_features;
        self.launch_into(
            &SHADER,
            &FORWARD,
            &d.params(),
            &[
                bound(x, d.batch * d.in_features),
                bound(weight, d.out_features * d.in_features),
                bound(bias, d.out_features),
            ],
            len,
        )
    }

    fn linear_backward_input(
        &self,
        d: &LinearDims,
        weight: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let len = d.batch * d.in_features;
        self.launch_into(
            &SHADER,
            &BACKWARD_INPUT,
            &d.params(),
            &[
                bound(weight, d.out_features * d.in_features),
                bound(grad_out, d.batch * d.out_features),
            ],
            len,
        )
    }

    fn linear_backward_params(
        &self,
        d: &LinearDims,
        x: &Self::Storage,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let weight_len = d.out_features * d.in_features;
        let grad_weight = self.output_into(OP, into.weight, weight_len)?;
        let grad_bias = self.output_into(OP, into.bias, d.out_features)?;
        let buffers = [
            bound(x, d.batch * d.in_features),
            bound(grad_out, d.batch * d.out_features),
            bound(&grad_weight, weight_len),
            bound(&grad_bias, d.out_features),
        ];
        let invocations = weight_len + d.out_features;
        self.launch(
            &SHADER,
            &BACKWARD_PARAMS,
            &d.params(),
            &buffers,
            invocations,
        )?;
        Ok((grad_weight, grad_bias))
    }
}
