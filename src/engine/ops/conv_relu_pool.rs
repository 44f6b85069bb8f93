//! conv_relu_pool: `maxpool2(relu(conv2d(x, weight, bias)))` as one op, the fused block.
//!
//! Shapes: x `[N, C, H, W]`, weight `[O, CW, K, K]` (K odd), bias `[O]` -> out
//! `[N, O, H/2, W/2]`. x holds channels `first_channel .. first_channel + C` of the weight's
//! CW: all of them for a block's one active convolution (Sum), one slot for a Concat block's
//! 1x1 mix when one choice is active (the other slots of its input would be zeros). The
//! convolution has conv2d's `ConvGeometry` (dilation, groups); a grouped one's weight is
//! `[O, C / G, K, K]`, all of it read (`first_channel` 0).
//!
//! The forward keeps, per window, its route: the flat index into the convolution's output of
//! the window's first maximum after ReLU, or `NO_ROUTE` where that maximum is not positive
//! (what maxpool2's argmax and relu's mask hold between them). The backward recomputes the
//! convolution's output gradient from it where it is read, so on the GPU a block's forward is
//! one dispatch and its backward two (input, parameters) instead of seven. The CPU twin runs
//! the three ops' CPU kernels in turn, so on the CPU the fused op gives the unfused chain's
//! bits.

use std::borrow::Cow;

use crate::engine::backend::{Backend, GradInto, Memory};
use crate::engine::backends::cpu::{computed, shared, stored_into, CpuBackend, CpuStorage};
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend, WORKGROUP_SIZE};
use crate::engine::ops::conv2d::{self, Conv2dDims, Conv2dKernel, ConvGeometry};
use crate::engine::ops::maxpool2::{self, Pool2Dims};
use crate::engine::ops::relu;
use crate::engine::tape::{Backward, GradTargets, InputGrad, Tape, push_if_required};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

const OP: &str = "conv_relu_pool";

/// A window whose maximum after ReLU is not positive: its gradient goes nowhere.
pub const NO_ROUTE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvReluPoolDims {
    /// The convolution over x's channels (`in_channels` is x's C).
    pub conv: Conv2dDims,
    /// The weight's input channels, CW.
    pub weight_channels: usize,
    /// Where x's channels start among them.
    pub first_channel: usize,
}

impl ConvReluPoolDims {
    /// Checks x `[N, C, H, W]` (at least 2x2), weight `[O, CW, K, K]` with x's C channels at
    /// `first_channel` of CW, and bias `[O]`, for a convolution of the given geometry. With
    /// groups (G > 1) the weight is the whole grouped weight, `[O, C / G, K, K]`, and
    /// `first_channel` 0: a slot of a wider weight is a plain 1x1 mix's.
    pub fn from_shapes(
        x: &[usize],
        weight: &[usize],
        bias: &[usize],
        first_channel: usize,
        geometry: ConvGeometry,
    ) -> Result<Self> {
        let shapes = || format!("x {x:?}, weight {weight:?}, bias {bias:?}");
        let (&[batch, channels, height, width], &[out, weight_channels, kernel, kernel_w]) =
            (x, weight)
        else {
            let detail = format!(
                "x must be [N, C, H, W], weight [O, CW, K, K]; got {}",
                shapes()
            );
            return Err(Error::shape(OP, detail));
        };
        let groups = geometry.groups;
        let fault = if groups <= 1 && first_channel + channels > weight_channels {
            Some(format!(
                "x's {channels} channels from {first_channel} exceed the weight's {weight_channels}"
            ))
        } else if kernel != kernel_w || kernel % 2 == 0 {
            Some("the kernel must be square and odd for same padding".to_string())
        } else if kernel != geometry.kernel {
            Some(format!(
                "the weight's {kernel}x{kernel} kernel is not the geometry's {}",
                geometry.kernel
            ))
        } else if geometry.dilation == 0 || groups == 0 {
            Some("dilation and groups must be at least 1".to_string())
        } else if groups > 1 && (!channels.is_multiple_of(groups) || !out.is_multiple_of(groups)) {
            Some(format!(
                "{groups} groups must divide the {channels} input and {out} output channels"
            ))
        } else if groups > 1 && (first_channel != 0 || weight_channels != channels / groups) {
            Some(format!(
                "a grouped weight must be [O, C / {groups}, K, K] with x from channel 0"
            ))
        } else if bias != [out] {
            Some(format!("bias must be [{out}]"))
        } else if height < 2 || width < 2 {
            Some("x must be at least 2x2 to pool".to_string())
        } else {
            None
        };
        if let Some(fault) = fault {
            return Err(Error::shape(OP, format!("{fault}; got {}", shapes())));
        }
        let conv = Conv2dDims {
            batch,
            in_channels: channels,
            out_channels: out,
            height,
            width,
            geometry,
        };
        Ok(ConvReluPoolDims {
            conv,
            weight_channels,
            first_channel,
        })
    }

