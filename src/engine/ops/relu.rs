//! relu: `max(x, 0)`; the gradient passes where the output is positive (as PyTorch's
//! `threshold_backward` on the result).

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::{computed, CpuBackend};
use crate::engine::backends::gpu::kernels::{Entry, KernelParams, LenParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend};
use crate::engine::tape::{Backward, GradTargets, InputGrad, Tape};
use crate::engine::tensor::{Tensor, TensorId};
use crate::error::Result;

const OP: &str = "relu";

pub trait ReluKernel: Memory {
    fn relu_forward(&self, x: &Self::Storage, len: usize) -> Result<Self::Storage>;
    fn relu_backward(
        &self,
        out: &Self::Storage,
        grad_out: &Self::Storage,
        len: usize,
    ) -> Result<Self::Storage>;
}

pub(crate) struct Saved<B: Backend> {
    input: TensorId,
    out: Tensor<B>,
}

impl<B: Backend> Tape<'_, B> {
    pub fn relu(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        let out = self.backend().relu_forward(x.storage(), x.numel())?;
        let out = Tensor::from_storage(out, x.shape(), self.tracks(&[x]));
        self.record(&out, || {
            Saved {
                input: x.id(),
                out: out.clone(),
            }
        });
        Ok(out)
    }
}

impl<B: Backend> Backward<B> for Saved<B> {
    fn backward(&self, backend: &B, _targets: &GradTargets, grad_out: &Tensor<B>) -> Result<Vec<InputGrad<B>>> {
        let saved = self;
    let out = &saved.out;
    let grad_x = backend.relu_backward(out.storage(), grad_out.storage(), out.numel())?;
    Ok(vec![(
        saved.input,
        Tensor::from_storage(grad_x, out.shape(), false),
    )])
}
}

pub mod cpu {
    use rayon::prelude::*;

    use crate::engine::backends::cpu::{vectorised_fn, ELEMENTWISE_CHUNK};

    /// `out = max(x, 0)`, chunks in parallel.
    pub fn forward(x: &[f32], out: &mut [f32]) {
        out.par_chunks_mut(ELEMENTWISE_CHUNK)
            .zip(x.par_chunks(ELEMENTWISE_CHUNK))
            .for_each(|(out, x)| forward_chunk(x, out));
    }

    /// `grad_x = grad_out` where the output is positive, else 0; chunks in parallel.
    pub fn backward(out: &[f32], grad_out: &[f32], grad_x: &mut [f32]) {
        grad_x
            .par_chunks_mut(ELEMENTWISE_CHUNK)
            .zip(out.par_chunks(ELEMENTWISE_CHUNK))
            .zip(grad_out.par_chunks(ELEMENTWISE_CHUNK))
            .for_each(|((grad_x, out), grad_out)| backward_chunk(out, grad_out, grad_x));
    }

    vectorised_fn! {
        fn forward_chunk(x: &[f32], out: &mut [f32]) {
            for (out, x) in out.iter_mut().zip(x) {
                *out = x.max(0.0);
            }
        }
    }

    vectorised_fn! {
        fn backward_chunk(out: &[f32], grad_out: &[f32], grad_x: &mut [f32]) {
            for ((grad_x, out), grad_out) in grad_x.iter_mut().zip(out).zip(grad_out) {
                *grad_x = if *out > 0.0 { *grad_out } else { 0.0 };
            }
        }
    }
}

impl ReluKernel for CpuBackend {
    fn relu_forward(&self, x: &Self::Storage, len: usize) -> Result<Self::Storage> {
        Ok(computed(len, |out| cpu::forward(&x.borrow()[..len], out)))
    }

    fn relu_backward(
        &self,
        out: &Self::Storage,
        grad_out: &Self::Storage,
        len: usize,
    ) -> Result<Self::Storage> {
        Ok(computed(len, |grad_x| {
            cpu::backward(&out.borrow()[..len], &grad_out.borrow()[..len], grad_x)
        }))
    }
}

const FORWARD: Entry = Entry::new("forward", &[1, 2]);
const BACKWARD: Entry = Entry::new("backward", &[3, 4, 5]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/relu.wgsl"),
    includes: &[],
    params: LenParams::FIELDS,
    entries: &[FORWARD, BACKWARD],
};

impl ReluKernel for GpuBackend {
    fn relu_forward(&self, x: &Self::Storage, len: usize) -> Result<Self::Storage> {
        self.launch_into(
            &SHADER,
            &FORWARD,
            &LenParams::of(len),
            &[bound(x, len)],
            len,
        )
    }

    fn relu_backward(
        &self,
        out: &Self::Storage,
        grad_out: &Self::Storage,
        len: usize,
    ) -> Result<Self::Storage> {
        self.launch_into(
            &SHADER,
            &BACKWARD,
            &LenParams::of(len),
            &[bound(out, len), bound(grad_out, len)],
            len,
        )
    }
}
