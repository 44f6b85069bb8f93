//! Checkpoints say what they are, and `export` writes one subnet as a plain network:
//! a stand-alone checkpoint evaluates as its one subnet; an exported subnet evaluates exactly
//! as that subnet inside the SuperNet (identities and Concat mixes included); a file without
//! metadata (PyTorch's) is read with `--space` or its space inferred, and a file that
//! contradicts the given space is refused naming the tensor.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{gpu, small_mnist, supernet};
use supernet::data::Dataset;
use supernet::engine::{Backend, CpuBackend};
use supernet::model::checkpoint::{self, LoadOptions, Trained};
use supernet::model::{export, SearchSpace, Variant};
use supernet::training::{evaluate_subnets, DeviceSplit, Mode, TrainConfig, Trainer};

/// 1280 training and 500 test images, read once per test binary.
fn data() -> &'static (tempfile::TempDir, Dataset) {
    static DATA: OnceLock<(tempfile::TempDir, Dataset)> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = small_mnist();
        let data = supernet::data::load(dir.path()).expect("the small MNIST");
        (dir, data)
    })
}

fn fixture_space() -> SearchSpace {
    SearchSpace::parse("3,5,7/1,3,5,skip/3,5").expect("the fixture space")
}

/// A SuperNet over the fixture space after 80 one-shot steps (4 epochs of the 1280 images),
/// saved to `dir`.
fn trained_supernet<B: Backend>(backend: &B, variant: Variant, dir: &Path) -> PathBuf {
    let config = TrainConfig {
        space: fixture_space(),
        ..TrainConfig::study(variant, Mode::OneShot)
    };
    let mut trainer = Trainer::new(backend, &data().1, config).expect("trainer");
    for _ in 0..4 {
        trainer.train_steps(20).expect("steps");
    }
    let path = dir.join(format!("{}.safetensors", variant.name()));
    checkpoint::save(backend, &trainer.net, &Trained::OneShot, &path).expect("save");
    path
}

/// The exported file of subnet `name` evaluates to the same correct count and loss as the
/// subnet inside the SuperNet, and holds only that subnet's tensors, under plain names.
fn exported_subnet_evaluates_as_in_the_supernet<B: Backend>(backend: &B, variant: Variant) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = trained_supernet(backend, variant, dir.path());
    let net = checkpoint::load(backend, &path).expect("load");
    let test = DeviceSplit::upload(backend, &data().1.test).expect("test set");
    let space = fixture_space();
    // 131: 5x5, identity, 5x5; 210: 7x7, 3x3, 3x3.
    let mut losses = Vec::new();
    for name in ["131", "210"] {
        let subnet = space.parse_subnet(name).expect("subnet");
        let exported = dir.path().join(format!("{name}.safetensors"));
        export::export(backend, &net, &subnet, &exported).expect("export");
        let inside = evaluate_subnets(backend, &net, &test, &[subnet], 100).expect("eval")[0];
        let read = checkpoint::read(backend, &exported, &LoadOptions::default()).expect("read");
        let own = read.net.config.space.subnets();
        assert_eq!(own.len(), 1, "an exported subnet is one path");
        assert_eq!(read.trained.name(&own[0]), name);
        let alone = evaluate_subnets(backend, &read.net, &test, &own, 100).expect("eval")[0];
        let what = format!("{} {variant:?} subnet {name}", backend.name());
        assert_eq!(alone.correct, inside.correct, "{what}: correct count");
        assert_eq!(alone.loss.to_bits(), inside.loss.to_bits(), "{what}: loss");
        losses.push(inside.loss);

        let (shapes, metadata) = tensors(&exported);
        let mut expected = plain_shapes(name, variant);
        expected.sort();
        assert_eq!(shapes, expected, "{what}: the exported tensors");
        assert_eq!(metadata["architecture"], space.only(&subnet).to_string());
        assert_eq!(metadata["space"], space.to_string());
        assert_eq!(metadata["subnet"], name);
    }
    // The figures depend on the subnet, so their agreement above says something.
    assert_ne!(losses[0], losses[1], "two subnets evaluated alike");
}

/// What a plain PyTorch module of subnet `name` of the fixture space holds (8 channels,
/// hidden 32): a conv per block except the identity, a `[8, 8]` mix per block for Concat.
fn plain_shapes(name: &str, variant: Variant) -> Shapes {
    let mut shapes = Vec::new();
    let kernels = match name {
        "131" => [Some(5), None, Some(5)],
        _ => [Some(7), Some(3), Some(3)],
    };
    for (b, kernel) in kernels.iter().enumerate() {
        let block = b + 1;
        let in_channels = if block == 1 { 1 } else { 8 };
        if let Some(k) = kernel {
            shapes.push((
                format!("block{block}.conv.weight"),
                vec![8, in_channels, *k, *k],
            ));
            shapes.push((format!("block{block}.conv.bias"), vec![8]));
        }
        if variant == Variant::Concat {
            shapes.push((format!("block{block}.mix.weight"), vec![8, 8, 1, 1]));
            shapes.push((format!("block{block}.mix.bias"), vec![8]));
        }
    }
    shapes.push(("fc1.weight".into(), vec![32, 72]));
    shapes.push(("fc1.bias".into(), vec![32]));
    shapes.push(("fc2.weight".into(), vec![10, 32]));
    shapes.push(("fc2.bias".into(), vec![10]));
    shapes
}

