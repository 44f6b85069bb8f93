//! Every kernel of both fast backends, the CPU's and the GPU's, against the plain reference
//! backend, on seeded random inputs; and the CPU's lower builds (portable, AVX2 without FMA)
//! forced on this machine, against the same reference.
//!
//! Each op has a table of named cases (edge shapes, then the SuperNet's own shapes). A case
//! runs one generic body on every backend, from the same seed, and names every output it reads
//! back; `check` compares each fast backend with the reference: values with `assert_close`
//! (atol 1e-5, rtol 1e-4), indices exactly. A failure message starts with the op, the case, the
//! backend and the output.

mod common;

use rand::rngs::StdRng;
use rand::Rng;
use supernet::engine::backend::GradInto;
use supernet::engine::backends::cpu::{CpuBuild, CPU_BUILD_VAR};
use supernet::engine::ops::adadelta::AdadeltaKernel;
use supernet::engine::ops::conv2d::{Conv2dDims, Conv2dKernel, ConvGeometry};
use supernet::engine::ops::conv_relu_pool::ConvReluPoolDims;
use supernet::engine::ops::gather::GatherDims;
use supernet::engine::ops::linear::LinearDims;
use supernet::engine::ops::masked_concat::ConcatDims;
use supernet::engine::ops::maxpool2::Pool2Dims;
use supernet::engine::ops::pool_s1::{PoolKind, PoolS1Dims};
use supernet::engine::ops::softmax_xent::XentDims;
use supernet::engine::{
    Adadelta, AdadeltaConfig, Backend, CpuBackend, Memory, ReferenceBackend, Tape, Tensor,
};
use supernet::Result;

/// Invocations per workgroup, for the lengths that straddle one.
const WORKGROUP: usize = supernet::engine::backends::gpu::WORKGROUP_SIZE as usize;

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;

/// One output a case reads back.
enum Out {
    /// f32 values, compared with the tolerance.
    Close(Vec<f32>),
    /// Indices, compared exactly.
    Exact(Vec<u32>),
}

type Outputs = Vec<(String, Out)>;

/// A named input configuration of one op, runnable on any backend.
trait KernelCase {
    fn name(&self) -> String;
    /// Draws the inputs from `rng`, runs the kernels and reads every output back.
    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs>;
}

/// Runs every case on the reference backend, on the CPU and, where there is an adapter, on the
/// GPU, from the same seed, and compares each fast backend's outputs with the reference's.
fn check<C: KernelCase>(cases: &[C]) {
    // A run with a forced CPU build checks the CPU; the parent run checks the GPU.
    let forced = std::env::var_os(CPU_BUILD_VAR).is_some();
    let gpu = if forced { None } else { common::gpu() };
    for (seed, case) in cases.iter().enumerate() {
        let seed = seed as u64;
        let want = outputs(case, &ReferenceBackend::new(), "the reference", seed);
        let cpu = outputs(case, &CpuBackend::new(), "the CPU", seed);
        compare(&format!("{} on the CPU", case.name()), &cpu, &want);
        if let Some(gpu) = &gpu {
            let got = outputs(case, gpu, "the GPU", seed);
            compare(&format!("{} on the GPU", case.name()), &got, &want);
        }
    }
}

fn outputs<C: KernelCase, B: Backend>(case: &C, backend: &B, on: &str, seed: u64) -> Outputs {
    case.run(backend, &mut common::rng(seed))
        .unwrap_or_else(|e| panic!("{} on {on}: {e}", case.name()))
}

/// A fast backend's outputs against the reference's, output by output.
fn compare(name: &str, got: &Outputs, want: &Outputs) {
    assert_eq!(got.len(), want.len(), "{name}: number of outputs");
    for ((output, want), (_, got)) in want.iter().zip(got) {
        let what = format!("{name}: {output}");
        match (got, want) {
            (Out::Close(got), Out::Close(want)) => {
                common::assert_close(&what, got, want, ATOL, RTOL)
            }
            (Out::Exact(got), Out::Exact(want)) => assert_exact(&what, got, want),
            _ => panic!("{what}: the backends returned different kinds of output"),
        }
    }
}

/// Under `SUPERNET_CPU_BUILD` (as `every_cpu_build_matches_the_reference` runs this file) the
/// kernels run the forced build; without it, the best this CPU has.
#[test]
fn the_active_cpu_build_is_the_one_asked_for() {
    let asked = CpuBuild::from_env().expect("a valid SUPERNET_CPU_BUILD");
    assert_eq!(CpuBuild::active(), asked);
}

/// This test file again, once per CPU build below this machine's best, the build forced with
/// `SUPERNET_CPU_BUILD`: every case of every kernel against the reference in each build, so the
/// portable and non-FMA code is tested on a machine that would never run it.
#[test]
fn every_cpu_build_matches_the_reference() {
    let lower: Vec<CpuBuild> = CpuBuild::ALL
        .into_iter()
        .filter(|b| *b < CpuBuild::best())
        .collect();
    if CpuBuild::best() != CpuBuild::Avx2Fma {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI machines must have AVX2 and FMA"
        );
        eprintln!("this CPU runs up to the {} build", CpuBuild::best().name());
    }
    let this_test = "every_cpu_build_matches_the_reference";
    for build in lower {
        let output = std::process::Command::new(std::env::current_exe().expect("this test"))
            .args(["--skip", this_test])
            .env(CPU_BUILD_VAR, build.name())
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "the {} build:\n{stdout}\n{stderr}",
            build.name()
        );
        assert!(
            stdout.contains("test the_active_cpu_build_is_the_one_asked_for ... ok")
                && stdout.contains("test relu_lengths ... ok"),
            "the {} build did not run the kernel checks:\n{stdout}",
            build.name()
        );
    }
}

fn assert_exact<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
    let differing = got.iter().zip(want).filter(|(g, w)| g != w).count();
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!(
            "{what}: element {i} is {:?} but expected {:?} ({differing} of {} differ)",
            got[i],
            want[i],
            got.len()
        );
    }
}

fn values<B: Memory>(
    backend: &B,
    name: &str,
    storage: &B::Storage,
    len: usize,
) -> Result<(String, Out)> {
    Ok((
        name.to_string(),
        Out::Close(backend.download(storage, len)?),
    ))
}

fn indices<B: Memory>(
    backend: &B,
    name: &str,
    storage: &B::Indices,
    len: usize,
) -> Result<(String, Out)> {
    Ok((
        name.to_string(),
        Out::Exact(backend.download_indices(storage, len)?),
    ))
}

/// A layer's gradient slots as a network's parameters have them on the GPU (views at offsets
/// of one buffer), or plain buffers on a backend without slots, so every parameter-gradient
/// kernel is checked writing into the slots given.
fn slots_for<B: Backend>(backend: &B, lens: &[usize]) -> Result<Vec<B::Storage>> {
    match backend.gradient_slots(lens)? {
        Some(slots) => Ok(slots),
        None => lens.iter().map(|&len| backend.zeros(len)).collect(),
    }
}

