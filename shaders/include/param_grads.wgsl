// param_grads: a layer's weight and bias gradients, every image's partial sums added in order.
// Included by the shaders of the ops with a convolution's parameters (conv2d, conv_relu_pool),
// which define what differs:
//   LANES (8), the uniform `p` (batch, out_channels, kernel), `weight_channels()` (the weight's
//   input channels: C / groups for a grouped convolution), `reads_input(c)` (whether weight channel c reads the layer's input: its
//   gradient is zero where not), `weight_partial(n, first, c, ky, kx)` (image n's partial
//   sums of weights (first + lane, c, ky, kx), c the weight's channel: with groups, a
//   different input channel per lane), `bias_partial(n, first)`, and the storage arrays
//   `pg_grad_weight` ([O, weight_channels, K, K]) and `pg_grad_bias`.
// A block of 8 output channels has weight_channels * K * K weight items and one bias item
// (a grouped convolution: (C / groups) * K * K + 1);
// workgroup g takes one item of one block, its invocation t the images t, t + WORKGROUP_SIZE,
// ... (each image's partial sum over its pixels in row-major order, as in the CPU twin), and
// invocation 0 adds the images' partials in image order. The most parallel layout that keeps
// the CPU's order (an invocation per item and image); the same order every run, and no float
// atomics.

var<workgroup> partials: array<f32, WORKGROUP_SIZE * LANES>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn param_grads(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let taps = p.kernel * p.kernel;
    let blocks = (p.out_channels + LANES - 1u) / LANES;
    let items = weight_channels() * taps + 1u;
    let g = wid.x + wid.y * groups.x;
    if (g >= blocks * items) {
        return;
    }
    let first = (g / items) * LANES;
    let item = g % items;
    let is_bias = item == items - 1u;
    let tap = item % taps;
    let c = item / taps;
    var sums: array<f32, 8>;
    // A weight channel that reads nothing (a Concat mix's other slots) skips the images: its
    // sums stay zero. The same for the whole workgroup, so no barrier is left half-reached.
    let images = select(0u, p.batch, is_bias || reads_input(c));
    for (var n0 = 0u; n0 < images; n0 += WORKGROUP_SIZE) {
        let n = n0 + t;
        var part: array<f32, 8>;
        if (n < p.batch) {
            if (is_bias) {
                part = bias_partial(n, first);
            } else {
                part = weight_partial(n, first, c, tap / p.kernel, tap % p.kernel);
            }
        }
        for (var lane = 0u; lane < LANES; lane++) {
            partials[t * LANES + lane] = part[lane];
        }
        workgroupBarrier();
        if (t == 0u) {
            for (var j = 0u; j < min(WORKGROUP_SIZE, p.batch - n0); j++) {
                for (var lane = 0u; lane < LANES; lane++) {
                    sums[lane] += partials[j * LANES + lane];
                }
            }
        }
        workgroupBarrier();
    }
    if (t != 0u) {
        return;
    }
    for (var lane = 0u; lane < LANES; lane++) {
        let o = first + lane;
        if (o >= p.out_channels) {
            continue;
        }
        if (is_bias) {
            pg_grad_bias[o] = sums[lane];
        } else {
            pg_grad_weight[(o * weight_channels() + c) * taps + tap] = sums[lane];
        }
    }
}
