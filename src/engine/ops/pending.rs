//! Placeholders for the conv geometry and the stride-1 pool while they are built elsewhere;
//! replaced by `conv2d` and `pool_s1` when they land.

use crate::engine::backend::Backend;
use crate::engine::tape::Tape;
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    pub kernel: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl ConvGeometry {
    pub const fn plain(kernel: usize) -> Self {
        ConvGeometry {
            kernel,
            dilation: 1,
            groups: 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    Avg,
}

impl<B: Backend> Tape<'_, B> {
    pub fn conv2d_with(
        &self,
        x: &Tensor<B>,
        weight: &Tensor<B>,
        bias: &Tensor<B>,
        geometry: ConvGeometry,
    ) -> Result<Tensor<B>> {
        if geometry != ConvGeometry::plain(geometry.kernel) {
            return Err(Error::shape("conv2d", "pending".to_string()));
        }
        self.conv2d(x, weight, bias)
    }

    pub fn conv_relu_pool_with(
        &self,
        x: &Tensor<B>,
        weight: &Tensor<B>,
        bias: &Tensor<B>,
        first_channel: usize,
        geometry: ConvGeometry,
    ) -> Result<Tensor<B>> {
        if geometry != ConvGeometry::plain(geometry.kernel) {
            return Err(Error::shape("conv_relu_pool", "pending".to_string()));
        }
        self.conv_relu_pool(x, weight, bias, first_channel)
    }

    pub fn pool_s1(&self, _x: &Tensor<B>, _kind: PoolKind, _kernel: usize) -> Result<Tensor<B>> {
        Err(Error::shape("pool_s1", "pending".to_string()))
    }
}
