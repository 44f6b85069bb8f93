//! reduce_rows: column sums of a `[rows, cols]` matrix, each column summed in row order.
//!
//! The deterministic second half of every weight- and bias-gradient reduction: partial sums
//! per image, then this fixed-order sum over images. No float atomics, so the same inputs give
//! the same bits on every run.

use crate::engine::backend::Memory;
use crate::engine::backends::cpu::{storage, CpuBackend};
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend};
use crate::error::Result;

const OP: &str = "reduce";

pub trait ReduceKernel: Memory {
    /// `out[j] = sum over r of x[r * cols + j]`, for r = 0, 1, ... in order.
    fn reduce_rows(&self, x: &Self::Storage, rows: usize, cols: usize) -> Result<Self::Storage>;
}

pub mod cpu {
    /// Adds whole rows in order: every column still sums its rows first to last, while the
    /// memory is read contiguously.
    pub fn reduce_rows(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut sums = vec![0.0; cols];
        for row in x.chunks_exact(cols).take(rows) {
            for (sum, value) in sums.iter_mut().zip(row) {
                *sum += value;
            }
        }
        sums
    }
}

impl ReduceKernel for CpuBackend {
    fn reduce_rows(&self, x: &Self::Storage, rows: usize, cols: usize) -> Result<Self::Storage> {
        Ok(storage(cpu::reduce_rows(&x.borrow(), rows, cols)))
    }
}

kernel_params! {
    /// `reduce_rows`: x is `[rows][cols]`.
    pub(crate) struct ReduceParams { rows: u32, cols: u32 }
}

const REDUCE_ROWS: Entry = Entry::new("reduce_rows", &[1, 2]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/reduce.wgsl"),
    includes: &[],
    params: ReduceParams::FIELDS,
    entries: &[REDUCE_ROWS],
};

impl ReduceKernel for GpuBackend {
    fn reduce_rows(&self, x: &Self::Storage, rows: usize, cols: usize) -> Result<Self::Storage> {
        let params = ReduceParams {
            rows: rows as u32,
            cols: cols as u32,
        };
        self.launch_into(
            &SHADER,
            &REDUCE_ROWS,
            &params,
            &[bound(x, rows * cols)],
            cols,
        )
    }
}
