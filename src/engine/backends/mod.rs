//! The backends: `cpu` and `gpu` (wgpu + WGSL), the fast ones, and `reference`, the plain-loop
//! oracle both are tested against.

pub mod cpu;
pub mod gpu;
pub mod reference;
