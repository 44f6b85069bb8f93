//! One module per op: its shapes, its kernel trait, its tape method and backward, its CPU twin
//! (`cpu`), and its GPU launcher over `shaders/<op>.wgsl`.

pub mod accuracy;
pub mod adadelta;
pub mod add;
pub mod conv2d;
pub mod conv_relu_pool;
pub mod gather;
pub mod linear;
pub mod masked_concat;
pub mod masked_sum;
pub mod maxpool2;
pub mod reduce;
pub mod relu;
pub mod reshape;
pub mod softmax_xent;
