//! The GPU backend: wgpu + WGSL. Work is recorded into one command encoder and submitted on
//! `flush` (once per training step) or when values are read back.
//!
//! Buffers come from a pool keyed by size: shapes are fixed per model, so after the first step
//! every activation and gradient reuses a buffer allocated then. Reusing a buffer inside the
//! same encoder is safe: commands of one queue run in order.

mod context;
pub(crate) mod kernels;
mod profiler;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

pub use context::{describe_adapter, enumerate_adapters, GpuContext, WORKGROUP_SIZE};
pub use profiler::KernelProfile;

use crate::engine::backend::Memory;
use crate::error::{Error, Result};
use kernels::{Entry, KernelParams, ShaderSpec};
use profiler::Profiler;

/// A pooled device buffer; dropping the last handle returns it to the pool.
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    pool: Rc<RefCell<Pool>>,
}

impl GpuBuffer {
    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.buffer
            .as_ref()
            .expect("a live GpuBuffer always holds its buffer")
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.borrow_mut().put(buffer);
        }
    }
}

/// A tensor's place on the device: a whole pooled buffer (`alloc`), or one tensor's range of a
/// buffer shared by a group (`upload_group`: the parameters, so that one dispatch can step
/// them all). Kernels bind the range, so to a kernel a view is a buffer of its own. Clones
/// share the buffer; it returns to the pool when the last view of it is dropped.
#[derive(Clone)]
pub struct GpuStorage {
    buffer: Rc<GpuBuffer>,
    /// Bytes from the buffer's start, a multiple of the device's storage offset alignment.
    offset: u64,
    /// Bytes of the view, a multiple of 4.
    size: u64,
}

impl GpuStorage {
    fn whole(buffer: GpuBuffer) -> Self {
        let size = buffer.raw().size();
        GpuStorage {
            buffer: Rc::new(buffer),
            offset: 0,
            size,
        }
    }

    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.buffer.raw()
    }

    /// The 4-byte values the view holds.
    pub(crate) fn values(&self) -> u64 {
        self.size / 4
    }

    /// Whether both are the same range of the same buffer.
    pub(crate) fn same(&self, other: &GpuStorage) -> bool {
        Rc::ptr_eq(&self.buffer, &other.buffer) && self.offset == other.offset
    }

    /// Whether `self` lies in the same buffer as `other`.
    pub(crate) fn shares_buffer(&self, other: &GpuStorage) -> bool {
        Rc::ptr_eq(&self.buffer, &other.buffer)
    }

    /// The values before the view in its buffer.
    pub(crate) fn first_value(&self) -> u64 {
        self.offset / 4
    }

    /// From this view's start to the end of `last`, a later view of the same buffer.
    pub(crate) fn spanning(&self, last: &GpuStorage) -> GpuStorage {
        GpuStorage {
            buffer: self.buffer.clone(),
            offset: self.offset,
            size: last.offset + last.size - self.offset,
        }
    }

    /// The whole buffer the view lies in.
    pub(crate) fn buffer_view(&self) -> GpuStorage {
        GpuStorage {
            buffer: self.buffer.clone(),
            offset: 0,
            size: self.raw().size(),
        }
    }
}

/// A buffer bound to a kernel, with the number of 4-byte values the kernel's shapes make it
/// touch there. `launch` checks the buffer holds them: a shape bug becomes an error naming the
/// kernel, not a read past the end (which WGSL clamps) quietly computing garbage. Buffers are
/// allocated in 16-byte units, so an overrun of up to 3 values past the length asked for at
/// allocation stays within the buffer and is not caught.
#[derive(Clone, Copy)]
pub(crate) struct Bound<'a> {
    buffer: &'a GpuStorage,
    values: usize,
}

pub(crate) fn bound(buffer: &GpuStorage, values: usize) -> Bound<'_> {
    Bound { buffer, values }
}

#[derive(Default)]
struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    allocated_bytes: u64,
}

impl Pool {
    fn take(&mut self, size: u64) -> Option<wgpu::Buffer> {
        self.free.get_mut(&size).and_then(Vec::pop)
    }

    fn put(&mut self, buffer: wgpu::Buffer) {
        self.free.entry(buffer.size()).or_default().push(buffer);
    }
}

