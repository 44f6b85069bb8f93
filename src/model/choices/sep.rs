//! `sepK`: a depthwise K x K conv (groups = C_in, padding K/2, bias), then a pointwise 1x1 conv
//! C_in -> C (bias), nothing between; `sep{K}.depthwise.*`, `sep{K}.pointwise.*`.

use super::{odd_size_after, Choice, Forward, Kind, ParamShape};
use crate::engine::{Backend, ConvGeometry, Tape, Tensor};
use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sep {
    pub kernel: usize,
}

const PREFIX: &str = "sep";

pub(super) fn parse(token: &str) -> Option<std::result::Result<Choice, String>> {
    let kernel = odd_size_after(PREFIX, token)?;
    Some(kernel.map(|kernel| Choice::Sep(Sep { kernel })))
}

pub(super) fn from_module(module: &str) -> Option<Choice> {
    parse(module)?.ok()
}

impl Sep {
    /// The depthwise conv, its output `[N, C_in, H, W]`.
    fn depthwise<B: Backend>(
        &self,
        tape: &Tape<'_, B>,
        x: &Tensor<B>,
        params: &[Tensor<B>],
    ) -> Result<Tensor<B>> {
        let geometry = ConvGeometry {
            kernel: self.kernel,
            dilation: 1,
            groups: params[0].shape()[0],
        };
        tape.conv2d_with(x, &params[0], &params[1], geometry)
    }
}

impl Kind for Sep {
    fn token(&self) -> String {
        format!("{PREFIX}{}", self.kernel)
    }

    fn label(&self) -> String {
        format!("sep {0}x{0}", self.kernel)
    }

    fn receptive_field(&self) -> usize {
        self.kernel
    }

    fn module(&self) -> Option<String> {
        Some(self.token())
    }

    fn parameters(&self, in_channels: usize, channels: usize) -> Vec<ParamShape> {
        let k = self.kernel;
        vec![
            ParamShape::new("depthwise.weight", vec![in_channels, 1, k, k]),
            ParamShape::new("depthwise.bias", vec![in_channels]),
            ParamShape::new("pointwise.weight", vec![channels, in_channels, 1, 1]),
            ParamShape::new("pointwise.bias", vec![channels]),
        ]
    }

    fn output_parameter(&self) -> Option<&'static str> {
        Some("pointwise.weight")
    }

    fn exported_module(&self) -> Option<&'static str> {
        Some(PREFIX)
    }

    fn operations(&self, in_channels: usize, channels: usize, side: usize) -> f64 {
        let pixels = side * side;
        (in_channels * self.kernel * self.kernel * pixels + channels * in_channels * pixels) as f64
    }

    fn hidden_activations(&self, in_channels: usize, side: usize) -> f64 {
        (in_channels * side * side) as f64
    }
}

impl Forward for Sep {
    fn forward<B: Backend>(
        &self,
        tape: &Tape<'_, B>,
        x: &Tensor<B>,
        params: &[Tensor<B>],
    ) -> Result<Tensor<B>> {
        let depthwise = self.depthwise(tape, x, params)?;
        tape.conv2d(&depthwise, &params[2], &params[3])
    }

    /// The pointwise conv fused with ReLU and the pool.
    fn forward_relu_pool<B: Backend>(
        &self,
        tape: &Tape<'_, B>,
        x: &Tensor<B>,
        params: &[Tensor<B>],
    ) -> Result<Option<Tensor<B>>> {
        let depthwise = self.depthwise(tape, x, params)?;
        let fused = tape.conv_relu_pool(&depthwise, &params[2], &params[3], 0)?;
        Ok(Some(fused))
    }
}
