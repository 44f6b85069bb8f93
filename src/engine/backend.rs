//! The `Backend` trait: memory management (`Memory`) plus one kernel trait per op.
//!
//! Each op module (`engine::ops::*`) declares the kernels it needs as a trait and implements it
//! for the backends beside its CPU twin, so one file holds everything about one op.
//! `Backend` is simply "all of them" (`ops::OpKernels`, made from the one list of ops); model,
//! tape and training are written against it once.

use crate::engine::ops::OpKernels;
use crate::error::Result;

/// Where a kernel writes a layer's parameter gradients: each parameter's gradient slot (see
/// `Memory::gradient_slots`), or `None` for a new buffer.
#[derive(Clone, Copy)]
pub struct GradInto<'a, S> {
    pub weight: Option<&'a S>,
    pub bias: Option<&'a S>,
}

impl<S> GradInto<'_, S> {
    /// New buffers for both.
    pub fn new_buffers() -> Self {
        GradInto {
            weight: None,
            bias: None,
        }
    }
}

/// Storage handles and transfers; what every kernel trait builds on.
pub trait Memory: Sized {
    /// A buffer of f32 values. Clones share the buffer.
    type Storage: Clone;
    /// A buffer of u32 values (max-pool argmax, labels, batch indices).
    type Indices: Clone;
    /// A resident buffer of u8 values (the dataset's pixels).
    type Bytes;

    /// Human-readable description: backend kind and adapter.
    fn name(&self) -> String;
    fn upload(&self, data: &[f32]) -> Result<Self::Storage>;
    /// Reads `len` values back; on the GPU this submits and waits for pending work.
    fn download(&self, storage: &Self::Storage, len: usize) -> Result<Vec<f32>>;
    fn upload_indices(&self, data: &[u32]) -> Result<Self::Indices>;
    fn download_indices(&self, indices: &Self::Indices, len: usize) -> Result<Vec<u32>>;
    fn upload_bytes(&self, data: &[u8]) -> Result<Self::Bytes>;
    fn zeros(&self, len: usize) -> Result<Self::Storage>;
    /// Copies `len` values of `src` to `dst` from index `dst_offset`, in order with recorded
    /// work (how a step logs its loss without a readback).
    fn copy_into(
        &self,
        src: &Self::Storage,
        dst: &Self::Storage,
        dst_offset: usize,
        len: usize,
    ) -> Result<()>;
    /// Submits recorded work without waiting for it (GPU); nothing to do on the CPU.
    fn flush(&self) -> Result<()>;

    /// Tensors allocated together where the backend gains from it (the GPU: views of one
    /// buffer, which the optimizer steps in one dispatch); elsewhere one buffer each.
    fn upload_group(&self, values: &[&[f32]]) -> Result<Vec<Self::Storage>> {
        values.iter().map(|v| self.upload(v)).collect()
    }

    /// Zeros of `lens` values each, laid out as `upload_group` lays tensors of those lengths.
    fn zeros_group(&self, lens: &[usize]) -> Result<Vec<Self::Storage>> {
        lens.iter().map(|&len| self.zeros(len)).collect()
    }

    /// Where the parameters' gradients are to be written, laid out as `zeros_group`, on a
    /// backend that gains from a fixed place (the GPU); `None`: each is a new buffer.
    fn gradient_slots(&self, _lens: &[usize]) -> Result<Option<Vec<Self::Storage>>> {
        Ok(None)
    }
}

/// A backend that can run every op of the engine (the op list is `engine::ops`'s `ops!`).
pub trait Backend: Memory + OpKernels {}

impl<T: Memory + OpKernels> Backend for T {}