fn grad_into<B: Backend>(slots: &[B::Storage]) -> GradInto<'_, B::Storage> {
    GradInto {
        weight: Some(&slots[0]),
        bias: Some(&slots[1]),
    }
}

fn upload_random<B: Memory>(backend: &B, rng: &mut StdRng, len: usize) -> Result<B::Storage> {
    backend.upload(&common::random(rng, len))
}

/// Post-ReLU-like values on four levels {0, 1/3, 2/3, 1}: about half zeros, many ties.
fn tie_heavy(rng: &mut StdRng, len: usize) -> Vec<f32> {
    common::random(rng, len)
        .iter()
        .map(|v| (v * 3.0).round().max(0.0) / 3.0)
        .collect()
}

// ---- conv2d ---------------------------------------------------------------------------------

struct ConvCase(&'static str, [usize; 6]);

impl KernelCase for ConvCase {
    fn name(&self) -> String {
        let [n, c, o, h, w, k] = self.1;
        format!("conv2d {} (n{n} c{c} o{o} {h}x{w} k{k})", self.0)
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let [batch, in_channels, out_channels, height, width, kernel] = self.1;
        let d = &Conv2dDims {
            batch,
            in_channels,
            out_channels,
            height,
            width,
            geometry: ConvGeometry::plain(kernel),
        };
        conv_outputs(backend, rng, d)
    }
}

/// `k{kernel}`, then `d{dilation}` and `g{groups}` where they are not 1.
fn geometry_name(g: ConvGeometry) -> String {
    let mut name = format!("k{}", g.kernel);
    if g.dilation != 1 {
        name += &format!(" d{}", g.dilation);
    }
    if g.groups != 1 {
        name += &format!(" g{}", g.groups);
    }
    name
}

fn geometry(kernel: usize, dilation: usize, groups: usize) -> ConvGeometry {
    ConvGeometry {
        kernel,
        dilation,
        groups,
    }
}

/// `[batch, in, out, height, width]` and a geometry (dilation, groups).
struct GeometryCase(&'static str, [usize; 5], ConvGeometry);

impl KernelCase for GeometryCase {
    fn name(&self) -> String {
        let [n, c, o, h, w] = self.1;
        let g = geometry_name(self.2);
        format!("conv2d {} (n{n} c{c} o{o} {h}x{w} {g})", self.0)
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let [batch, in_channels, out_channels, height, width] = self.1;
        let kernel = self.2.kernel;
        let d = &Conv2dDims::from_shapes(
            &[batch, in_channels, height, width],
            &[out_channels, in_channels / self.2.groups, kernel, kernel],
            &[out_channels],
            self.2,
        )?;
        conv_outputs(backend, rng, d)
    }
}

/// conv2d's forward and both backward kernels on random inputs.
fn conv_outputs<B: Backend>(backend: &B, rng: &mut StdRng, d: &Conv2dDims) -> Result<Outputs> {
    let out_channels = d.out_channels;
    let x = upload_random(backend, rng, d.input_len())?;
    let weight = upload_random(backend, rng, d.weight_len())?;
    let bias = upload_random(backend, rng, out_channels)?;
    let grad_out = upload_random(backend, rng, d.output_len())?;
    let out = backend.conv2d_forward(d, &x, &weight, &bias)?;
    let grad_x = backend.conv2d_backward_input(d, &weight, &grad_out)?;
    let slots = slots_for(backend, &[d.weight_len(), out_channels])?;
    let into = grad_into::<B>(&slots);
    let (grad_weight, grad_bias) = backend.conv2d_backward_params(d, &x, &grad_out, into)?;
    Ok(vec![
        values(backend, "forward", &out, d.output_len())?,
        values(backend, "backward_input", &grad_x, d.input_len())?,
        values(
            backend,
            "backward_params weight",
            &grad_weight,
            d.weight_len(),
        )?,
        values(backend, "backward_params bias", &grad_bias, out_channels)?,
    ])
}

#[test]
fn conv2d_edge_shapes() {
    check(&[
        ConvCase("batch 1, one channel", [1, 1, 1, 5, 5, 3]),
        ConvCase("odd 7x5, channels 3->5", [2, 3, 5, 7, 5, 3]),
        ConvCase("9x9, kernel 5, channels 1->6", [1, 1, 6, 9, 9, 5]),
        ConvCase("kernel 1, channels 6->3", [3, 6, 3, 5, 5, 1]),
        ConvCase("kernel 5, odd 6x7, channels 5->3", [2, 5, 3, 6, 7, 5]),
        ConvCase("kernel 5 wider than a 3x2 image", [2, 3, 4, 3, 2, 5]),
        ConvCase("1x1 image, kernel 3", [3, 2, 5, 1, 1, 3]),
        ConvCase(
            "a batch past one workgroup, 17 channels",
            [70, 2, 17, 3, 4, 3],
        ),
        ConvCase("kernel 7, 14x14", [2, 3, 9, 14, 14, 7]),
        ConvCase(
            "kernel 9 (the CPU's general-kernel path), 11x10",
            [2, 3, 9, 11, 10, 9],
        ),
    ]);
}

/// Dilated and grouped convolutions: dilation past the image, 1x1 images, one channel, channel
/// counts off a multiple of 8, depthwise and other groupings.
#[test]
fn conv2d_geometry_edge_shapes() {
    check(&[
        GeometryCase(
            "dilated, odd 7x6, channels 3->4",
            [2, 3, 4, 7, 6],
            geometry(3, 2, 1),
        ),
        GeometryCase("1x1 image, dilated", [3, 2, 5, 1, 1], geometry(3, 2, 1)),
        GeometryCase(
            "dilation past a 4x3 image",
            [2, 3, 4, 4, 3],
            geometry(3, 5, 1),
        ),
        GeometryCase(
            "kernel 5 dilated, one channel",
            [1, 1, 1, 9, 8],
            geometry(5, 2, 1),
        ),
        GeometryCase(
            "dilation 3, channels 9->11",
            [2, 9, 11, 7, 7],
            geometry(3, 3, 1),
        ),
        GeometryCase(
            "kernel 7 dilated (the general path)",
            [1, 2, 3, 10, 9],
            geometry(7, 2, 1),
        ),
        GeometryCase("kernel 1 dilated", [2, 3, 5, 4, 4], geometry(1, 3, 1)),
        GeometryCase("depthwise, 8 channels", [2, 8, 8, 7, 7], geometry(3, 1, 8)),
        GeometryCase("depthwise, one channel", [2, 1, 1, 6, 6], geometry(3, 1, 1)),
        GeometryCase(
            "depthwise 5x5, 3 channels",
            [1, 3, 3, 9, 6],
            geometry(5, 1, 3),
        ),
        GeometryCase(
            "depthwise, 11 channels (a part block)",
            [2, 11, 11, 5, 6],
            geometry(3, 1, 11),
        ),
        GeometryCase(
            "depthwise dilated, 1x1 image",
            [2, 9, 9, 1, 1],
            geometry(3, 2, 9),
        ),
        GeometryCase(
            "depthwise dilated past a 3x3 image",
            [2, 4, 4, 3, 3],
            geometry(3, 4, 4),
        ),
        GeometryCase(
            "2 groups, channels 4->6",
            [2, 4, 6, 5, 5],
            geometry(3, 1, 2),
        ),
        GeometryCase(
            "3 groups, two outputs each",
            [2, 3, 6, 5, 4],
            geometry(3, 1, 3),
        ),
        GeometryCase(
            "4 groups dilated, channels 12->8",
            [2, 12, 8, 6, 6],
            geometry(3, 2, 4),
        ),
        GeometryCase(
            "a batch past one workgroup, depthwise 17 channels",
            [70, 17, 17, 3, 4],
            geometry(3, 1, 17),
        ),
    ]);
}

#[test]
fn conv2d_geometry_supernet_shapes() {
    check(&[
        GeometryCase(
            "ops space block 1, 3x3 dilated 2",
            [64, 1, 8, 28, 28],
            geometry(3, 2, 1),
        ),
        GeometryCase(
            "ops space block 2, 3x3 dilated 2",
            [64, 8, 8, 14, 14],
            geometry(3, 2, 1),
        ),
        GeometryCase(
            "ops space block 2, depthwise 3x3",
            [64, 8, 8, 14, 14],
            geometry(3, 1, 8),
        ),
    ]);
}

#[test]
fn conv2d_supernet_shapes() {
    check(&[
        ConvCase("SuperNet conv1 3x3", [64, 1, 8, 28, 28, 3]),
        ConvCase("SuperNet conv2 5x5", [64, 8, 8, 14, 14, 5]),
        ConvCase("SuperNet 1x1 after concat", [64, 16, 8, 14, 14, 1]),
    ]);
}

/// The weight gradient sums per-image partials in image order: the same bits on every run.
#[test]
fn conv2d_weight_gradient_is_bitwise_deterministic() {
    let Some(gpu) = common::gpu() else { return };
    let d = Conv2dDims {
        batch: 64,
        in_channels: 8,
        out_channels: 8,
        height: 14,
        width: 14,
        geometry: ConvGeometry::plain(5),
    };
    let mut rng = common::rng(7);
    let x = upload_random(&gpu, &mut rng, d.input_len()).unwrap();
    let grad_out = upload_random(&gpu, &mut rng, d.output_len()).unwrap();
    let bits = || {
        let (grad_weight, grad_bias) = gpu
            .conv2d_backward_params(&d, &x, &grad_out, GradInto::new_buffers())
            .unwrap();
        let mut read = gpu.download(&grad_weight, d.weight_len()).unwrap();
        read.extend(gpu.download(&grad_bias, d.out_channels).unwrap());
        read.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
    };
    let first = bits();
    assert!(
        first.iter().any(|&b| b != 0),
        "the weight gradient is all zeros"
    );
    assert_exact(
        "conv2d backward_params, second run against the first",
        &bits(),
        &first,
    );
}

// ---- relu -----------------------------------------------------------------------------------

struct ReluCase(&'static str, usize);

impl KernelCase for ReluCase {
    fn name(&self) -> String {
        format!("relu {} (len {})", self.0, self.1)
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let len = self.1;
        let mut x = common::random(rng, len);
        x.iter_mut().step_by(3).for_each(|v| *v = 0.0);
        let x = backend.upload(&x)?;
        let grad_out = upload_random(backend, rng, len)?;
        let out = backend.relu_forward(&x, len)?;
        let grad_x = backend.relu_backward(&out, &grad_out, len)?;
        Ok(vec![
            values(backend, "forward", &out, len)?,
            values(backend, "backward", &grad_x, len)?,
        ])
    }
}

#[test]
fn relu_lengths() {
    check(&[
        ReluCase("one element", 1),
        ReluCase("one short of a workgroup", WORKGROUP - 1),
        ReluCase("one past a workgroup", WORKGROUP + 1),
        ReluCase("SuperNet conv1 output", 64 * 8 * 28 * 28),
        ReluCase(
            "past 65535 workgroups (2-D grid)",
            65535 * WORKGROUP + WORKGROUP + 1,
        ),
    ]);
}

// ---- conv_relu_pool -------------------------------------------------------------------------

/// `[batch, in, out, height, width, kernel]`, the weight's channels and where x's start.
struct CrpCase(&'static str, [usize; 6], [usize; 2]);

/// A `CrpCase` whose convolution has the given geometry (dilation, groups).
struct CrpGeometryCase(&'static str, [usize; 6], [usize; 2], ConvGeometry);

impl KernelCase for CrpGeometryCase {
    fn name(&self) -> String {
        let [n, c, o, h, w, _] = self.1;
        let [cw, first] = self.2;
        let g = geometry_name(self.3);
        format!(
            "conv_relu_pool {} (n{n} c{c} o{o} {h}x{w} {g}, x at {first} of {cw} weight channels)",
            self.0
        )
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        crp_outputs(backend, rng, self.1, self.2, self.3)
    }
}

impl KernelCase for CrpCase {
    fn name(&self) -> String {
        let [n, c, o, h, w, k] = self.1;
        let [cw, first] = self.2;
        format!(
            "conv_relu_pool {} (n{n} c{c} o{o} {h}x{w} k{k}, x at {first} of {cw} weight channels)",
            self.0
        )
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let geometry = ConvGeometry::plain(self.1[5]);
        crp_outputs(backend, rng, self.1, self.2, geometry)
    }
}

/// conv_relu_pool's forward and both backward kernels on inputs of quarters (ties in windows).
fn crp_outputs<B: Backend>(
    backend: &B,
    rng: &mut StdRng,
    [batch, in_channels, out_channels, height, width, kernel]: [usize; 6],
    [weight_channels, first_channel]: [usize; 2],
    geometry: ConvGeometry,
) -> Result<Outputs> {
    let x_shape = [batch, in_channels, height, width];
    let weight_shape = [out_channels, weight_channels, kernel, kernel];
    let d = &ConvReluPoolDims::from_shapes(
        &x_shape,
        &weight_shape,
        &[out_channels],
        first_channel,
        geometry,
    )?;
    let x = backend.upload(&common::quarters(rng, d.conv.input_len()))?;
    let weight = backend.upload(&common::quarters(rng, d.weight_len()))?;
    let bias = backend.upload(&common::quarters(rng, out_channels))?;
    let grad_out = upload_random(backend, rng, d.output_len())?;
    let (out, route) = backend.conv_relu_pool_forward(d, &x, &weight, &bias)?;
    let grad_x = backend.conv_relu_pool_backward_input(d, &weight, &route, &grad_out)?;
    let slots = slots_for(backend, &[d.weight_len(), out_channels])?;
    let into = grad_into::<B>(&slots);
    let (grad_weight, grad_bias) =
        backend.conv_relu_pool_backward_params(d, &x, &route, &grad_out, into)?;
    Ok(vec![
        values(backend, "forward", &out, d.output_len())?,
        indices(backend, "forward route", &route, d.output_len())?,
        values(backend, "backward_input", &grad_x, d.conv.input_len())?,
        values(
            backend,
            "backward_params weight",
            &grad_weight,
            d.weight_len(),
        )?,
        values(backend, "backward_params bias", &grad_bias, out_channels)?,
    ])
}

#[test]
fn conv_relu_pool_edge_shapes() {
    check(&[
        CrpCase("one window, one channel", [1, 1, 1, 2, 2, 3], [1, 0]),
        CrpCase(
            "odd 7x5: the last row and column in no window",
            [2, 3, 5, 7, 5, 3],
            [3, 0],
        ),
        CrpCase(
            "kernel 5 wider than a 3x2 image",
            [2, 3, 4, 3, 2, 5],
            [3, 0],
        ),
        CrpCase(
            "kernel 7, 17 outputs (a part block)",
            [2, 2, 17, 9, 8, 7],
            [2, 0],
        ),
        CrpCase("a batch past one workgroup", [70, 2, 3, 4, 4, 3], [2, 0]),
        CrpCase(
            "1x1 reading the first of three slots",
            [2, 4, 5, 6, 6, 1],
            [12, 0],
        ),
        CrpCase(
            "1x1 reading the last of three slots",
            [2, 4, 5, 5, 7, 1],
            [12, 8],
        ),
        CrpCase("3x3 reading a middle slot", [3, 2, 9, 6, 5, 3], [6, 2]),
    ]);
}

/// The fused block over dilated and grouped convolutions.
#[test]
fn conv_relu_pool_geometry_edge_shapes() {
    check(&[
        CrpGeometryCase(
            "dilated, 6x6",
            [2, 3, 5, 6, 6, 3],
            [3, 0],
            geometry(3, 2, 1),
        ),
        CrpGeometryCase(
            "dilation past a 3x2 image",
            [2, 2, 3, 3, 2, 3],
            [2, 0],
            geometry(3, 4, 1),
        ),
        CrpGeometryCase(
            "dilated, 17 outputs (a part block), odd 8x7",
            [2, 2, 17, 8, 7, 3],
            [2, 0],
            geometry(3, 3, 1),
        ),
        CrpGeometryCase(
            "kernel 5 dilated, one channel",
            [1, 1, 1, 9, 8, 5],
            [1, 0],
            geometry(5, 2, 1),
        ),
        CrpGeometryCase(
            "depthwise, 8 channels, odd 7x7",
            [2, 8, 8, 7, 7, 3],
            [1, 0],
            geometry(3, 1, 8),
        ),
        CrpGeometryCase(
            "depthwise, one channel, one window",
            [1, 1, 1, 2, 2, 3],
            [1, 0],
            geometry(3, 1, 1),
        ),
        CrpGeometryCase(
            "depthwise 5x5, 11 channels (a part block)",
            [2, 11, 11, 6, 5, 5],
            [1, 0],
            geometry(5, 1, 11),
        ),
        CrpGeometryCase(
            "depthwise dilated",
            [2, 9, 9, 6, 6, 3],
            [1, 0],
            geometry(3, 2, 9),
        ),
        CrpGeometryCase(
            "2 groups, channels 4->6",
            [2, 4, 6, 5, 5, 3],
            [2, 0],
            geometry(3, 1, 2),
        ),
        CrpGeometryCase(
            "a batch past one workgroup, depthwise dilated",
            [70, 3, 3, 4, 4, 3],
            [1, 0],
            geometry(3, 2, 3),
        ),
    ]);
}

#[test]
fn conv_relu_pool_geometry_supernet_shapes() {
    check(&[
        CrpGeometryCase(
            "ops space block 1, 3x3 dilated 2",
            [64, 1, 8, 28, 28, 3],
            [1, 0],
            geometry(3, 2, 1),
        ),
        CrpGeometryCase(
            "ops space block 2, 3x3 dilated 2",
            [64, 8, 8, 14, 14, 3],
            [8, 0],
            geometry(3, 2, 1),
        ),
        CrpGeometryCase(
            "ops space block 2, depthwise 3x3",
            [64, 8, 8, 14, 14, 3],
            [1, 0],
            geometry(3, 1, 8),
        ),
    ]);
}

#[test]
fn conv_relu_pool_supernet_shapes() {
    check(&[
        CrpCase("SuperNet block 1, 3x3", [64, 1, 8, 28, 28, 3], [1, 0]),
        CrpCase("SuperNet block 2, 5x5", [64, 8, 8, 14, 14, 5], [8, 0]),
        CrpCase(
            "SuperNet Concat mix, slot 2 of 2",
            [64, 8, 8, 14, 14, 1],
            [16, 8],
        ),
        CrpCase(
            "large space, 7x7 map, 4 slots",
            [64, 8, 8, 7, 7, 1],
            [32, 24],
        ),
    ]);
}

// ---- maxpool2 -------------------------------------------------------------------------------

enum PoolInput {
    /// Four levels, about half zeros: many ties inside windows.
    Ties,
    /// All zeros: every window a four-way tie, so every argmax is its top-left element.
    Zeros,
}

struct PoolCase(&'static str, [usize; 4], PoolInput);

impl KernelCase for PoolCase {
    fn name(&self) -> String {
        let [n, c, h, w] = self.1;
        format!("maxpool2 {} (n{n} c{c} {h}x{w})", self.0)
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let [batch, channels, height, width] = self.1;
        let d = &Pool2Dims {
            batch,
            channels,
            height,
            width,
        };
        let x = match self.2 {
            PoolInput::Ties => tie_heavy(rng, d.input_len()),
            PoolInput::Zeros => vec![0.0; d.input_len()],
        };
        let x = backend.upload(&x)?;
        let grad_out = upload_random(backend, rng, d.output_len())?;
        let (out, argmax) = backend.maxpool2_forward(d, &x)?;
        let grad_x = backend.maxpool2_backward(d, &argmax, &grad_out)?;
        Ok(vec![
            values(backend, "forward", &out, d.output_len())?,
            indices(backend, "forward argmax", &argmax, d.output_len())?,
            values(backend, "backward", &grad_x, d.input_len())?,
        ])
    }
}

#[test]
fn maxpool2_edge_shapes_with_ties() {
    check(&[
        PoolCase("batch 1, a single window", [1, 1, 2, 2], PoolInput::Ties),
        PoolCase("odd 7x5 -> 3x2", [1, 2, 7, 5], PoolInput::Ties),
        PoolCase("odd 7x7 -> 3x3", [2, 3, 7, 7], PoolInput::Ties),
        PoolCase("9x9, 5 channels", [2, 5, 9, 9], PoolInput::Ties),
        PoolCase(
            "all zeros, first maximum is top-left",
            [2, 3, 7, 6],
            PoolInput::Zeros,
        ),
    ]);
}

#[test]
fn maxpool2_supernet_shapes() {
    check(&[
        PoolCase("SuperNet after conv1", [64, 8, 28, 28], PoolInput::Ties),
        PoolCase("SuperNet after the 1x1", [64, 8, 14, 14], PoolInput::Ties),
    ]);
}

// ---- linear ---------------------------------------------------------------------------------

struct LinearCase(&'static str, [usize; 3]);

impl KernelCase for LinearCase {
    fn name(&self) -> String {
        let [n, i, o] = self.1;
        format!("linear {} (n{n} {i}->{o})", self.0)
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let [batch, in_features, out_features] = self.1;
        let d = &LinearDims {
            batch,
            in_features,
            out_features,
        };
        let x = upload_random(backend, rng, batch * in_features)?;
        let weight = upload_random(backend, rng, out_features * in_features)?;
        let bias = upload_random(backend, rng, out_features)?;
        let grad_out = upload_random(backend, rng, batch * out_features)?;
        let out = backend.linear_forward(d, &x, &weight, &bias)?;
        let grad_x = backend.linear_backward_input(d, &weight, &grad_out)?;
        let slots = slots_for(backend, &[out_features * in_features, out_features])?;
        let into = grad_into::<B>(&slots);
        let (grad_weight, grad_bias) = backend.linear_backward_params(d, &x, &grad_out, into)?;
        Ok(vec![
            values(backend, "forward", &out, batch * out_features)?,
            values(backend, "backward_input", &grad_x, batch * in_features)?,
            values(
                backend,
                "backward_params weight",
                &grad_weight,
                out_features * in_features,
            )?,
            values(backend, "backward_params bias", &grad_bias, out_features)?,
        ])
    }
}

#[test]
fn linear_shapes() {
    check(&[
        LinearCase("batch 1, one feature", [1, 1, 1]),
        LinearCase("odd sizes", [5, 13, 9]),
        LinearCase("batch 1, wide", [1, 70, 3]),
        LinearCase("SuperNet fc1", [64, 392, 32]),
        LinearCase("SuperNet fc2", [64, 32, 10]),
    ]);
}

// ---- reduce_rows ----------------------------------------------------------------------------

struct ReduceCase(&'static str, [usize; 2]);

impl KernelCase for ReduceCase {
    fn name(&self) -> String {
        let [rows, cols] = self.1;
        format!("reduce_rows {} ({rows}x{cols})", self.0)
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let [rows, cols] = self.1;
        let x = upload_random(backend, rng, rows * cols)?;
        let sums = backend.reduce_rows(&x, rows, cols)?;
        Ok(vec![values(backend, "column sums", &sums, cols)?])
    }
}

#[test]
fn reduce_rows_shapes() {
    check(&[
        ReduceCase("one element", [1, 1]),
        ReduceCase("one row past a workgroup", [1, 65]),
        ReduceCase("one column", [9, 1]),
        ReduceCase("odd 7x5", [7, 5]),
        ReduceCase("SuperNet conv2 weight partials", [64, 8 * 8 * 25]),
    ]);
}

// ---- add_values -----------------------------------------------------------------------------

struct AddCase(&'static str, usize);

impl KernelCase for AddCase {
    fn name(&self) -> String {
        format!("add_values {} (len {})", self.0, self.1)
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let len = self.1;
        let a = upload_random(backend, rng, len)?;
        let b = upload_random(backend, rng, len)?;
        let sum = backend.add_values(&a, &b, len)?;
        Ok(vec![values(backend, "sum", &sum, len)?])
    }
}

#[test]
fn add_values_lengths() {
    check(&[
        AddCase("one element", 1),
        AddCase("one past a workgroup", 65),
        AddCase("odd", 1001),
    ]);
}

// ---- masked_sum -----------------------------------------------------------------------------

/// `scale(a, f)`, then `acc += g * b` on an independent buffer `acc`.
struct MaskedSumCase(&'static str, usize, [f32; 2]);

impl KernelCase for MaskedSumCase {
    fn name(&self) -> String {
        let [scale, axpy] = self.2;
        format!(
            "masked_sum {} (len {}, scale {scale}, axpy {axpy})",
            self.0, self.1
        )
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let (len, [scale_factor, axpy_factor]) = (self.1, self.2);
        let a = upload_random(backend, rng, len)?;
        let b = upload_random(backend, rng, len)?;
        let acc = upload_random(backend, rng, len)?;
        let scaled = backend.scale(&a, scale_factor, len)?;
        backend.axpy(&acc, &b, axpy_factor, len)?;
        backend.axpy(&scaled, &b, axpy_factor, len)?;
        Ok(vec![
            values(backend, "axpy onto an uploaded buffer", &acc, len)?,
            values(backend, "scale then axpy", &scaled, len)?,
        ])
    }
}

#[test]
fn masked_sum_scale_and_axpy() {
    check(&[
        MaskedSumCase("one element", 1, [0.3, 0.7]),
        MaskedSumCase("factors 1 and 0", 65, [1.0, 0.0]),
        MaskedSumCase("SuperNet conv2 output", 64 * 8 * 14 * 14, [0.25, 0.75]),
    ]);
}

// ---- masked_concat --------------------------------------------------------------------------

/// Writes the active slots into a buffer holding random values (an inactive slot keeps them),
/// then reads every active slot back out of a random gradient.
struct ConcatCase(&'static str, [usize; 3], &'static [Option<f32>]);

impl KernelCase for ConcatCase {
    fn name(&self) -> String {
        let [n, c, pixels] = self.1;
        format!(
            "masked_concat {} (n{n} c{c} {pixels} pixels, slots {:?})",
            self.0, self.2
        )
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let [batch, channels, pixels] = self.1;
        let d = &ConcatDims {
            batch,
            channels,
            pixels,
            slots: self.2.len(),
        };
        let out = upload_random(backend, rng, d.output_len())?;
        let grad_out = upload_random(backend, rng, d.output_len())?;
        let mut outputs = Vec::new();
        for (slot, factor) in self.2.iter().enumerate() {
            let Some(factor) = *factor else { continue };
            let part = upload_random(backend, rng, d.part_len())?;
            backend.concat_write_slot(d, &out, &part, slot, factor)?;
            let grad_part = backend.concat_read_slot(d, &grad_out, slot, factor)?;
            outputs.push(values(
                backend,
                &format!("read_slot {slot}"),
                &grad_part,
                d.part_len(),
            )?);
        }
        outputs.push(values(
            backend,
            "write_slot (the concatenation)",
            &out,
            d.output_len(),
        )?);
        Ok(outputs)
    }
}

#[test]
fn masked_concat_slots() {
    check(&[
        ConcatCase("batch 1, one pixel", [1, 1, 1], &[Some(0.4), Some(0.6)]),
        ConcatCase("odd 7x5, 3 channels", [2, 3, 35], &[Some(1.0), Some(0.5)]),
        ConcatCase(
            "inactive middle slot",
            [3, 5, 9],
            &[Some(0.2), None, Some(0.8)],
        ),
        ConcatCase("SuperNet concat", [64, 8, 14 * 14], &[Some(0.3), Some(0.7)]),
    ]);
}

// ---- softmax_xent ---------------------------------------------------------------------------

/// Logits uniform in `[-spread, spread)`; a random label per row; a random incoming gradient.
struct XentCase(&'static str, [usize; 2], f32);

impl KernelCase for XentCase {
    fn name(&self) -> String {
        let [n, k] = self.1;
        format!(
            "softmax_xent {} (n{n} k{k}, logits within {})",
            self.0, self.2
        )
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let [batch, classes] = self.1;
        let d = &XentDims { batch, classes };
        let logits: Vec<f32> = common::random(rng, batch * classes)
            .iter()
            .map(|v| v * self.2)
            .collect();
        let labels: Vec<u32> = (0..batch)
            .map(|_| rng.random_range(0..classes as u32))
            .collect();
        let (logits, labels) = (backend.upload(&logits)?, backend.upload_indices(&labels)?);
        let grad_loss = upload_random(backend, rng, 1)?;
        let loss = backend.softmax_xent_forward(d, &logits, &labels)?;
        let grad = backend.softmax_xent_backward(d, &logits, &labels, &grad_loss)?;
        Ok(vec![
            values(backend, "forward (mean loss)", &loss, 1)?,
            values(backend, "backward", &grad, batch * classes)?,
        ])
    }
}

#[test]
fn softmax_xent_shapes() {
    check(&[
        XentCase("batch 1, one class", [1, 1], 1.0),
        XentCase("batch 1, ten classes", [1, 10], 1.0),
        XentCase("odd sizes", [7, 3], 2.0),
        XentCase(
            "logits above ln(f32::MAX), finite only if max-shifted",
            [5, 10],
            100.0,
        ),
        XentCase("SuperNet batch", [64, 10], 5.0),
        XentCase(
            "a batch past one workgroup (the loss sums in chunks)",
            [150, 10],
            3.0,
        ),
    ]);
}

// ---- accuracy and copy_into ------------------------------------------------------------------

/// Tie-heavy logits (the first maximum must win on both backends), a random label per row; the
/// per-row verdicts, their count, and both copied into a log buffer at an offset.
struct AccuracyCase(&'static str, [usize; 2]);

impl KernelCase for AccuracyCase {
    fn name(&self) -> String {
        let [n, k] = self.1;
        format!("accuracy {} (n{n} k{k})", self.0)
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let [batch, classes] = self.1;
        let d = &XentDims { batch, classes };
        let logits = backend.upload(&tie_heavy(rng, batch * classes))?;
        let labels: Vec<u32> = (0..batch)
            .map(|_| rng.random_range(0..classes as u32))
            .collect();
        let labels = backend.upload_indices(&labels)?;
        let correct = backend.correct_rows(d, &logits, &labels)?;
        let count = backend.reduce_rows(&correct, batch, 1)?;
        let log = upload_random(backend, rng, 5)?;
        backend.copy_into(&count, &log, 3, 1)?;
        Ok(vec![
            values(backend, "correct_rows", &correct, batch)?,
            values(backend, "count", &count, 1)?,
            values(backend, "copy_into a log at offset 3", &log, 5)?,
        ])
    }
}

#[test]
fn accuracy_with_ties_and_copy_into() {
    check(&[
        AccuracyCase("batch 1, one class", [1, 1]),
        AccuracyCase("odd sizes", [7, 3]),
        AccuracyCase("evaluation batch", [1000, 10]),
    ]);
}

// ---- adadelta_step --------------------------------------------------------------------------

/// Steps a random parameter, one step per entry of `steps`: `true` with a fresh random
/// gradient, `false` without one (an inactive branch).
struct AdadeltaCase(&'static str, usize, AdadeltaConfig, &'static [bool]);

impl KernelCase for AdadeltaCase {
    fn name(&self) -> String {
        format!(
            "adadelta_step {} (len {}, {:?}, with grad {:?})",
            self.0, self.1, self.2, self.3
        )
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let (len, config) = (self.1, &self.2);
        let param = upload_random(backend, rng, len)?;
        let (square_avg, acc_delta) = (backend.zeros(len)?, backend.zeros(len)?);
        for &with_grad in self.3 {
            let grad = if with_grad {
                Some(upload_random(backend, rng, len)?)
            } else {
                None
            };
            backend.adadelta_step(config, &param, grad.as_ref(), &square_avg, &acc_delta, len)?;
        }
        Ok(vec![
            values(backend, "param", &param, len)?,
            values(backend, "square_avg", &square_avg, len)?,
            values(backend, "acc_delta", &acc_delta, len)?,
        ])
    }
}

const PYTORCH_DEFAULTS: AdadeltaConfig = AdadeltaConfig {
    lr: 1.0,
    rho: 0.9,
    eps: 1e-6,
};
const MIXED_STEPS: &[bool] = &[true, true, false, true, false, false, true];

#[test]
fn adadelta_steps_with_and_without_grad() {
    check(&[
        AdadeltaCase("one element", 1, PYTORCH_DEFAULTS, MIXED_STEPS),
        AdadeltaCase("one past a workgroup", 65, PYTORCH_DEFAULTS, MIXED_STEPS),
        AdadeltaCase(
            "other config",
            1000,
            AdadeltaConfig {
                lr: 0.5,
                rho: 0.95,
                eps: 1e-4,
            },
            MIXED_STEPS,
        ),
        AdadeltaCase("never a grad", 65, PYTORCH_DEFAULTS, &[false, false, false]),
        AdadeltaCase(
            "grad once, then none",
            100,
            PYTORCH_DEFAULTS,
            &[true, false, false, false],
        ),
        AdadeltaCase(
            "SuperNet fc1 weight",
            392 * 32,
            PYTORCH_DEFAULTS,
            &[true; 3],
        ),
    ]);
}

/// Without a gradient the GPU leaves the parameter untouched, bit for bit, as the CPU does.
#[test]
fn adadelta_without_grad_keeps_param_bits() {
    let Some(gpu) = common::gpu() else { return };
    let start = common::random(&mut common::rng(11), 100);
    let (param, square_avg, acc_delta) = (
        gpu.upload(&start).unwrap(),
        gpu.upload(&[0.5; 100]).unwrap(),
        gpu.upload(&[0.25; 100]).unwrap(),
    );
    for _ in 0..3 {
        gpu.adadelta_step(
            &PYTORCH_DEFAULTS,
            &param,
            None,
            &square_avg,
            &acc_delta,
            100,
        )
        .unwrap();
    }
    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    assert_exact(
        "adadelta param after steps without grad",
        &bits(gpu.download(&param, 100).unwrap()),
        &bits(start),
    );
    common::assert_close(
        "adadelta square_avg decays",
        &gpu.download(&square_avg, 100).unwrap(),
        &[0.5 * 0.9 * 0.9 * 0.9; 100],
        ATOL,
        RTOL,
    );
}

// ---- gather_images --------------------------------------------------------------------------

/// `count` random u8 images of `height x width`; `batch` random indices, the first one the last
/// image (its bytes end the packed buffer).
struct GatherCase(&'static str, [usize; 4]);

impl KernelCase for GatherCase {
    fn name(&self) -> String {
        let [count, batch, h, w] = self.1;
        format!(
            "gather_images {} ({count} images of {h}x{w}, batch {batch})",
            self.0
        )
    }

    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let [count, batch, height, width] = self.1;
        let d = &GatherDims {
            count,
            batch,
            height,
            width,
            mean: 0.1307,
            std: 0.3081,
        };
        let bytes: Vec<u8> = (0..count * height * width).map(|_| rng.random()).collect();
        let mut picks: Vec<u32> = (0..batch)
            .map(|_| rng.random_range(0..count as u32))
            .collect();
        picks[0] = count as u32 - 1;
        let images = backend.upload_bytes(&bytes)?;
        let picks = backend.upload_indices(&picks)?;
        let out = backend.gather_images(d, &images, &picks)?;
        Ok(vec![values(
            backend,
            "normalised images",
            &out,
            batch * height * width,
        )?])
    }
}

#[test]
fn gather_images_shapes() {
    check(&[
        GatherCase("one 1x1 image", [1, 1, 1, 1]),
        GatherCase("odd 7x5 images (not 4-byte aligned)", [5, 8, 7, 5]),
        GatherCase("MNIST batch", [100, 64, 28, 28]),
    ]);
}

// ---- the tape on the GPU --------------------------------------------------------------------

/// A small training step through the tape: every op, and the backward pass, records GPU
/// dispatches (the count grows at each); the step reads nothing back until the loss and the
/// gradients at the end, which match the CPU's.
#[test]
fn tape_step_records_gpu_work_for_every_op() {
    let Some(gpu) = common::gpu() else { return };
    let cpu = CpuBackend::new();
    let want = tape_step(&cpu, &mut || {});
    let mut seen = gpu.dispatch_count();
    let got = tape_step(&gpu, &mut || {
        let now = gpu.dispatch_count();
        assert!(
            now > seen,
            "an op recorded no GPU dispatch ({seen} before, {now} after)"
        );
        seen = now;
    });
    for ((name, want), (_, got)) in want.iter().zip(&got) {
        common::assert_close(&format!("tape step: {name}"), got, want, ATOL, RTOL);
    }
}

/// conv 3x3 -> relu -> maxpool -> flatten -> linear -> softmax_xent, then backward; `after_op`
/// runs after every op that launches kernels. Returns the loss and the four parameter gradients.
fn tape_step<B: Backend>(backend: &B, after_op: &mut dyn FnMut()) -> Vec<(String, Vec<f32>)> {
    let mut rng = common::rng(5);
    let mut random = |len| common::random(&mut rng, len);
    let x = common::tensor(backend, &random(2 * 9 * 9), &[2, 1, 9, 9]);
    let conv_w = common::param(backend, &random(3 * 9), &[3, 1, 3, 3]);
    let conv_b = common::param(backend, &random(3), &[3]);
    let fc_w = common::param(backend, &random(10 * 48), &[10, 48]);
    let fc_b = common::param(backend, &random(10), &[10]);
    let labels = backend.upload_indices(&[3, 7]).unwrap();
    let tape = Tape::new(backend);
    let mut op = |out: Result<Tensor<B>>| {
        after_op();
        out.unwrap()
    };
    let h = op(tape.conv2d(&x, &conv_w, &conv_b));
    let h = op(tape.relu(&h));
    let h = op(tape.maxpool2(&h));
    let h = tape.flatten(&h).unwrap();
    let logits = op(tape.linear(&h, &fc_w, &fc_b));
    let loss = op(tape.softmax_cross_entropy(&logits, &labels));
    let grads = tape.backward(&loss).unwrap();
    after_op();
    let grad = |p: &Tensor<B>| common::values(backend, grads.get(p).expect("a gradient"));
    vec![
        ("loss".into(), common::values(backend, &loss)),
        ("conv weight grad".into(), grad(&conv_w)),
        ("conv bias grad".into(), grad(&conv_b)),
        ("fc weight grad".into(), grad(&fc_w)),
        ("fc bias grad".into(), grad(&fc_b)),
    ]
}

/// The gradient slots and the one-dispatch Adadelta where the SuperNet never takes them: a
/// parameter used by two ops (its gradient summed in new buffers, then copied into its slot
/// by the optimizer), and one no op uses (its slot, dirtied first, cleared: the zero-gradient
/// step). Two steps, against the CPU, which has no slots and steps parameter by parameter.
#[test]
fn shared_and_unused_parameters_in_gradient_slots() {
    let Some(gpu) = common::gpu() else { return };
    let on_gpu = shared_and_unused_parameters(&gpu).expect("gpu");
    let on_cpu = shared_and_unused_parameters(&CpuBackend::new()).expect("cpu");
    let names = [
        "weight grad",
        "bias 1 grad",
        "bias 2 grad",
        "weight",
        "bias 1",
        "bias 2",
    ];
    let names = names.iter().chain(&["unused"]);
    for ((name, gpu), cpu) in names.zip(&on_gpu).zip(&on_cpu) {
        common::assert_close(name, gpu, cpu, ATOL, RTOL);
    }
}

/// `weight` in two linear layers (biases 1 and 2), `unused` in none; the three gradients,
/// then every parameter after two Adadelta steps.
fn shared_and_unused_parameters<B: Backend>(backend: &B) -> Result<Vec<Vec<f32>>> {
    let mut rng = common::rng(5);
    let (n, i, o) = (4, 6, 3);
    let shapes: [&[usize]; 4] = [&[o, i], &[o], &[o], &[7]];
    let values: Vec<Vec<f32>> = (shapes.iter())
        .map(|s| common::random(&mut rng, s.iter().product()))
        .collect();
    let refs: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
    let lens: Vec<usize> = values.iter().map(Vec::len).collect();
    let storages = backend.upload_group(&refs)?;
    let slots = backend.gradient_slots(&lens)?;
    let dirt = backend.upload(&common::random(&mut rng, 7))?;
    if let Some(slots) = &slots {
        backend.copy_into(&dirt, &slots[3], 0, 7)?;
    }
    let params: Vec<Tensor<B>> = (storages.into_iter().zip(shapes).enumerate())
        .map(|(k, (storage, shape))| {
            let slot = slots.as_ref().map(|s| s[k].clone());
            Tensor::parameter_in(storage, shape, slot)
        })
        .collect();
    let x = Tensor::from_slice(backend, &common::random(&mut rng, n * i), &[n, i])?;
    let upstream = common::random(&mut rng, n * o);
    let mut optimizer = Adadelta::new(backend, &params, AdadeltaConfig::default())?;
    let mut read = Vec::new();
    for step in 0..2 {
        let tape = Tape::new(backend);
        let first = tape.linear(&x, &params[0], &params[1])?;
        let second = tape.linear(&x, &params[0], &params[2])?;
        let out = tape.masked_sum(&[(&first, 1.0), (&second, 0.5)])?;
        let grads = tape.backward_from(&out, Tensor::from_slice(backend, &upstream, &[n, o])?)?;
        assert!(grads.get(&params[3]).is_none(), "a gradient for the unused");
        if step == 0 {
            for p in &params[..3] {
                read.push(grads.get(p).expect("a gradient").to_vec(backend)?);
            }
        }
        optimizer.step(backend, &params, &grads)?;
    }
    for p in &params {
        read.push(p.to_vec(backend)?);
    }
    Ok(read)
}

/// A buffer shorter than its kernel's shapes say is refused at launch, naming the kernel,
/// instead of being read past its end (which WGSL clamps) into garbage.
#[test]
fn a_short_buffer_is_refused_at_launch() {
    use supernet::engine::ops::relu::ReluKernel;
    let Some(gpu) = common::gpu() else { return };
    let x = gpu.upload(&[1.0; 4]).unwrap();
    let error = match gpu.relu_forward(&x, 100) {
        Ok(_) => panic!("relu over 100 values of a 4-value buffer was launched"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("relu.forward") && error.contains("need 100"),
        "{error}"
    );
}

// ---- pool_s1 --------------------------------------------------------------------------------

enum PoolS1Input {
    /// Uniform in [-1, 1): ties are unlikely.
    Random,
    /// Four levels, about half zeros (as after ReLU): many ties inside windows.
    Ties,
    /// All zeros: every window a tie, so every argmax is the window's first in-image pixel.
    Zeros,
}

/// A kind, a kernel, x's shape `[N, C, H, W]`, and its values.
struct PoolS1Case(&'static str, PoolKind, usize, [usize; 4], PoolS1Input);

impl KernelCase for PoolS1Case {
    fn name(&self) -> String {
        let PoolS1Case(name, kind, kernel, [n, c, h, w], _) = self;
        format!("pool_s1 {kind:?} {kernel}x{kernel} {name} (n{n} c{c} {h}x{w})")
    }

    /// For max, the output gradient is in quarters, so every input's sum of its windows'
    /// gradients is exact in any order: with the argmax exact, the input gradient is too, and
    /// is compared bit for bit as well as with the tolerance.
    fn run<B: Backend>(&self, backend: &B, rng: &mut StdRng) -> Result<Outputs> {
        let PoolS1Case(_, kind, kernel, shape, input) = self;
        let d = PoolS1Dims::from_shape(shape, *kind, *kernel)?;
        let x = match input {
            PoolS1Input::Random => common::random(rng, d.len()),
            PoolS1Input::Ties => tie_heavy(rng, d.len()),
            PoolS1Input::Zeros => vec![0.0; d.len()],
        };
        let x = backend.upload(&x)?;
        let grad_out = match kind {
            PoolKind::Max => common::quarters(rng, d.len()),
            PoolKind::Avg => common::random(rng, d.len()),
        };
        let grad_out = backend.upload(&grad_out)?;
        let (out, argmax) = backend.pool_s1_forward(&d, &x)?;
        let grad_x = backend.pool_s1_backward(&d, argmax.as_ref(), &grad_out)?;
        let mut outputs = vec![values(backend, "forward", &out, d.len())?];
        if let Some(argmax) = &argmax {
            outputs.push(indices(backend, "forward argmax", argmax, d.len())?);
            let bits = backend.download(&grad_x, d.len())?;
            let bits = bits.iter().map(|g| g.to_bits()).collect();
            outputs.push(("backward, bit for bit".into(), Out::Exact(bits)));
        }
        outputs.push(values(backend, "backward", &grad_x, d.len())?);
        Ok(outputs)
    }
}

/// The edge shapes for one kind: 1x1 images, a kernel wider than the image, one channel, odd
/// sizes, batch 1, a length past a workgroup, ties and all-equal windows.
fn pool_s1_edge_cases(kind: PoolKind) -> Vec<PoolS1Case> {
    use PoolS1Input::{Random, Ties, Zeros};
    vec![
        PoolS1Case("1x1 images", kind, 3, [2, 3, 1, 1], Random),
        PoolS1Case("1x1 images, kernel 5", kind, 5, [1, 2, 1, 1], Ties),
        PoolS1Case("kernel 1 (the identity)", kind, 1, [1, 2, 3, 4], Random),
        PoolS1Case("kernel 5 over 2x3", kind, 5, [2, 2, 2, 3], Random),
        PoolS1Case("kernel 7 over 3x5", kind, 7, [1, 3, 3, 5], Ties),
        PoolS1Case("one channel, odd 7x5", kind, 3, [3, 1, 7, 5], Random),
        PoolS1Case("batch 1, odd 9x7", kind, 5, [1, 4, 9, 7], Random),
        PoolS1Case("one row", kind, 3, [2, 2, 1, 9], Random),
        PoolS1Case("one column", kind, 5, [2, 2, 8, 1], Random),
        PoolS1Case(
            "past a workgroup",
            kind,
            3,
            [1, 1, 3, WORKGROUP + 5],
            Random,
        ),
        PoolS1Case("ties, 7x6", kind, 3, [2, 3, 7, 6], Ties),
        PoolS1Case("ties, 6x9", kind, 5, [3, 2, 6, 9], Ties),
        PoolS1Case("all zeros", kind, 3, [2, 3, 5, 6], Zeros),
        PoolS1Case("all zeros", kind, 5, [1, 2, 6, 5], Zeros),
    ]
}

#[test]
fn pool_s1_max_edge_shapes_with_ties() {
    check(&pool_s1_edge_cases(PoolKind::Max));
}

#[test]
fn pool_s1_avg_edge_shapes() {
    check(&pool_s1_edge_cases(PoolKind::Avg));
}

#[test]
fn pool_s1_supernet_shapes() {
    use PoolS1Input::Ties;
    let shape = [64, 8, 14, 14];
    check(&[
        PoolS1Case("ops space", PoolKind::Max, 3, shape, Ties),
        PoolS1Case("ops space", PoolKind::Avg, 3, shape, Ties),
        PoolS1Case("ops space", PoolKind::Max, 5, shape, Ties),
        PoolS1Case("ops space", PoolKind::Avg, 5, shape, Ties),
    ]);
}
