//! reshape: the same values under another shape (row-major, so free); the gradient is reshaped
//! back. The SuperNet uses it to flatten `[N, C, H, W]` to `[N, C*H*W]` for `fc1`.

use crate::engine::backend::Backend;
use crate::engine::tape::{Backward, GradTargets, InputGrad, Tape};
use crate::engine::tensor::{Tensor, TensorId};
use crate::error::{Error, Result};

pub(crate) struct Saved {
    input: TensorId,
    input_shape: Vec<usize>,
}

impl<B: Backend> Tape<'_, B> {
    pub fn reshape(&self, x: &Tensor<B>, shape: &[usize]) -> Result<Tensor<B>> {
        if shape.iter().product::<usize>() != x.numel() {
            return Err(Error::shape(
                "reshape",
                format!("cannot view {:?} as {shape:?}", x.shape()),
            ));
        }
        let out = x.with_shape(shape);
        self.record(&out, || {
            Saved {
                input: x.id(),
                input_shape: x.shape().to_vec(),
            }
        });
        Ok(out)
    }

    /// `[N, ...]` -> `[N, product of the rest]`.
    pub fn flatten(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        let batch = x.shape().first().copied().unwrap_or(1);
        self.reshape(x, &[batch, x.numel() / batch.max(1)])
    }
}

impl<B: Backend> Backward<B> for Saved {
    fn backward(&self, _backend: &B, _targets: &GradTargets, grad_out: &Tensor<B>) -> Result<Vec<InputGrad<B>>> {
        let saved = self;
    Ok(vec![(saved.input, grad_out.with_shape(&saved.input_shape))])
}
}
