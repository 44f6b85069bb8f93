//! Both backends against PyTorch (tests/fixtures/torch, copied from the study's reference set):
//! every op file, the SuperNet's loss and gradients for all four subnets of both variants, and
//! three Adadelta training steps; the same over the 24-subnet space `3,5,7/1,3,5,skip/3,5`
//! (with an identity), for six of its subnets and the all-paths network; and over the `ops`
//! space `3,5,3d2,sep3/3,5,3d2,sep3,max3,avg3,skip` (every choice kind), for eight subnets and
//! the all-paths network.
//!
//! Tolerances are the engine's contract: ops within atol 1e-5 + rtol 1e-4 of PyTorch's float64
//! values; the float32 SuperNet within atol 1e-5 + rtol 1e-3.

mod common;

use common::{assert_close, fixture_files, gpu, load, OpFixture};
use serde::Deserialize;
use std::collections::HashMap;
use supernet::engine::{
    Adadelta, AdadeltaConfig, Backend, ConvGeometry, CpuBackend, Gradients, PoolKind, Tape, Tensor,
};
use supernet::model::{BlockMask, SearchSpace, Subnet, SuperNet, SuperNetConfig, Variant};
use supernet::training::StepLr;

const OP_ATOL: f64 = 1e-5;
const OP_RTOL: f64 = 1e-4;
const NET_ATOL: f64 = 1e-5;
const NET_RTOL: f64 = 1e-3;

fn upload<B: Backend>(backend: &B, fixture: &OpFixture, name: &str) -> Tensor<B> {
    let t = fixture.tensor(name);
    Tensor::from_slice(backend, &t.f32(), &t.shape).expect("upload")
}

fn leaf<B: Backend>(backend: &B, fixture: &OpFixture, name: &str) -> Tensor<B> {
    upload(backend, fixture, name).requiring_grad()
}

fn expect<B: Backend>(backend: &B, file: &str, got: &Tensor<B>, fixture: &OpFixture, name: &str) {
    let want = fixture.tensor(name);
    assert_eq!(
        got.shape(),
        want.shape.as_slice(),
        "{file}: shape of {name}"
    );
    let what = format!("{} {file}: {name}", backend.name());
    assert_close(
        &what,
        &got.to_vec(backend).expect("download"),
        &want.f32(),
        OP_ATOL,
        OP_RTOL,
    );
}

fn expect_grad<B: Backend>(
    backend: &B,
    file: &str,
    grads: &Gradients<B>,
    of: &Tensor<B>,
    fixture: &OpFixture,
    name: &str,
) {
    let grad = grads
        .get(of)
        .unwrap_or_else(|| panic!("{file}: no gradient for {name}"));
    expect(backend, file, grad, fixture, name);
}

/// Gradients of `sum(out * upstream)`, the quantity the fixtures' `grad_*` tensors hold.
fn backward_upstream<B: Backend>(
    backend: &B,
    tape: &Tape<'_, B>,
    out: &Tensor<B>,
    fixture: &OpFixture,
) -> Gradients<B> {
    tape.backward_from(out, upload(backend, fixture, "upstream"))
        .expect("backward")
}

// ---- ops -----------------------------------------------------------------------------------

/// The fixture's conv geometry: `params`' kernel, dilation and groups (1 where absent), its
/// padding checked to be the engine's "same" padding.
fn conv_geometry(file: &str, f: &OpFixture) -> ConvGeometry {
    let param = |name: &str| f.params.get(name).and_then(|v| v.as_u64());
    let geometry = ConvGeometry {
        kernel: param("kernel").expect("a kernel") as usize,
        dilation: param("dilation").unwrap_or(1) as usize,
        groups: param("groups").unwrap_or(1) as usize,
    };
    assert_eq!(param("stride").unwrap_or(1), 1, "{file}: stride");
    if let Some(padding) = param("padding") {
        assert_eq!(padding as usize, geometry.pad(), "{file}: padding");
    }
    geometry
}

/// Every conv2d fixture, plain and dilated.
fn conv2d_matches_torch<B: Backend>(backend: &B) {
    conv_fixtures_match_torch(backend, "conv2d_");
}