/// Commands recorded since the last submit. Consecutive dispatches share one compute pass
/// (wgpu still places a barrier between dispatches that touch the same buffer); a copy or
/// clear ends the pass, since an encoder cannot record while a pass is open.
struct Recording {
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
}

/// A bind group is a pure function of the kernel and the buffers bound to it. Shapes are
/// fixed and buffers come back from the pool in the same order every step, so after the first
/// step every bind group is found here instead of created.
#[derive(PartialEq, Eq, Hash)]
struct BindKey {
    shader: &'static str,
    entry: &'static str,
    /// The parameter uniform first, then the storage buffers in binding order, each with the
    /// byte range bound.
    buffers: Vec<(wgpu::Buffer, u64, u64)>,
}

/// Beyond this many bind groups the cache is cleared (shapes changed, e.g. an evaluation
/// batch size), so it cannot grow without bound.
const BIND_GROUP_CACHE: usize = 4096;

pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    pool: Rc<RefCell<Pool>>,
    recording: RefCell<Option<Recording>>,
    bind_groups: RefCell<HashMap<BindKey, wgpu::BindGroup>>,
    dispatches: Cell<u64>,
    submits: Cell<u64>,
    /// CPU time spent recording commands (not submitting them).
    record_seconds: Cell<f64>,
    /// CPU time spent in `Queue::submit` (on a software adapter, the work itself).
    submit_seconds: Cell<f64>,
    /// Per-kernel counts and GPU times, from `start_profiling` on.
    profiler: RefCell<Option<Profiler>>,
}

impl GpuBackend {
    /// A backend on the shared device context.
    pub fn new() -> Result<Self> {
        Ok(Self::with_context(GpuContext::shared()?))
    }

    pub fn with_context(ctx: Arc<GpuContext>) -> Self {
        GpuBackend {
            ctx,
            pool: Rc::new(RefCell::new(Pool::default())),
            recording: RefCell::new(None),
            bind_groups: RefCell::new(HashMap::new()),
            dispatches: Cell::new(0),
            submits: Cell::new(0),
            record_seconds: Cell::new(0.0),
            submit_seconds: Cell::new(0.0),
            profiler: RefCell::new(None),
        }
    }

    /// From now on, counts every kernel's dispatches and, where the adapter has timestamp
    /// queries, times each on the device (every dispatch in a pass of its own, and a wait for
    /// the device at every submit: wall times of a profiled run are not benchmarks). Work
    /// recorded before is submitted first, so it is not counted. Returns whether kernels are
    /// timed.
    pub fn start_profiling(&self) -> Result<bool> {
        self.flush()?;
        let timestamps = self.ctx.has_timestamps();
        let profiler = Profiler::new(&self.ctx.device, &self.ctx.queue, timestamps);
        *self.profiler.borrow_mut() = Some(profiler);
        Ok(timestamps)
    }

