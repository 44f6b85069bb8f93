//! Choosing the backend: `auto` takes a hardware GPU, else the CPU.

use anyhow::{Context, Result};
use supernet::engine::backends::cpu::CpuBuild;
use supernet::engine::backends::gpu::{describe_adapter, enumerate_adapters};
use supernet::engine::{CpuBackend, GpuBackend, GpuContext};

use crate::cli::args::BackendArg;
use crate::cli::output::{say, show};

// One value per process: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Selected {
    Cpu(CpuBackend),
    Gpu(GpuBackend),
}

impl Selected {
    pub fn describe(&self) -> String {
        match self {
            // The build decides the last bits of the results (see `CpuBuild`).
            Selected::Cpu(_) => format!("cpu ({} build)", CpuBuild::active().name()),
            Selected::Gpu(gpu) => format!("gpu: {}", gpu.context().adapter_name()),
        }
    }
}

/// Whether an adapter is real hardware: a software rasterizer runs slower than our CPU path.
fn is_hardware(ctx: &GpuContext) -> bool {
    !ctx.is_software()
}

pub fn select(arg: BackendArg) -> Result<Selected> {
    // Every backend runs CPU kernels somewhere (data, statistics): a bad build name fails here.
    CpuBuild::from_env()?;
    match arg {
        BackendArg::Cpu => Ok(Selected::Cpu(CpuBackend::new())),
        BackendArg::Gpu => {
            let gpu = GpuBackend::new().context("--backend gpu")?;
            if !is_hardware(gpu.context()) {
                say!(
                    "warning: {} is software,\n  far slower than --backend cpu",
                    gpu.context().adapter_name()
                );
            }
            Ok(Selected::Gpu(gpu))
        }
        BackendArg::Auto => Ok(match GpuContext::shared() {
            Ok(ctx) if is_hardware(&ctx) => Selected::Gpu(GpuBackend::with_context(ctx)),
            _ => Selected::Cpu(CpuBackend::new()),
        }),
    }
}

/// `supernet devices`.
pub fn list_devices() -> Result<()> {
    let adapters = enumerate_adapters();
    if adapters.is_empty() {
        show!("No GPU adapters found (Vulkan, Metal or DX12).");
    }
    for info in &adapters {
        show!("  {}", describe_adapter(info));
    }
    match GpuContext::shared() {
        Ok(ctx) if is_hardware(&ctx) => show!("auto: gpu ({}), a hardware adapter", ctx.adapter_name()),
        Ok(ctx) => show!("auto: cpu, because the default adapter {} is a software rasterizer, slower than the CPU path", ctx.adapter_name()),
        Err(e) => show!("auto: cpu, because no GPU adapter could be opened ({e})"),
    }
    Ok(())
}
