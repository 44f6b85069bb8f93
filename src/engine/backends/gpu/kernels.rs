//! The registry of WGSL shaders: one file per op in `shaders/`, each with its entry points.
//! Every pipeline is built once, when the device context opens.

use crate::engine::backends::gpu::context::WORKGROUP_SIZE;

/// A shader file, the fields of its `Params` uniform, and the entry points the launchers use.
pub(crate) struct ShaderSpec {
    pub name: &'static str,
    pub source: &'static str,
    /// Shared WGSL (`shaders/include/`) the module needs: an entry point the file's own
    /// functions and buffers complete, written once for the ops that have it.
    pub includes: &'static [&'static str],
    /// `KernelParams::FIELDS` of the Rust struct launchers pass: checked against the WGSL
    /// `Params` struct, field by field, in this module's tests; `launch` refuses parameters of
    /// another type.
    pub params: &'static [(&'static str, &'static str)],
    pub entries: &'static [Entry],
}

/// A kernel's parameters: the Rust twin of its shader's `Params` uniform, `#[repr(C)]` with
/// 4-byte scalar fields in the WGSL order, so its bytes are the uniform's. Declared with
/// `kernel_params!`, which also lists the fields for the layout test.
pub(crate) trait KernelParams: bytemuck::Pod {
    /// Each field's name and type (`u32`, `f32`), in order.
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// Declares a `KernelParams` struct: `kernel_params! { pub(crate) struct ReluParams { len: u32 } }`.
macro_rules! kernel_params {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident: $ty:ident),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $(pub $field: $ty),*
        }

        impl $crate::engine::backends::gpu::kernels::KernelParams for $name {
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), stringify!($ty))),*];
        }
    };
}
pub(crate) use kernel_params;

kernel_params! {
    /// The parameters of the elementwise kernels (`relu`, `add`): the element count.
    pub(crate) struct LenParams { len: u32 }
}

impl LenParams {
    pub fn of(len: usize) -> Self {
        LenParams { len: len as u32 }
    }
}

/// An entry point and the binding numbers of its buffers, in the order launchers pass them.
/// Binding 0 is the parameter uniform, shared by every entry point of a file; buffer bindings
/// are unique within a file (entries may share a read-only buffer, one declaration bound by
/// both), so a backend that translates the whole module (HLSL on DX12)
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

/// Prepended to every shader, after `WORKGROUP_SIZE`: the flat invocation index over a 2-D
/// grid of workgroups (see `GpuBackend::grid`).
const PRELUDE: &str = "
fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WORKGROUP_SIZE;
}
";

/// The WGSL module of a shader as the device compiles it: the workgroup size, stated once in
/// Rust, then the prelude, the file and its includes.
pub(crate) fn module_source(spec: &ShaderSpec) -> String {
    let includes = spec.includes.concat();
    format!(
        "const WORKGROUP_SIZE: u32 = {WORKGROUP_SIZE}u;\n{PRELUDE}\n{}\n{includes}",
        spec.source
    )
}

pub(crate) const ALL_SHADERS: &[&ShaderSpec] = crate::engine::ops::SHADERS;

