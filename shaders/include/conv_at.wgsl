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

// Image n at pixel (py, px), output channels first .. first + 8. With one group each input
// value is read once for the 8 outputs it feeds; with groups, each lane reads its own group's
// channel. Lanes past the last output channel repeat it (never stored).
fn conv_at(n: u32, first: u32, py: i32, px: i32) -> array<f32, 8> {
    let pad = i32(p.dilation * (p.kernel - 1u) / 2u);
    let hw = p.height * p.width;
    let in_per_group = p.in_channels / p.groups;
    let out_per_group = p.out_channels / p.groups;
    var acc: array<f32, 8>;
    var group_first: array<u32, 8>;
    for (var lane = 0u; lane < LANES; lane++) {
        let o = min(first + lane, p.out_channels - 1u);
        acc[lane] = fwd_bias[o];
        group_first[lane] = (o / out_per_group) * in_per_group;
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
                let at = u32(iy) * p.width + u32(ix);
                let tap = ky * p.kernel + kx;
                if (p.groups == 1u) {
                    let value = fwd_x[(n * p.in_channels + i) * hw + at];
                    for (var lane = 0u; lane < LANES; lane++) {
                        let o = min(first + lane, p.out_channels - 1u);
                        acc[lane] += value * forward_weight(o, i, tap);
                    }
                } else {
                    for (var lane = 0u; lane < LANES; lane++) {
                        let o = min(first + lane, p.out_channels - 1u);
                        let c = group_first[lane] + i;
                        acc[lane] += fwd_x[(n * p.in_channels + c) * hw + at] * forward_weight(o, i, tap);
                    }
                }
            }
        }
    }
    return acc;
}