    pub fn pool(&self) -> Pool2Dims {
        let c = &self.conv;
        Pool2Dims {
            batch: c.batch,
            channels: c.out_channels,
            height: c.height,
            width: c.width,
        }
    }

    pub fn output_len(&self) -> usize {
        self.pool().output_len()
    }

    pub fn output_shape(&self) -> [usize; 4] {
        self.pool().output_shape()
    }

    /// Values of the whole weight, `[O, CW, K, K]`.
    pub fn weight_len(&self) -> usize {
        let c = &self.conv;
        c.out_channels * self.weight_channels * c.kernel() * c.kernel()
    }

    /// Whether x reaches the whole weight (a Sum block's convolution, grouped or not), not one
    /// slot of a wider one.
    fn reads_whole_weight(&self) -> bool {
        self.weight_channels == self.conv.in_per_group()
    }

    /// The weight's part that reads x, `[O, C / G, K, K]` (all of it when x has every channel).
    pub fn weight_for_x<'w>(&self, weight: &'w [f32]) -> Cow<'w, [f32]> {
        let c = &self.conv;
        if self.reads_whole_weight() {
            return Cow::Borrowed(&weight[..self.weight_len()]);
        }
        let taps = c.kernel() * c.kernel();
        let (row, part) = (self.weight_channels * taps, c.in_channels * taps);
        let start = self.first_channel * taps;
        let rows = weight.chunks_exact(row).take(c.out_channels);
        Cow::Owned(
            rows.flat_map(|r| &r[start..start + part])
                .copied()
                .collect(),
        )
    }

    /// A gradient of `weight_for_x`'s shape placed in the whole weight's, zeros elsewhere.
    pub fn weight_grad_from_x(&self, grad: Vec<f32>) -> Vec<f32> {
        let c = &self.conv;
        if self.reads_whole_weight() {
            return grad;
        }
        let taps = c.kernel() * c.kernel();
        let (row, part) = (self.weight_channels * taps, c.in_channels * taps);
        let start = self.first_channel * taps;
        let mut full = vec![0.0; self.weight_len()];
        for (full, grad) in full.chunks_exact_mut(row).zip(grad.chunks_exact(part)) {
            full[start..start + part].copy_from_slice(grad);
        }
        full
    }

    fn params(&self) -> ConvReluPoolParams {
        let c = &self.conv;
        ConvReluPoolParams {
            batch: c.batch as u32,
            in_channels: c.in_channels as u32,
            out_channels: c.out_channels as u32,
            height: c.height as u32,
            width: c.width as u32,
            kernel: c.kernel() as u32,
            dilation: c.dilation() as u32,
            groups: c.groups() as u32,
            weight_channels: self.weight_channels as u32,
            first_channel: self.first_channel as u32,
        }
    }
}

