// conv_at: a convolution's sums at one pixel for a block of 8 output channels, bias first,
// then channel by channel, kernel row by kernel row (the CPU twin's order). Included by the
// shaders of the ops that convolve forward (conv2d, conv_relu_pool), which define LANES (8),
// the uniform `p` (in_channels, out_channels, height, width, kernel), the storage arrays
// `fwd_x` ([N, in_channels, H, W]) and `fwd_bias`, and `forward_weight(o, c, tap)`, the weight
// of output o, input channel c, tap ky * K + kx.

// Image n at pixel (py, px), output channels first .. first + 8: each input value is read once
// for the 8 outputs it feeds. Lanes past the last output channel repeat it (never stored).
fn conv_at(n: u32, first: u32, py: i32, px: i32) -> array<f32, 8> {
    let pad = i32(p.kernel / 2u);
    let hw = p.height * p.width;
    var acc: array<f32, 8>;
    for (var lane = 0u; lane < LANES; lane++) {
        acc[lane] = fwd_bias[min(first + lane, p.out_channels - 1u)];
    }
    for (var c = 0u; c < p.in_channels; c++) {
        let x_base = (n * p.in_channels + c) * hw;
        for (var ky = 0u; ky < p.kernel; ky++) {
            let iy = py + i32(ky) - pad;
            if (iy < 0 || iy >= i32(p.height)) {
                continue;
            }
            for (var kx = 0u; kx < p.kernel; kx++) {
                let ix = px + i32(kx) - pad;
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