/// Every depthwise fixture (groups = channels, weight `[C, 1, K, K]`).
fn depthwise_matches_torch<B: Backend>(backend: &B) {
    conv_fixtures_match_torch(backend, "depthwise_");
}

/// The fixtures `ops/{prefix}*`, through `conv2d` where the geometry is plain, `conv2d_with`
/// where not.
fn conv_fixtures_match_torch<B: Backend>(backend: &B, prefix: &str) {
    for file in fixture_files("ops", prefix) {
        let f: OpFixture = load(&file);
        let geometry = conv_geometry(&file, &f);
        let tape = Tape::new(backend);
        let (x, weight, bias) = (
            leaf(backend, &f, "x"),
            leaf(backend, &f, "weight"),
            leaf(backend, &f, "bias"),
        );
        let out = if geometry == ConvGeometry::plain(geometry.kernel) {
            tape.conv2d(&x, &weight, &bias)
        } else {
            tape.conv2d_with(&x, &weight, &bias, geometry)
        }
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        expect(backend, &file, &out, &f, "out");
        let grads = backward_upstream(backend, &tape, &out, &f);
        expect_grad(backend, &file, &grads, &x, &f, "grad_x");
        expect_grad(backend, &file, &grads, &weight, &f, "grad_weight");
        expect_grad(backend, &file, &grads, &bias, &f, "grad_bias");
    }
}

fn linear_matches_torch<B: Backend>(backend: &B) {
    let file = "ops/linear_basic.json";
    let f: OpFixture = load(file);
    let tape = Tape::new(backend);
    let (x, weight, bias) = (
        leaf(backend, &f, "x"),
        leaf(backend, &f, "weight"),
        leaf(backend, &f, "bias"),
    );
    let out = tape.linear(&x, &weight, &bias).expect("linear");
    expect(backend, file, &out, &f, "out");
    let grads = backward_upstream(backend, &tape, &out, &f);
    expect_grad(backend, file, &grads, &x, &f, "grad_x");
    expect_grad(backend, file, &grads, &weight, &f, "grad_weight");
    expect_grad(backend, file, &grads, &bias, &f, "grad_bias");
}

fn relu_matches_torch<B: Backend>(backend: &B) {
    let file = "ops/relu_basic.json";
    let f: OpFixture = load(file);
    let tape = Tape::new(backend);
    let x = leaf(backend, &f, "x");
    let out = tape.relu(&x).expect("relu");
    expect(backend, file, &out, &f, "out");
    let grads = backward_upstream(backend, &tape, &out, &f);
    expect_grad(backend, file, &grads, &x, &f, "grad_x");
}

fn maxpool2_matches_torch<B: Backend>(backend: &B) {
    for file in fixture_files("ops", "maxpool2_") {
        let f: OpFixture = load(&file);
        let tape = Tape::new(backend);
        let x = leaf(backend, &f, "x");
        let out = tape.maxpool2(&x).expect("maxpool2");
        expect(backend, &file, &out, &f, "out");
        let grads = backward_upstream(backend, &tape, &out, &f);
        expect_grad(backend, &file, &grads, &x, &f, "grad_x");
    }
}

fn softmax_xent_matches_torch<B: Backend>(backend: &B) {
    for file in fixture_files("ops", "softmaxxent_") {
        let f: OpFixture = load(&file);
        let tape = Tape::new(backend);
        let logits = leaf(backend, &f, "logits");
        let labels = backend
            .upload_indices(&f.tensor("labels").u32())
            .expect("labels");
        let loss = tape
            .softmax_cross_entropy(&logits, &labels)
            .expect("softmax_xent");
        expect(backend, &file, &loss, &f, "loss");
        let grads = tape.backward(&loss).expect("backward");
        expect_grad(backend, &file, &grads, &logits, &f, "grad_logits");
    }
}