/// The kernels a backend provides for conv_relu_pool.
pub trait ConvReluPoolKernel: Memory {
    /// `(out, route)`.
    fn conv_relu_pool_forward(
        &self,
        d: &ConvReluPoolDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Indices)>;
    fn conv_relu_pool_backward_input(
        &self,
        d: &ConvReluPoolDims,
        weight: &Self::Storage,
        route: &Self::Indices,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage>;
    /// `(grad_weight, grad_bias)`, the weight's whole shape, written `into` the slots given.
    fn conv_relu_pool_backward_params(
        &self,
        d: &ConvReluPoolDims,
        x: &Self::Storage,
        route: &Self::Indices,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)>;

    /// The backward pass: x's gradient when `input`, the parameters' (written `into` their
    /// slots) when `params` is given; the two kernels above in turn. A backend that shares
    /// work between them (the CPU: the convolution's output gradient, built once) overrides it.
    fn conv_relu_pool_backward(
        &self,
        d: &ConvReluPoolDims,
        of: BackwardInputs<'_, Self>,
        input: bool,
        params: Option<GradInto<'_, Self::Storage>>,
    ) -> Result<Grads<Self::Storage>> {
        let BackwardInputs {
            weight,
            route,
            grad_out,
            ..
        } = of;
        let x = match input {
            true => Some(self.conv_relu_pool_backward_input(d, weight, route, grad_out)?),
            false => None,
        };
        let params = params
            .map(|into| self.conv_relu_pool_backward_params(d, of.x, route, grad_out, into))
            .transpose()?;
        Ok(Grads { x, params })
    }
}

/// What the backward pass reads: the forward's input, weight and routes, and the gradient of
/// its output.
pub struct BackwardInputs<'a, M: Memory> {
    pub x: &'a M::Storage,
    pub weight: &'a M::Storage,
    pub route: &'a M::Indices,
    pub grad_out: &'a M::Storage,
}

impl<M: Memory> Clone for BackwardInputs<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: Memory> Copy for BackwardInputs<'_, M> {}

/// The gradients a backward pass asked for: x's, and `(weight, bias)`.
pub struct Grads<S> {
    pub x: Option<S>,
    pub params: Option<(S, S)>,
}

pub(crate) struct Saved<B: Backend> {
    dims: ConvReluPoolDims,
    x: Tensor<B>,
    weight: Tensor<B>,
    bias: Tensor<B>,
    route: B::Indices,
}

