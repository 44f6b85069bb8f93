// adadelta: PyTorch's update, fused, in place.   param, grad, square_avg, acc_delta: [len]

struct Params {
    len: u32,
    lr: f32,
    rho: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- step ----------------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> square_avg: array<f32>;
@group(0) @binding(4) var<storage, read_write> acc_delta: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.len) {
        return;
    }
    let g = grad[i];
    let sq = square_avg[i] * p.rho + (1.0 - p.rho) * g * g;
    let rms_grad = sqrt(sq + p.eps);
    let delta = sqrt(acc_delta[i] + p.eps) / rms_grad * g;
    square_avg[i] = sq;
    acc_delta[i] = acc_delta[i] * p.rho + (1.0 - p.rho) * delta * delta;
    param[i] += -p.lr * delta;
}

// ---- step_zero_grad: the same step with g = 0 (an inactive branch): only the accumulators
// decay; delta is 0, so the parameter keeps its value exactly and is not touched.
@group(0) @binding(5) var<storage, read_write> zg_square_avg: array<f32>;
@group(0) @binding(6) var<storage, read_write> zg_acc_delta: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn step_zero_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.len) {
        return;
    }
    zg_square_avg[i] = zg_square_avg[i] * p.rho;
    zg_acc_delta[i] = zg_acc_delta[i] * p.rho;
}
