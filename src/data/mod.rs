//! Data: our own IDX reader (validating every header and length) and MNIST-style datasets.

pub mod idx;
pub mod mnist;

pub use mnist::{load, load_test, load_within, locate, DataDigest, Dataset, Split};
