//! Finite-difference checks of every CPU op's backward, and of the tape end to end.
//!
//! For `out = build(inputs)` and a fixed random upstream `u`, the scalar `L = sum(out * u)` is
//! differentiated twice: by the tape (its backward seeded with `u`, see `weighted_sum`), and by
//! central differences `(L(x + eps e_i) - L(x - eps e_i)) / (2 eps)` for every element of every
//! input, with `L` accumulated in f64 from the f32 forward run on a fresh tape.

mod common;

use common::{assert_close, random, rng};
use rand::seq::SliceRandom;
use supernet::engine::{ConvGeometry, CpuBackend, Memory, PoolKind, Tape, Tensor};
use supernet::Result;

type Cpu = CpuBackend;

/// Pass when `|analytic - numeric| <= ATOL + RTOL * |numeric|`. The numeric side carries the f32
/// rounding of two forwards divided by `2 eps` (measured: at most 6e-5 for the linear ops, 3e-4
/// for the cross-entropy ones); a wrong backward (a missing factor, a flipped kernel, a dropped
/// term) is off by 1e-2 or more, for gradients of order 0.1 to 5.
const ATOL: f64 = 1e-3;
const RTOL: f64 = 1e-3;

/// Step for ops linear in each input (conv2d, linear, masked_sum, masked_concat, reshape) and
/// piecewise-linear ones kept away from their kinks (relu, maxpool2): central differences are
/// exact there, so only rounding counts, and a large step keeps `rounding / (2 eps)` small
/// (about 1e-6 on L over 2e-2). The data keep every kink more than `eps` away.
const EPS_LINEAR: f32 = 1e-2;

/// Step for the curved softmax cross-entropy (and the networks ending in it): the truncation
/// error `eps^2 / 6 * |L'''|` is about 1e-7, the rounding of the f32 loss (a few 1e-7) over
/// `2 eps` a few 1e-4; a larger step would bring the networks' kinks within the probes' reach.
const EPS_SMOOTH: f32 = 1e-3;

/// One differentiable input of a checked op: a parameter on the tape.
struct Input {
    name: &'static str,
    values: Vec<f32>,
    shape: Vec<usize>,
}

fn input(name: &'static str, values: Vec<f32>, shape: &[usize]) -> Input {
    assert_eq!(
        values.len(),
        shape.iter().product::<usize>(),
        "{name}: values do not fill {shape:?}"
    );
    Input {
        name,
        values,
        shape: shape.to_vec(),
    }
}

fn random_input(name: &'static str, seed: u64, shape: &[usize]) -> Input {
    input(name, random(&mut rng(seed), shape.iter().product()), shape)
}

/// Central differences of `f` at `x`, one element at a time. The step is the one f32 actually
/// takes (`(x + eps) - (x - eps)` after rounding), not the nominal `2 eps`.
fn numeric_grad(f: impl Fn(&[f32]) -> f64, x: &[f32], eps: f32) -> Vec<f32> {
    let mut probe = x.to_vec();
    (0..x.len())
        .map(|i| {
            let (up, down) = (x[i] + eps, x[i] - eps);
            probe[i] = up;
            let above = f(&probe);
            probe[i] = down;
            let below = f(&probe);
            probe[i] = x[i];
            ((above - below) / f64::from(up - down)) as f32
        })
        .collect()
}

/// `sum(out * upstream)` on the tape (a flatten and a one-output linear whose weight is
/// `upstream`), so that back-propagating it hands `upstream` to `out`. A loss with upstream
/// `[1.0]` is back-propagated as it is.
fn weighted_sum(tape: &Tape<Cpu>, out: &Tensor<Cpu>, upstream: &[f32]) -> Result<Tensor<Cpu>> {
    if upstream == [1.0] && out.numel() == 1 {
        return Ok(out.clone());
    }
    let cpu = tape.backend();
    let flat = tape.reshape(out, &[1, out.numel()])?;
    let weight = Tensor::from_slice(cpu, upstream, &[1, upstream.len()])?;
    let bias = Tensor::from_slice(cpu, &[0.0], &[1])?;
    tape.linear(&flat, &weight, &bias)
}