/// Six steps; step 4's gradient is all zeros, given as "no gradient" like an inactive branch.
fn adadelta_matches_torch<B: Backend>(backend: &B) {
    let file = "ops/adadelta_six_steps.json";
    let f: OpFixture = load(file);
    let params = [leaf(backend, &f, "param0")];
    let mut optimizer = Adadelta::new(
        backend,
        &params,
        AdadeltaConfig {
            lr: 1.0,
            rho: 0.9,
            eps: 1e-6,
        },
    )
    .expect("adadelta");
    for step in 1..=6 {
        let grad = upload(backend, &f, &format!("grad{step}"));
        let mut grads = Gradients::default();
        if grad
            .to_vec(backend)
            .expect("download")
            .iter()
            .any(|&g| g != 0.0)
        {
            grads.insert(&params[0], grad).expect("gradient");
        }
        optimizer.step(backend, &params, &grads).expect("step");
        expect(backend, file, &params[0], &f, &format!("param{step}"));
        let (square_avg, acc_delta) = optimizer.state(0);
        let state = |s: &B::Storage| Tensor::<B>::from_storage(s.clone(), params[0].shape(), false);
        expect(
            backend,
            file,
            &state(square_avg),
            &f,
            &format!("square_avg{step}"),
        );
        expect(
            backend,
            file,
            &state(acc_delta),
            &f,
            &format!("acc_delta{step}"),
        );
    }
}

#[test]
fn step_lr_matches_torch() {
    let f: OpFixture = load("ops/steplr_gamma07.json");
    let schedule = StepLr {
        initial: 1.0,
        gamma: 0.7,
    };
    let got: Vec<f32> = (0..14).map(|epoch| schedule.lr(epoch)).collect();
    assert_close("StepLR", &got, &f.tensor("lr_by_epoch").f32(), 0.0, 1e-7);
}

// ---- the SuperNet ----------------------------------------------------------------------------

#[derive(Deserialize)]
struct NetFixture {
    inputs: common::Json,
    labels: common::Json,
    params: HashMap<String, common::Json>,
    choices: HashMap<String, ChoiceFixture>,
    training: TrainingFixture,
}

#[derive(Deserialize)]
struct ChoiceFixture {
    loss: f64,
    grads: HashMap<String, common::Json>,
}

#[derive(Deserialize)]
struct TrainingFixture {
    steps: Vec<StepFixture>,
    params_after: HashMap<String, common::Json>,
}

#[derive(Deserialize)]
struct StepFixture {
    choice: [u8; 2],
    batch: [usize; 2],
    loss: f64,
}

fn net_fixture(variant: Variant) -> NetFixture {
    match variant {
        Variant::Sum => load("supernet/supernet_sum.json"),
        Variant::Concat => load("supernet/supernet_concat.json"),
    }
}

fn build<B: Backend>(backend: &B, variant: Variant, fixture: &NetFixture) -> SuperNet<B> {
    let named: Vec<(String, Vec<f32>)> = fixture
        .params
        .iter()
        .map(|(n, t)| (n.clone(), t.f32()))
        .collect();
    SuperNet::from_values(backend, SuperNetConfig::mnist(variant), &named)
        .expect("fixture parameters")
}

/// Images `[from, to)` of the fixture batch and their labels.
fn batch<B: Backend>(
    backend: &B,
    fixture: &NetFixture,
    [from, to]: [usize; 2],
) -> (Tensor<B>, B::Indices) {
    let pixels = 28 * 28;
    let images = &fixture.inputs.f32()[from * pixels..to * pixels];
    let images = Tensor::from_slice(backend, images, &[to - from, 1, 28, 28]).expect("images");
    let labels = backend
        .upload_indices(&fixture.labels.u32()[from..to])
        .expect("labels");
    (images, labels)
}

fn assert_loss(what: &str, got: f32, want: f64) {
    assert_close(what, &[got], &[want as f32], NET_ATOL, NET_RTOL);
}

