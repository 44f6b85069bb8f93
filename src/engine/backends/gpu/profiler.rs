//! Per-kernel GPU time from timestamp queries, for `bench --profile`.
//!
//! While profiling, every dispatch gets a compute pass of its own whose beginning and end write
//! a timestamp; at each submit the timestamps are resolved, read back and added to the kernel's
//! total. Reading them back waits for the device every submit, so a profiled run's wall time is
//! not a benchmark: the per-kernel GPU times are what it measures. Adapters without
//! timestamp queries get dispatch counts only.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// A kernel: its shader and entry point.
pub type KernelName = (&'static str, &'static str);

/// Passes timed per submit (two queries each); `GpuBackend::launch` submits a recording that
/// has timed this many before it records the next.
pub(crate) const TIMED_PASSES: u32 = 1024;

/// What one kernel cost over the profiled work.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelProfile {
    pub shader: &'static str,
    pub entry: &'static str,
    pub dispatches: u64,
    /// Summed GPU time of its dispatches; `None` where the adapter has no timestamp queries.
    pub gpu_seconds: Option<f64>,
}

#[derive(Default)]
struct Totals {
    dispatches: u64,
    nanoseconds: f64,
}

/// The query set and buffers of the timestamps, and what they have summed so far.
pub(crate) struct Profiler {
    timer: Option<Timer>,
    /// The kernel of each timed pass of the current recording, in query order.
    pending: Vec<KernelName>,
    totals: BTreeMap<KernelName, Totals>,
}

struct Timer {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
    nanoseconds_per_tick: f64,
}

impl Profiler {
    /// Times dispatches when `timestamps` (the device has `Features::TIMESTAMP_QUERY`),
    /// else only counts them.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, timestamps: bool) -> Self {
        let timer = timestamps.then(|| Timer::new(device, queue));
        Profiler {
            timer,
            pending: Vec::new(),
            totals: BTreeMap::new(),
        }
    }

    /// The timestamp writes of the next dispatch's pass (counted either way), or `None` when
    /// untimed. `None` also when the recording has used every query: the caller submits first.
    pub fn begin(&mut self, kernel: KernelName) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        self.totals.entry(kernel).or_default().dispatches += 1;
        if self.is_full() {
            return None;
        }
        let timer = self.timer.as_ref()?;
        let first = 2 * self.pending.len() as u32;
        self.pending.push(kernel);
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &timer.queries,
            beginning_of_pass_write_index: Some(first),
            end_of_pass_write_index: Some(first + 1),
        })
    }

    /// Whether the recording has timed as many passes as the query set holds.
    pub fn is_full(&self) -> bool {
        self.pending.len() as u32 >= TIMED_PASSES
    }

    /// Records the resolve of this recording's timestamps, before its submit.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        let Some(timer) = &self.timer else { return };
        if self.pending.is_empty() {
            return;
        }
        let queries = 2 * self.pending.len() as u32;
        encoder.resolve_query_set(&timer.queries, 0..queries, &timer.resolved, 0);
        let bytes = 8 * queries as u64;
        encoder.copy_buffer_to_buffer(&timer.resolved, 0, &timer.readback, 0, bytes);
    }

    /// After the submit: waits for the timestamps and adds each pass to its kernel.
    pub fn collect(&mut self, device: &wgpu::Device) -> Result<()> {
        let Some(timer) = &self.timer else {
            return Ok(());
        };
        if self.pending.is_empty() {
            return Ok(());
        }
        let ticks = timer.read(device, 2 * self.pending.len())?;
        for (kernel, pass) in self.pending.drain(..).zip(ticks.chunks_exact(2)) {
            let elapsed = pass[1].saturating_sub(pass[0]) as f64 * timer.nanoseconds_per_tick;
            self.totals.entry(kernel).or_default().nanoseconds += elapsed;
        }
        Ok(())
    }

    /// Every kernel dispatched since profiling began, in name order.
    pub fn report(&self) -> Vec<KernelProfile> {
        let timed = self.timer.is_some();
        self.totals
            .iter()
            .map(|(&(shader, entry), totals)| KernelProfile {
                shader,
                entry,
                dispatches: totals.dispatches,
                gpu_seconds: timed.then_some(totals.nanoseconds * 1e-9),
            })
            .collect()
    }
}

impl Timer {
    fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let queries = 2 * TIMED_PASSES;
        let bytes = 8 * queries as u64;
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Timer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: queries,
            }),
            resolved: buffer(
                "resolved timestamps",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            readback: buffer(
                "timestamp readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            nanoseconds_per_tick: queue.get_timestamp_period() as f64,
        }
    }

    /// The first `count` timestamps, in ticks.
    fn read(&self, device: &wgpu::Device, count: usize) -> Result<Vec<u64>> {
        let (sender, receiver) = std::sync::mpsc::channel();
        self.readback
            .map_async(wgpu::MapMode::Read, .., move |result| {
                let _ = sender.send(result);
            });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the timestamps: {e}")))?;
        receiver
            .recv()
            .map_err(|_| Error::Gpu("timestamp readback callback never ran".into()))?
            .map_err(|e| Error::Gpu(format!("mapping the timestamps: {e}")))?;
        let ticks = match self.readback.get_mapped_range(..) {
            Ok(view) => Ok(bytemuck::pod_collect_to_vec(&view[..8 * count])),
            Err(e) => Err(Error::Gpu(format!("reading the timestamps: {e}"))),
        };
        // Unmapped on every path, or the next resolve could not copy into it.
        self.readback.unmap();
        ticks
    }
}
