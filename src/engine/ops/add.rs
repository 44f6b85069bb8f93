//! add: elementwise `a + b`, used by the tape to sum the gradients of a tensor that fed
//! several ops.

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::{computed, CpuBackend};
use crate::engine::backends::gpu::kernels::{Entry, KernelParams, LenParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend};
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

const OP: &str = "add";

pub trait AddKernel: Memory {
    fn add_values(&self, a: &Self::Storage, b: &Self::Storage, len: usize)
        -> Result<Self::Storage>;
}

/// `a + b` for two tensors of one shape (not recorded: gradients are not differentiated).
pub fn add<B: Backend>(backend: &B, a: &Tensor<B>, b: &Tensor<B>) -> Result<Tensor<B>> {
    if a.shape() != b.shape() {
        return Err(Error::shape(
            OP,
            format!("shapes differ: {:?} and {:?}", a.shape(), b.shape()),
        ));
    }
    let sum = backend.add_values(a.storage(), b.storage(), a.numel())?;
    Ok(Tensor::from_storage(sum, a.shape(), false))
}

pub mod cpu {
    pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
        for ((out, a), b) in out.iter_mut().zip(a).zip(b) {
            *out = a + b;
        }
    }
}

impl AddKernel for CpuBackend {
    fn add_values(
        &self,
        a: &Self::Storage,
        b: &Self::Storage,
        len: usize,
    ) -> Result<Self::Storage> {
        Ok(computed(len, |out| {
            cpu::add(&a.borrow()[..len], &b.borrow()[..len], out)
        }))
    }
}

const ADD: Entry = Entry::new("add", &[1, 2, 3]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/add.wgsl"),
    includes: &[],
    params: LenParams::FIELDS,
    entries: &[ADD],
};

impl AddKernel for GpuBackend {
    fn add_values(
        &self,
        a: &Self::Storage,
        b: &Self::Storage,
        len: usize,
    ) -> Result<Self::Storage> {
        self.launch_into(
            &SHADER,
            &ADD,
            &LenParams::of(len),
            &[bound(a, len), bound(b, len)],
            len,
        )
    }
}
