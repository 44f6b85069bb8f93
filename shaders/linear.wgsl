// linear: out = x W^T + b.
//   x: [N, I]   weight: [O, I]   bias: [O]   out: [N, O]

struct Params {
    batch: u32,
    in_features: u32,
    out_features: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- forward: one invocation per output element (n, o) -------------------------------------
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_weight: array<f32>;
@group(0) @binding(3) var<storage, read> fwd_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> fwd_out: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = flat_index(gid, groups);
    if (idx >= p.batch * p.out_features) {
        return;
    }
    let o = idx % p.out_features;
    let n = idx / p.out_features;
    var acc = fwd_bias[o];
    for (var i = 0u; i < p.in_features; i++) {
        acc += fwd_x[n * p.in_features + i] * fwd_weight[o * p.in_features + i];
    }
    fwd_out[idx] = acc;
}

// ---- backward_input: one invocation per (n, i) ---------------------------------------------
@group(0) @binding(5) var<storage, read> bin_weight: array<f32>;
@group(0) @binding(6) var<storage, read> bin_grad_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> bin_grad_x: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = flat_index(gid, groups);
    if (idx >= p.batch * p.in_features) {
        return;
    }
    let i = idx % p.in_features;
    let n = idx / p.in_features;
    var acc = 0.0;
    for (var o = 0u; o < p.out_features; o++) {
        acc += bin_grad_out[n * p.out_features + o] * bin_weight[o * p.in_features + i];
    }
    bin_grad_x[idx] = acc;
}

// ---- backward_params: one invocation per weight (o, i), then one per bias o -----------------
//   Each sums the batch in order: grad_weight[o, i] = sum_n grad_out[n, o] * x[n, i],
//   grad_bias[o] = sum_n grad_out[n, o].
@group(0) @binding(8) var<storage, read> bp_x: array<f32>;
@group(0) @binding(9) var<storage, read> bp_grad_out: array<f32>;
@group(0) @binding(10) var<storage, read_write> bp_grad_weight: array<f32>;
@group(0) @binding(11) var<storage, read_write> bp_grad_bias: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward_params(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = flat_index(gid, groups);
    let weights = p.out_features * p.in_features;
    if (idx >= weights + p.out_features) {
        return;
    }
    var acc = 0.0;
    if (idx >= weights) {
        let o = idx - weights;
        for (var n = 0u; n < p.batch; n++) {
            acc += bp_grad_out[n * p.out_features + o];
        }
        bp_grad_bias[o] = acc;
        return;
    }
    let i = idx % p.in_features;
    let o = idx / p.in_features;
    for (var n = 0u; n < p.batch; n++) {
        acc += bp_grad_out[n * p.out_features + o] * bp_x[n * p.in_features + i];
    }
    bp_grad_weight[idx] = acc;
}
