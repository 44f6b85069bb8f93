//! The registry of WGSL shaders: one file per op in `shaders/`, each with its entry points.
//! Every pipeline is built once, when the device context opens.

use crate::engine::ops;

/// A shader file and the entry points the launchers use.
pub(crate) struct ShaderSpec {
    pub name: &'static str,
    pub source: &'static str,
    pub entries: &'static [&'static str],
}

/// Prepended to every shader: the flat invocation index over a 2-D grid of 64-wide workgroups
/// (see `GpuBackend::grid`).
pub(crate) const PRELUDE: &str = "
fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 64u;
}
";

pub(crate) const ALL_SHADERS: &[&ShaderSpec] = &[
    &ops::accuracy::SHADER,
    &ops::add::SHADER,
    &ops::adadelta::SHADER,
    &ops::conv2d::SHADER,
    &ops::gather::SHADER,
    &ops::linear::SHADER,
    &ops::masked_concat::SHADER,
    &ops::masked_sum::SHADER,
    &ops::maxpool2::SHADER,
    &ops::reduce::SHADER,
    &ops::relu::SHADER,
    &ops::softmax_xent::SHADER,
];
