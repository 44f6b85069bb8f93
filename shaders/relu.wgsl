// relu: out = max(x, 0); grad_x = grad_out where out > 0, else 0.   all: [len]

struct Params {
    len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_out: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.len) {
        return;
    }
    fwd_out[i] = max(fwd_x[i], 0.0);
}

@group(0) @binding(3) var<storage, read> bwd_out: array<f32>;
@group(0) @binding(4) var<storage, read> bwd_grad_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> bwd_grad_x: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.len) {
        return;
    }
    bwd_grad_x[i] = select(0.0, bwd_grad_out[i], bwd_out[i] > 0.0);
}
