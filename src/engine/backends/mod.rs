//! The two backends: `cpu` (the reference) and `gpu` (wgpu + WGSL).

pub mod cpu;
pub mod gpu;
