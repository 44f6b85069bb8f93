//! The tensor engine: tensors, the autograd tape, the ops and the backends.

pub mod backend;
pub mod backends;
pub mod ops;
pub mod tape;
pub mod tensor;

pub use backend::{Backend, Memory};
pub use backends::cpu::CpuBackend;
pub use backends::gpu::{GpuBackend, GpuContext, KernelProfile};
pub use backends::reference::ReferenceBackend;
pub use ops::adadelta::{Adadelta, AdadeltaConfig};
pub use ops::conv2d::ConvGeometry;
pub use ops::pool_s1::PoolKind;
pub use tape::{Gradients, Tape};
pub use tensor::{Tensor, TensorId};
