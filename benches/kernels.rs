//! Microbenchmarks of every kernel, forward and backward, at the SuperNet's shapes (batch 64),
//! on the CPU backend and, when an adapter opens, on the GPU backend.
//!
//! Method:
//! - Each kernel's inputs are made from a fixed seed and uploaded once, before and outside the
//!   timed loop; they stay resident for the whole run.
//! - One iteration calls the kernel trait method (e.g. `conv2d_forward`) and then waits for its
//!   result by downloading the output's first value. On the GPU that download submits the
//!   recorded dispatch, copies 4 bytes to a staging buffer, and blocks until the device is idle,
//!   so every sample measures the kernel's execution, not just its encoding. The fixed cost of
//!   that submit-and-wait is measured alone by `sync/download_1`: subtract it to estimate the
//!   kernel's own device time. On the CPU the kernel runs synchronously and the download is a
//!   one-value copy.
//! - Output buffers are allocated by each call, as in training; on the GPU they come from the
//!   backend's size-keyed pool, so after the first iteration no device memory is allocated.
//! - In-place kernels (`masked_concat/write_slot`, `masked_sum/axpy`, `adadelta/step`) update
//!   their resident buffers again on every iteration; their cost does not depend on the values.
//!
//! Names: the group is `<op>_<shape>/<kernel>` and the backend (`cpu` or `gpu`) is the
//! parameter, e.g. `conv2d_k5_8x14x14/forward/gpu`. For conv2d the shape is the kernel size and
//! the input's channels x height x width (every conv has 8 output channels; conv_relu_pool's
//! names x's channels "of" the weight's); for linear it is
//! in x out features. Throughput (`Throughput::Elements`) counts multiply-adds for conv2d and
//! linear (the same count for all three of their kernels), and output elements otherwise.
//!
//! Criterion runs short (10 samples, 300 ms warm-up, 1 s measurement) so that a full
//! `cargo bench --bench kernels` stays within minutes on a small CPU with a software Vulkan
//! driver; `cargo bench --bench kernels -- --test` runs every benchmark once. Without a GPU
//! adapter the GPU benchmarks are skipped with a message and the CPU ones still run.

use std::hint::black_box;
use std::rc::Rc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use supernet::engine::backend::GradInto;
use supernet::engine::ops::conv2d::{Conv2dDims, ConvGeometry};
use supernet::engine::ops::conv_relu_pool::ConvReluPoolDims;
use supernet::engine::ops::gather::GatherDims;
use supernet::engine::ops::linear::LinearDims;
use supernet::engine::ops::masked_concat::ConcatDims;
use supernet::engine::ops::maxpool2::Pool2Dims;
use supernet::engine::ops::softmax_xent::XentDims;
use supernet::engine::{AdadeltaConfig, Backend, CpuBackend, GpuBackend, Memory};
use supernet::Result;

const BATCH: usize = 64;
/// Output channels of every conv2d in the SuperNet.
const CONV_OUT_CHANNELS: usize = 8;
const CLASSES: usize = 10;
const IMAGE_SIZE: usize = 28;
/// Images in the resident buffer the gather reads from (MNIST's training set).
const RESIDENT_IMAGES: usize = 60_000;
const MNIST_MEAN: f32 = 0.1307;
const MNIST_STD: f32 = 0.3081;

/// One kernel at one shape on one backend: recording it and waiting for its result.
struct Case<'a> {
    group: String,
    elements: Option<u64>,
    run: Box<dyn Fn() -> Result<()> + 'a>,
}

/// The cases of one op at one shape, sharing inputs that are resident on `backend`.
struct OpCases<'a, B: Backend, I> {
    backend: &'a B,
    op: String,
    inputs: Rc<I>,
    cases: Vec<Case<'a>>,
}