/// Loss and every parameter's gradient, for the four subnets. An inactive branch must get no
/// gradient at all (PyTorch reports zeros for it).
fn supernet_gradients_match_torch<B: Backend>(backend: &B, variant: Variant) {
    let fixture = net_fixture(variant);
    let net = build(backend, variant, &fixture);
    let (images, labels) = batch(backend, &fixture, [0, 16]);
    let space = SearchSpace::study();
    for subnet in space.subnets() {
        let expected = &fixture.choices[&subnet.to_string()];
        let what = format!("{} {variant:?} subnet {subnet}", backend.name());
        let tape = Tape::new(backend);
        let loss = net
            .loss(&tape, &images, &labels, &space.masks(&subnet))
            .expect("loss");
        assert_loss(
            &format!("{what}: loss"),
            loss.to_vec(backend).expect("loss")[0],
            expected.loss,
        );
        let grads = tape.backward(&loss).expect("backward");
        for (name, param) in net.named_parameters() {
            let want = expected.grads[name].f32();
            match grads.get(param) {
                Some(grad) => assert_close(
                    &format!("{what}: grad {name}"),
                    &grad.to_vec(backend).expect("grad"),
                    &want,
                    NET_ATOL,
                    NET_RTOL,
                ),
                None => assert!(
                    want.iter().all(|&g| g == 0.0),
                    "{what}: no gradient for {name}, but PyTorch's is non-zero"
                ),
            }
        }
    }
}

/// Three Adadelta steps on images 0-7, 8-15, 0-7 with subnets [1,0], [0,1], [1,1]; every
/// parameter takes each step, the inactive ones with a zero gradient.
fn supernet_training_matches_torch<B: Backend>(backend: &B, variant: Variant) {
    let fixture = net_fixture(variant);
    let net = build(backend, variant, &fixture);
    let mut optimizer =
        Adadelta::new(backend, net.parameters(), AdadeltaConfig::default()).expect("adadelta");
    for (i, step) in fixture.training.steps.iter().enumerate() {
        let what = format!("{} {variant:?} training step {}", backend.name(), i + 1);
        let (images, labels) = batch(backend, &fixture, step.batch);
        let tape = Tape::new(backend);
        let masks: Vec<BlockMask> = SearchSpace::study().masks(&Subnet::new(&step.choice));
        let loss = net.loss(&tape, &images, &labels, &masks).expect("loss");
        assert_loss(
            &format!("{what}: loss"),
            loss.to_vec(backend).expect("loss")[0],
            step.loss,
        );
        let grads = tape.backward(&loss).expect("backward");
        optimizer
            .step(backend, net.parameters(), &grads)
            .expect("step");
    }
    for (name, param) in net.named_parameters() {
        let what = format!("{} {variant:?} after training: {name}", backend.name());
        let want = fixture.training.params_after[name].f32();
        assert_close(
            &what,
            &param.to_vec(backend).expect("param"),
            &want,
            NET_ATOL,
            NET_RTOL,
        );
    }
}

// ---- a search space with an identity (tests/fixtures/torch/space) --------------------------

#[derive(Deserialize)]
struct SpaceFixture {
    space: String,
    channels: usize,
    hidden: usize,
    inputs: common::Json,
    labels: common::Json,
    params: HashMap<String, common::Json>,
    subnets: HashMap<String, ChoiceFixture>,
    training: SpaceTrainingFixture,
}

#[derive(Deserialize)]
struct SpaceTrainingFixture {
    steps: Vec<SpaceStepFixture>,
    params_after: HashMap<String, common::Json>,
}

#[derive(Deserialize)]
struct SpaceStepFixture {
    subnet: String,
    batch: [usize; 2],
    loss: f64,
}

/// `space/` (plain convs and an identity) or `ops_space/` (every choice kind).
fn space_fixture(folder: &str, variant: Variant) -> SpaceFixture {
    load(&format!("{folder}/space_{}.json", variant.name()))
}

/// The fixture's network: its space, sizes and parameters.
fn build_space<B: Backend>(backend: &B, variant: Variant, f: &SpaceFixture) -> SuperNet<B> {
    let config = SuperNetConfig {
        space: SearchSpace::parse(&f.space).expect("the fixture's space"),
        channels: f.channels,
        hidden: f.hidden,
        ..SuperNetConfig::mnist(variant)
    };
    let named: Vec<(String, Vec<f32>)> =
        f.params.iter().map(|(n, t)| (n.clone(), t.f32())).collect();
    SuperNet::from_values(backend, config, &named).expect("fixture parameters")
}

