//! conv2d: stride 1, "same" padding, with bias, for any odd square kernel, dilation and groups
//! (`ConvGeometry`).
//!
//! Shapes: x `[N, C, H, W]`, weight `[O, C / G, K, K]`, bias `[O]` -> out `[N, O, H, W]`, G the
//! groups (output channel o reads the input channels of its group, `o / (O / G)`), the taps
//! `D` apart for dilation D, padding `D (K - 1) / 2`.
//! Backward: the input gradient is a gather (a transposed convolution); the weight and bias
//! gradients are per-image partial sums added in image order, so they are deterministic (on
//! the GPU in one kernel: a workgroup per output, its invocations the images).

use crate::engine::backend::{Backend, GradInto, Memory};
use crate::engine::backends::cpu::{computed, output, stored_into, CpuBackend};
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend, WORKGROUP_SIZE};
use crate::engine::ops::reduce::cpu::reduce_rows;
use crate::engine::tape::{Backward, GradTargets, InputGrad, Tape, push_if_required};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

const OP: &str = "conv2d";

/// A convolution's geometry: a square odd `kernel`, its taps `dilation` apart (padding
/// `dilation * (kernel - 1) / 2` keeps the image's size), and `groups` (input and output
/// channels split into that many groups, each output reading only its group's inputs: as many
/// groups as channels is a depthwise convolution).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    pub kernel: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl ConvGeometry {
    /// A `kernel x kernel` convolution, dilation 1, one group.
    pub const fn plain(kernel: usize) -> Self {
        ConvGeometry {
            kernel,
            dilation: 1,
            groups: 1,
        }
    }

    /// The "same" padding: `dilation * (kernel - 1) / 2` on every side.
    pub fn pad(&self) -> usize {
        self.dilation * self.kernel.saturating_sub(1) / 2
    }

    /// Dilation 1 and one group (any kernel).
    pub fn is_plain(&self) -> bool {
        self.dilation == 1 && self.groups == 1
    }

    /// Checks the geometry against the weight's kernel and the channel counts: `None` when it
    /// fits, else what is wrong.
    fn fault(&self, kernel: usize, kernel_w: usize, channels: usize, out: usize) -> Option<String> {
        if kernel != kernel_w || kernel.is_multiple_of(2) {
            Some("kernel must be square and odd for same padding".to_string())
        } else if kernel != self.kernel {
            Some(format!(
                "the weight's {kernel}x{kernel} kernel is not the geometry's {}",
                self.kernel
            ))
        } else if self.dilation == 0 {
            Some("dilation must be at least 1".to_string())
        } else if self.groups == 0 {
            Some("groups must be at least 1".to_string())
        } else if !channels.is_multiple_of(self.groups) || !out.is_multiple_of(self.groups) {
            Some(format!(
                "{} groups must divide the {channels} input and {out} output channels",
                self.groups
            ))
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dDims {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
    pub geometry: ConvGeometry,
}

impl Conv2dDims {
    /// Checks that x `[N, C, H, W]`, weight `[O, C / G, K, K]` (K odd, the geometry's; G the
    /// geometry's groups, dividing C and O) and bias `[O]` fit together.
    pub fn from_shapes(
        x: &[usize],
        weight: &[usize],
        bias: &[usize],
        geometry: ConvGeometry,
    ) -> Result<Self> {
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
        if let Some(fault) = geometry.fault(kernel, kernel_w, in_channels, out_channels) {
            return Err(Error::shape(OP, format!("{fault}; got {}", shapes())));
        }
        let per_group = in_channels / geometry.groups;
        if weight_in != per_group {
            let expected = match geometry.groups {
                1 => format!("weight expects {weight_in} input channels, x has {in_channels}"),
                groups => format!(
                    "weight expects {weight_in} input channels per group, x has {in_channels} in \
                     {groups} groups"
                ),
            };
            return Err(Error::shape(OP, format!("{expected}; got {}", shapes())));
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
            geometry,
        })
    }

    pub fn kernel(&self) -> usize {
        self.geometry.kernel
    }

    pub fn dilation(&self) -> usize {
        self.geometry.dilation
    }

    pub fn groups(&self) -> usize {
        self.geometry.groups
    }

    pub fn pad(&self) -> usize {
        self.geometry.pad()
    }

    /// Input channels each output reads: the weight's second axis, `C / G`.
    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups()
    }

    /// Output channels of each group, `O / G`.
    pub fn out_per_group(&self) -> usize {
        self.out_channels / self.groups()
    }

    /// The weight's values, `[O, C / G, K, K]`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_per_group() * self.kernel() * self.kernel()
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

    fn params(&self) -> Conv2dParams {
        Conv2dParams {
            batch: self.batch as u32,
            in_channels: self.in_channels as u32,
            out_channels: self.out_channels as u32,
            height: self.height as u32,
            width: self.width as u32,
            kernel: self.kernel() as u32,
            dilation: self.dilation() as u32,
            groups: self.groups() as u32,
            weight_channels: self.in_per_group() as u32,
        }
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
    /// `(grad_weight, grad_bias)`, written `into` the slots given.
    fn conv2d_backward_params(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
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
    /// A plain conv2d: the weight's kernel, dilation 1, one group.
    pub fn conv2d(&self, x: &Tensor<B>, weight: &Tensor<B>, bias: &Tensor<B>) -> Result<Tensor<B>> {
        let kernel = weight.shape().get(2).copied().unwrap_or(0);
        self.conv2d_with(x, weight, bias, ConvGeometry::plain(kernel))
    }

    /// conv2d with the given geometry (dilation, groups): weight `[O, C / groups, K, K]`.
    pub fn conv2d_with(
        &self,
        x: &Tensor<B>,
        weight: &Tensor<B>,
        bias: &Tensor<B>,
        geometry: ConvGeometry,
    ) -> Result<Tensor<B>> {
        let dims = Conv2dDims::from_shapes(x.shape(), weight.shape(), bias.shape(), geometry)?;
        let out =
            self.backend()
                .conv2d_forward(&dims, x.storage(), weight.storage(), bias.storage())?;
        let out = Tensor::from_storage(out, &dims.output_shape(), self.tracks(&[x, weight, bias]));
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
        let grad_x = backend.conv2d_backward_input(dims, weight.storage(), grad_out.storage())?;
        push_if_required(&mut grads, x, grad_x);
    }
    if weight.requires_grad() || bias.requires_grad() {
        let into = targets.of(weight, bias);
        let (grad_weight, grad_bias) =
            backend.conv2d_backward_params(dims, x.storage(), grad_out.storage(), into)?;
        push_if_required(&mut grads, weight, grad_weight);
        push_if_required(&mut grads, bias, grad_bias);
    }
    Ok(grads)
}
}

pub mod cpu;

impl Conv2dKernel for CpuBackend {
    fn conv2d_forward(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<Self::Storage> {
        Ok(computed(d.output_len(), |out| {
            cpu::forward(d, &x.borrow(), &weight.borrow(), &bias.borrow(), out)
        }))
    }

    fn conv2d_backward_input(
        &self,
        d: &Conv2dDims,
        weight: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        Ok(computed(d.input_len(), |grad_x| {
            cpu::backward_input(d, &weight.borrow(), &grad_out.borrow(), grad_x)
        }))
    }

    fn conv2d_backward_params(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let mut weight_partials = output(d.batch * d.weight_len());
        let mut bias_partials = output(d.batch * d.out_channels);
        cpu::param_partials(
            d,
            &x.borrow(),
            &grad_out.borrow(),
            &mut weight_partials,
            &mut bias_partials,
        );
        let grad_weight = reduce_rows(&weight_partials, d.batch, d.weight_len());
        let grad_bias = reduce_rows(&bias_partials, d.batch, d.out_channels);
        Ok((
            stored_into(into.weight, grad_weight),
            stored_into(into.bias, grad_bias),
        ))
    }
}

/// Channels one invocation of the conv2d kernels handles (`LANES` in shaders/conv2d.wgsl).
const SHADER_LANES: usize = 8;

kernel_params! {
    pub(crate) struct Conv2dParams {
        batch: u32, in_channels: u32, out_channels: u32, height: u32, width: u32, kernel: u32,
        dilation: u32, groups: u32, weight_channels: u32,
    }
}

const FORWARD: Entry = Entry::new("forward", &[1, 2, 3, 4]);
const BACKWARD_INPUT: Entry = Entry::new("backward_input", &[5, 6, 7]);
const PARAM_GRADS: Entry = Entry::new("param_grads", &[8, 9, 10, 11]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../../shaders/conv2d.wgsl"),
    includes: &[
        include_str!("../../../../shaders/include/conv_at.wgsl"),
        include_str!("../../../../shaders/include/grad_input_at.wgsl"),
        include_str!("../../../../shaders/include/param_grads.wgsl"),
    ],
    params: Conv2dParams::FIELDS,
    entries: &[FORWARD, BACKWARD_INPUT, PARAM_GRADS],
};

impl Conv2dKernel for GpuBackend {
    fn conv2d_forward(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Result<Self::Storage> {
        // One invocation per pixel and block of output channels (see the shader).
        let invocations = d.batch * d.out_channels.div_ceil(SHADER_LANES) * d.height * d.width;
        let inputs = [
            bound(x, d.input_len()),
            bound(weight, d.weight_len()),
            bound(bias, d.out_channels),
        ];
        self.launch_with_output(
            &SHADER,
            &FORWARD,
            &d.params(),
            &inputs,
            d.output_len(),
            invocations,
        )
    }

    fn conv2d_backward_input(
        &self,
        d: &Conv2dDims,
        weight: &Self::Storage,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let invocations = d.batch * d.in_channels.div_ceil(SHADER_LANES) * d.height * d.width;
        let inputs = [
            bound(weight, d.weight_len()),
            bound(grad_out, d.output_len()),
        ];
        self.launch_with_output(
            &SHADER,
            &BACKWARD_INPUT,
            &d.params(),
            &inputs,
            d.input_len(),
            invocations,
        )
    }

    fn conv2d_backward_params(
        &self,
        d: &Conv2dDims,
        x: &Self::Storage,
        grad_out: &Self::Storage,
        into: GradInto<'_, Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let grad_weight = self.output_into(OP, into.weight, d.weight_len())?;
        let grad_bias = self.output_into(OP, into.bias, d.out_channels)?;
        // Per block of 8 outputs, a workgroup per item (each weight tap, then the bias).
        let items = d.in_per_group() * d.kernel() * d.kernel() + 1;
        let groups = d.out_channels.div_ceil(SHADER_LANES) * items;
        let buffers = [
            bound(x, d.input_len()),
            bound(grad_out, d.output_len()),
            bound(&grad_weight, d.weight_len()),
            bound(&grad_bias, d.out_channels),
        ];
        let invocations = groups * WORKGROUP_SIZE as usize;
        self.launch(&SHADER, &PARAM_GRADS, &d.params(), &buffers, invocations)?;
        Ok((grad_weight, grad_bias))
    }
}