impl<'a, B: Backend, I: 'a> OpCases<'a, B, I> {
    fn new(backend: &'a B, op: String, inputs: I) -> Self {
        let inputs = Rc::new(inputs);
        OpCases {
            backend,
            op,
            inputs,
            cases: Vec::new(),
        }
    }

    /// Adds `op/name`: `kernel` returns a buffer it wrote, whose first value is read back.
    fn kernel(
        mut self,
        name: &str,
        elements: Option<usize>,
        kernel: impl Fn(&B, &I) -> Result<B::Storage> + 'a,
    ) -> Self {
        let (backend, inputs) = (self.backend, self.inputs.clone());
        let run = move || wait_for(backend, &kernel(backend, &inputs)?);
        self.cases.push(Case {
            group: format!("{}/{name}", self.op),
            elements: elements.map(|n| n as u64),
            run: Box::new(run),
        });
        self
    }

    fn done(self) -> Vec<Case<'a>> {
        self.cases
    }
}

/// Blocks until `out` is written: on the GPU, submits pending work and reads one value back.
fn wait_for<B: Backend>(backend: &B, out: &B::Storage) -> Result<()> {
    black_box(backend.download(out, 1)?);
    Ok(())
}

/// `len` values in [-1, 1), the same for every backend.
fn random_values(len: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(len as u64);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// `len` indices below `bound`, the same for every backend.
fn random_indices(len: usize, bound: usize) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(bound as u64);
    (0..len)
        .map(|_| rng.random_range(0..bound as u32))
        .collect()
}

fn upload_random<B: Backend>(backend: &B, len: usize) -> Result<B::Storage> {
    backend.upload(&random_values(len))
}

struct ConvInputs<B: Memory> {
    dims: Conv2dDims,
    x: B::Storage,
    weight: B::Storage,
    bias: B::Storage,
    grad_out: B::Storage,
}

fn conv2d_cases<B: Backend>(
    backend: &B,
    in_channels: usize,
    size: usize,
    geometry: ConvGeometry,
) -> Result<Vec<Case<'_>>> {
    let dims = Conv2dDims {
        batch: BATCH,
        in_channels,
        out_channels: CONV_OUT_CHANNELS,
        height: size,
        width: size,
        geometry,
    };
    let inputs = ConvInputs::<B> {
        dims,
        x: upload_random(backend, dims.input_len())?,
        weight: upload_random(backend, dims.weight_len())?,
        bias: upload_random(backend, dims.out_channels)?,
        grad_out: upload_random(backend, dims.output_len())?,
    };
    let op = format!(
        "conv2d_{}_{in_channels}x{size}x{size}",
        geometry_name(geometry)
    );
    let kernel = geometry.kernel;
    let macs = Some(dims.output_len() * dims.in_per_group() * kernel * kernel);
    Ok(OpCases::new(backend, op, inputs)
        .kernel("forward", macs, |b, i| {
            b.conv2d_forward(&i.dims, &i.x, &i.weight, &i.bias)
        })
        .kernel("backward_input", macs, |b, i| {
            b.conv2d_backward_input(&i.dims, &i.weight, &i.grad_out)
        })
        .kernel("backward_params", macs, |b, i| {
            let into = GradInto::new_buffers();
            let (_, grad_bias) = b.conv2d_backward_params(&i.dims, &i.x, &i.grad_out, into)?;
            Ok(grad_bias)
        })
        .done())
}

struct ConvReluPoolInputs<B: Memory> {
    dims: ConvReluPoolDims,
    x: B::Storage,
    weight: B::Storage,
    bias: B::Storage,
    route: B::Indices,
    grad_out: B::Storage,
}

/// `k3`, `k3d2` (dilation 2), `k3g8` (8 groups).
fn geometry_name(g: ConvGeometry) -> String {
    let mut name = format!("k{}", g.kernel);
    if g.dilation != 1 {
        name += &format!("d{}", g.dilation);
    }
    if g.groups != 1 {
        name += &format!("g{}", g.groups);
    }
    name
}

