//! The SuperNet over a search space (blocks of alternative convolutions or identities, mixed
//! by `Sum` or `Concat`, then a two-layer head); the subnets that pick one choice per block;
//! checkpoints, and the export of one subnet as a plain network.

pub mod checkpoint;
pub mod choices;
pub mod export;
pub mod space;
mod subnet;
mod supernet;

pub use space::{Choice, SearchSpace};
pub use subnet::{BlockMask, Subnet};
pub use supernet::{Block, Branch, Layer, ParameterShape, SuperNet, SuperNetConfig, Variant};
