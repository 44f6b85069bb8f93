// masked_sum: out = sum over active parts of factor_i * part_i, built as one `scale` and then
// one `axpy` per further part.   x, out, acc: [len]

struct Params {
    len: u32,
    factor: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- scale: out = factor * x ---------------------------------------------------------------
@group(0) @binding(1) var<storage, read> scale_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> scale_out: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.len) {
        return;
    }
    scale_out[i] = p.factor * scale_x[i];
}

// ---- axpy: acc += factor * x ---------------------------------------------------------------
@group(0) @binding(3) var<storage, read> axpy_x: array<f32>;
@group(0) @binding(4) var<storage, read_write> axpy_acc: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn axpy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.len) {
        return;
    }
    axpy_acc[i] += p.factor * axpy_x[i];
}