/// The fused block: x's `in_channels` at `first_channel` of the weight's `weight_channels`
/// (a Concat mix's slot when they differ).
fn conv_relu_pool_cases<B: Backend>(
    backend: &B,
    (in_channels, size, geometry): (usize, usize, ConvGeometry),
    [weight_channels, first_channel]: [usize; 2],
) -> Result<Vec<Case<'_>>> {
    let kernel = geometry.kernel;
    let x_shape = [BATCH, in_channels, size, size];
    let weight_shape = [CONV_OUT_CHANNELS, weight_channels, kernel, kernel];
    let bias_shape = [CONV_OUT_CHANNELS];
    let dims = ConvReluPoolDims::from_shapes(
        &x_shape,
        &weight_shape,
        &bias_shape,
        first_channel,
        geometry,
    )?;
    let x = upload_random(backend, dims.conv.input_len())?;
    let weight = upload_random(backend, dims.weight_len())?;
    let bias = upload_random(backend, CONV_OUT_CHANNELS)?;
    let (_, route) = backend.conv_relu_pool_forward(&dims, &x, &weight, &bias)?;
    let inputs = ConvReluPoolInputs::<B> {
        dims,
        grad_out: upload_random(backend, dims.output_len())?,
        x,
        weight,
        bias,
        route,
    };
    let op = format!(
        "conv_relu_pool_{}_{in_channels}of{weight_channels}x{size}x{size}",
        geometry_name(geometry)
    );
    let macs = Some(dims.conv.output_len() * dims.conv.in_per_group() * kernel * kernel);
    Ok(OpCases::new(backend, op, inputs)
        .kernel("forward", macs, |b, i| {
            Ok(b.conv_relu_pool_forward(&i.dims, &i.x, &i.weight, &i.bias)?
                .0)
        })
        .kernel("backward_input", macs, |b, i| {
            b.conv_relu_pool_backward_input(&i.dims, &i.weight, &i.route, &i.grad_out)
        })
        .kernel("backward_params", macs, |b, i| {
            let into = GradInto::new_buffers();
            let (_, grad_bias) =
                b.conv_relu_pool_backward_params(&i.dims, &i.x, &i.route, &i.grad_out, into)?;
            Ok(grad_bias)
        })
        .done())
}

struct LinearInputs<B: Memory> {
    dims: LinearDims,
    x: B::Storage,
    weight: B::Storage,
    bias: B::Storage,
    grad_out: B::Storage,
}

fn linear_cases<B: Backend>(
    backend: &B,
    in_features: usize,
    out_features: usize,
) -> Result<Vec<Case<'_>>> {
    let dims = LinearDims {
        batch: BATCH,
        in_features,
        out_features,
    };
    let inputs = LinearInputs::<B> {
        dims,
        x: upload_random(backend, BATCH * in_features)?,
        weight: upload_random(backend, out_features * in_features)?,
        bias: upload_random(backend, out_features)?,
        grad_out: upload_random(backend, BATCH * out_features)?,
    };
    let op = format!("linear_{in_features}x{out_features}");
    let macs = Some(BATCH * in_features * out_features);
    Ok(OpCases::new(backend, op, inputs)
        .kernel("forward", macs, |b, i| {
            b.linear_forward(&i.dims, &i.x, &i.weight, &i.bias)
        })
        .kernel("backward_input", macs, |b, i| {
            b.linear_backward_input(&i.dims, &i.weight, &i.grad_out)
        })
        .kernel("backward_params", macs, |b, i| {
            let into = GradInto::new_buffers();
            let (_, grad_bias) = b.linear_backward_params(&i.dims, &i.x, &i.grad_out, into)?;
            Ok(grad_bias)
        })
        .done())
}

/// An activation-shaped input and an upstream gradient of the same shape.
struct MapInputs<B: Memory> {
    len: usize,
    x: B::Storage,
    grad_out: B::Storage,
}

fn map_inputs<B: Backend>(backend: &B, len: usize) -> Result<MapInputs<B>> {
    Ok(MapInputs {
        len,
        x: upload_random(backend, len)?,
        grad_out: upload_random(backend, len)?,
    })
}