/// Tensor names and shapes.
type Shapes = Vec<(String, Vec<usize>)>;

/// Every tensor's name and shape (sorted) and the metadata of a safetensors file.
fn tensors(path: &Path) -> (Shapes, HashMap<String, String>) {
    let bytes = std::fs::read(path).expect("read");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut shapes: Shapes = file
        .iter()
        .map(|(name, view)| (name.to_string(), view.shape().to_vec()))
        .collect();
    shapes.sort();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    (shapes, header.metadata().clone().unwrap_or_default())
}

#[test]
fn cpu_exported_subnet_evaluates_as_in_the_supernet() {
    let cpu = CpuBackend::new();
    exported_subnet_evaluates_as_in_the_supernet(&cpu, Variant::Sum);
    exported_subnet_evaluates_as_in_the_supernet(&cpu, Variant::Concat);
}

#[test]
fn gpu_exported_subnet_evaluates_as_in_the_supernet() {
    let Some(gpu) = gpu() else { return };
    exported_subnet_evaluates_as_in_the_supernet(&gpu, Variant::Concat);
}

/// Our metadata round-trips: the space, sizes and what was trained; another `--space` is
/// refused.
#[test]
fn metadata_says_what_a_checkpoint_is() {
    let cpu = CpuBackend::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = trained_supernet(&cpu, Variant::Concat, dir.path());
    let read = checkpoint::read(&cpu, &path, &LoadOptions::default()).expect("read");
    assert_eq!(read.trained, Trained::OneShot);
    assert_eq!(read.net.config.space, fixture_space());
    assert_eq!(read.net.config.variant, Variant::Concat);
    let (_, metadata) = tensors(&path);
    for (key, value) in [
        ("variant", "concat"),
        ("space", "3,5,7/1,3,5,skip/3,5"),
        ("channels", "8"),
        ("hidden", "32"),
        ("mode", "oneshot"),
    ] {
        assert_eq!(metadata[key], value, "metadata {key}");
    }
    let other = LoadOptions {
        space: Some(SearchSpace::study()),
        image_size: None,
    };
    let error = checkpoint::read(&cpu, &path, &other)
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("--space says 3,5/3,5"), "{error}");
}

fn torch_weights(name: &str) -> PathBuf {
    common::fixture_path(&format!("weights/{name}.safetensors"))
}

/// PyTorch's file has no metadata: its space is inferred from the names, or given; a space
/// it contradicts is refused naming the tensor that does not fit.
#[test]
fn a_file_without_metadata_is_read_with_or_without_a_space() {
    let cpu = CpuBackend::new();
    let path = torch_weights("torch_sum_seed3");
    let inferred = checkpoint::read(&cpu, &path, &LoadOptions::default()).expect("inferred");
    assert_eq!(inferred.trained, Trained::Unknown);
    assert_eq!(inferred.net.config.space, SearchSpace::study());
    let with = |spec: &str| LoadOptions {
        space: Some(SearchSpace::parse(spec).expect("space")),
        image_size: Some(28),
    };
    assert!(checkpoint::read(&cpu, &path, &with("3,5/3,5")).is_ok());
    for (spec, words) in [
        (
            "3,5,7/3,5",
            ["missing tensor block1.conv7.weight", "3,5,7/3,5"],
        ),
        ("3/3,5", ["unexpected tensor block1.conv5.bias", "3/3,5"]),
        (
            "3,5/3,5/3",
            [
                "fc1.weight [32, 392] expects a 7x7 map",
                "3x3 after 3 blocks",
            ],
        ),
    ] {
        let error = checkpoint::read(&cpu, &path, &with(spec))
            .err()
            .expect(spec)
            .to_string();
        for word in words {
            assert!(error.contains(word), "{spec}: '{error}' lacks '{word}'");
        }
        assert!(error.contains("torch_sum_seed3.safetensors"), "{error}");
    }
}

/// A PyTorch fixture's parameters.
#[derive(serde::Deserialize)]
struct Params {
    params: HashMap<String, common::Json>,
}

