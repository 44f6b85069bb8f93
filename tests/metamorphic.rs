//! Checks that need no oracle: a batch equals its images run one by one; parameters of the
//! branches not drawn keep their values bit for bit through one-shot steps; the GPU weight
//! gradients are deterministic. In the study's space, in a 3-block space with an identity, and
//! in the `ops` space (dilated and separable convs, stride-1 pools, an identity).
//! And the fused block op equals the chain of ops it replaces.

mod common;

use common::{assert_close, gpu, rng, unused_by};
use rand::Rng;
use supernet::engine::{Adadelta, AdadeltaConfig, Backend, CpuBackend, Memory, Tape, Tensor};
use supernet::model::{BlockMask, Choice, SearchSpace, Subnet, SuperNet, SuperNetConfig, Variant};

/// The study's space, the fixture space `3,5,7/1,3,5,skip/3,5` (an identity in block 2) and
/// the `ops` space (every choice kind).
const SPACES: [&str; 3] = ["3,5/3,5", "3,5,7/1,3,5,skip/3,5", "ops"];

/// A small SuperNet (4 channels, 12x12 images) keeps lavapipe fast.
fn small_config(variant: Variant, space: &SearchSpace) -> SuperNetConfig {
    SuperNetConfig {
        variant,
        space: space.clone(),
        channels: 4,
        hidden: 16,
        image_size: 12,
        classes: 10,
    }
}

fn images<B: Backend>(backend: &B, count: usize, side: usize, seed: u64) -> (Vec<f32>, Tensor<B>) {
    let values = common::random(&mut rng(seed), count * side * side);
    let tensor = Tensor::from_slice(backend, &values, &[count, 1, side, side]).expect("images");
    (values, tensor)
}

fn batch_equals_one_by_one<B: Backend>(backend: &B, config: &SuperNetConfig, masks: &[BlockMask]) {
    let net = SuperNet::init(backend, config.clone(), &mut rng(3)).expect("init");
    let (count, side) = (5, config.image_size);
    let (values, batch) = images(backend, count, side, 4);
    let tape = Tape::inference(backend);
    let batch_logits = net
        .forward(&tape, &batch, masks)
        .expect("forward")
        .to_vec(backend)
        .expect("logits");
    for i in 0..count {
        let one = &values[i * side * side..(i + 1) * side * side];
        let one = Tensor::from_slice(backend, one, &[1, 1, side, side]).expect("image");
        let logits = net
            .forward(&tape, &one, masks)
            .expect("forward")
            .to_vec(backend)
            .expect("logits");
        let what = format!(
            "{} {:?} {} {masks:?}: image {i} alone vs in the batch",
            backend.name(),
            config.variant,
            config.space
        );
        assert_close(
            &what,
            &logits,
            &batch_logits[i * 10..(i + 1) * 10],
            1e-6,
            1e-5,
        );
    }
}

/// One-shot steps, one per subnet of `steps`: after each, the parameters of the branches the
/// step's subnet does not use have exactly their bits from before it, and the ones it uses
/// have moved.
fn inactive_branches_keep_their_bits<B: Backend>(
    backend: &B,
    config: &SuperNetConfig,
    steps: &[Subnet],
) {
    let net = SuperNet::init(backend, config.clone(), &mut rng(5)).expect("init");
    let (_, batch) = images(backend, 4, config.image_size, 6);
    let mut label_rng = rng(7);
    let labels: Vec<u32> = (0..4).map(|_| label_rng.random_range(0..10)).collect();
    let labels = backend.upload_indices(&labels).expect("labels");
    let mut optimizer =
        Adadelta::new(backend, net.parameters(), AdadeltaConfig::default()).expect("adadelta");
    let space = &config.space;
    for subnet in steps {
        let before: Vec<Vec<f32>> = net
            .parameters()
            .iter()
            .map(|p| p.to_vec(backend).expect("param"))
            .collect();
        let tape = Tape::new(backend);
        let loss = net
            .loss(&tape, &batch, &labels, &space.masks(subnet))
            .expect("loss");
        let grads = tape.backward(&loss).expect("backward");
        optimizer
            .step(backend, net.parameters(), &grads)
            .expect("step");
        for ((name, param), before) in net.named_parameters().zip(&before) {
            let after = param.to_vec(backend).expect("param");
            let unused = unused_by(space, subnet, name);
            let same_bits = after
                .iter()
                .zip(before)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert_eq!(
                same_bits,
                unused,
                "{} {:?} {space} subnet {subnet}: {name} changed = {}",
                backend.name(),
                config.variant,
                !same_bits
            );
        }
    }
}

/// Every `stride`-th subnet of a space, and every one that chooses the identity.
fn subnets(space: &SearchSpace, stride: usize) -> Vec<Subnet> {
    let has_skip = |s: &Subnet| space.path(s).contains(&Choice::Skip);
    space
        .subnets()
        .into_iter()
        .enumerate()
        .filter(|(i, s)| i % stride == 0 || has_skip(s))
        .map(|(_, s)| s)
        .collect()
}

/// Every variant and space, with the subnets `stride` picks.
fn all_cases(stride: usize, check: impl Fn(&SuperNetConfig, &[Subnet])) {
    for variant in [Variant::Sum, Variant::Concat] {
        for spec in SPACES {
            let space = SearchSpace::parse(spec).expect("space");
            let config = small_config(variant, &space);
            check(&config, &subnets(&space, stride));
        }
    }
}

fn batch_cases<B: Backend>(backend: &B, stride: usize) {
    all_cases(stride, |config, subnets| {
        for subnet in subnets {
            batch_equals_one_by_one(backend, config, &config.space.masks(subnet));
        }
        batch_equals_one_by_one(backend, config, &config.space.all_paths());
    });
}

