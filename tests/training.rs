//! Training and evaluation on the shipped MNIST: the backends agree step by step, the branch
//! not drawn keeps its bits, PyTorch-trained weights evaluate to PyTorch's accuracy, and
//! checkpoints round-trip.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::{gpu, unused_by};
use serde::Deserialize;
use supernet::data::{mnist, Dataset};
use supernet::engine::{Backend, CpuBackend};
use supernet::model::checkpoint::{self, Trained};
use supernet::model::{SearchSpace, Subnet, Variant};
use supernet::training::{evaluate, evaluate_subnets, DeviceSplit, Mode, TrainConfig, Trainer};

fn mnist() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| mnist::load(&mnist::default_dir()).expect("the shipped MNIST"))
}

fn oneshot_config(variant: Variant) -> TrainConfig {
    TrainConfig::study(variant, Mode::OneShot)
}

/// Losses of the first `steps` one-shot steps from seed 1.
fn losses<B: Backend>(backend: &B, variant: Variant, steps: usize) -> Vec<(Subnet, f32)> {
    let mut trainer = Trainer::new(backend, mnist(), oneshot_config(variant)).expect("trainer");
    trainer.train_steps(steps).expect("training steps")
}

/// The same seed on both backends: the same subnets drawn and every step's loss within 1e-3
/// relative, over 50 one-shot steps (the weights have moved by then, so this covers backward
/// and the optimizer too).
#[test]
fn gpu_and_cpu_agree_for_50_oneshot_steps() {
    let Some(gpu) = gpu() else { return };
    for variant in [Variant::Sum, Variant::Concat] {
        let on_cpu = losses(&CpuBackend::new(), variant, 50);
        let on_gpu = losses(&gpu, variant, 50);
        for (step, ((cpu_subnet, cpu_loss), (gpu_subnet, gpu_loss))) in
            on_cpu.iter().zip(&on_gpu).enumerate()
        {
            assert_eq!(
                cpu_subnet,
                gpu_subnet,
                "{variant:?} step {}: different subnets drawn",
                step + 1
            );
            let relative = (cpu_loss - gpu_loss).abs() / cpu_loss.abs();
            assert!(relative <= 1e-3, "{variant:?} step {}: cpu loss {cpu_loss}, gpu loss {gpu_loss} (relative {relative:.2e})", step + 1);
        }
        let first = on_cpu[0].1;
        let last = on_cpu[49].1;
        assert!(
            last < first,
            "{variant:?}: 50 steps did not lower the loss ({first} -> {last})"
        );
    }
}

/// A training step is one queue submission: the uploads, gather, forward, backward, optimizer
/// and loss logging are recorded into one encoder, and nothing is read back.
#[test]
fn gpu_training_step_submits_once() {
    let Some(gpu) = gpu() else { return };
    let mut trainer =
        Trainer::new(&gpu, mnist(), oneshot_config(Variant::Concat)).expect("trainer");
    trainer.train_steps(1).expect("warm-up step");
    let before = gpu.submit_count();
    let steps = 4;
    trainer.train_steps(steps).expect("steps");
    // Besides the steps: the one read-back of the losses at the end.
    assert_eq!(gpu.submit_count() - before, steps as u64 + 1);
}

/// The dispatches of a one-shot step in the study's space (every subnet the same count).
/// Sum: gather; each block one fused conv_relu_pool; fc1, ReLU, fc2; the loss (one workgroup:
/// the rows and their mean) and its gradient; backward fc2 (input, parameters), ReLU, fc1
/// (input, parameters), block 2 (input, parameters), block 1 (parameters: its input is the
/// images); one Adadelta step for every parameter. Concat adds, per block, the chosen conv
/// before the fused mix and its parameter gradient, block 2's conv input gradient, and the
/// input gradient of block 1's fused mix (its input is the chosen conv's output).
#[test]
fn gpu_training_step_dispatches() {
    let Some(gpu) = gpu() else { return };
    for (variant, expected) in [(Variant::Sum, 17), (Variant::Concat, 23)] {
        let mut trainer = Trainer::new(&gpu, mnist(), oneshot_config(variant)).expect("trainer");
        trainer.train_steps(1).expect("warm-up step");
        let (before, steps) = (gpu.dispatch_count(), 8);
        trainer.train_steps(steps).expect("steps");
        let per_step = (gpu.dispatch_count() - before) as f64 / steps as f64;
        assert_eq!(
            per_step, expected as f64,
            "{variant:?}: dispatches per step"
        );
    }
}

