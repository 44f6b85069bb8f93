//! A dataset split resident on the backend: pixels uploaded once as bytes (188 MB as f32
//! would exceed the default storage binding), labels kept on the host to build each batch.

use crate::data::{mnist, Split};
use crate::engine::ops::gather::{gather_images, GatherDims};
use crate::engine::{Backend, Tensor};
use crate::error::Result;

pub struct DeviceSplit<B: Backend> {
    images: B::Bytes,
    labels: Vec<u8>,
    count: usize,
    side: usize,
}

/// One minibatch on the device.
pub struct Batch<B: Backend> {
    pub images: Tensor<B>,
    pub labels: B::Indices,
    pub len: usize,
}

impl<B: Backend> DeviceSplit<B> {
    pub fn upload(backend: &B, split: &Split) -> Result<Self> {
        Ok(DeviceSplit {
            images: backend.upload_bytes(&split.images)?,
            labels: split.labels.clone(),
            count: split.count,
            side: split.rows,
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn side(&self) -> usize {
        self.side
    }

    /// Images `indices`, normalised, with their labels.
    pub fn batch(&self, backend: &B, indices: &[u32]) -> Result<Batch<B>> {
        let dims = GatherDims {
            count: self.count,
            batch: indices.len(),
            height: self.side,
            width: self.side,
            mean: mnist::MEAN,
            std: mnist::STD,
        };
        let labels: Vec<u32> = indices
            .iter()
            .map(|&i| self.labels[i as usize] as u32)
            .collect();
        let labels = backend.upload_indices(&labels)?;
        let device_indices = backend.upload_indices(indices)?;
        let images = gather_images(backend, &dims, &self.images, &device_indices, indices)?;
        Ok(Batch {
            images,
            labels,
            len: indices.len(),
        })
    }
}