/// The parameters of fixture `relative` written to `path` as PyTorch's `save_file` would: no
/// metadata. Returns them.
fn saved_without_metadata(relative: &str, path: &Path) -> Params {
    let fixture: Params = common::load(relative);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = (fixture.params.iter())
        .map(|(name, t)| {
            let data = t.f32().iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), t.shape.clone(), data)
        })
        .collect();
    let views = bytes.iter().map(|(name, shape, data)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .expect("view");
        (name.clone(), view)
    });
    let serialized = safetensors::serialize(views, None).expect("serialize");
    std::fs::write(path, serialized).expect("write");
    fixture
}

/// A Concat SuperNet with an identity, saved without metadata (as PyTorch would): its mix has
/// more slots than convs, so without `--space` it is refused with a pointer to it; with it,
/// it loads the values.
#[test]
fn an_identity_without_metadata_needs_the_space() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("torch.safetensors");
    let fixture = saved_without_metadata("space/space_concat.json", &path);
    let cpu = CpuBackend::new();
    let error = checkpoint::read(&cpu, &path, &LoadOptions::default())
        .err()
        .expect("ambiguous")
        .to_string();
    assert!(
        error.contains("block2.mix.weight") && error.contains("--space"),
        "{error}"
    );
    let options = LoadOptions {
        space: Some(fixture_space()),
        image_size: Some(28),
    };
    let read = checkpoint::read(&cpu, &path, &options).expect("with --space");
    let weight = read.net.parameter("block2.conv5.weight").expect("param");
    assert_eq!(
        weight.to_vec(&cpu).expect("values"),
        fixture.params["block2.conv5.weight"].f32()
    );
}

/// `standalone` then `eval`: the checkpoint says which subnet it trained, and `eval` shows
/// only that one, with the training's own final figures.
#[test]
fn a_standalone_checkpoint_evaluates_as_its_one_subnet() {
    let (data, _) = data();
    let out = tempfile::tempdir().expect("temp dir");
    let run = out.path().join("run");
    let (data, run_dir) = (data.path().to_str().unwrap(), run.to_str().unwrap());
    let trained = supernet(&[
        "standalone",
        "--subnet",
        "1,0",
        "--epochs",
        "1",
        "--backend",
        "cpu",
        "--data",
        data,
        "--out",
        run_dir,
    ]);
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let weights = run.join("model.safetensors");
    let eval = supernet(&[
        "eval",
        "--weights",
        weights.to_str().unwrap(),
        "--json",
        "--backend",
        "cpu",
        "--data",
        data,
    ]);
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&eval.stdout).expect("JSON");
    let subnets = printed["subnets"].as_object().expect("subnets");
    assert_eq!(subnets.keys().collect::<Vec<_>>(), ["10"], "{printed}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    let last: serde_json::Value =
        serde_json::from_str(metrics.lines().last().expect("a line")).expect("JSON line");
    assert_eq!(subnets["10"]["correct"], last["subnets"]["10"]["correct"]);
}