/// `000`-style names are subnets of the space; `all` is every choice of every block on.
fn fixture_masks(space: &SearchSpace, name: &str) -> Vec<BlockMask> {
    match name {
        "all" => space.all_paths(),
        subnet => space.masks(&space.parse_subnet(subnet).expect("the fixture's subnet")),
    }
}

fn space_batch<B: Backend>(
    backend: &B,
    f: &SpaceFixture,
    [from, to]: [usize; 2],
) -> (Tensor<B>, B::Indices) {
    let pixels = 28 * 28;
    let images = &f.inputs.f32()[from * pixels..to * pixels];
    let images = Tensor::from_slice(backend, images, &[to - from, 1, 28, 28]).expect("images");
    let labels = backend
        .upload_indices(&f.labels.u32()[from..to])
        .expect("labels");
    (images, labels)
}

/// Loss and every gradient for each listed subnet (identities among them) and the all-paths
/// network; a parameter without a gradient must have PyTorch's all-zero one.
fn space_gradients_match_torch<B: Backend>(backend: &B, folder: &str, variant: Variant) {
    let fixture = space_fixture(folder, variant);
    let net = build_space(backend, variant, &fixture);
    let (images, labels) = space_batch(backend, &fixture, [0, 16]);
    let mut names: Vec<&String> = fixture.subnets.keys().collect();
    names.sort();
    assert!(
        names.len() >= 7,
        "the fixture lists {} networks",
        names.len()
    );
    for name in names {
        let expected = &fixture.subnets[name];
        let what = format!(
            "{} {variant:?} {} network {name}",
            backend.name(),
            fixture.space
        );
        let tape = Tape::new(backend);
        let masks = fixture_masks(&net.config.space, name);
        let loss = net.loss(&tape, &images, &labels, &masks).expect("loss");
        assert_loss(
            &format!("{what}: loss"),
            loss.to_vec(backend).expect("loss")[0],
            expected.loss,
        );
        let grads = tape.backward(&loss).expect("backward");
        for (param_name, param) in net.named_parameters() {
            let want = expected.grads[param_name].f32();
            match grads.get(param) {
                Some(grad) => assert_close(
                    &format!("{what}: grad {param_name}"),
                    &grad.to_vec(backend).expect("grad"),
                    &want,
                    NET_ATOL,
                    NET_RTOL,
                ),
                None => assert!(
                    want.iter().all(|&g| g == 0.0),
                    "{what}: no gradient for {param_name}, but PyTorch's is non-zero"
                ),
            }
        }
    }
}

/// The fixture's three Adadelta steps, every parameter stepped each time.
fn space_training_matches_torch<B: Backend>(backend: &B, folder: &str, variant: Variant) {
    let fixture = space_fixture(folder, variant);
    let net = build_space(backend, variant, &fixture);
    let mut optimizer =
        Adadelta::new(backend, net.parameters(), AdadeltaConfig::default()).expect("adadelta");
    for (i, step) in fixture.training.steps.iter().enumerate() {
        let what = format!(
            "{} {variant:?} space training step {}",
            backend.name(),
            i + 1
        );
        let (images, labels) = space_batch(backend, &fixture, step.batch);
        let tape = Tape::new(backend);
        let masks = fixture_masks(&net.config.space, &step.subnet);
        let loss = net.loss(&tape, &images, &labels, &masks).expect("loss");
        assert_loss(
            &format!("{what}: loss"),
            loss.to_vec(backend).expect("loss")[0],
            step.loss,
        );
        let grads = tape.backward(&loss).expect("backward");
        optimizer
            .step(backend, net.parameters(), &grads)
            .expect("step");
    }
    for (name, param) in net.named_parameters() {
        let what = format!(
            "{} {variant:?} space, after training: {name}",
            backend.name()
        );
        let want = fixture.training.params_after[name].f32();
        assert_close(
            &what,
            &param.to_vec(backend).expect("param"),
            &want,
            NET_ATOL,
            NET_RTOL,
        );
    }
}

// ---- one test per check and backend (candle style: one body, every device) ------------------

