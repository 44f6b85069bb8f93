//! One module per op: its shapes, its kernel trait, its tape method and backward, its CPU twin
//! (`cpu`), and its GPU launcher over `shaders/<op>.wgsl`.
//!
//! `ops!` below is the one list of ops. It declares the modules, and from the ops that have
//! kernels it makes the `OpKernels` bound (which `Backend` is) and the GPU's shader registry.
//! The tape needs no list: each op's `Saved` implements `Backward`. A new op is its module,
//! its WGSL file and one line here.

/// `module: KernelTrait` for an op with kernels (and a `SHADER` in its module), `module` alone
/// for one without (reshape).
macro_rules! ops {
    ($($module:ident $(: $kernel:ident)?),* $(,)?) => {
        $(pub mod $module;)*

        /// Every op's kernels: what a backend implements to run the engine.
        pub trait OpKernels: crate::engine::backend::Memory $($(+ $module::$kernel)?)* {}

        impl<T> OpKernels for T where T: crate::engine::backend::Memory $($(+ $module::$kernel)?)* {}

        /// Every op's shader, for the GPU backend to build and the tests to translate.
        pub(crate) const SHADERS: &[&crate::engine::backends::gpu::kernels::ShaderSpec] =
            &[$($(shader_of!($module, $kernel),)?)*];
    };
}

/// The shader of an op with kernels (its `$kernel` only selects the ops that have one).
macro_rules! shader_of {
    ($module:ident, $kernel:ident) => {
        &$module::SHADER
    };
}

ops! {
    accuracy: AccuracyKernel,
    adadelta: AdadeltaKernel,
    add: AddKernel,
    conv2d: Conv2dKernel,
    conv_relu_pool: ConvReluPoolKernel,
    gather: GatherKernel,
    linear: LinearKernel,
    masked_concat: MaskedConcatKernel,
    masked_sum: MaskedSumKernel,
    maxpool2: MaxPool2Kernel,
    pool_s1: PoolS1Kernel,
    reduce: ReduceKernel,
    relu: ReluKernel,
    reshape,
    softmax_xent: SoftmaxXentKernel,
}