/// `export` on the command line, then `eval` of the file: the same correct count as the
/// subnet evaluated inside the SuperNet.
#[test]
fn export_then_eval_on_the_command_line() {
    let (data, _) = data();
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = torch_weights("torch_concat_seed4");
    let exported = dir.path().join("subnet.safetensors");
    let (data, weights_arg) = (data.path().to_str().unwrap(), weights.to_str().unwrap());
    let run = |args: &[&str]| {
        let output = supernet(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default()
    };
    run(&[
        "export",
        "--weights",
        weights_arg,
        "--subnet",
        "0,1",
        "--out",
        exported.to_str().unwrap(),
    ]);
    let all = run(&[
        "eval",
        "--weights",
        weights_arg,
        "--json",
        "--backend",
        "cpu",
        "--data",
        data,
    ]);
    let alone = run(&[
        "eval",
        "--weights",
        exported.to_str().unwrap(),
        "--json",
        "--backend",
        "cpu",
        "--data",
        data,
    ]);
    assert_eq!(
        alone["subnets"].as_object().expect("subnets").len(),
        1,
        "{alone}"
    );
    assert_eq!(
        alone["subnets"]["01"]["correct"],
        all["subnets"]["01"]["correct"]
    );
    assert!(all["subnets"]["01"]["correct"].as_u64().expect("count") > 400);
}

// ---- the ops space: every choice kind --------------------------------------------------------

/// A SuperNet over the `ops` space after 60 one-shot steps on the small MNIST.
fn trained_ops_supernet<B: Backend>(backend: &B, variant: Variant) -> supernet::model::SuperNet<B> {
    let config = TrainConfig {
        space: SearchSpace::parse("ops").expect("ops"),
        ..TrainConfig::study(variant, Mode::OneShot)
    };
    let mut trainer = Trainer::new(backend, &data().1, config).expect("trainer");
    trainer.train_steps(60).expect("steps");
    trainer.net
}

/// Subnets with a separable conv, a dilated conv, a max-pool and an average pool, exported:
/// each evaluates exactly as inside the SuperNet, and holds its kind's plain names.
fn ops_subnets_export_as_in_the_supernet<B: Backend>(backend: &B, variant: Variant) {
    let dir = tempfile::tempdir().expect("temp dir");
    let net = trained_ops_supernet(backend, variant);
    let test = DeviceSplit::upload(backend, &data().1.test).expect("test set");
    let space = &net.config.space;
    // 32: sep3, 3d2; 14: 5x5, max3; 25: 3d2, avg3; 36: sep3, skip.
    let cases: [(&str, &[&str]); 4] = [
        (
            "32",
            &[
                "block1.sep.depthwise.weight",
                "block1.sep.pointwise.bias",
                "block2.conv.weight",
            ],
        ),
        ("14", &["block1.conv.weight"]),
        ("25", &["block1.conv.weight"]),
        ("36", &["block1.sep.pointwise.weight"]),
    ];
    for (name, names) in cases {
        let subnet = space.parse_subnet(name).expect("subnet");
        let exported = dir.path().join(format!("{name}.safetensors"));
        export::export(backend, &net, &subnet, &exported).expect("export");
        let inside = evaluate_subnets(backend, &net, &test, &[subnet], 100).expect("eval")[0];
        let read = checkpoint::read(backend, &exported, &LoadOptions::default()).expect("read");
        let own = read.net.config.space.subnets();
        let alone = evaluate_subnets(backend, &read.net, &test, &own, 100).expect("eval")[0];
        let what = format!("{} {variant:?} ops subnet {name}", backend.name());
        assert_eq!(alone.correct, inside.correct, "{what}: correct count");
        assert_eq!(alone.loss.to_bits(), inside.loss.to_bits(), "{what}: loss");
        let (shapes, metadata) = tensors(&exported);
        for expected in names {
            assert!(
                shapes.iter().any(|(n, _)| n == expected),
                "{what}: no {expected} in {shapes:?}"
            );
        }
        let convs = shapes
            .iter()
            .filter(|(n, _)| n.starts_with("block2."))
            .count();
        let block2_params = if name.ends_with(['4', '5', '6']) {
            0
        } else {
            2
        };
        let mix = if variant == Variant::Concat { 2 } else { 0 };
        assert_eq!(
            convs,
            block2_params + mix,
            "{what}: block 2's tensors {shapes:?}"
        );
        assert_eq!(metadata["architecture"], space.only(&subnet).to_string());
    }
}

#[test]
fn cpu_ops_subnets_export_as_in_the_supernet() {
    let cpu = CpuBackend::new();
    ops_subnets_export_as_in_the_supernet(&cpu, Variant::Sum);
    ops_subnets_export_as_in_the_supernet(&cpu, Variant::Concat);
}

#[test]
fn gpu_ops_subnets_export_as_in_the_supernet() {
    let Some(gpu) = gpu() else { return };
    ops_subnets_export_as_in_the_supernet(&gpu, Variant::Sum);
}

/// PyTorch's `ops` SuperNet saved without metadata: the kinds with parameters are read from
/// the names (`conv3d2`, `sep3`); the pools and the identity only `--space` can give, so a
/// Concat mix with their slots is refused without it and read with it.
#[test]
fn an_ops_file_without_metadata_is_read_by_its_names_or_its_space() {
    let cpu = CpuBackend::new();
    let dir = tempfile::tempdir().expect("temp dir");
    for variant in [Variant::Sum, Variant::Concat] {
        let path = dir
            .path()
            .join(format!("torch_{}.safetensors", variant.name()));
        let relative = format!("ops_space/space_{}.json", variant.name());
        let fixture = saved_without_metadata(&relative, &path);
        let inferred = checkpoint::read(&cpu, &path, &LoadOptions::default());
        match variant {
            Variant::Sum => {
                let space = inferred.expect("the names give the kinds").net.config.space;
                assert_eq!(space.to_string(), "3,3d2,5,sep3/3,3d2,5,sep3");
            }
            Variant::Concat => {
                let error = inferred.err().expect("mix slots").to_string();
                assert!(error.contains("--space"), "{error}");
            }
        }
        let options = LoadOptions {
            space: Some(SearchSpace::parse("ops").expect("ops")),
            image_size: Some(28),
        };
        let read = checkpoint::read(&cpu, &path, &options).expect("with --space");
        for name in ["block1.sep3.depthwise.weight", "block2.conv3d2.bias"] {
            let values = read
                .net
                .parameter(name)
                .expect(name)
                .to_vec(&cpu)
                .expect("values");
            assert_eq!(values, fixture.params[name].f32(), "{name}");
        }
    }
}
