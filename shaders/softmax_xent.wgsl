// softmax_xent: fused log-softmax + NLL, mean over the batch.
//   logits: [N, K]   labels: [N] (u32)   loss: [1]

struct Params {
    batch: u32,
    classes: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- row_loss: one invocation per row: lse(z) - z[label] ------------------------------------
@group(0) @binding(1) var<storage, read> rl_logits: array<f32>;
@group(0) @binding(2) var<storage, read> rl_labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> rl_row_loss: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn row_loss(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = flat_index(gid, groups);
    if (n >= p.batch) {
        return;
    }
    let base = n * p.classes;
    var m = rl_logits[base];
    for (var j = 0u; j < p.classes; j++) {
        m = max(m, rl_logits[base + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        sum += exp(rl_logits[base + j] - m);
    }
    rl_row_loss[n] = (m + log(sum)) - rl_logits[base + rl_labels[n]];
}

// ---- mean: a single invocation sums the rows in order ---------------------------------------
@group(0) @binding(4) var<storage, read> mean_row_loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_loss: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn mean(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    if (flat_index(gid, groups) != 0u) {
        return;
    }
    var total = 0.0;
    for (var n = 0u; n < p.batch; n++) {
        total += mean_row_loss[n];
    }
    mean_loss[0] = total / f32(p.batch);
}

// ---- backward: one invocation per logit; lse recomputed per row (K is small) ----------------
@group(0) @binding(6) var<storage, read> bwd_logits: array<f32>;
@group(0) @binding(7) var<storage, read> bwd_labels: array<u32>;
@group(0) @binding(8) var<storage, read> bwd_grad_loss: array<f32>;
@group(0) @binding(9) var<storage, read_write> bwd_grad: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.batch * p.classes) {
        return;
    }
    let n = i / p.classes;
    let j = i % p.classes;
    let base = n * p.classes;
    var m = bwd_logits[base];
    for (var k = 0u; k < p.classes; k++) {
        m = max(m, bwd_logits[base + k]);
    }
    var sum = 0.0;
    for (var k = 0u; k < p.classes; k++) {
        sum += exp(bwd_logits[base + k] - m);
    }
    let lse = m + log(sum);
    let target_prob = select(0.0, 1.0, j == bwd_labels[n]);
    let scale = bwd_grad_loss[0] / f32(p.batch);
    bwd_grad[i] = (exp(bwd_logits[i] - lse) - target_prob) * scale;
}