fn relu_cases<B: Backend>(backend: &B, size: usize) -> Result<Vec<Case<'_>>> {
    let len = BATCH * CONV_OUT_CHANNELS * size * size;
    let op = format!("relu_{CONV_OUT_CHANNELS}x{size}x{size}");
    Ok(OpCases::new(backend, op, map_inputs(backend, len)?)
        .kernel("forward", Some(len), |b, i| b.relu_forward(&i.x, i.len))
        // The backward reads the forward's output; the random input serves as well.
        .kernel("backward", Some(len), |b, i| {
            b.relu_backward(&i.x, &i.grad_out, i.len)
        })
        .done())
}

struct PoolInputs<B: Memory> {
    dims: Pool2Dims,
    x: B::Storage,
    argmax: B::Indices,
    grad_out: B::Storage,
}

fn maxpool2_cases<B: Backend>(backend: &B, size: usize) -> Result<Vec<Case<'_>>> {
    let dims = Pool2Dims {
        batch: BATCH,
        channels: CONV_OUT_CHANNELS,
        height: size,
        width: size,
    };
    let x = upload_random(backend, dims.input_len())?;
    let (_out, argmax) = backend.maxpool2_forward(&dims, &x)?;
    let grad_out = upload_random(backend, dims.output_len())?;
    let inputs = PoolInputs::<B> {
        dims,
        x,
        argmax,
        grad_out,
    };
    let op = format!("maxpool2_{CONV_OUT_CHANNELS}x{size}x{size}");
    Ok(OpCases::new(backend, op, inputs)
        .kernel("forward", Some(dims.output_len()), |b, i| {
            let (out, _argmax) = b.maxpool2_forward(&i.dims, &i.x)?;
            Ok(out)
        })
        .kernel("backward", Some(dims.input_len()), |b, i| {
            b.maxpool2_backward(&i.dims, &i.argmax, &i.grad_out)
        })
        .done())
}

struct ConcatInputs<B: Memory> {
    dims: ConcatDims,
    out: B::Storage,
    part: B::Storage,
    grad_out: B::Storage,
}

/// Two `[64, 8, 28, 28]` parts, as `SuperNetConcat` mixes them.
fn masked_concat_cases<B: Backend>(backend: &B) -> Result<Vec<Case<'_>>> {
    let dims = ConcatDims {
        batch: BATCH,
        channels: CONV_OUT_CHANNELS,
        pixels: IMAGE_SIZE * IMAGE_SIZE,
        slots: 2,
    };
    let inputs = ConcatInputs::<B> {
        dims,
        out: backend.zeros(dims.output_len())?,
        part: upload_random(backend, dims.part_len())?,
        grad_out: upload_random(backend, dims.output_len())?,
    };
    let op = format!("masked_concat_2x{CONV_OUT_CHANNELS}x{IMAGE_SIZE}x{IMAGE_SIZE}");
    Ok(OpCases::new(backend, op, inputs)
        .kernel("write_slot", Some(dims.part_len()), |b, i| {
            b.concat_write_slot(&i.dims, &i.out, &i.part, 1, 0.25)?;
            Ok(i.out.clone())
        })
        .kernel("read_slot", Some(dims.part_len()), |b, i| {
            b.concat_read_slot(&i.dims, &i.grad_out, 1, 0.25)
        })
        .done())
}

/// Two `[64, 8, 28, 28]` parts, as `SuperNetSum` mixes them: `scale` the first, `axpy` the second.
fn masked_sum_cases<B: Backend>(backend: &B) -> Result<Vec<Case<'_>>> {
    let len = BATCH * CONV_OUT_CHANNELS * IMAGE_SIZE * IMAGE_SIZE;
    let op = format!("masked_sum_{CONV_OUT_CHANNELS}x{IMAGE_SIZE}x{IMAGE_SIZE}");
    Ok(OpCases::new(backend, op, map_inputs(backend, len)?)
        .kernel("scale", Some(len), |b, i| b.scale(&i.x, 0.75, i.len))
        .kernel("axpy", Some(len), |b, i| {
            b.axpy(&i.grad_out, &i.x, 0.25, i.len)?;
            Ok(i.grad_out.clone())
        })
        .done())
}

