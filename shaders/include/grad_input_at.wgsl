// grad_input_at: a convolution's input gradient at one pixel for a block of 8 input channels,
// a gather (a transposed convolution) over every output channel (of the input's group) and
// tap, the taps in reverse order: the CPU twin computes it as a forward pass with the kernel
// flipped, and the same order gives the same rounding. Zero output gradients are skipped (a
// fused op's are mostly zeros), which changes no sum but the sign of a zero. Included by the
// shaders of the ops that convolve (conv2d, conv_relu_pool), which define LANES (8), the
// uniform `p` (in_channels, out_channels, height, width, kernel, dilation, groups),
// `output_grad(n, o, y, x)` (the loss's gradient at output (o, y, x) of image n) and
// `input_weight(o, i, tap)` (the weight of output o, its group's input channel i, tap
// ky * K + kx).
// Tap (ky, kx) of output (y, x) reads input (y + ky D - pad, x + kx D - pad), D the dilation
// and pad = D (K - 1) / 2; input channel c feeds the out_channels / groups outputs of group
// c / (in_channels / groups).

// Image n at input pixel (iy, ix), input channels first .. first + 8. Lanes past the last
// channel repeat it (never stored). The branch is uniform: a plain convolution never runs the
// grouped loop's per-lane group arithmetic, which llvmpipe does not hoist.
fn grad_input_at(n: u32, first: u32, iy: i32, ix: i32) -> array<f32, 8> {
    if (p.groups == 1u) {
        return grad_input_at_dense(n, first, iy, ix);
    }
    return grad_input_at_grouped(n, first, iy, ix);
}

// One group: each output gradient is read once for the 8 channels.
fn grad_input_at_dense(n: u32, first: u32, iy: i32, ix: i32) -> array<f32, 8> {
    let pad = i32(p.dilation * (p.kernel - 1u) / 2u);
    var acc: array<f32, 8>;
    for (var o = 0u; o < p.out_channels; o++) {
        for (var kyr = 0u; kyr < p.kernel; kyr++) {
            let ky = p.kernel - 1u - kyr;
            let y = iy - i32(ky * p.dilation) + pad;
            if (y < 0 || y >= i32(p.height)) {
                continue;
            }
            for (var kxr = 0u; kxr < p.kernel; kxr++) {
                let kx = p.kernel - 1u - kxr;
                let x = ix - i32(kx * p.dilation) + pad;
                if (x < 0 || x >= i32(p.width)) {
                    continue;
                }
                let grad = output_grad(n, o, u32(y), u32(x));
                if (grad == 0.0) {
                    continue;
                }
                let tap = ky * p.kernel + kx;
                for (var lane = 0u; lane < LANES; lane++) {
                    let c = min(first + lane, p.in_channels - 1u);
                    acc[lane] += grad * input_weight(o, c, tap);
                }
            }
        }
    }
    return acc;
}

// Groups: each lane reads its own group's output j and its weight's channel, both found once
// per invocation, not per tap.
fn grad_input_at_grouped(n: u32, first: u32, iy: i32, ix: i32) -> array<f32, 8> {
    let pad = i32(p.dilation * (p.kernel - 1u) / 2u);
    let in_per_group = p.in_channels / p.groups;
    let out_per_group = p.out_channels / p.groups;
    var acc: array<f32, 8>;
    // Each lane's group's first output, and its channel's index within the group.
    var o_first: array<u32, 8>;
    var i_in_group: array<u32, 8>;
    for (var lane = 0u; lane < LANES; lane++) {
        let c = min(first + lane, p.in_channels - 1u);
        let group = c / in_per_group;
        o_first[lane] = group * out_per_group;
        i_in_group[lane] = c - group * in_per_group;
    }
    for (var j = 0u; j < out_per_group; j++) {
        for (var kyr = 0u; kyr < p.kernel; kyr++) {
            let ky = p.kernel - 1u - kyr;
            let y = iy - i32(ky * p.dilation) + pad;
            if (y < 0 || y >= i32(p.height)) {
                continue;
            }
            for (var kxr = 0u; kxr < p.kernel; kxr++) {
                let kx = p.kernel - 1u - kxr;
                let x = ix - i32(kx * p.dilation) + pad;
                if (x < 0 || x >= i32(p.width)) {
                    continue;
                }
                let tap = ky * p.kernel + kx;
                for (var lane = 0u; lane < LANES; lane++) {
                    let o = o_first[lane] + j;
                    let grad = output_grad(n, o, u32(y), u32(x));
                    if (grad != 0.0) {
                        acc[lane] += grad * input_weight(o, i_in_group[lane], tap);
                    }
                }
            }
        }
    }
    return acc;
}