#[cfg(test)]
mod tests {
    use super::{module_source, ShaderSpec, ALL_SHADERS};
    use naga::back::{hlsl, msl, spv};
    use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};

    /// A shader's module as the device gets it, parsed and validated by naga with the
    /// capabilities every adapter has (no f64, no subgroups).
    fn validated(spec: &ShaderSpec) -> (naga::Module, ModuleInfo) {
        let module = naga::front::wgsl::parse_str(&module_source(spec))
            .unwrap_or_else(|e| panic!("{}: WGSL does not parse: {e}", spec.name));
        let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: the module does not validate: {e:?}", spec.name));
        (module, info)
    }

    /// Metal: MSL 2.0, the oldest wgpu's Metal backend runs on.
    fn translate_msl(spec: &ShaderSpec, module: &naga::Module, info: &ModuleInfo) {
        let options = msl::Options {
            lang_version: (2, 0),
            ..Default::default()
        };
        let (source, translation) =
            msl::write_string(module, info, &options, &msl::PipelineOptions::default())
                .unwrap_or_else(|e| panic!("{}: MSL: {e}", spec.name));
        translated(spec, module, "MSL", &source, &translation.entry_point_names);
    }

    /// Every entry point of the module came out of a backend as a function of the source, under
    /// the name the backend gave it; `names` is in the module's entry-point order.
    fn translated<E: std::fmt::Display>(
        spec: &ShaderSpec,
        module: &naga::Module,
        language: &str,
        source: &str,
        names: &[Result<String, E>],
    ) {
        assert_eq!(
            names.len(),
            module.entry_points.len(),
            "{}: {language}",
            spec.name
        );
        for (entry, name) in module.entry_points.iter().zip(names) {
            match name {
                Ok(name) => assert!(
                    source.contains(&format!("void {name}(")),
                    "{}.{}: {language} has no function {name}",
                    spec.name,
                    entry.name
                ),
                Err(e) => panic!("{}.{}: {language}: {e}", spec.name, entry.name),
            }
        }
    }

    /// DX12: shader model 5.1, the FXC fallback, stricter than DXC's 6.x.
    fn translate_hlsl(spec: &ShaderSpec, module: &naga::Module, info: &ModuleInfo) {
        let options = hlsl::Options {
            shader_model: hlsl::ShaderModel::V5_1,
            ..Default::default()
        };
        let pipeline = hlsl::PipelineOptions::default();
        let mut source = String::new();
        let reflection = hlsl::Writer::new(&mut source, &options, &pipeline)
            .write(module, info, None)
            .unwrap_or_else(|e| panic!("{}: HLSL: {e}", spec.name));
        translated(spec, module, "HLSL", &source, &reflection.entry_point_names);
    }

    /// Vulkan: SPIR-V 1.0, read back by naga's SPIR-V front end and validated again, so the
    /// words are a module and not only output.
    fn translate_spirv(spec: &ShaderSpec, module: &naga::Module, info: &ModuleInfo) {
        let options = spv::Options {
            lang_version: (1, 0),
            ..Default::default()
        };
        let words = spv::write_vec(module, info, &options, None)
            .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", spec.name));
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let back = naga::front::spv::parse_u8_slice(&bytes, &Default::default())
            .unwrap_or_else(|e| panic!("{}: SPIR-V does not read back: {e}", spec.name));
        Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&back)
            .unwrap_or_else(|e| panic!("{}: SPIR-V read back does not validate: {e:?}", spec.name));
        assert_eq!(
            back.entry_points.len(),
            spec.entries.len(),
            "{}: SPIR-V lost entry points",
            spec.name
        );
    }

    /// Every shader translates to what wgpu hands Metal, DX12 and Vulkan, every entry point
    /// included: the first translation error meets this test, not a laptop in the field.
    #[test]
    fn every_shader_translates_to_msl_hlsl_and_spirv() {
        for spec in ALL_SHADERS {
            let (module, info) = validated(spec);
            let mut listed: Vec<&str> = spec.entries.iter().map(|e| e.name).collect();
            let mut found: Vec<&str> = module
                .entry_points
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            listed.sort_unstable();
            found.sort_unstable();
            assert_eq!(
                found, listed,
                "{}: entry points against the registry",
                spec.name
            );
            translate_msl(spec, &module, &info);
            translate_hlsl(spec, &module, &info);
            translate_spirv(spec, &module, &info);
        }
    }

    /// A scalar type as the Rust side spells it: `u32`, `f32`.
    fn scalar_name(module: &naga::Module, ty: naga::Handle<naga::Type>) -> String {
        match &module.types[ty].inner {
            naga::TypeInner::Scalar(scalar) => {
                let kind = match scalar.kind {
                    naga::ScalarKind::Uint => "u",
                    naga::ScalarKind::Sint => "i",
                    naga::ScalarKind::Float => "f",
                    other => return format!("{other:?}"),
                };
                format!("{kind}{}", 8 * scalar.width)
            }
            other => format!("{other:?}"),
        }
    }

    /// Each shader's `Params` uniform is the `KernelParams` struct its launchers pass: the same
    /// fields, in the same order, of the same types, at the same byte offsets.
    #[test]
    fn params_structs_match_their_wgsl_twins() {
        for spec in ALL_SHADERS {
            let (module, _) = validated(spec);
            let members = module
                .types
                .iter()
                .find_map(|(_, ty)| match (&ty.name, &ty.inner) {
                    (Some(name), naga::TypeInner::Struct { members, .. }) if name == "Params" => {
                        Some(members.clone())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{}: no Params struct", spec.name));
            let wgsl: Vec<(String, String, u32)> = members
                .iter()
                .map(|m| {
                    let name = m.name.clone().unwrap_or_default();
                    (name, scalar_name(&module, m.ty), m.offset)
                })
                .collect();
            let rust: Vec<(String, String, u32)> = spec
                .params
                .iter()
                .enumerate()
                .map(|(i, (name, ty))| (name.to_string(), ty.to_string(), 4 * i as u32))
                .collect();
            assert_eq!(
                rust, wgsl,
                "{}: the Rust params against the WGSL Params",
                spec.name
            );
        }
    }

    /// The workgroup size is stated once, in Rust: no shader sets its own.
    #[test]
    fn every_entry_point_takes_the_shared_workgroup_size() {
        for spec in ALL_SHADERS {
            let (module, _) = validated(spec);
            for entry in &module.entry_points {
                assert_eq!(
                    entry.workgroup_size,
                    [super::WORKGROUP_SIZE, 1, 1],
                    "{}.{}",
                    spec.name,
                    entry.name
                );
            }
        }
    }

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

    /// Every buffer binding is declared once per file, and the entries list exactly those
    /// (a shared one in each entry that binds it).
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
            listed.dedup();
            assert_eq!(
                listed, unique,
                "{}: entries and declarations disagree",
                spec.name
            );
            let module = module_source(spec);
            for entry in spec.entries {
                let declaration = format!("fn {}(", entry.name);
                assert!(
                    module.contains(&declaration),
                    "{}: no entry point {}",
                    spec.name,
                    entry.name
                );
            }
        }
    }
}
