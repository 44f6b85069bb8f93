//! A tensor is a shape, a storage handle on some backend, and an identity the tape can follow.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::backend::Backend;
use crate::error::Result;

/// Identity of a tensor on the tape; clones of a tensor share it.
pub type TensorId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> TensorId {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A dense row-major f32 tensor living on backend `B`. Cloning is cheap: the storage is shared.
pub struct Tensor<B: Backend> {
    id: TensorId,
    shape: Vec<usize>,
    storage: B::Storage,
    requires_grad: bool,
    /// Where the backward pass writes this leaf's gradient, when the backend keeps them in a
    /// fixed place (`Memory::gradient_slots`).
    grad_slot: Option<B::Storage>,
}

impl<B: Backend> Clone for Tensor<B> {
    fn clone(&self) -> Self {
        Tensor {
            id: self.id,
            shape: self.shape.clone(),
            storage: self.storage.clone(),
            requires_grad: self.requires_grad,
            grad_slot: self.grad_slot.clone(),
        }
    }
}

impl<B: Backend> std::fmt::Debug for Tensor<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor#{}{:?}", self.id, self.shape)
    }
}

impl<B: Backend> Tensor<B> {
    /// Wraps a storage that holds exactly `shape.iter().product()` values.
    pub fn from_storage(storage: B::Storage, shape: &[usize], requires_grad: bool) -> Self {
        Tensor {
            id: next_id(),
            shape: shape.to_vec(),
            storage,
            requires_grad,
            grad_slot: None,
        }
    }

    /// A trainable leaf in `storage` whose gradient the backward pass writes into `grad_slot`
    /// (of as many values) when given.
    pub fn parameter_in(
        storage: B::Storage,
        shape: &[usize],
        grad_slot: Option<B::Storage>,
    ) -> Self {
        Tensor {
            grad_slot,
            ..Self::from_storage(storage, shape, true)
        }
    }

    /// Copies host values to the backend; `data.len()` must match the shape.
    pub fn from_slice(backend: &B, data: &[f32], shape: &[usize]) -> Result<Self> {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(crate::Error::shape(
                "tensor",
                format!("{} values do not fill shape {shape:?}", data.len()),
            ));
        }
        Ok(Self::from_storage(backend.upload(data)?, shape, false))
    }

    /// A trainable leaf: the tape keeps its gradient.
    pub fn parameter(backend: &B, data: &[f32], shape: &[usize]) -> Result<Self> {
        Ok(Self::from_slice(backend, data, shape)?.requiring_grad())
    }

    pub fn requiring_grad(mut self) -> Self {
        self.requires_grad = true;
        self
    }

    pub fn id(&self) -> TensorId {
        self.id
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn storage(&self) -> &B::Storage {
        &self.storage
    }

    pub fn requires_grad(&self) -> bool {
        self.requires_grad
    }

    pub fn grad_slot(&self) -> Option<&B::Storage> {
        self.grad_slot.as_ref()
    }

    /// The same storage under another shape with as many elements (a free reshape), as a new
    /// tensor on the tape.
    pub(crate) fn with_shape(&self, shape: &[usize]) -> Self {
        Tensor {
            id: next_id(),
            shape: shape.to_vec(),
            storage: self.storage.clone(),
            requires_grad: self.requires_grad,
            grad_slot: None,
        }
    }

    /// Reads the values back to the host (waits for pending GPU work).
    pub fn to_vec(&self, backend: &B) -> Result<Vec<f32>> {
        backend.download(&self.storage, self.numel())
    }
}
