//! Checks that need no oracle: a batch equals its images run one by one; parameters of the
//! branch not drawn keep their values bit for bit through an optimizer step; the GPU weight
//! gradients are deterministic.

mod common;

use common::{assert_close, gpu, rng};
use rand::Rng;
use supernet::engine::{Adadelta, AdadeltaConfig, Backend, CpuBackend, Memory, Tape, Tensor};
use supernet::model::{BlockMask, Subnet, SuperNet, SuperNetConfig, Variant};

/// A small SuperNet (4 channels, 12x12 images) keeps lavapipe fast.
fn small_config(variant: Variant) -> SuperNetConfig {
    SuperNetConfig {
        variant,
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

fn batch_equals_one_by_one<B: Backend>(backend: &B, variant: Variant, masks: [BlockMask; 2]) {
    let config = small_config(variant);
    let net = SuperNet::init(backend, config, &mut rng(3)).expect("init");
    let (count, side) = (5, config.image_size);
    let (values, batch) = images(backend, count, side, 4);
    let tape = Tape::inference(backend);
    let batch_logits = net
        .forward(&tape, &batch, &masks)
        .expect("forward")
        .to_vec(backend)
        .expect("logits");
    for i in 0..count {
        let one = &values[i * side * side..(i + 1) * side * side];
        let one = Tensor::from_slice(backend, one, &[1, 1, side, side]).expect("image");
        let logits = net
            .forward(&tape, &one, &masks)
            .expect("forward")
            .to_vec(backend)
            .expect("logits");
        let what = format!(
            "{} {variant:?} {masks:?}: image {i} alone vs in the batch",
            backend.name()
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

/// One optimizer step of subnet `subnet`: the parameters of the branches it does not use must
/// not change at all, and the ones it uses must.
fn inactive_branch_keeps_its_bits<B: Backend>(backend: &B, variant: Variant, subnet: Subnet) {
    let config = small_config(variant);
    let net = SuperNet::init(backend, config, &mut rng(5)).expect("init");
    let (_, batch) = images(backend, 4, config.image_size, 6);
    let mut label_rng = rng(7);
    let labels: Vec<u32> = (0..4).map(|_| label_rng.random_range(0..10)).collect();
    let labels = backend.upload_indices(&labels).expect("labels");
    let before: Vec<Vec<f32>> = net
        .parameters()
        .iter()
        .map(|p| p.to_vec(backend).expect("param"))
        .collect();
    let mut optimizer =
        Adadelta::new(backend, net.parameters(), AdadeltaConfig::default()).expect("adadelta");
    for _ in 0..2 {
        let tape = Tape::new(backend);
        let loss = net
            .loss(&tape, &batch, &labels, &subnet.masks())
            .expect("loss");
        let grads = tape.backward(&loss).expect("backward");
        optimizer
            .step(backend, net.parameters(), &grads)
            .expect("step");
    }
    for ((name, param), before) in net.named_parameters().zip(&before) {
        let after = param.to_vec(backend).expect("param");
        let unused = [1, 2].iter().any(|&block| {
            let other = if subnet.0[block - 1] == 0 { 5 } else { 3 };
            name.starts_with(&format!("block{block}.conv{other}."))
        });
        let same_bits = after
            .iter()
            .zip(before)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert_eq!(
            same_bits,
            unused,
            "{} {variant:?} subnet {subnet}: {name} changed = {}",
            backend.name(),
            !same_bits
        );
    }
}

fn all_cases(check: impl Fn(Variant, Subnet)) {
    for variant in [Variant::Sum, Variant::Concat] {
        for subnet in Subnet::ALL {
            check(variant, subnet);
        }
    }
}

#[test]
fn cpu_batch_equals_one_by_one() {
    let cpu = CpuBackend::new();
    all_cases(|variant, subnet| batch_equals_one_by_one(&cpu, variant, subnet.masks()));
    batch_equals_one_by_one(&cpu, Variant::Sum, [BlockMask::all_paths(); 2]);
    batch_equals_one_by_one(&cpu, Variant::Concat, [BlockMask::all_paths(); 2]);
}

#[test]
fn gpu_batch_equals_one_by_one() {
    let Some(gpu) = gpu() else { return };
    all_cases(|variant, subnet| batch_equals_one_by_one(&gpu, variant, subnet.masks()));
    batch_equals_one_by_one(&gpu, Variant::Concat, [BlockMask::all_paths(); 2]);
}

#[test]
fn cpu_inactive_branch_keeps_its_bits() {
    let cpu = CpuBackend::new();
    all_cases(|variant, subnet| inactive_branch_keeps_its_bits(&cpu, variant, subnet));
}

#[test]
fn gpu_inactive_branch_keeps_its_bits() {
    let Some(gpu) = gpu() else { return };
    all_cases(|variant, subnet| inactive_branch_keeps_its_bits(&gpu, variant, subnet));
}

/// The same training step twice from the same start gives the same bits: no float atomics.
#[test]
fn gpu_training_step_is_deterministic() {
    let Some(gpu) = gpu() else { return };
    let run = || {
        let config = SuperNetConfig::mnist(Variant::Concat);
        let net = SuperNet::init(&gpu, config, &mut rng(9)).expect("init");
        let (_, batch) = images(&gpu, 8, 28, 10);
        let labels = gpu
            .upload_indices(&[0, 1, 2, 3, 4, 5, 6, 7])
            .expect("labels");
        let tape = Tape::new(&gpu);
        let loss = net
            .loss(&tape, &batch, &labels, &[BlockMask::all_paths(); 2])
            .expect("loss");
        let grads = tape.backward(&loss).expect("backward");
        let grad_bits: Vec<Vec<u32>> = net
            .parameters()
            .iter()
            .map(|p| {
                grads
                    .get(p)
                    .expect("grad")
                    .to_vec(&gpu)
                    .expect("grad")
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            })
            .collect();
        grad_bits
    };
    assert!(
        run() == run(),
        "two identical GPU backward passes gave different gradient bits"
    );
}
