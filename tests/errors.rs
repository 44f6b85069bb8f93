//! Bad shapes and arguments give an error that names the op and the shapes, never a panic.

use supernet::engine::{Adadelta, AdadeltaConfig, ConvGeometry, CpuBackend, Tape, Tensor};
use supernet::model::{SearchSpace, Subnet};

fn zeros(cpu: &CpuBackend, shape: &[usize]) -> Tensor<CpuBackend> {
    Tensor::from_slice(cpu, &vec![0.0; shape.iter().product()], shape).expect("upload")
}

fn error_of<T: std::fmt::Debug>(result: supernet::Result<T>) -> String {
    result.expect_err("expected an error").to_string()
}

#[test]
fn conv2d_channel_mismatch_names_op_and_shapes() {
    let cpu = CpuBackend::new();
    let tape = Tape::new(&cpu);
    let message = error_of(tape.conv2d(
        &zeros(&cpu, &[2, 3, 5, 5]),
        &zeros(&cpu, &[4, 2, 3, 3]),
        &zeros(&cpu, &[4]),
    ));
    assert!(message.starts_with("conv2d:"), "{message}");
    assert!(
        message.contains("[2, 3, 5, 5]") && message.contains("[4, 2, 3, 3]"),
        "{message}"
    );
}

#[test]
fn conv2d_even_kernel_is_refused() {
    let cpu = CpuBackend::new();
    let tape = Tape::new(&cpu);
    let message = error_of(tape.conv2d(
        &zeros(&cpu, &[1, 1, 5, 5]),
        &zeros(&cpu, &[1, 1, 2, 2]),
        &zeros(&cpu, &[1]),
    ));
    assert!(
        message.contains("conv2d") && message.contains("odd"),
        "{message}"
    );
}

#[test]
fn conv_relu_pool_slot_past_the_weight_names_op_and_shapes() {
    let cpu = CpuBackend::new();
    let tape = Tape::new(&cpu);
    // x's 4 channels from channel 6 of a weight with 8.
    let message = error_of(tape.conv_relu_pool(
        &zeros(&cpu, &[2, 4, 6, 6]),
        &zeros(&cpu, &[3, 8, 1, 1]),
        &zeros(&cpu, &[3]),
        6,
    ));
    assert!(
        message.starts_with("conv_relu_pool:")
            && message.contains("[2, 4, 6, 6]")
            && message.contains("[3, 8, 1, 1]")
            && message.contains("from 6"),
        "{message}"
    );
}

/// Geometries that do not fit the shapes: groups that do not divide the channels, a weight
/// without the grouped shape, a kernel other than the weight's, dilation or groups 0, and a
/// grouped fused block reading a slot.
#[test]
fn conv_geometry_mismatches_name_op_and_shapes() {
    let cpu = CpuBackend::new();
    let tape = Tape::new(&cpu);
    let geometry = |kernel, dilation, groups| ConvGeometry {
        kernel,
        dilation,
        groups,
    };
    let cases = [
        (
            [2, 6, 5, 5],
            [4, 2, 3, 3],
            geometry(3, 1, 4),
            "4 groups must divide",
        ),
        ([2, 6, 5, 5], [6, 2, 3, 3], geometry(3, 1, 6), "per group"),
        (
            [2, 6, 5, 5],
            [6, 6, 3, 3],
            geometry(5, 1, 1),
            "not the geometry's",
        ),
        ([2, 6, 5, 5], [6, 6, 3, 3], geometry(3, 0, 1), "dilation"),
        ([2, 6, 5, 5], [6, 6, 3, 3], geometry(3, 1, 0), "groups"),
    ];
    for (x, w, g, says) in cases {
        let message = error_of(tape.conv2d_with(
            &zeros(&cpu, &x),
            &zeros(&cpu, &w),
            &zeros(&cpu, &[w[0]]),
            g,
        ));
        assert!(
            message.starts_with("conv2d:")
                && message.contains(&format!("{x:?}"))
                && message.contains(&format!("{w:?}"))
                && message.contains(says),
            "{g:?}: {message}"
        );
        let message = error_of(tape.conv_relu_pool_with(
            &zeros(&cpu, &x),
            &zeros(&cpu, &w),
            &zeros(&cpu, &[w[0]]),
            0,
            g,
        ));
        assert!(
            message.starts_with("conv_relu_pool:") && message.contains(&format!("{w:?}")),
            "{g:?}: {message}"
        );
    }
    // A depthwise weight read from a slot: grouped blocks read all of theirs.
    let message = error_of(tape.conv_relu_pool_with(
        &zeros(&cpu, &[2, 4, 6, 6]),
        &zeros(&cpu, &[4, 1, 3, 3]),
        &zeros(&cpu, &[4]),
        1,
        geometry(3, 1, 4),
    ));
    assert!(
        message.starts_with("conv_relu_pool:") && message.contains("[4, 1, 3, 3]"),
        "{message}"
    );
}