    /// Ends profiling: what each kernel cost since `start_profiling`, the recorded work
    /// submitted and waited for first; empty when not profiling. Later work runs unprofiled.
    pub fn stop_profiling(&self) -> Result<Vec<KernelProfile>> {
        self.flush()?;
        let profiler = self.profiler.borrow_mut().take();
        Ok(profiler.as_ref().map(Profiler::report).unwrap_or_default())
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The device this backend runs on, for another backend on it (another thread's).
    pub fn shared_context(&self) -> Arc<GpuContext> {
        self.ctx.clone()
    }

    /// Compute dispatches recorded since this backend was created.
    pub fn dispatch_count(&self) -> u64 {
        self.dispatches.get()
    }

    /// CPU seconds spent recording dispatches, copies and clears since this backend was
    /// created (submitting them not included).
    pub fn record_seconds(&self) -> f64 {
        self.record_seconds.get()
    }

    /// CPU seconds spent in `Queue::submit` since this backend was created.
    pub fn submit_seconds(&self) -> f64 {
        self.submit_seconds.get()
    }

    /// Queue submissions made since this backend was created (read-backs included).
    pub fn submit_count(&self) -> u64 {
        self.submits.get()
    }

    fn submit(&self, encoder: wgpu::CommandEncoder) {
        let started = std::time::Instant::now();
        let commands = encoder.finish();
        self.add_record_time(started);
        let started = std::time::Instant::now();
        self.ctx.queue.submit([commands]);
        let seconds = started.elapsed().as_secs_f64();
        self.submit_seconds.set(self.submit_seconds.get() + seconds);
        self.submits.set(self.submits.get() + 1);
    }

    /// Bytes of device memory this backend has allocated (pooled buffers included).
    pub fn allocated_bytes(&self) -> u64 {
        self.pool.borrow().allocated_bytes
    }

    /// A buffer of at least `bytes` bytes, from the pool when one of that size is free.
    pub(crate) fn alloc(&self, op: &'static str, bytes: u64) -> Result<GpuStorage> {
        let size = bytes.max(16).next_multiple_of(16);
        let limit = self.ctx.limits.max_storage_buffer_binding_size;
        if size > limit {
            return Err(Error::Limit {
                op,
                detail: format!("a buffer of {size} bytes"),
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        let pooled = self.pool.borrow_mut().take(size);
        let buffer = match pooled {
            Some(buffer) => buffer,
            None => self.create_buffer(size),
        };
        Ok(GpuStorage::whole(GpuBuffer {
            buffer: Some(buffer),
            pool: self.pool.clone(),
        }))
    }

    /// One buffer holding tensors of `lens` values, each a view starting at a multiple of the
    /// device's storage offset alignment (the limit asked for, 256 bytes); the caller fills the
    /// gaps between them with zeros (`zeros_group` clears the whole buffer, `upload_group`
    /// writes every byte).
    fn alloc_group(&self, op: &'static str, lens: &[usize]) -> Result<Vec<GpuStorage>> {
        let align = u64::from(self.ctx.limits.min_storage_buffer_offset_alignment).max(16);
        let mut offsets = Vec::with_capacity(lens.len());
        let mut end = 0u64;
        for &len in lens {
            let offset = end.next_multiple_of(align);
            offsets.push(offset);
            end = offset + 4 * len.max(1) as u64;
        }
        let whole = self.alloc(op, end)?;
        Ok(offsets
            .into_iter()
            .zip(lens)
            // A view binds its own range: never 0 bytes, which would bind the rest.
            .map(|(offset, &len)| GpuStorage {
                buffer: whole.buffer.clone(),
                offset,
                size: 4 * len.max(1) as u64,
            })
            .collect())
    }

    fn create_buffer(&self, size: u64) -> wgpu::Buffer {
        self.pool.borrow_mut().allocated_bytes += size;
        self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// `slot` for an output of `len` values when given (a parameter's gradient slot, checked to
    /// hold them), else a new buffer.
    pub(crate) fn output_into(
        &self,
        op: &'static str,
        slot: Option<&GpuStorage>,
        len: usize,
    ) -> Result<GpuStorage> {
        match slot {
            Some(slot) if slot.values() < len as u64 => Err(Error::shape(
                op,
                format!("a gradient slot of {} values for {len}", slot.values()),
            )),
            Some(slot) => Ok(slot.clone()),
            None => self.alloc_values(op, len),
        }
    }

    /// A buffer of `len` f32 (or u32) values.
    pub(crate) fn alloc_values(&self, op: &'static str, len: usize) -> Result<GpuStorage> {
        self.alloc(op, 4 * len as u64)
    }

    /// Records one dispatch of `shader.entry` with one invocation per element of `invocations`.
    /// Binding 0 holds `params`; `buffers` go to the entry point's bindings, in order, each
    /// checked to hold the values it is bound for.
    pub(crate) fn launch<P: KernelParams>(
        &self,
        shader: &'static ShaderSpec,
        entry: &'static Entry,
        params: &P,
        buffers: &[Bound],
        invocations: usize,
    ) -> Result<()> {
        if invocations == 0 {
            return Ok(());
        }
        if P::FIELDS != shader.params {
            let detail = format!(
                "{}.{}: parameters of another kernel",
                shader.name, entry.name
            );
            return Err(Error::Gpu(detail));
        }
        let (shader, entry_name) = (shader.name, entry.name);
        for (b, binding) in buffers.iter().zip(entry.bindings) {
            let holds = b.buffer.values();
            if holds < b.values as u64 {
                let detail = format!(
                    "{shader}.{entry_name}: @binding({binding}) holds {holds} values, the shapes need {}",
                    b.values
                );
                return Err(Error::shape(shader, detail));
            }
        }
        let entry = entry_name;
        let buffers: Vec<&GpuStorage> = buffers.iter().map(|b| b.buffer).collect();
        let buffers = &buffers[..];
        let kernel = self.ctx.kernel(shader, entry)?;
        if buffers.len() != kernel.bindings.len() {
            let expected = kernel.bindings.len();
            let detail = format!(
                "{shader}.{entry} takes {expected} buffers, got {}",
                buffers.len()
            );
            return Err(Error::Gpu(detail));
        }
        let (groups_x, groups_y) = self.grid(shader, invocations)?;
        if self
            .profiler
            .borrow()
            .as_ref()
            .is_some_and(Profiler::is_full)
        {
            self.flush()?;
        }
        let started = std::time::Instant::now();
        let bind_group = self.bind_group(shader, entry, kernel, params, buffers);
        let dispatch = |pass: &mut wgpu::ComputePass| {
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups_x, groups_y, 1);
        };
        if self.profiler.borrow().is_some() {
            self.record_profiled((shader, entry), dispatch);
        } else {
            self.with_pass(dispatch);
        }
        self.add_record_time(started);
        self.dispatches.set(self.dispatches.get() + 1);
        Ok(())
    }

    /// The bind group of `params` and `buffers` for a kernel, from the cache when it exists.
    fn bind_group<P: KernelParams>(
        &self,
        shader: &'static str,
        entry: &'static str,
        kernel: &context::Kernel,
        params: &P,
        buffers: &[&GpuStorage],
    ) -> wgpu::BindGroup {
        let uniform = self
            .ctx
            .uniform(bytemuck::cast_slice(std::slice::from_ref(params)));
        let mut bound = Vec::with_capacity(buffers.len() + 1);
        bound.push((uniform.clone(), 0, uniform.size()));
        bound.extend(buffers.iter().map(|b| (b.raw().clone(), b.offset, b.size)));
        let key = BindKey {
            shader,
            entry,
            buffers: bound,
        };
        let mut cache = self.bind_groups.borrow_mut();
        if let Some(bind_group) = cache.get(&key) {
            return bind_group.clone();
        }
        let bindings = std::iter::once(0).chain(kernel.bindings.iter().copied());
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .zip(&key.buffers)
            .map(|(binding, (buffer, offset, size))| wgpu::BindGroupEntry {
                binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: *offset,
                    size: std::num::NonZeroU64::new(*size),
                }),
            })
            .collect();
        let bind_group = self
            .ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &kernel.layout,
                entries: &entries,
            });
        if cache.len() >= BIND_GROUP_CACHE {
            cache.clear();
        }
        cache.insert(key, bind_group.clone());
        bind_group
    }

    /// Allocates an output of `len` values, binds it after `inputs`, and launches one
    /// invocation per output value: the shape of most kernels.
    pub(crate) fn launch_into<P: KernelParams>(
        &self,
        shader: &'static ShaderSpec,
        entry: &'static Entry,
        params: &P,
        inputs: &[Bound],
        len: usize,
    ) -> Result<GpuStorage> {
        self.launch_with_output(shader, entry, params, inputs, len, len)
    }

    /// Like `launch_into`, for kernels whose invocations each write several output values.
    pub(crate) fn launch_with_output<P: KernelParams>(
        &self,
        shader: &'static ShaderSpec,
        entry: &'static Entry,
        params: &P,
        inputs: &[Bound],
        len: usize,
        invocations: usize,
    ) -> Result<GpuStorage> {
        let out = self.alloc_values(shader.name, len)?;
        let mut buffers = inputs.to_vec();
        buffers.push(bound(&out, len));
        self.launch(shader, entry, params, &buffers, invocations)?;
        Ok(out)
    }

    /// Workgroups along x and y: x up to the per-dimension limit, the rest along y. Every
    /// kernel recovers its flat index as `gid.x + gid.y * groups.x * WORKGROUP_SIZE`.
    fn grid(&self, op: &'static str, invocations: usize) -> Result<(u32, u32)> {
        let max = self.ctx.limits.max_compute_workgroups_per_dimension as u64;
        let groups = (invocations as u64).div_ceil(WORKGROUP_SIZE as u64);
        if groups <= max {
            return Ok((groups as u32, 1));
        }
        let rows = groups.div_ceil(max);
        if rows > max {
            return Err(Error::Limit {
                op,
                detail: format!("{invocations} invocations"),
                limit_name: "max_compute_workgroups_per_dimension squared",
                limit: max * max,
            });
        }
        Ok((max as u32, rows as u32))
    }

    /// Zero-fills a buffer, in order with the recorded dispatches.
    pub(crate) fn clear(&self, storage: &GpuStorage) {
        self.with_encoder(|encoder| {
            encoder.clear_buffer(storage.raw(), storage.offset, Some(storage.size))
        });
    }

    /// Records a copy or clear: ends the open compute pass first.
    fn with_encoder<T>(&self, record: impl FnOnce(&mut wgpu::CommandEncoder) -> T) -> T {
        let started = std::time::Instant::now();
        let mut slot = self.recording.borrow_mut();
        let recording = slot.get_or_insert_with(|| self.new_recording());
        recording.pass = None;
        let result = record(&mut recording.encoder);
        self.add_record_time(started);
        result
    }

    /// Records into the open compute pass, opening one if needed.
    fn with_pass(&self, record: impl FnOnce(&mut wgpu::ComputePass<'static>)) {
        let mut slot = self.recording.borrow_mut();
        let recording = slot.get_or_insert_with(|| self.new_recording());
        let pass = recording.pass.get_or_insert_with(|| {
            recording
                .encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("kernels"),
                    timestamp_writes: None,
                })
                .forget_lifetime()
        });
        record(pass);
    }

