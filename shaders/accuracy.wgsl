// accuracy: correct[n] = 1.0 if the first maximum of logits[n] is at labels[n], else 0.0.
//   logits: [N, K]   labels: [N] (u32)   correct: [N]

struct Params {
    batch: u32,
    classes: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> correct: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn correct_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = flat_index(gid, groups);
    if (n >= p.batch) {
        return;
    }
    let base = n * p.classes;
    var best = 0u;
    for (var j = 1u; j < p.classes; j++) {
        if (logits[base + j] > logits[base + best]) {
            best = j;
        }
    }
    correct[n] = select(0.0, 1.0, best == labels[n]);
}