#[test]
fn linear_feature_mismatch_names_op_and_shapes() {
    let cpu = CpuBackend::new();
    let tape = Tape::new(&cpu);
    let message = error_of(tape.linear(
        &zeros(&cpu, &[2, 5]),
        &zeros(&cpu, &[3, 4]),
        &zeros(&cpu, &[3]),
    ));
    assert!(
        message.starts_with("linear:") && message.contains("[2, 5]") && message.contains("[3, 4]"),
        "{message}"
    );
}

#[test]
fn maxpool_needs_four_dimensions() {
    let cpu = CpuBackend::new();
    let message = error_of(Tape::new(&cpu).maxpool2(&zeros(&cpu, &[4, 4])));
    assert!(
        message.starts_with("maxpool2:") && message.contains("[4, 4]"),
        "{message}"
    );
}

#[test]
fn softmax_xent_rejects_out_of_range_label() {
    let cpu = CpuBackend::new();
    let labels = supernet::engine::Memory::upload_indices(&cpu, &[3, 10]).expect("labels");
    let message = error_of(Tape::new(&cpu).softmax_cross_entropy(&zeros(&cpu, &[2, 10]), &labels));
    assert!(
        message.contains("softmax_xent") && message.contains("label 10"),
        "{message}"
    );
}

#[test]
fn masked_ops_need_an_active_part_and_equal_shapes() {
    let cpu = CpuBackend::new();
    let tape = Tape::new(&cpu);
    assert!(error_of(tape.masked_sum(&[])).contains("masked_sum"));
    let (a, b) = (zeros(&cpu, &[1, 2, 3, 3]), zeros(&cpu, &[1, 2, 4, 4]));
    let message = error_of(tape.masked_concat(&[Some((&a, 1.0)), Some((&b, 1.0))]));
    assert!(
        message.contains("masked_concat") && message.contains("[1, 2, 4, 4]"),
        "{message}"
    );
    assert!(error_of(tape.masked_concat(&[None, None])).contains("masked_concat"));
}

#[test]
fn tensor_size_mismatch_and_bad_reshape() {
    let cpu = CpuBackend::new();
    assert!(error_of(Tensor::from_slice(&cpu, &[1.0, 2.0], &[3])).contains("[3]"));
    let message = error_of(Tape::new(&cpu).reshape(&zeros(&cpu, &[2, 3]), &[4, 2]));
    assert!(
        message.starts_with("reshape:") && message.contains("[2, 3]") && message.contains("[4, 2]"),
        "{message}"
    );
}

#[test]
fn backward_needs_a_scalar_loss() {
    let cpu = CpuBackend::new();
    let message = error_of(Tape::new(&cpu).backward(&zeros(&cpu, &[2])).map(|_| ()));
    assert!(message.starts_with("backward:"), "{message}");
}

#[test]
fn adadelta_rejects_bad_hyperparameters() {
    let cpu = CpuBackend::new();
    let params = [zeros(&cpu, &[2])];
    for (config, word) in [
        (
            AdadeltaConfig {
                lr: -1.0,
                ..Default::default()
            },
            "learning rate",
        ),
        (
            AdadeltaConfig {
                rho: 1.5,
                ..Default::default()
            },
            "rho",
        ),
        (
            AdadeltaConfig {
                eps: 0.0,
                ..Default::default()
            },
            "eps",
        ),
    ] {
        let message = error_of(Adadelta::new(&cpu, &params, config).map(|_| ()));
        assert!(
            message.contains("adadelta") && message.contains(word),
            "{message}"
        );
    }
}

#[test]
fn subnet_parsing() {
    let study = SearchSpace::study();
    let parse = |text: &str| study.parse_subnet(text);
    assert_eq!(parse("1,0").expect("1,0"), Subnet::new(&[1, 0]));
    assert_eq!(parse("01").expect("01"), Subnet::new(&[0, 1]));
    let message = error_of(parse("2,0"));
    assert!(
        message.contains("'2,0'") && message.contains("0 (3x3) or 1 (5x5)"),
        "{message}"
    );
    assert!(parse("1,0,1").is_err());
}

#[test]
fn pool_s1_even_kernel_and_bad_shapes_name_op_and_shapes() {
    use supernet::engine::PoolKind;
    let cpu = CpuBackend::new();
    let tape = Tape::new(&cpu);
    let message = error_of(tape.pool_s1(&zeros(&cpu, &[1, 2, 5, 5]), PoolKind::Max, 4));
    assert!(
        message.starts_with("pool_s1:")
            && message.contains("odd")
            && message.contains("[1, 2, 5, 5]")
            && message.contains("kernel 4"),
        "{message}"
    );
    let message = error_of(tape.pool_s1(&zeros(&cpu, &[2, 5, 5]), PoolKind::Avg, 3));
    assert!(
        message.starts_with("pool_s1:") && message.contains("[2, 5, 5]"),
        "{message}"
    );
    let message = error_of(tape.pool_s1(&zeros(&cpu, &[2, 1, 0, 5]), PoolKind::Avg, 3));
    assert!(
        message.starts_with("pool_s1:") && message.contains("[2, 1, 0, 5]"),
        "{message}"
    );
}