impl<B: Backend> Tape<'_, B> {
    /// `maxpool2(relu(conv2d(x, w, b)))`, where `w` is `weight`'s input channels
    /// `first_channel ..` as many as x has (see the module); a plain convolution (the
    /// weight's kernel, dilation 1, one group).
    pub fn conv_relu_pool(
        &self,
        x: &Tensor<B>,
        weight: &Tensor<B>,
        bias: &Tensor<B>,
        first_channel: usize,
    ) -> Result<Tensor<B>> {
        let kernel = weight.shape().get(2).copied().unwrap_or(0);
        let geometry = ConvGeometry::plain(kernel);
        self.conv_relu_pool_with(x, weight, bias, first_channel, geometry)
    }

    /// `conv_relu_pool` over a convolution of the given geometry (dilation, groups; with
    /// groups the weight is `[O, C / groups, K, K]` and `first_channel` 0).
    pub fn conv_relu_pool_with(
        &self,
        x: &Tensor<B>,
        weight: &Tensor<B>,
        bias: &Tensor<B>,
        first_channel: usize,
        geometry: ConvGeometry,
    ) -> Result<Tensor<B>> {
        let dims = ConvReluPoolDims::from_shapes(
            x.shape(),
            weight.shape(),
            bias.shape(),
            first_channel,
            geometry,
        )?;
        let (out, route) = self.backend().conv_relu_pool_forward(
            &dims,
            x.storage(),
            weight.storage(),
            bias.storage(),
        )?;
        let out = Tensor::from_storage(out, &dims.output_shape(), self.tracks(&[x, weight, bias]));
        self.record(&out, || {
            Saved {
                dims,
                x: x.clone(),
                weight: weight.clone(),
                bias: bias.clone(),
                route,
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
        route,
    } = saved;
    let of = BackwardInputs {
        x: x.storage(),
        weight: weight.storage(),
        route,
        grad_out: grad_out.storage(),
    };
    let params = (weight.requires_grad() || bias.requires_grad()).then(|| targets.of(weight, bias));
    let asked = backend.conv_relu_pool_backward(dims, of, x.requires_grad(), params)?;
    let mut grads = Vec::new();
    if let Some(grad_x) = asked.x {
        push_if_required(&mut grads, x, grad_x);
    }
    if let Some((grad_weight, grad_bias)) = asked.params {
        push_if_required(&mut grads, weight, grad_weight);
        push_if_required(&mut grads, bias, grad_bias);
    }
    Ok(grads)
}
}

pub mod cpu {
    use super::{ConvReluPoolDims, NO_ROUTE};
    use rayon::prelude::*;

    use crate::engine::backends::cpu::{output, storage, CpuStorage};

    /// max-pool's argmax made the windows' routes, in place: a window whose maximum (after
    /// ReLU) is not positive (nor a NaN's) routes nowhere, as on the GPU.
    pub fn route(pooled: &[f32], argmax: &mut [u32]) {
        for (at, &value) in argmax.iter_mut().zip(pooled) {
            if value > 0.0 {
                continue;
            }
            *at = NO_ROUTE;
        }
    }

    /// The convolution's output gradient, `[N, O, H, W]`: each window's gradient at its route.
    /// Planes in parallel.
    pub fn routed_grad(d: &ConvReluPoolDims, route: &[u32], grad_out: &[f32]) -> CpuStorage {
        let c = &d.conv;
        let (plane, windows) = (
            c.height * c.width,
            d.pool().out_height() * d.pool().out_width(),
        );
        let mut grad = output(c.output_len());
        let planes = grad.par_chunks_mut(plane).zip(route.par_chunks(windows));
        let planes = planes.zip(grad_out.par_chunks(windows)).enumerate();
        planes.for_each(|(p, ((grad, route), grad_out))| {
            grad.fill(0.0);
            let base = (p * plane) as u32;
            for (&at, &g) in route.iter().zip(grad_out).filter(|(&at, _)| at != NO_ROUTE) {
                grad[(at - base) as usize] = g;
            }
        });
        storage(grad)
    }
}

impl ConvReluPoolKernel for CpuBackend {
    fn conv_relu_pool_forward(
        &self,
        d: &ConvReluPoolDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Indices)> {
        // Pooled buffers (`computed`), as the three ops' own outputs would be.
        let weight = weight.borrow();
        let conv = computed(d.conv.output_len(), |conv| {
            let weight = d.weight_for_x(&weight);
            conv2d::cpu::forward(&d.conv, &x.borrow(), &weight, &bias.borrow(), conv)
        });
        let activated = computed(d.conv.output_len(), |activated| {
            relu::cpu::forward(&conv.borrow(), activated)
        });
        let mut argmax = vec![0; d.output_len()];
        let out = computed(d.output_len(), |out| {
            maxpool2::cpu::forward(&d.pool(), &activated.borrow(), out, &mut argmax)
        });
        cpu::route(&out.borrow(), &mut argmax);
        Ok((out, shared(argmax)))
    }

    fn conv_relu_pool_backward_input(
        &self,
        d: &ConvReluPoolDims,
        weight: &Self::Storage,
        route: &Self::Indices,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let grad_conv = cpu::routed_grad(d, &route.borrow(), &grad_out.borrow());
        Ok(self.input_grad(d, weight, &grad_conv))
    }

    fn conv_relu_pool_backward_params(
        &self,
        d: &ConvReluPoolDims,
        x: &Self::Storage,
        route: &Self::Indices,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let grad_conv = cpu::routed_grad(d, &route.borrow(), &grad_out.borrow());
        self.param_grads(d, x, &grad_conv, into)
    }

    fn conv_relu_pool_backward(
        &self,
        d: &ConvReluPoolDims,
        of: BackwardInputs<'_, Self>,
        input: bool,
        params: Option<GradInto<'_, Self::Storage>>,
    ) -> Result<Grads<Self::Storage>> {
        let grad_conv = cpu::routed_grad(d, &of.route.borrow(), &of.grad_out.borrow());
        Ok(Grads {
            x: input.then(|| self.input_grad(d, of.weight, &grad_conv)),
            params: params
                .map(|into| self.param_grads(d, of.x, &grad_conv, into))
                .transpose()?,
        })
    }
}

/// The CPU twin's backward: conv2d's kernels on the routed gradient of the conv's output.
impl CpuBackend {
    fn input_grad(
        &self,
        d: &ConvReluPoolDims,
        weight: &CpuStorage,
        grad_conv: &CpuStorage,
    ) -> CpuStorage {
        let weight = weight.borrow();
        computed(d.conv.input_len(), |grad_x| {
            let weight = d.weight_for_x(&weight);
            conv2d::cpu::backward_input(&d.conv, &weight, &grad_conv.borrow(), grad_x)
        })
    }

    /// A gradient for the part of the weight x reaches is placed in the whole weight's.
    fn param_grads(
        &self,
        d: &ConvReluPoolDims,
        x: &CpuStorage,
        grad_conv: &CpuStorage,
        into: GradInto<'_, CpuStorage>,
    ) -> Result<(CpuStorage, CpuStorage)> {
        let part = d.weight_channels != d.conv.in_channels;
        let conv_into = GradInto {
            weight: into.weight.filter(|_| !part),
            bias: into.bias,
        };
        let (grad_weight, grad_bias) =
            self.conv2d_backward_params(&d.conv, x, grad_conv, conv_into)?;
        if !part {
            return Ok((grad_weight, grad_bias));
        }
        let whole = d.weight_grad_from_x(grad_weight.borrow().to_vec());
        Ok((stored_into(into.weight, whole), grad_bias))
    }
}

/// Channels one invocation handles (`LANES` in shaders/conv_relu_pool.wgsl).
const SHADER_LANES: usize = 8;

kernel_params! {
    pub(crate) struct ConvReluPoolParams {
        batch: u32, in_channels: u32, out_channels: u32, height: u32, width: u32, kernel: u32,
        dilation: u32, groups: u32, weight_channels: u32, first_channel: u32,
    }
}

const FORWARD: Entry = Entry::new("forward", &[1, 2, 3, 4, 5]);
const BACKWARD_INPUT: Entry = Entry::new("backward_input", &[8, 6, 7, 9]);
const PARAM_GRADS: Entry = Entry::new("param_grads", &[10, 6, 7, 11, 12]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/conv_relu_pool.wgsl"),
    includes: &[
        include_str!("../../../shaders/include/conv_at.wgsl"),
        include_str!("../../../shaders/include/grad_input_at.wgsl"),
        include_str!("../../../shaders/include/param_grads.wgsl"),
    ],
    params: ConvReluPoolParams::FIELDS,
    entries: &[FORWARD, BACKWARD_INPUT, PARAM_GRADS],
};

impl ConvReluPoolKernel for GpuBackend {
    fn conv_relu_pool_forward(
        &self,
        d: &ConvReluPoolDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Indices)> {
        let c = &d.conv;
        let len = d.output_len();
        let (out, route) = (self.alloc_values(OP, len)?, self.alloc_values(OP, len)?);
        let buffers = [
            bound(x, c.input_len()),
            bound(weight, d.weight_len()),
            bound(bias, c.out_channels),
            bound(&out, len),
            bound(&route, len),
        ];
        // One invocation per window and block of output channels (see the shader).
        let pool = d.pool();
        let windows = pool.out_height() * pool.out_width();
        let invocations = c.batch * c.out_channels.div_ceil(SHADER_LANES) * windows;
        self.launch(&SHADER, &FORWARD, &d.params(), &buffers, invocations)?;
        Ok((out, route))
    }

    fn conv_relu_pool_backward_input(
        &self,
        d: &ConvReluPoolDims,
        weight: &Self::Storage,
        route: &Self::Indices,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let c = &d.conv;
        let inputs = [
            bound(weight, d.weight_len()),
            bound(route, d.output_len()),
            bound(grad_out, d.output_len()),
        ];
        let invocations = c.batch * c.in_channels.div_ceil(SHADER_LANES) * c.height * c.width;
        self.launch_with_output(
            &SHADER,
            &BACKWARD_INPUT,
            &d.params(),
            &inputs,
            c.input_len(),
            invocations,
        )
    }

    fn conv_relu_pool_backward_params(
        &self,
        d: &ConvReluPoolDims,
        x: &Self::Storage,
        route: &Self::Indices,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let c = &d.conv;
        let grad_weight = self.output_into(OP, into.weight, d.weight_len())?;
        let grad_bias = self.output_into(OP, into.bias, c.out_channels)?;
        let buffers = [
            bound(x, c.input_len()),
            bound(route, d.output_len()),
            bound(grad_out, d.output_len()),
            bound(&grad_weight, d.weight_len()),
            bound(&grad_bias, c.out_channels),
        ];
        // Per block of 8 outputs, a workgroup per item (each weight tap, then the bias).
        let items = d.weight_channels * c.kernel() * c.kernel() + 1;
        let groups = c.out_channels.div_ceil(SHADER_LANES) * items;
        let invocations = groups * WORKGROUP_SIZE as usize;
        self.launch(&SHADER, &PARAM_GRADS, &d.params(), &buffers, invocations)?;
        Ok((grad_weight, grad_bias))
    }
}