struct XentInputs<B: Memory> {
    dims: XentDims,
    logits: B::Storage,
    labels: B::Indices,
    grad_loss: B::Storage,
}

fn softmax_xent_cases<B: Backend>(backend: &B) -> Result<Vec<Case<'_>>> {
    let dims = XentDims {
        batch: BATCH,
        classes: CLASSES,
    };
    let inputs = XentInputs::<B> {
        dims,
        logits: upload_random(backend, BATCH * CLASSES)?,
        labels: backend.upload_indices(&random_indices(BATCH, CLASSES))?,
        grad_loss: backend.upload(&[1.0])?,
    };
    let op = format!("softmax_xent_{BATCH}x{CLASSES}");
    let elements = Some(BATCH * CLASSES);
    Ok(OpCases::new(backend, op, inputs)
        .kernel("forward", elements, |b, i| {
            b.softmax_xent_forward(&i.dims, &i.logits, &i.labels)
        })
        .kernel("backward", elements, |b, i| {
            b.softmax_xent_backward(&i.dims, &i.logits, &i.labels, &i.grad_loss)
        })
        // The accuracy op reads the same logits and labels: evaluation's per-row verdicts.
        .kernel("accuracy_correct_rows", elements, |b, i| {
            b.correct_rows(&i.dims, &i.logits, &i.labels)
        })
        .done())
}

struct AdadeltaInputs<B: Memory> {
    config: AdadeltaConfig,
    len: usize,
    param: B::Storage,
    grad: B::Storage,
    square_avg: B::Storage,
    acc_delta: B::Storage,
}

/// The first linear layer's weight, `[32, 392]`.
fn adadelta_cases<B: Backend>(backend: &B) -> Result<Vec<Case<'_>>> {
    let (rows, cols) = (392, 32);
    let len = rows * cols;
    let inputs = AdadeltaInputs::<B> {
        config: AdadeltaConfig::default(),
        len,
        param: upload_random(backend, len)?,
        grad: upload_random(backend, len)?,
        square_avg: backend.zeros(len)?,
        acc_delta: backend.zeros(len)?,
    };
    Ok(
        OpCases::new(backend, format!("adadelta_{rows}x{cols}"), inputs)
            .kernel("step", Some(len), |b, i| {
                let grad = Some(&i.grad);
                b.adadelta_step(
                    &i.config,
                    &i.param,
                    grad,
                    &i.square_avg,
                    &i.acc_delta,
                    i.len,
                )?;
                Ok(i.param.clone())
            })
            .done(),
    )
}

struct GatherInputs<B: Memory> {
    dims: GatherDims,
    images: B::Bytes,
    indices: B::Indices,
}

/// A batch of 64 images, by random index, from a resident buffer of random u8 images.
fn gather_cases<B: Backend>(backend: &B) -> Result<Vec<Case<'_>>> {
    let dims = GatherDims {
        count: RESIDENT_IMAGES,
        batch: BATCH,
        height: IMAGE_SIZE,
        width: IMAGE_SIZE,
        mean: MNIST_MEAN,
        std: MNIST_STD,
    };
    let pixels = IMAGE_SIZE * IMAGE_SIZE;
    let mut rng = StdRng::seed_from_u64(7);
    let image_bytes: Vec<u8> = (0..RESIDENT_IMAGES * pixels)
        .map(|_| rng.random())
        .collect();
    let inputs = GatherInputs::<B> {
        dims,
        images: backend.upload_bytes(&image_bytes)?,
        indices: backend.upload_indices(&random_indices(BATCH, RESIDENT_IMAGES))?,
    };
    let op = format!("gather_{BATCH}of{RESIDENT_IMAGES}x{IMAGE_SIZE}x{IMAGE_SIZE}");
    Ok(OpCases::new(backend, op, inputs)
        .kernel("gather", Some(BATCH * pixels), |b, i| {
            b.gather_images(&i.dims, &i.images, &i.indices)
        })
        .done())
}