/// Compares, for every input, the tape's gradient of `L = sum(build(inputs) * upstream)` with
/// central differences of `L` (each forward on a fresh tape).
fn check_gradients(
    what: &str,
    inputs: &[Input],
    upstream: &[f32],
    eps: f32,
    build: impl Fn(&Tape<Cpu>, &[Tensor<Cpu>]) -> Result<Tensor<Cpu>>,
) {
    let cpu = CpuBackend::new();
    let params_of = |values: &[Vec<f32>]| -> Vec<Tensor<Cpu>> {
        inputs
            .iter()
            .zip(values)
            .map(|(input, v)| common::param(&cpu, v, &input.shape))
            .collect()
    };
    let base_values: Vec<Vec<f32>> = inputs.iter().map(|input| input.values.clone()).collect();

    let params = params_of(&base_values);
    let tape = Tape::new(&cpu);
    let out = build(&tape, &params).expect("forward");
    assert_eq!(
        out.numel(),
        upstream.len(),
        "{what}: upstream does not match {:?}",
        out.shape()
    );
    let loss = weighted_sum(&tape, &out, upstream).expect("weighted sum");
    let grads = tape.backward(&loss).expect("backward");

    let loss_at = |values: &[Vec<f32>]| -> f64 {
        let out = build(&Tape::new(&cpu), &params_of(values)).expect("forward");
        let out = common::values(&cpu, &out);
        out.iter()
            .zip(upstream)
            .map(|(&o, &u)| f64::from(o) * f64::from(u))
            .sum()
    };
    for (k, (input, param)) in inputs.iter().zip(&params).enumerate() {
        let grad = grads
            .get(param)
            .unwrap_or_else(|| panic!("{what}: no gradient for {}", input.name));
        assert_eq!(
            grad.shape(),
            input.shape,
            "{what}: shape of the gradient of {}",
            input.name
        );
        let numeric = numeric_grad(
            |x| {
                let mut values = base_values.clone();
                values[k] = x.to_vec();
                loss_at(&values)
            },
            &input.values,
            eps,
        );
        let analytic = common::values(&cpu, grad);
        assert_close(
            &format!("{what}: dL/d{}", input.name),
            &analytic,
            &numeric,
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn conv2d() {
    let (n, c, o, h, w) = (2, 3, 2, 5, 4);
    // 7 takes the CPU twin's general-kernel path (1, 3 and 5 have their own builds).
    for k in [1, 3, 5, 7] {
        let inputs = [
            random_input("x", 1, &[n, c, h, w]),
            random_input("weight", 2, &[o, c, k, k]),
            random_input("bias", 3, &[o]),
        ];
        let upstream = random(&mut rng(4), n * o * h * w);
        check_gradients(
            &format!("conv2d k={k}"),
            &inputs,
            &upstream,
            EPS_LINEAR,
            |t, p| t.conv2d(&p[0], &p[1], &p[2]),
        );
    }
}

/// Dilated convolutions (dilation 2 and 3, the taps reaching past a 7x6 image's middle) and
/// grouped ones: depthwise (groups = channels, one and two outputs per channel) and two groups.
#[test]
fn conv2d_geometry() {
    let geometry = |kernel, dilation, groups| ConvGeometry {
        kernel,
        dilation,
        groups,
    };
    let (n, h, w) = (2, 7, 6);
    let cases = [
        (3, 2, geometry(3, 2, 1)),
        (3, 2, geometry(3, 3, 1)),
        (2, 3, geometry(5, 2, 1)),
        (4, 4, geometry(3, 1, 4)),
        (3, 6, geometry(3, 1, 3)),
        (3, 3, geometry(5, 2, 3)),
        (4, 2, geometry(3, 1, 2)),
    ];
    for (c, o, g) in cases {
        let k = g.kernel;
        let inputs = [
            random_input("x", 1, &[n, c, h, w]),
            random_input("weight", 2, &[o, c / g.groups, k, k]),
            random_input("bias", 3, &[o]),
        ];
        let upstream = random(&mut rng(4), n * o * h * w);
        check_gradients(
            &format!("conv2d {g:?}, channels {c}->{o}"),
            &inputs,
            &upstream,
            EPS_LINEAR,
            |t, p| t.conv2d_with(&p[0], &p[1], &p[2], g),
        );
    }
}

#[test]
fn linear() {
    let (n, i, o) = (3, 5, 4);
    let inputs = [
        random_input("x", 1, &[n, i]),
        random_input("weight", 2, &[o, i]),
        random_input("bias", 3, &[o]),
    ];
    let upstream = random(&mut rng(4), n * o);
    check_gradients("linear", &inputs, &upstream, EPS_LINEAR, |t, p| {
        t.linear(&p[0], &p[1], &p[2])
    });
}

#[test]
fn relu() {
    // |x| >= 0.1 > EPS_LINEAR: no probe crosses the kink at 0.
    let x: Vec<f32> = random(&mut rng(1), 2 * 3 * 4 * 5)
        .iter()
        .map(|v| v.signum() * (0.1 + 0.9 * v.abs()))
        .collect();
    let upstream = random(&mut rng(2), x.len());
    check_gradients(
        "relu",
        &[input("x", x, &[2, 3, 4, 5])],
        &upstream,
        EPS_LINEAR,
        |t, p| t.relu(&p[0]),
    );
}

#[test]
fn maxpool2() {
    // A shuffled ramp with steps of 0.05 > 2 * EPS_LINEAR: no probe changes a window's maximum.
    for shape in [[2, 2, 5, 7], [1, 3, 4, 6]] {
        let len: usize = shape.iter().product();
        let mut x: Vec<f32> = (0..len).map(|i| i as f32 * 0.05 - 1.0).collect();
        x.shuffle(&mut rng(1));
        let upstream = random(
            &mut rng(2),
            shape[0] * shape[1] * (shape[2] / 2) * (shape[3] / 2),
        );
        check_gradients(
            &format!("maxpool2 {shape:?}"),
            &[input("x", x, &shape)],
            &upstream,
            EPS_LINEAR,
            |t, p| t.maxpool2(&p[0]),
        );
    }
}

#[test]
fn masked_sum() {
    let shape = [2, 3, 4, 4];
    let upstream = random(&mut rng(3), 2 * 3 * 4 * 4);
    let parts = [random_input("a", 1, &shape), random_input("b", 2, &shape)];
    check_gradients(
        "masked_sum 0.3 a + 0.7 b",
        &parts,
        &upstream,
        EPS_LINEAR,
        |t, p| t.masked_sum(&[(&p[0], 0.3), (&p[1], 0.7)]),
    );
    check_gradients(
        "masked_sum 1 a",
        &[random_input("a", 1, &shape)],
        &upstream,
        EPS_LINEAR,
        |t, p| t.masked_sum(&[(&p[0], 1.0)]),
    );
}

#[test]
fn masked_concat() {
    let shape = [2, 3, 2, 3];
    let upstream = random(&mut rng(3), 2 * 6 * 2 * 3);
    let parts = [random_input("a", 1, &shape), random_input("b", 2, &shape)];
    check_gradients(
        "masked_concat [0.3 a, 0.7 b]",
        &parts,
        &upstream,
        EPS_LINEAR,
        |t, p| t.masked_concat(&[Some((&p[0], 0.3)), Some((&p[1], 0.7))]),
    );
    check_gradients(
        "masked_concat [None, 0.6 a]",
        &[random_input("a", 1, &shape)],
        &upstream,
        EPS_LINEAR,
        |t, p| t.masked_concat(&[None, Some((&p[0], 0.6))]),
    );
}

#[test]
fn softmax_cross_entropy() {
    let cpu = CpuBackend::new();
    let labels = cpu.upload_indices(&[0, 4, 2, 4]).expect("labels");
    // Logits in [-3, 3): a spread of confident and unsure rows.
    let logits: Vec<f32> = random(&mut rng(1), 4 * 5).iter().map(|v| 3.0 * v).collect();
    // A random upstream other than 1 also checks that the backward scales by the loss gradient.
    let upstream = random(&mut rng(2), 1);
    check_gradients(
        "softmax_cross_entropy",
        &[input("logits", logits, &[4, 5])],
        &upstream,
        EPS_SMOOTH,
        |t, p| t.softmax_cross_entropy(&p[0], &labels),
    );
}

#[test]
fn reshape_and_flatten() {
    let upstream = random(&mut rng(2), 24);
    check_gradients(
        "reshape + flatten",
        &[random_input("x", 1, &[2, 3, 2, 2])],
        &upstream,
        EPS_LINEAR,
        |t, p| {
            let rows = t.reshape(&p[0], &[4, 6])?;
            t.flatten(&t.reshape(&rows, &[2, 2, 6])?)
        },
    );
}

/// How far `values` stay from ReLU's kink at 0.
fn relu_margin(values: &[f32]) -> f32 {
    values.iter().fold(f32::INFINITY, |m, v| m.min(v.abs()))
}

/// The smallest gap between the two largest values of a 2x2 pooling window, over the windows
/// of `height x width` planes whose maximum is positive (all-zero windows after ReLU are flat).
fn pool_margin(values: &[f32], height: usize, width: usize) -> f32 {
    let mut margin = f32::INFINITY;
    for plane in values.chunks(height * width) {
        for (oy, ox) in (0..height / 2).flat_map(|oy| (0..width / 2).map(move |ox| (oy, ox))) {
            let at = |dy: usize, dx: usize| plane[(2 * oy + dy) * width + 2 * ox + dx];
            let mut window = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
            window.sort_by(|a, b| b.total_cmp(a));
            if window[0] > 0.0 {
                margin = margin.min(window[0] - window[1]);
            }
        }
    }
    margin
}

/// The conv2d output for the first three inputs (x, weight, bias), where a network's kinks lie.
fn conv_of(inputs: &[Input]) -> Vec<f32> {
    let cpu = CpuBackend::new();
    let [x, weight, bias] =
        [0, 1, 2].map(|i| common::tensor(&cpu, &inputs[i].values, &inputs[i].shape));
    let out = Tape::inference(&cpu)
        .conv2d(&x, &weight, &bias)
        .expect("conv");
    common::values(&cpu, &out)
}

/// The conv2d output of the given geometry for the first three inputs (x, weight, bias).
fn conv_with_of(inputs: &[Input], geometry: ConvGeometry) -> Vec<f32> {
    let cpu = CpuBackend::new();
    let [x, weight, bias] =
        [0, 1, 2].map(|i| common::tensor(&cpu, &inputs[i].values, &inputs[i].shape));
    let out = Tape::inference(&cpu)
        .conv2d_with(&x, &weight, &bias, geometry)
        .expect("conv");
    common::values(&cpu, &out)
}

/// The pre-activations of `conv_relu_pool(x, weight, bias, first)` for the first three inputs:
/// x concatenated into its slot of the weight's channels, then conv2d.
fn slot_conv_of(inputs: &[Input], first: usize) -> Vec<f32> {
    let cpu = CpuBackend::new();
    let [x, weight, bias] =
        [0, 1, 2].map(|i| common::tensor(&cpu, &inputs[i].values, &inputs[i].shape));
    let (channels, weight_channels) = (x.shape()[1], weight.shape()[1]);
    let slots: Vec<Option<(&Tensor<Cpu>, f32)>> = (0..weight_channels / channels)
        .map(|s| (s * channels == first).then_some((&x, 1.0)))
        .collect();
    let tape = Tape::inference(&cpu);
    let input = tape.masked_concat(&slots).expect("concat");
    common::values(&cpu, &tape.conv2d(&input, &weight, &bias).expect("conv"))
}

/// The fused block op: a block's 3x3 conv (x every weight channel) and a Concat mix's 1x1
/// reading slot 2 of 3. As in `tape_conv_net`, the seeded data keep every pre-activation and
/// every gap between a window's two largest values beyond a probe's reach.
#[test]
fn conv_relu_pool() {
    for (weight_channels, first, kernel, seed) in [(2, 0, 3, 100), (6, 2, 1, 110)] {
        let inputs = [
            random_input("x", seed, &[2, 2, 6, 6]),
            random_input("weight", seed + 1, &[3, weight_channels, kernel, kernel]),
            random_input("bias", seed + 2, &[3]),
        ];
        let pre = slot_conv_of(&inputs, first);
        let activated: Vec<f32> = pre.iter().map(|v| v.max(0.0)).collect();
        let (relu_gap, pool_gap) = (relu_margin(&pre), pool_margin(&activated, 6, 6));
        assert!(
            relu_gap > EPS_SMOOTH && pool_gap > 2.0 * EPS_SMOOTH,
            "seeded data too close to a kink: relu {relu_gap}, pool {pool_gap}"
        );
        let upstream = random(&mut rng(seed + 3), 2 * 3 * 3 * 3);
        check_gradients(
            &format!("conv_relu_pool, x at {first} of {weight_channels}"),
            &inputs,
            &upstream,
            EPS_SMOOTH,
            |t, p| t.conv_relu_pool(&p[0], &p[1], &p[2], first),
        );
    }
}

/// The fused block over a dilated convolution (a 3x3 dilated by 2, and by 3 past the middle of
/// a 6x6 image) and a depthwise one, the data again beyond the probes' reach of every kink.
#[test]
fn conv_relu_pool_geometry() {
    let geometry = |kernel, dilation, groups| ConvGeometry {
        kernel,
        dilation,
        groups,
    };
    let cases = [
        (3, geometry(3, 2, 1), 120),
        (3, geometry(3, 3, 1), 130),
        (2, geometry(3, 1, 2), 140),
        (2, geometry(3, 2, 2), 150),
    ];
    for (out, g, seed) in cases {
        let inputs = [
            random_input("x", seed, &[2, 2, 6, 6]),
            random_input("weight", seed + 1, &[out, 2 / g.groups, 3, 3]),
            random_input("bias", seed + 2, &[out]),
        ];
        let pre = conv_with_of(&inputs, g);
        let activated: Vec<f32> = pre.iter().map(|v| v.max(0.0)).collect();
        let (relu_gap, pool_gap) = (relu_margin(&pre), pool_margin(&activated, 6, 6));
        assert!(
            relu_gap > EPS_SMOOTH && pool_gap > 2.0 * EPS_SMOOTH,
            "{g:?}: seeded data too close to a kink: relu {relu_gap}, pool {pool_gap}"
        );
        let upstream = random(&mut rng(seed + 3), 2 * out * 3 * 3);
        check_gradients(
            &format!("conv_relu_pool {g:?}"),
            &inputs,
            &upstream,
            EPS_SMOOTH,
            |t, p| t.conv_relu_pool_with(&p[0], &p[1], &p[2], 0, g),
        );
    }
}

/// conv2d 3x3 -> relu -> maxpool2 -> flatten -> linear -> softmax_cross_entropy on two 6x6
/// images; every parameter (the images too) is checked through `tape.backward(&loss)`.
#[test]
fn tape_conv_net() {
    let cpu = CpuBackend::new();
    let labels = cpu.upload_indices(&[1, 2]).expect("labels");
    let inputs = [
        random_input("images", 1, &[2, 1, 6, 6]),
        random_input("conv.weight", 2, &[2, 1, 3, 3]),
        random_input("conv.bias", 3, &[2]),
        random_input("fc.weight", 4, &[3, 18]),
        random_input("fc.bias", 5, &[3]),
    ];
    // With every value in [-1, 1), one probe moves a pre-activation by at most EPS_SMOOTH, so a
    // margin above that (2x for the gap between two pooled values) keeps the loss smooth there.
    let pre = conv_of(&inputs);
    let activated: Vec<f32> = pre.iter().map(|v| v.max(0.0)).collect();
    let (relu_gap, pool_gap) = (relu_margin(&pre), pool_margin(&activated, 6, 6));
    assert!(
        relu_gap > EPS_SMOOTH && pool_gap > 2.0 * EPS_SMOOTH,
        "seeded data too close to a kink: relu {relu_gap}, pool {pool_gap}"
    );

    check_gradients("conv net", &inputs, &[1.0], EPS_SMOOTH, |t, p| {
        let features = t.maxpool2(&t.relu(&t.conv2d(&p[0], &p[1], &p[2])?)?)?;
        let logits = t.linear(&t.flatten(&features)?, &p[3], &p[4])?;
        t.softmax_cross_entropy(&logits, &labels)
    });
}

/// Gradients of tensors that feed two ops are summed: the conv output `h` feeds relu and
/// masked_sum, and the images feed the conv and the concatenation.
#[test]
fn tape_accumulates_gradients_of_shared_tensors() {
    let cpu = CpuBackend::new();
    let labels = cpu.upload_indices(&[0, 2]).expect("labels");
    let inputs = [
        random_input("images", 1, &[2, 2, 4, 4]),
        random_input("conv.weight", 2, &[2, 2, 3, 3]),
        random_input("conv.bias", 3, &[2]),
        random_input("fc.weight", 4, &[3, 64]),
        random_input("fc.bias", 5, &[3]),
    ];
    // The only kink is relu's: one probe moves `h` by at most EPS_SMOOTH (values in [-1, 1)).
    let h = conv_of(&inputs);
    assert!(
        relu_margin(&h) > EPS_SMOOTH,
        "seeded data too close to the kink: {}",
        relu_margin(&h)
    );

    check_gradients("shared tensors", &inputs, &[1.0], EPS_SMOOTH, |t, p| {
        let h = t.conv2d(&p[0], &p[1], &p[2])?;
        let leaky = t.masked_sum(&[(&h, 0.5), (&t.relu(&h)?, 0.5)])?;
        let both = t.masked_concat(&[Some((&leaky, 0.3)), Some((&p[0], 0.7))])?;
        let logits = t.linear(&t.flatten(&both)?, &p[3], &p[4])?;
        t.softmax_cross_entropy(&logits, &labels)
    });
}

#[test]
fn unused_parameter_and_constant_data_get_no_gradient() {
    let cpu = CpuBackend::new();
    let data = common::tensor(&cpu, &random(&mut rng(1), 2 * 4), &[2, 4]);
    let weight = common::param(&cpu, &random(&mut rng(2), 3 * 4), &[3, 4]);
    let bias = common::param(&cpu, &random(&mut rng(3), 3), &[3]);
    let unused = common::param(&cpu, &random(&mut rng(4), 3 * 4), &[3, 4]);
    let labels = cpu.upload_indices(&[0, 1]).expect("labels");
    let tape = Tape::new(&cpu);
    let logits = tape.linear(&data, &weight, &bias).expect("linear");
    let loss = tape.softmax_cross_entropy(&logits, &labels).expect("loss");
    let grads = tape.backward(&loss).expect("backward");
    assert!(
        grads.get(&weight).is_some() && grads.get(&bias).is_some(),
        "used parameters lack a gradient"
    );
    assert!(
        grads.get(&unused).is_none(),
        "a parameter no op used has a gradient"
    );
    assert!(grads.get(&data).is_none(), "constant data has a gradient");
}

/// Stride-1 pooling, max on a shuffled ramp (steps of 0.05 > 2 * EPS_LINEAR: no probe changes
/// any window's maximum, and no window has a tie) and average (linear) on random values; 3x3
/// and 5x5 windows, which overlap, and a 5x5 wider than the 4-row image.
#[test]
fn pool_s1() {
    for kernel in [3, 5] {
        for shape in [[2, 2, 5, 7], [1, 3, 4, 6]] {
            let len: usize = shape.iter().product();
            let mut ramp: Vec<f32> = (0..len).map(|i| i as f32 * 0.05 - 1.0).collect();
            ramp.shuffle(&mut rng(1));
            let upstream = random(&mut rng(2), len);
            for (kind, x) in [
                (PoolKind::Max, input("x", ramp, &shape)),
                (PoolKind::Avg, random_input("x", 3, &shape)),
            ] {
                check_gradients(
                    &format!("pool_s1 {kind:?} {kernel}x{kernel} {shape:?}"),
                    &[x],
                    &upstream,
                    EPS_LINEAR,
                    |t, p| t.pool_s1(&p[0], kind, kernel),
                );
            }
        }
    }
}
