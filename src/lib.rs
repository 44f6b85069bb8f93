//! supernet: a weight-sharing SuperNet on MNIST, trained on a from-scratch tensor engine with
//! WGSL compute kernels. See `ARCHITECTURE.md` for the data flow and where each thing lives.

pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod failpoint;
pub mod files;

pub use error::{Error, Result};
pub mod data;
pub mod model;
pub mod report;
pub mod search;
pub mod training;
