// softmax_xent: fused log-softmax + NLL, mean over the batch.
//   logits: [N, K]   labels: [N] (u32)   loss: [1]

struct Params {
    batch: u32,
    classes: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- loss: one workgroup; invocation t takes rows t, t + WORKGROUP_SIZE, ... (lse(z) - z[label])
// and invocation 0 adds the rows in order, then divides by the batch.
@group(0) @binding(1) var<storage, read> loss_logits: array<f32>;
@group(0) @binding(2) var<storage, read> loss_labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss_out: array<f32>;

var<workgroup> row_losses: array<f32, WORKGROUP_SIZE>;

fn row_loss(n: u32) -> f32 {
    let base = n * p.classes;
    var m = loss_logits[base];
    for (var j = 0u; j < p.classes; j++) {
        m = max(m, loss_logits[base + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        sum += exp(loss_logits[base + j] - m);
    }
    return (m + log(sum)) - loss_logits[base + loss_labels[n]];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn loss(@builtin(local_invocation_index) t: u32) {
    var total = 0.0;
    for (var n0 = 0u; n0 < p.batch; n0 += WORKGROUP_SIZE) {
        if (n0 + t < p.batch) {
            row_losses[t] = row_loss(n0 + t);
        }
        workgroupBarrier();
        if (t == 0u) {
            for (var j = 0u; j < min(WORKGROUP_SIZE, p.batch - n0); j++) {
                total += row_losses[j];
            }
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        loss_out[0] = total / f32(p.batch);
    }
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
