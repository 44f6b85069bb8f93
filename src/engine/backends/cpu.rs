//! The CPU backend: plain Rust, the reference every GPU kernel is checked against.
//!
//! Storage is a shared, mutable `Vec`; the kernels themselves live in their op modules
//! (`engine::ops::*::cpu`).

use std::cell::RefCell;
use std::rc::Rc;

use crate::engine::backend::Memory;
use crate::error::Result;

/// A host buffer shared between tensors (and mutated in place by the optimizer).
pub type CpuStorage<T> = Rc<RefCell<Vec<T>>>;

#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

pub(crate) fn storage<T>(values: Vec<T>) -> CpuStorage<T> {
    Rc::new(RefCell::new(values))
}

impl Memory for CpuBackend {
    type Storage = CpuStorage<f32>;
    type Indices = CpuStorage<u32>;
    type Bytes = CpuStorage<u8>;

    fn name(&self) -> String {
        "cpu".to_string()
    }

    fn upload(&self, data: &[f32]) -> Result<Self::Storage> {
        Ok(storage(data.to_vec()))
    }

    fn download(&self, storage: &Self::Storage, len: usize) -> Result<Vec<f32>> {
        Ok(storage.borrow()[..len].to_vec())
    }

    fn upload_indices(&self, data: &[u32]) -> Result<Self::Indices> {
        Ok(storage(data.to_vec()))
    }

    fn download_indices(&self, indices: &Self::Indices, len: usize) -> Result<Vec<u32>> {
        Ok(indices.borrow()[..len].to_vec())
    }

    fn upload_bytes(&self, data: &[u8]) -> Result<Self::Bytes> {
        Ok(storage(data.to_vec()))
    }

    fn zeros(&self, len: usize) -> Result<Self::Storage> {
        Ok(storage(vec![0.0; len]))
    }

    fn copy_into(
        &self,
        src: &Self::Storage,
        dst: &Self::Storage,
        dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        let src = src.borrow()[..len].to_vec();
        dst.borrow_mut()[dst_offset..dst_offset + len].copy_from_slice(&src);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
