//! The library's one error type. The CLI adds context with `anyhow`.

use std::path::PathBuf;

/// Everything that can go wrong inside the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An op was given tensors whose shapes do not fit together.
    #[error("{op}: {detail}")]
    Shape { op: &'static str, detail: String },

    /// An argument outside its valid range (a learning rate, a batch index, a mask...).
    #[error("{what}: {detail}")]
    Invalid { what: &'static str, detail: String },

    /// No GPU adapter could be found or opened.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    /// wgpu reported a validation or out-of-memory error, or the device was lost.
    #[error("GPU error: {0}")]
    Gpu(String),

    /// A request exceeds what the adapter supports.
    #[error("{op}: {detail} exceeds the adapter limit {limit_name} = {limit}")]
    Limit {
        op: &'static str,
        detail: String,
        limit_name: &'static str,
        limit: u64,
    },

    /// Training produced a loss that is not a finite number.
    #[error("training diverged: loss {loss} at epoch {epoch}, step {step}")]
    Diverged {
        epoch: usize,
        step: usize,
        loss: f32,
    },

    /// A stop was asked for (a signal); the state to resume from is written.
    #[error(
        "stopped in epoch {epoch} after {step} of its steps; the state to resume from is written"
    )]
    Interrupted { epoch: usize, step: usize },

    /// A file could not be read or written. (The I/O error is part of the message, not a
    /// separate cause, so that error chains print it once.)
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A file was read but its content is not what was expected.
    #[error("{path}: {detail}")]
    Format { path: PathBuf, detail: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            detail: detail.into(),
        }
    }
}