/// One-shot steps on the real data: after each step, the branches the step's subnet did not
/// use have exactly the bits they had before; the ones it used have moved.
fn oneshot_step_leaves_other_branches<B: Backend>(backend: &B, config: TrainConfig, steps: usize) {
    let space = config.space.clone();
    let variant = config.variant;
    let mut trainer = Trainer::new(backend, mnist(), config).expect("trainer");
    for _ in 0..steps {
        let before: Vec<Vec<f32>> = trainer
            .net
            .parameters()
            .iter()
            .map(|p| p.to_vec(backend).expect("param"))
            .collect();
        let [(subnet, _)] = trainer.train_steps(1).expect("step")[..] else {
            panic!("one step")
        };
        for ((name, param), before) in trainer.net.named_parameters().zip(&before) {
            let after = param.to_vec(backend).expect("param");
            let unchanged = after
                .iter()
                .zip(before)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert_eq!(
                unchanged,
                unused_by(&space, &subnet, name),
                "{} {variant:?} {space} subnet {subnet}: {name} unchanged = {unchanged}",
                backend.name()
            );
        }
    }
}

/// The 3-block space with an identity: `3,5,7/1,3,5,skip/3,5`.
fn fixture_space_config(variant: Variant) -> TrainConfig {
    TrainConfig {
        space: SearchSpace::parse("fixture").expect("preset"),
        ..oneshot_config(variant)
    }
}

#[test]
fn cpu_oneshot_step_leaves_other_branches() {
    let cpu = CpuBackend::new();
    oneshot_step_leaves_other_branches(&cpu, oneshot_config(Variant::Sum), 6);
    oneshot_step_leaves_other_branches(&cpu, oneshot_config(Variant::Concat), 6);
    oneshot_step_leaves_other_branches(&cpu, fixture_space_config(Variant::Sum), 8);
    oneshot_step_leaves_other_branches(&cpu, fixture_space_config(Variant::Concat), 8);
}

#[test]
fn gpu_oneshot_step_leaves_other_branches() {
    let Some(gpu) = gpu() else { return };
    oneshot_step_leaves_other_branches(&gpu, oneshot_config(Variant::Concat), 3);
    oneshot_step_leaves_other_branches(&gpu, fixture_space_config(Variant::Sum), 4);
}

#[derive(Deserialize)]
struct TorchEval {
    subnets: std::collections::HashMap<String, TorchSubnet>,
}

#[derive(Deserialize)]
struct TorchSubnet {
    correct: usize,
    loss: f64,
}

fn torch_weights(name: &str) -> PathBuf {
    common::fixture_path(&format!("weights/{name}.safetensors"))
}

/// Weights trained and saved by PyTorch give PyTorch's test accuracy within 2 images of
/// 10,000 and its mean loss within 1e-4, for every subnet.
fn torch_weights_evaluate_as_in_torch<B: Backend>(backend: &B, name: &str) {
    let expected: TorchEval = common::load(&format!("weights/{name}.json"));
    let net = checkpoint::load(backend, &torch_weights(name)).expect("PyTorch weights");
    let test = DeviceSplit::upload(backend, &mnist().test).expect("test set");
    let space = SearchSpace::study();
    for subnet in space.subnets() {
        let masks = space.masks(&subnet);
        let got = evaluate(backend, &net, &test, &masks, 1000).expect("evaluation");
        let want = &expected.subnets[&subnet.to_string()];
        let what = format!("{} {name} subnet {subnet}", backend.name());
        assert!(
            got.correct.abs_diff(want.correct) <= 2,
            "{what}: {} correct, PyTorch {}",
            got.correct,
            want.correct
        );
        assert!(
            (got.loss - want.loss).abs() <= 1e-4,
            "{what}: loss {}, PyTorch {}",
            got.loss,
            want.loss
        );
    }
}

#[test]
fn cpu_evaluates_torch_weights_as_torch() {
    torch_weights_evaluate_as_in_torch(&CpuBackend::new(), "torch_sum_seed3");
    torch_weights_evaluate_as_in_torch(&CpuBackend::new(), "torch_concat_seed4");
}

#[test]
fn gpu_evaluates_torch_weights_as_torch() {
    let Some(gpu) = gpu() else { return };
    torch_weights_evaluate_as_in_torch(&gpu, "torch_sum_seed3");
    torch_weights_evaluate_as_in_torch(&gpu, "torch_concat_seed4");
}