#[test]
fn cpu_batch_equals_one_by_one() {
    batch_cases(&CpuBackend::new(), 1);
}

#[test]
fn gpu_batch_equals_one_by_one() {
    let Some(gpu) = gpu() else { return };
    batch_cases(&gpu, 4);
}

#[test]
fn cpu_inactive_branches_keep_their_bits() {
    let cpu = CpuBackend::new();
    all_cases(1, |config, subnets| {
        inactive_branches_keep_their_bits(&cpu, config, subnets)
    });
}

#[test]
fn gpu_inactive_branches_keep_their_bits() {
    let Some(gpu) = gpu() else { return };
    all_cases(4, |config, subnets| {
        inactive_branches_keep_their_bits(&gpu, config, subnets)
    });
}

/// The same training step twice from the same start gives the same bits: no float atomics.
/// With all paths (the separate ops) and with one subnet (the fused blocks).
#[test]
fn gpu_training_step_is_deterministic() {
    let Some(gpu) = gpu() else { return };
    let space = SuperNetConfig::mnist(Variant::Concat).space;
    let one_subnet = space.masks(&space.subnets()[3]);
    for masks in [space.all_paths(), one_subnet] {
        gpu_step_is_deterministic(&gpu, &masks);
    }
}

fn gpu_step_is_deterministic(gpu: &supernet::engine::GpuBackend, masks: &[BlockMask]) {
    let run = || {
        let config = SuperNetConfig::mnist(Variant::Concat);
        let net = SuperNet::init(gpu, config, &mut rng(9)).expect("init");
        let (_, batch) = images(gpu, 8, 28, 10);
        let labels = gpu
            .upload_indices(&[0, 1, 2, 3, 4, 5, 6, 7])
            .expect("labels");
        let tape = Tape::new(gpu);
        let loss = net.loss(&tape, &batch, &labels, masks).expect("loss");
        let grads = tape.backward(&loss).expect("backward");
        // The branches not drawn have no gradient.
        let grad_bits: Vec<Vec<u32>> = net
            .parameters()
            .iter()
            .filter_map(|p| grads.get(p))
            .map(|g| {
                let values = g.to_vec(gpu).expect("grad");
                values.iter().map(|v| v.to_bits()).collect()
            })
            .collect();
        grad_bits
    };
    let first = run();
    assert!(first.len() >= 8, "{} gradients", first.len());
    assert!(
        first == run(),
        "two identical GPU backward passes gave different gradient bits ({masks:?})"
    );
}

/// `conv_relu_pool` against the ops it replaces, each on a tape of its own: conv2d, relu,
/// maxpool2 (a Sum block), with masked_concat first when x is one slot of the weight's
/// channels (a Concat block's mix). The output and the gradients of x, weight and bias, for a
/// random upstream gradient. The CPU twin runs the chain's own kernels, so there they agree
/// bit for bit on any values; the GPU runs other kernels, compared within the kernel tolerance
/// on values whose convolutions are exact (so both take the same maxima).
fn fused_block_is_the_chain<B: Backend>(backend: &B, exact: bool) {
    let (n, c, o, h, w) = (3, 4, 5, 7, 6);
    // (weight channels, x's first, kernel): a 3x3 block conv; a 1x1 mix reading slot 2 of 3.
    for (weight_channels, first, kernel) in [(c, 0, 3), (3 * c, c, 1)] {
        let mut r = rng(11);
        let mut draw = |len: usize| match exact {
            true => common::random(&mut r, len),
            false => common::quarters(&mut r, len),
        };
        let x = common::param(backend, &draw(n * c * h * w), &[n, c, h, w]);
        let weight_shape = [o, weight_channels, kernel, kernel];
        let weight = common::param(backend, &draw(weight_shape.iter().product()), &weight_shape);
        let bias = common::param(backend, &draw(o), &[o]);
        let upstream = common::random(&mut r, n * o * (h / 2) * (w / 2));
        let run = |fused: bool| -> Vec<Vec<f32>> {
            let tape = Tape::new(backend);
            let out = if fused {
                tape.conv_relu_pool(&x, &weight, &bias, first)
            } else {
                let slots: Vec<Option<(&Tensor<B>, f32)>> = (0..weight_channels / c)
                    .map(|s| (s * c == first).then_some((&x, 1.0)))
                    .collect();
                let input = match weight_channels == c {
                    true => x.clone(),
                    false => tape.masked_concat(&slots).expect("concat"),
                };
                let conv = tape.conv2d(&input, &weight, &bias).expect("conv");
                tape.maxpool2(&tape.relu(&conv).expect("relu"))
            }
            .expect("forward");
            let upstream = common::tensor(backend, &upstream, out.shape());
            let grads = tape.backward_from(&out, upstream).expect("backward");
            let mut all = vec![common::values(backend, &out)];
            for t in [&x, &weight, &bias] {
                all.push(common::values(backend, grads.get(t).expect("a gradient")));
            }
            all
        };
        let (fused, chain) = (run(true), run(false));
        let names = ["output", "x gradient", "weight gradient", "bias gradient"];
        for ((name, fused), chain) in names.iter().zip(&fused).zip(&chain) {
            let what = format!(
                "{}: x at {first} of {weight_channels}: {name}",
                backend.name()
            );
            if exact {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(fused), bits(chain), "{what}: fused and chain differ");
            } else {
                assert_close(&what, fused, chain, 1e-5, 1e-4);
            }
        }
    }
}

#[test]
fn cpu_fused_block_is_the_chain_bit_for_bit() {
    fused_block_is_the_chain(&CpuBackend::new(), true);
}

#[test]
fn gpu_fused_block_is_the_chain() {
    let Some(gpu) = gpu() else { return };
    fused_block_is_the_chain(&gpu, false);
}
