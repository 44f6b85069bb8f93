//! `model.safetensors`: the parameters under their PyTorch `state_dict` names, f32, so that
//! weights move both ways between this program and PyTorch (`safetensors.torch`).

use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::model::{SuperNet, SuperNetConfig, Variant};

/// Writes the network's parameters; the file appears whole or not at all (temp file + rename).
pub fn save<B: Backend>(backend: &B, net: &SuperNet<B>, path: &Path) -> Result<()> {
    let mut host = Vec::new();
    for (name, param) in net.named_parameters() {
        let bytes: Vec<u8> = param
            .to_vec(backend)?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        host.push((name.to_string(), param.shape().to_vec(), bytes));
    }
    let views = host.iter().map(|(name, shape, bytes)| {
        let view =
            TensorView::new(Dtype::F32, shape.clone(), bytes).expect("shape and byte count agree");
        (name.clone(), view)
    });
    let bytes = safetensors::serialize(views, None).map_err(|e| format_error(path, e))?;
    crate::report::write_atomically(path, &bytes)
}

/// Reads a checkpoint, inferring the variant and sizes from the tensors' names and shapes.
pub fn load<B: Backend>(backend: &B, path: &Path) -> Result<SuperNet<B>> {
    let bytes = std::fs::read(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| format_error(path, e))?;
    let config = infer_config(&tensors, path)?;
    let mut named = Vec::new();
    for (name, shape) in config.parameter_shapes() {
        named.push((name.clone(), read_tensor(&tensors, &name, &shape, path)?));
    }
    if let Some(extra) = tensors
        .names()
        .into_iter()
        .find(|n| !named.iter().any(|(m, _)| m == n))
    {
        let detail = format!(
            "unexpected tensor {extra} for a {:?} SuperNet",
            config.variant
        );
        return Err(Error::Format {
            path: path.to_path_buf(),
            detail,
        });
    }
    SuperNet::from_values(backend, config, &named)
}

fn format_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        detail: format!("not a valid safetensors file: {e}"),
    }
}

fn shape_of(tensors: &SafeTensors<'_>, name: &str, path: &Path) -> Result<Vec<usize>> {
    tensors
        .tensor(name)
        .map(|t| t.shape().to_vec())
        .map_err(|_| Error::Format {
            path: path.to_path_buf(),
            detail: format!("missing tensor {name}"),
        })
}

/// Variant from the presence of `block1.mix.weight`; channels, hidden width, image size and
/// classes from the shapes of `block1.conv3.weight`, `fc1.weight` and `fc2.weight`.
fn infer_config(tensors: &SafeTensors<'_>, path: &Path) -> Result<SuperNetConfig> {
    let variant = if tensors.tensor("block1.mix.weight").is_ok() {
        Variant::Concat
    } else {
        Variant::Sum
    };
    let channels = shape_of(tensors, "block1.conv3.weight", path)?[0];
    let fc1 = shape_of(tensors, "fc1.weight", path)?;
    let fc2 = shape_of(tensors, "fc2.weight", path)?;
    let bad = |detail: String| Error::Format {
        path: path.to_path_buf(),
        detail,
    };
    let (&[hidden, flat], &[classes, _]) = (fc1.as_slice(), fc2.as_slice()) else {
        return Err(bad(format!(
            "fc1.weight {fc1:?} and fc2.weight {fc2:?} must be matrices"
        )));
    };
    let side = ((flat / channels.max(1)) as f64).sqrt().round() as usize;
    if channels == 0 || channels * side * side != flat {
        return Err(bad(format!(
            "fc1.weight {fc1:?} does not fit {channels} channels of a square map"
        )));
    }
    Ok(SuperNetConfig {
        variant,
        channels,
        hidden,
        image_size: side * 4,
        classes,
    })
}

fn read_tensor(
    tensors: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
    path: &Path,
) -> Result<Vec<f32>> {
    let bad = |detail: String| Error::Format {
        path: path.to_path_buf(),
        detail,
    };
    let tensor = tensors
        .tensor(name)
        .map_err(|_| bad(format!("missing tensor {name}")))?;
    if tensor.dtype() != Dtype::F32 {
        return Err(bad(format!(
            "tensor {name} is {:?}, expected F32",
            tensor.dtype()
        )));
    }
    if tensor.shape() != shape {
        return Err(bad(format!(
            "tensor {name} has shape {:?}, expected {shape:?}",
            tensor.shape()
        )));
    }
    Ok(tensor
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