/// Our checkpoint holds the PyTorch names and shapes, and loads back to the same values.
#[test]
fn checkpoint_round_trips() {
    let cpu = CpuBackend::new();
    let trained = checkpoint::load(&cpu, &torch_weights("torch_concat_seed4")).expect("weights");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.safetensors");
    checkpoint::save(&cpu, &trained, &Trained::OneShot, &path).expect("save");
    let loaded = checkpoint::load(&cpu, &path).expect("load");
    assert_eq!(loaded.config, trained.config);
    for ((name, a), (other, b)) in trained.named_parameters().zip(loaded.named_parameters()) {
        assert_eq!(name, other);
        assert_eq!(a.shape(), b.shape(), "{name}");
        assert_eq!(
            a.to_vec(&cpu).expect("a"),
            b.to_vec(&cpu).expect("b"),
            "{name}"
        );
    }
}

/// The shipped copy of MNIST is the one the study used (SHA-256 of every file).
#[test]
fn shipped_mnist_matches_its_checksums() {
    use sha2::{Digest, Sha256};
    let dir = mnist::default_dir();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).expect("SHA256SUMS");
    let mut checked = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hash, file) = line.split_once("  ").expect("'<hash>  <file>'");
        let digest = Sha256::digest(std::fs::read(dir.join(file)).expect("shipped file"));
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, hash, "{file}");
        checked += 1;
    }
    assert_eq!(checked, 4);
    let data = mnist();
    assert_eq!(
        (data.train.count, data.test.count, data.train.rows),
        (60_000, 10_000, 28)
    );
}

/// A short real run learns: 300 one-shot steps (a third of an epoch) bring every subnet above
/// 90% on the test set, from 10% at initialisation.
#[test]
fn cpu_short_oneshot_run_learns() {
    let cpu = CpuBackend::new();
    let mut trainer = Trainer::new(&cpu, mnist(), oneshot_config(Variant::Sum)).expect("trainer");
    let before = trainer.evaluate_all().expect("evaluation");
    assert!(
        before.values().all(|m| m.accuracy < 0.3),
        "untrained accuracy {before:?}"
    );
    trainer.train_steps(300).expect("training");
    for (subnet, metrics) in trainer.evaluate_all().expect("evaluation") {
        assert!(
            metrics.accuracy > 0.9,
            "subnet {subnet}: accuracy {} after 300 steps",
            metrics.accuracy
        );
    }
}

/// One-shot training with `fair` sampling: after every round of two steps, each option of each
/// block has been trained equally often, and all four subnets appear.
#[test]
fn fair_sampling_trains_every_option_of_a_block_equally_often() {
    let config = TrainConfig {
        sampling: supernet::training::Sampling::Fair,
        ..oneshot_config(Variant::Sum)
    };
    let cpu = CpuBackend::new();
    let mut trainer = Trainer::new(&cpu, mnist(), config).expect("trainer");
    let steps = trainer.train_steps(40).expect("training steps");
    for done in (2..=steps.len()).step_by(2) {
        for block in 0..2 {
            let fives = steps[..done]
                .iter()
                .filter(|(s, _)| s.choices()[block] == 1)
                .count();
            assert_eq!(2 * fives, done, "block {} after {done} steps", block + 1);
        }
    }
    for subnet in SearchSpace::study().subnets() {
        assert!(
            steps.iter().any(|(s, _)| *s == subnet),
            "{subnet} never trained"
        );
    }
}

/// Evaluating a whole space at once (block outputs shared between subnets with a common
/// prefix) gives every subnet exactly the figures it gets evaluated alone.
fn space_at_once_equals_one_by_one<B: Backend>(backend: &B, images: usize) {
    let config = fixture_space_config(Variant::Concat);
    let space = config.space.clone();
    let mut trainer = Trainer::new(backend, mnist(), config).expect("trainer");
    trainer.train_steps(10).expect("steps");
    let mut split = mnist().test.clone();
    split.split_off_last(split.count - images).expect("a slice");
    let split = DeviceSplit::upload(backend, &split).expect("upload");
    let subnets = space.subnets();
    let at_once = evaluate_subnets(backend, &trainer.net, &split, &subnets, 100).expect("eval");
    for (subnet, together) in subnets.iter().zip(&at_once) {
        let masks = space.masks(subnet);
        let alone = evaluate(backend, &trainer.net, &split, &masks, 100).expect("eval");
        assert_eq!(
            alone.correct,
            together.correct,
            "{} subnet {subnet}",
            backend.name()
        );
        assert_eq!(
            alone.loss.to_bits(),
            together.loss.to_bits(),
            "{} subnet {subnet}",
            backend.name()
        );
    }
}

#[test]
fn cpu_space_at_once_equals_one_by_one() {
    space_at_once_equals_one_by_one(&CpuBackend::new(), 1000);
}

#[test]
fn gpu_space_at_once_equals_one_by_one() {
    let Some(gpu) = gpu() else { return };
    space_at_once_equals_one_by_one(&gpu, 200);
}