    /// Records a dispatch in a pass of its own, timed when the profiler has timestamps.
    fn record_profiled(
        &self,
        kernel: profiler::KernelName,
        dispatch: impl FnOnce(&mut wgpu::ComputePass),
    ) {
        let mut slot = self.recording.borrow_mut();
        let recording = slot.get_or_insert_with(|| self.new_recording());
        recording.pass = None;
        let mut profiler = self.profiler.borrow_mut();
        let timestamp_writes = profiler.as_mut().and_then(|p| p.begin(kernel));
        let mut pass = recording
            .encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(kernel.1),
                timestamp_writes,
            });
        dispatch(&mut pass);
    }

    fn new_recording(&self) -> Recording {
        Recording {
            encoder: self
                .ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }),
            pass: None,
        }
    }

    fn add_record_time(&self, started: std::time::Instant) {
        let seconds = started.elapsed().as_secs_f64();
        self.record_seconds.set(self.record_seconds.get() + seconds);
    }

    /// Uploads through a staging buffer copied inside the encoder, so an upload is ordered
    /// with the recorded work around it (no submit needed, and a pooled buffer still read by
    /// earlier commands is overwritten only after them).
    fn write(&self, op: &'static str, bytes: &[u8]) -> Result<GpuStorage> {
        let storage = self.alloc(op, bytes.len() as u64)?;
        self.write_to(&storage, bytes);
        Ok(storage)
    }

    /// Overwrites the start of `storage` with `bytes` (at most its size), through a staging
    /// buffer copied inside the encoder.
    fn write_to(&self, storage: &GpuStorage, bytes: &[u8]) {
        use wgpu::util::DeviceExt;
        if bytes.is_empty() {
            return;
        }
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().next_multiple_of(4), 0);
        let staging = self
            .ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("upload"),
                contents: &padded,
                usage: wgpu::BufferUsages::COPY_SRC,
            });
        let (offset, size) = (storage.offset, padded.len() as u64);
        self.with_encoder(|encoder| {
            encoder.copy_buffer_to_buffer(&staging, 0, storage.raw(), offset, size)
        });
    }

    fn read(&self, storage: &GpuStorage, bytes: u64) -> Result<Vec<u8>> {
        self.flush()?;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        if bytes > storage.size {
            let detail = format!("{bytes} bytes from a buffer of {}", storage.size);
            return Err(Error::invalid("download", detail));
        }
        let size = bytes.next_multiple_of(4);
        let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        encoder.copy_buffer_to_buffer(storage.raw(), storage.offset, &staging, 0, size);
        self.submit(encoder);
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let _ = sender.send(result);
        });
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))?;
        self.ctx.check()?;
        receiver
            .recv()
            .map_err(|_| Error::Gpu("readback callback never ran".into()))?
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e}")))?;
        let out = view[..bytes as usize].to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }
}

