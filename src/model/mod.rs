//! The SuperNet: two blocks of alternative convolutions (3x3 or 5x5), mixed by `Sum` or
//! `Concat`, then a two-layer head; and the subnets that pick one alternative per block.

pub mod checkpoint;
mod subnet;
mod supernet;

pub use subnet::{BlockMask, Subnet, BLOCKS};
pub use supernet::{SuperNet, SuperNetConfig, Variant};
