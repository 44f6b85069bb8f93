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
// Tap (ky, kx) of output (y, x) read input (y + ky D - pad, x + kx D - pad), D the dilation
// and pad = D (K - 1) / 2; input channel c feeds the out_channels / groups outputs of group
// c / (in_channels / groups).

// Image n at input pixel (iy, ix), input channels first .. first + 8. With one group each
// output gradient is read once for the 8 channels; with groups, each lane reads its own
// group's outputs. Lanes past the last channel repeat it (never stored).
fn grad_input_at(n: u32, first: u32, iy: i32, ix: i32) -> array<f32, 8> {
    let pad = i32(p.dilation * (p.kernel - 1u) / 2u);
    let in_per_group = p.in_channels / p.groups;
    let out_per_group = p.out_channels / p.groups;
    var acc: array<f32, 8>;
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
                if (p.groups == 1u) {
                    let grad = output_grad(n, j, u32(y), u32(x));
                    if (grad == 0.0) {
                        continue;
                    }
                    for (var lane = 0u; lane < LANES; lane++) {
                        let c = min(first + lane, p.in_channels - 1u);
                        acc[lane] += grad * input_weight(j, c, tap);
                    }
                } else {
                    for (var lane = 0u; lane < LANES; lane++) {
                        let c = min(first + lane, p.in_channels - 1u);
                        let group = c / in_per_group;
                        let o = group * out_per_group + j;
                        let grad = output_grad(n, o, u32(y), u32(x));
                        if (grad != 0.0) {
                            acc[lane] += grad * input_weight(o, c - group * in_per_group, tap);
                        }
                    }
                }
            }
        }
    }
    return acc;
}