/// No kernel at all: the fixed cost of the wait every other case ends with.
fn sync_cases<B: Backend>(backend: &B) -> Result<Vec<Case<'_>>> {
    let resident = upload_random(backend, 1)?;
    Ok(OpCases::new(backend, "sync".to_string(), resident)
        .kernel("download_1", None, |_, resident| Ok(resident.clone()))
        .done())
}

/// Every case, in the same order on every backend.
fn all_cases<B: Backend>(backend: &B) -> Result<Vec<Case<'_>>> {
    let plain = ConvGeometry::plain;
    let dilated = ConvGeometry {
        dilation: 2,
        ..plain(3)
    };
    let depthwise = ConvGeometry {
        groups: CONV_OUT_CHANNELS,
        ..plain(3)
    };
    let conv_shapes = [
        (1, 28, plain(3)),
        (1, 28, plain(5)),
        (8, 14, plain(3)),
        (8, 14, plain(5)),
        (16, 14, plain(1)),
        (16, 28, plain(1)),
        (1, 28, dilated),
        (8, 14, dilated),
        (8, 28, depthwise),
        (8, 14, depthwise),
    ];
    let mut cases = sync_cases(backend)?;
    cases.extend(gather_cases(backend)?);
    for (in_channels, size, geometry) in conv_shapes {
        cases.extend(conv2d_cases(backend, in_channels, size, geometry)?);
    }
    // The Sum blocks' convolutions, and the Concat mix reading its second slot; a dilated and
    // a depthwise block.
    for (shape, slot) in [
        ((1, 28, plain(5)), [1, 0]),
        ((8, 14, plain(5)), [8, 0]),
        ((8, 14, plain(1)), [16, 8]),
        ((8, 14, dilated), [8, 0]),
        ((8, 14, depthwise), [1, 0]),
    ] {
        cases.extend(conv_relu_pool_cases(backend, shape, slot)?);
    }
    for size in [28, 14] {
        cases.extend(relu_cases(backend, size)?);
        cases.extend(maxpool2_cases(backend, size)?);
    }
    cases.extend(masked_sum_cases(backend)?);
    cases.extend(masked_concat_cases(backend)?);
    cases.extend(linear_cases(backend, 392, 32)?);
    cases.extend(linear_cases(backend, 32, 10)?);
    cases.extend(softmax_xent_cases(backend)?);
    cases.extend(adadelta_cases(backend)?);
    Ok(cases)
}

/// The GPU backend, or `None` with a line saying why its benchmarks are skipped.
fn open_gpu() -> Option<GpuBackend> {
    match GpuBackend::new() {
        Ok(gpu) => {
            println!("GPU benchmarks run on {}", gpu.context().adapter_name());
            Some(gpu)
        }
        Err(e) => {
            println!("GPU benchmarks skipped: {e}");
            None
        }
    }
}

fn bench_case(group: &mut BenchmarkGroup<'_, WallTime>, backend: &str, case: &Case<'_>) {
    group.bench_function(BenchmarkId::from_parameter(backend), |b| {
        b.iter(|| (case.run)().unwrap_or_else(|e| panic!("{}/{backend}: {e}", case.group)))
    });
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let cpu = CpuBackend::new();
    let gpu = open_gpu();
    let cpu_cases = all_cases(&cpu).expect("preparing the CPU inputs");
    let gpu_cases = match &gpu {
        Some(gpu) => all_cases(gpu).expect("preparing the GPU inputs"),
        None => Vec::new(),
    };
    for (i, cpu_case) in cpu_cases.iter().enumerate() {
        let mut group = criterion.benchmark_group(&cpu_case.group);
        if let Some(elements) = cpu_case.elements {
            group.throughput(Throughput::Elements(elements));
        }
        bench_case(&mut group, "cpu", cpu_case);
        if let Some(gpu_case) = gpu_cases.get(i) {
            bench_case(&mut group, "gpu", gpu_case);
        }
        group.finish();
    }
    criterion.final_summary();
}