impl Memory for GpuBackend {
    type Storage = GpuStorage;
    type Indices = GpuStorage;
    type Bytes = GpuStorage;

    fn name(&self) -> String {
        format!("gpu: {}", self.ctx.adapter_name())
    }

    fn upload(&self, data: &[f32]) -> Result<Self::Storage> {
        self.write("upload", bytemuck::cast_slice(data))
    }

    fn download(&self, storage: &Self::Storage, len: usize) -> Result<Vec<f32>> {
        let bytes = self.read(storage, 4 * len as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    fn upload_indices(&self, data: &[u32]) -> Result<Self::Indices> {
        self.write("upload_indices", bytemuck::cast_slice(data))
    }

    fn download_indices(&self, indices: &Self::Indices, len: usize) -> Result<Vec<u32>> {
        let bytes = self.read(indices, 4 * len as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Packs four bytes per u32 word (WGSL has no u8); kernels unpack with shifts.
    fn upload_bytes(&self, data: &[u8]) -> Result<Self::Bytes> {
        self.write("upload_bytes", data)
    }

    fn zeros(&self, len: usize) -> Result<Self::Storage> {
        let storage = self.alloc_values("zeros", len)?;
        self.clear(&storage);
        Ok(storage)
    }

    fn copy_into(
        &self,
        src: &Self::Storage,
        dst: &Self::Storage,
        dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        let (offset, bytes) = (4 * dst_offset as u64, 4 * len as u64);
        if offset + bytes > dst.size || bytes > src.size {
            return Err(Error::invalid(
                "copy_into",
                format!("{len} values at {dst_offset} do not fit"),
            ));
        }
        self.with_encoder(|encoder| {
            encoder.copy_buffer_to_buffer(
                src.raw(),
                src.offset,
                dst.raw(),
                dst.offset + offset,
                bytes,
            )
        });
        Ok(())
    }

    fn upload_group(&self, values: &[&[f32]]) -> Result<Vec<Self::Storage>> {
        let lens: Vec<usize> = values.iter().map(|v| v.len()).collect();
        let views = self.alloc_group("upload_group", &lens)?;
        let Some(first) = views.first() else {
            return Ok(views);
        };
        // One staging copy for the group, the gaps between tensors zero.
        let mut bytes = vec![0u8; first.raw().size() as usize];
        for (view, data) in views.iter().zip(values) {
            let at = view.offset as usize;
            bytes[at..at + 4 * data.len()].copy_from_slice(bytemuck::cast_slice(data));
        }
        self.write_to(&first.buffer_view(), &bytes);
        Ok(views)
    }

    fn zeros_group(&self, lens: &[usize]) -> Result<Vec<Self::Storage>> {
        let views = self.alloc_group("zeros_group", lens)?;
        if let Some(first) = views.first() {
            self.clear(&first.buffer_view());
        }
        Ok(views)
    }

    fn gradient_slots(&self, lens: &[usize]) -> Result<Option<Vec<Self::Storage>>> {
        self.zeros_group(lens).map(Some)
    }

    fn flush(&self) -> Result<()> {
        let pending = self.recording.borrow_mut().take();
        if let Some(Recording { mut encoder, pass }) = pending {
            drop(pass);
            let mut profiler = self.profiler.borrow_mut();
            if let Some(profiler) = profiler.as_ref() {
                profiler.resolve(&mut encoder);
            }
            self.submit(encoder);
            if let Some(profiler) = profiler.as_mut() {
                // A device error first: it is the likelier cause of a failed readback.
                self.ctx.check()?;
                profiler.collect(&self.ctx.device)?;
            }
        }
        self.ctx.check()
    }
}