macro_rules! on_both_backends {
    ($($name:ident => $check:expr;)*) => {
        mod cpu {
            use super::*;
            $(#[test] fn $name() { let check = $check; check(&CpuBackend::new()); })*
        }
        mod gpu {
            use super::*;
            $(#[test] fn $name() { if let Some(gpu) = gpu() { let check = $check; check(&gpu); } })*
        }
    };
}

on_both_backends! {
    conv2d => conv2d_matches_torch;
    depthwise => depthwise_matches_torch;
    linear => linear_matches_torch;
    relu => relu_matches_torch;
    maxpool2 => maxpool2_matches_torch;
    softmax_xent => softmax_xent_matches_torch;
    adadelta => adadelta_matches_torch;
    supernet_sum_gradients => |b| supernet_gradients_match_torch(b, Variant::Sum);
    supernet_concat_gradients => |b| supernet_gradients_match_torch(b, Variant::Concat);
    supernet_sum_training => |b| supernet_training_matches_torch(b, Variant::Sum);
    supernet_concat_training => |b| supernet_training_matches_torch(b, Variant::Concat);
    space_sum_gradients => |b| space_gradients_match_torch(b, "space", Variant::Sum);
    space_concat_gradients => |b| space_gradients_match_torch(b, "space", Variant::Concat);
    space_sum_training => |b| space_training_matches_torch(b, "space", Variant::Sum);
    space_concat_training => |b| space_training_matches_torch(b, "space", Variant::Concat);
    ops_space_sum_gradients => |b| space_gradients_match_torch(b, "ops_space", Variant::Sum);
    ops_space_concat_gradients => |b| space_gradients_match_torch(b, "ops_space", Variant::Concat);
    ops_space_sum_training => |b| space_training_matches_torch(b, "ops_space", Variant::Sum);
    ops_space_concat_training => |b| space_training_matches_torch(b, "ops_space", Variant::Concat);
}

// ---- pool_s1: stride-1 max and average pooling ----------------------------------------------

/// The fixtures of stride-1 pooling of one kind: `{max,avg}pool{K}s1_*.json`, told apart from
/// maxpool2's files by their op, each with its kernel; `expected` of them at least.
fn pool_s1_fixtures(kind: PoolKind, expected: usize) -> Vec<(String, OpFixture, usize)> {
    let (prefix, op) = match kind {
        PoolKind::Max => ("maxpool", "maxpool_s1"),
        PoolKind::Avg => ("avgpool", "avgpool_s1"),
    };
    let fixtures: Vec<(String, OpFixture, usize)> = fixture_files("ops", prefix)
        .into_iter()
        .map(|file| (load::<OpFixture>(&file), file))
        .filter(|(f, _)| f.op == op)
        .map(|(f, file)| {
            let param = |name: &str| f.params[name].as_u64().map(|v| v as usize);
            let kernel = param("kernel").unwrap_or_else(|| panic!("{file}: no kernel"));
            assert_eq!(param("stride"), Some(1), "{file}: stride");
            assert_eq!(param("padding"), Some(kernel / 2), "{file}: padding");
            if kind == PoolKind::Avg {
                let include_pad = f.params["count_include_pad"].as_bool();
                assert_eq!(include_pad, Some(false), "{file}: count_include_pad");
            }
            (file, f, kernel)
        })
        .collect();
    assert!(
        fixtures.len() >= expected,
        "{op}: {} fixtures, expected {expected}",
        fixtures.len()
    );
    fixtures
}

fn pool_s1_matches_torch<B: Backend>(backend: &B, kind: PoolKind, expected: usize) {
    for (file, f, kernel) in pool_s1_fixtures(kind, expected) {
        let tape = Tape::new(backend);
        let x = leaf(backend, &f, "x");
        let out = tape.pool_s1(&x, kind, kernel).expect("pool_s1");
        expect(backend, &file, &out, &f, "out");
        let grads = backward_upstream(backend, &tape, &out, &f);
        expect_grad(backend, &file, &grads, &x, &f, "grad_x");
    }
}

mod pool_s1 {
    use super::*;

    on_both_backends! {
        max => |b| pool_s1_matches_torch(b, PoolKind::Max, 3);
        avg => |b| pool_s1_matches_torch(b, PoolKind::Avg, 2);
    }
}
