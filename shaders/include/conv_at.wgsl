// conv_at: a convolution's sums at one pixel for a block of 8 output channels, bias first,
// then channel by channel (of the output's group), kernel row by kernel row (the CPU twin's
// order). Included by the shaders of the ops that convolve forward (conv2d, conv_relu_pool),
// which define LANES (8), the uniform `p` (in_channels, out_channels, height, width, kernel,
// dilation, groups), the storage arrays `fwd_x` ([N, in_channels, H, W]) and `fwd_bias`, and
// `forward_weight(o, i, tap)`, the weight of output o, its group's input channel i, tap
// ky * K + kx.
// Tap (ky, kx) reads pixel (py + ky D - pad, px + kx D - pad), D the dilation and
// pad = D (K - 1) / 2; output o reads the in_channels / groups channels of group
// o / (out_channels / groups).

// Image n at pixel (py, px), output channels first .. first + 8. Lanes past the last output
// channel repeat it (never stored). The branch is uniform: a plain convolution never runs the
// grouped loop's per-lane channel arithmetic, which llvmpipe does not hoist.
fn conv_at(n: u32, first: u32, py: i32, px: i32) -> array<f32, 8> {
    if (p.groups == 1u) {
        return conv_at_dense(n, first, py, px);
    }
    return conv_at_grouped(n, first, py, px);
}

// One group: each input value is read once for the 8 outputs it feeds.
fn conv_at_dense(n: u32, first: u32, py: i32, px: i32) -> array<f32, 8> {
    let pad = i32(p.dilation * (p.kernel - 1u) / 2u);
    let hw = p.height * p.width;
    var acc: array<f32, 8>;
    for (var lane = 0u; lane < LANES; lane++) {
        acc[lane] = fwd_bias[min(first + lane, p.out_channels - 1u)];
    }
    for (var c = 0u; c < p.in_channels; c++) {
        let x_base = (n * p.in_channels + c) * hw;
        for (var ky = 0u; ky < p.kernel; ky++) {
            let iy = py + i32(ky * p.dilation) - pad;
            if (iy < 0 || iy >= i32(p.height)) {
                continue;
            }
            for (var kx = 0u; kx < p.kernel; kx++) {
                let ix = px + i32(kx * p.dilation) - pad;
                if (ix < 0 || ix >= i32(p.width)) {
                    continue;
                }
                let value = fwd_x[x_base + u32(iy) * p.width + u32(ix)];
                let tap = ky * p.kernel + kx;
                for (var lane = 0u; lane < LANES; lane++) {
                    let o = min(first + lane, p.out_channels - 1u);
                    acc[lane] += value * forward_weight(o, c, tap);
                }
            }
        }
    }
    return acc;
}

// Groups: each lane reads its own group's channel i, found once per channel, not per tap.
fn conv_at_grouped(n: u32, first: u32, py: i32, px: i32) -> array<f32, 8> {
    let pad = i32(p.dilation * (p.kernel - 1u) / 2u);
    let hw = p.height * p.width;
    let in_per_group = p.in_channels / p.groups;
    let out_per_group = p.out_channels / p.groups;
    var acc: array<f32, 8>;
    // Each lane's plane of x for its group's channel 0; channel i is i planes on.
    var x_first: array<u32, 8>;
    for (var lane = 0u; lane < LANES; lane++) {
        let o = min(first + lane, p.out_channels - 1u);
        acc[lane] = fwd_bias[o];
        x_first[lane] = (n * p.in_channels + (o / out_per_group) * in_per_group) * hw;
    }
    for (var i = 0u; i < in_per_group; i++) {
        for (var ky = 0u; ky < p.kernel; ky++) {
            let iy = py + i32(ky * p.dilation) - pad;
            if (iy < 0 || iy >= i32(p.height)) {
                continue;
            }
            for (var kx = 0u; kx < p.kernel; kx++) {
                let ix = px + i32(kx * p.dilation) - pad;
                if (ix < 0 || ix >= i32(p.width)) {
                    continue;
                }
                let at = i * hw + u32(iy) * p.width + u32(ix);
                let tap = ky * p.kernel + kx;
                for (var lane = 0u; lane < LANES; lane++) {
                    let o = min(first + lane, p.out_channels - 1u);
                    acc[lane] += fwd_x[x_first[lane] + at] * forward_weight(o, i, tap);
                }
            }
        }
    }
    return acc;
}
