//! The registry of WGSL shaders: one file per op in `shaders/`, each with its entry points.
//! Every pipeline is built once, when the device context opens.

use crate::engine::ops;

/// A shader file and the entry points the launchers use.
pub(crate) struct ShaderSpec {
    pub name: &'static str,
    pub source: &'static str,
    pub entries: &'static [Entry],
}

/// An entry point and the binding numbers of its buffers, in the order launchers pass them.
/// Binding 0 is the parameter uniform, shared by every entry point of a file; buffer bindings
/// are unique within a file, so a backend that translates the whole module (HLSL on DX12)
/// never sees two resources on one register.
pub(crate) struct Entry {
    pub name: &'static str,
    pub bindings: &'static [u32],
}

impl Entry {
    pub const fn new(name: &'static str, bindings: &'static [u32]) -> Self {
        Entry { name, bindings }
    }
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

#[cfg(test)]
mod tests {
    use super::ALL_SHADERS;

    /// The storage bindings a shader declares, in order of appearance.
    fn declared_bindings(source: &str) -> Vec<u32> {
        source
            .lines()
            .filter(|line| line.contains("var<storage"))
            .filter_map(|line| {
                line.split("@binding(")
                    .nth(1)?
                    .split(')')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// Every buffer binding is declared once per file, and the entries list exactly those.
    #[test]
    fn entry_bindings_match_the_shader_declarations() {
        for spec in ALL_SHADERS {
            let declared = declared_bindings(spec.source);
            let mut unique = declared.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(
                unique.len(),
                declared.len(),
                "{}: a binding number repeats",
                spec.name
            );
            let mut listed: Vec<u32> = spec
                .entries
                .iter()
                .flat_map(|e| e.bindings.iter().copied())
                .collect();
            listed.sort_unstable();
            assert_eq!(
                listed, unique,
                "{}: entries and declarations disagree",
                spec.name
            );
            for entry in spec.entries {
                let declaration = format!("fn {}(", entry.name);
                assert!(
                    spec.source.contains(&declaration),
                    "{}: no entry point {}",
                    spec.name,
                    entry.name
                );
            }
        }
    }
}
