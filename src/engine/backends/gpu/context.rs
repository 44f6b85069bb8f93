//! The device context: adapter, device, queue, limits and every compute pipeline, built once
//! per process and shared by all GPU backends (tests included).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::engine::backends::gpu::kernels::{module_source, ShaderSpec, ALL_SHADERS};
use crate::error::{Error, Result};

/// Threads per workgroup of every kernel: within WebGPU's 256 and a multiple of every
/// vendor's SIMD width (32 on NVIDIA, 64 on AMD, 8-32 on Apple and Intel).
pub const WORKGROUP_SIZE: u32 = 64;

/// One compiled entry point of a shader.
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// Binding numbers of the buffers, in launch order.
    pub bindings: &'static [u32],
}

pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    kernels: HashMap<(&'static str, &'static str), Kernel>,
    /// Small uniform buffers of kernel parameters, keyed by their words: shapes are fixed per
    /// model, so after the first step every launch finds its parameters here.
    uniforms: Mutex<HashMap<Vec<u32>, wgpu::Buffer>>,
    /// Errors wgpu reported outside an error scope (validation, out of memory, device loss).
    errors: Arc<Mutex<Vec<String>>>,
}

/// The shared context, or why it could not be made (kept as text: `Error` is not `Clone`).
static SHARED: OnceLock<std::result::Result<Arc<GpuContext>, (bool, String)>> = OnceLock::new();

impl GpuContext {
    /// The process-wide context, created on first use.
    pub fn shared() -> Result<Arc<GpuContext>> {
        let shared = SHARED.get_or_init(|| {
            GpuContext::new().map(Arc::new).map_err(|e| match e {
                Error::NoAdapter(why) => (true, why),
                Error::Gpu(why) => (false, why),
                other => (false, other.to_string()),
            })
        });
        match shared {
            Ok(ctx) => Ok(ctx.clone()),
            Err((true, why)) => Err(Error::NoAdapter(why.clone())),
            Err((false, why)) => Err(Error::Gpu(why.clone())),
        }
    }

    /// Opens the adapter that `WGPU_ADAPTER_NAME` / `WGPU_BACKEND` select, or the default one.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::open())
    }

    async fn open() -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = wgpu::util::initialize_adapter_from_env_or_default(&instance, None)
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        let limits = required_limits(&adapter.limits())?;
        // Asked for where offered: `bench --profile` times kernels with it.
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("supernet"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        let errors = install_error_handlers(&device);
        let kernels = build_kernels(&device).await?;
        Ok(GpuContext {
            device,
            queue,
            info: adapter.get_info(),
            limits,
            kernels,
            uniforms: Mutex::new(HashMap::new()),
            errors,
        })
    }

    /// "NVIDIA H100 (Vulkan, DiscreteGpu)" and the like.
    pub fn adapter_name(&self) -> String {
        describe_adapter(&self.info)
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// A software rasterizer (lavapipe, WARP, SwiftShader) reports itself as a CPU device.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Whether the device can time passes (`Features::TIMESTAMP_QUERY`).
    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    pub(crate) fn kernel(&self, shader: &'static str, entry: &'static str) -> Result<&Kernel> {
        self.kernels
            .get(&(shader, entry))
            .ok_or_else(|| Error::Gpu(format!("no kernel {shader}.{entry}")))
    }

    /// The uniform buffer holding `words`, created on first use.
    pub(crate) fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        let mut cache = self.uniforms.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(words.to_vec())
            .or_insert_with(|| {
                // Uniform structs are sized in 16-byte units.
                let mut padded = words.to_vec();
                padded.resize(words.len().div_ceil(4).max(1) * 4, 0);
                self.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("params"),
                        contents: bytemuck::cast_slice(&padded),
                        usage: wgpu::BufferUsages::UNIFORM,
                    })
            })
            .clone()
    }

    /// Turns any error wgpu reported into ours. The errors stay: the device is shared by every
    /// backend on it (`--parallel` threads), and wgpu does not say whose commands failed, so
    /// every backend's next check fails, and no training on a failed device reports results.
    pub(crate) fn check(&self) -> Result<()> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.is_empty() {
            return Ok(());
        }
        Err(Error::Gpu(errors.join("; ")))
    }
}

pub fn describe_adapter(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}

/// Lists every adapter wgpu can see, for the `devices` command and for diagnostics.
pub fn enumerate_adapters() -> Vec<wgpu::AdapterInfo> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(|a| a.get_info())
        .collect()
}

/// The most storage buffers one entry point binds (the fused kernels' five).
fn storage_buffers_needed() -> u32 {
    let entries = ALL_SHADERS.iter().flat_map(|s| s.entries);
    entries.map(|e| e.bindings.len() as u32).max().unwrap_or(0)
}

/// Downlevel defaults (so laptops and lavapipe qualify), with the buffer sizes raised to what
/// the adapter offers (the resident MNIST training set is 47 MB of packed bytes) and the
/// storage buffers per stage to what the kernels bind: more than the downlevel 4, within
/// WebGPU's default 8, which every Vulkan, Metal and DX12 laptop GPU offers.
fn required_limits(adapter: &wgpu::Limits) -> Result<wgpu::Limits> {
    let base = wgpu::Limits::downlevel_defaults();
    let storage_buffers = storage_buffers_needed().max(base.max_storage_buffers_per_shader_stage);
    if adapter.max_storage_buffers_per_shader_stage < storage_buffers {
        return Err(Error::NoAdapter(format!(
            "the adapter binds {} storage buffers per shader stage; the kernels need {storage_buffers}",
            adapter.max_storage_buffers_per_shader_stage
        )));
    }
    Ok(wgpu::Limits {
        max_storage_buffer_binding_size: adapter.max_storage_buffer_binding_size,
        max_buffer_size: adapter.max_buffer_size,
        max_compute_workgroups_per_dimension: adapter.max_compute_workgroups_per_dimension,
        max_storage_buffers_per_shader_stage: storage_buffers,
        ..base
    })
}

/// wgpu's default handler panics; we record errors and surface them as `Error::Gpu`.
fn install_error_handlers(device: &wgpu::Device) -> Arc<Mutex<Vec<String>>> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(error.to_string());
    }));
    let sink = errors.clone();
    device.set_device_lost_callback(move |reason, message| {
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("device lost ({reason:?}): {message}"));
    });
    errors
}

async fn build_kernels(
    device: &wgpu::Device,
) -> Result<HashMap<(&'static str, &'static str), Kernel>> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let mut kernels = HashMap::new();
    for spec in ALL_SHADERS {
        build_shader(device, spec, &mut kernels);
    }
    if let Some(error) = scope.pop().await {
        return Err(Error::Gpu(format!(
            "building the compute pipelines: {error}"
        )));
    }
    Ok(kernels)
}

fn build_shader(
    device: &wgpu::Device,
    spec: &ShaderSpec,
    kernels: &mut HashMap<(&'static str, &'static str), Kernel>,
) {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(spec.name),
        source: wgpu::ShaderSource::Wgsl(module_source(spec).into()),
    });
    for entry in spec.entries {
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry.name),
            layout: None,
            module: &module,
            entry_point: Some(entry.name),
            compilation_options: Default::default(),
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        let kernel = Kernel {
            pipeline,
            layout,
            bindings: entry.bindings,
        };
        kernels.insert((spec.name, entry.name), kernel);
    }
}
