//! `model.safetensors`: the parameters under their PyTorch `state_dict` names, f32, so that
//! weights move both ways between this program and PyTorch (`safetensors.torch`).
//!
//! Our files say what they are in the safetensors `__metadata__`: variant, space, channels,
//! hidden, image size, classes, mode (one-shot or stand-alone) and the stand-alone subnet. A
//! file made by PyTorch has none: its space is read from `--space` or inferred from the tensor
//! names (an identity has no tensors, so a Sum space with one needs `--space`), the rest from
//! the shapes. An exported subnet (`export`) is read as the SuperNet over its one path.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::model::export;
use crate::model::space::{Choice, MAX_BLOCKS};
use crate::model::{SearchSpace, Subnet, SuperNet, SuperNetConfig, Variant};

/// `__metadata__` keys.
pub(crate) mod key {
    pub const FORMAT: &str = "format";
    pub const VARIANT: &str = "variant";
    pub const SPACE: &str = "space";
    pub const CHANNELS: &str = "channels";
    pub const HIDDEN: &str = "hidden";
    pub const IMAGE_SIZE: &str = "image_size";
    pub const CLASSES: &str = "classes";
    pub const MODE: &str = "mode";
    pub const SUBNET: &str = "subnet";
    /// An exported subnet's own blocks, one choice each (`5/skip/5`).
    pub const ARCHITECTURE: &str = "architecture";
    /// The last training images held out of the training (`--val`).
    pub const HELD_OUT: &str = "held_out";
}

/// `format` of a SuperNet checkpoint.
const SUPERNET_FORMAT: &str = "supernet";

/// What a checkpoint's weights were trained as.
#[derive(Clone, Debug, PartialEq)]
pub enum Trained {
    /// One-shot: every subnet of the space shares the weights.
    OneShot,
    /// One subnet trained from scratch; the other branches keep their initial values.
    Standalone(Subnet),
    /// One subnet exported as a plain network: `subnet` as named in its source `space`.
    Exported { subnet: Subnet, space: SearchSpace },
    /// No metadata (a file made by PyTorch).
    Unknown,
}

impl Trained {
    /// The subnets of `space` (the network's own) worth evaluating: only the trained one of
    /// a stand-alone checkpoint, the one path of an exported subnet, else all of them.
    pub fn evaluated(&self, space: &SearchSpace) -> Vec<Subnet> {
        match self {
            Trained::Standalone(subnet) => vec![*subnet],
            _ => space.subnets(),
        }
    }

    /// How tables name subnet `subnet` of the network's own space: an exported subnet by its
    /// name in the space it came from.
    pub fn name(&self, own: &Subnet) -> String {
        match self {
            Trained::Exported { subnet, .. } => subnet.to_string(),
            _ => own.to_string(),
        }
    }
}

/// What the caller knows that a file without metadata cannot say.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The space (`--space`); a file whose metadata or tensors contradict it is refused.
    pub space: Option<SearchSpace>,
    /// The side of the images the network will see.
    pub image_size: Option<usize>,
}

/// A network read from a file, and what it was trained as.
pub struct Checkpoint<B: Backend> {
    pub net: SuperNet<B>,
    pub trained: Trained,
    /// The last training images the training held out, where the file says.
    pub held_out: Option<usize>,
}

/// Writes the network's parameters and what they are; the file appears whole or not at all.
pub fn save<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    trained: &Trained,
    path: &Path,
) -> Result<()> {
    save_with(backend, net, trained, HashMap::new(), path)
}

/// `save`, recording that the training held out its last `held_out` training images (so
/// that `search` can tell whether its images were trained on).
pub fn save_trained<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    trained: &Trained,
    held_out: usize,
    path: &Path,
) -> Result<()> {
    let extra = HashMap::from([(key::HELD_OUT.to_string(), held_out.to_string())]);
    save_with(backend, net, trained, extra, path)
}

fn save_with<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    trained: &Trained,
    extra: HashMap<String, String>,
    path: &Path,
) -> Result<()> {
    let mut metadata = config_metadata(&net.config);
    metadata.extend(extra);
    metadata.insert(key::FORMAT.into(), SUPERNET_FORMAT.into());
    let mode = match trained {
        Trained::OneShot => "oneshot",
        Trained::Standalone(subnet) => {
            metadata.insert(key::SUBNET.into(), subnet.to_string());
            "standalone"
        }
        Trained::Exported { .. } | Trained::Unknown => {
            return Err(Error::invalid(
                "checkpoint",
                "only a SuperNet trained one-shot or stand-alone is saved as one (see export)",
            ))
        }
    };
    metadata.insert(key::MODE.into(), mode.into());
    let tensors = net
        .named_parameters()
        .map(|(name, param)| {
            Ok((
                name.to_string(),
                param.shape().to_vec(),
                param.to_vec(backend)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    write(&tensors, metadata, path)
}

/// The settings every file of ours records.
pub(crate) fn config_metadata(config: &SuperNetConfig) -> HashMap<String, String> {
    [
        (key::VARIANT, config.variant.name().to_string()),
        (key::SPACE, config.space.to_string()),
        (key::CHANNELS, config.channels.to_string()),
        (key::HIDDEN, config.hidden.to_string()),
        (key::IMAGE_SIZE, config.image_size.to_string()),
        (key::CLASSES, config.classes.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `(name, shape, values)` as f32 safetensors with `metadata`, written atomically.
pub(crate) fn write(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: HashMap<String, String>,
    path: &Path,
) -> Result<()> {
    let bytes: Vec<(&String, &Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let views = bytes.iter().map(|(name, shape, bytes)| {
        let view =
            TensorView::new(Dtype::F32, shape.to_vec(), bytes).expect("shape and byte count agree");
        (name.as_str(), view)
    });
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| format_error(path, e))?;
    crate::files::write_atomically(path, &bytes)
}

/// Reads a checkpoint of ours or PyTorch's with nothing more known (see `read`).
pub fn load<B: Backend>(backend: &B, path: &Path) -> Result<SuperNet<B>> {
    Ok(read(backend, path, &LoadOptions::default())?.net)
}

/// Reads a checkpoint: a SuperNet of ours, an exported subnet, or PyTorch's `state_dict`.
pub fn read<B: Backend>(backend: &B, path: &Path, options: &LoadOptions) -> Result<Checkpoint<B>> {
    let bytes = std::fs::read(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let file = File::parse(&bytes, path)?;
    let (config, trained) = match file.metadata.get(key::FORMAT).map(String::as_str) {
        Some(SUPERNET_FORMAT) => file.described(options)?,
        Some(export::FORMAT) => file.exported(options)?,
        Some(other) => {
            return Err(file.bad(format!(
                "metadata format '{other}' is neither '{SUPERNET_FORMAT}' nor '{}'",
                export::FORMAT
            )))
        }
        None => (file.inferred(options)?, Trained::Unknown),
    };
    let rename: fn(&str) -> String = match trained {
        Trained::Exported { .. } => export::exported_name,
        _ => str::to_string,
    };
    let named = file.values(&config, rename)?;
    let net = SuperNet::from_values(backend, config, &named)?;
    // Absent: not said; present, it must be a count, not read as "not said".
    let held_out = match file.metadata.get(key::HELD_OUT) {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| Error::Format {
            path: path.to_path_buf(),
            detail: format!("metadata {} '{v}' is not a count of images", key::HELD_OUT),
        })?),
    };
    Ok(Checkpoint {
        net,
        trained,
        held_out,
    })
}

/// Every f32 tensor of a safetensors file, by name (shape, values), and its metadata.
pub(crate) type NamedTensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

pub(crate) fn read_tensors(path: &Path) -> Result<(NamedTensors, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let file = File::parse(&bytes, path)?;
    let mut tensors = HashMap::new();
    for name in file.tensors.names() {
        let shape = file.shape(name)?;
        let values = file.tensor(name, &shape, "")?;
        tensors.insert(name.to_string(), (shape, values));
    }
    Ok((tensors, file.metadata))
}

/// A parsed safetensors file and where it came from (for errors).
struct File<'a> {
    tensors: SafeTensors<'a>,
    metadata: HashMap<String, String>,
    path: &'a Path,
}

impl<'a> File<'a> {
    fn parse(bytes: &'a [u8], path: &'a Path) -> Result<Self> {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| format_error(path, e))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| format_error(path, e))?;
        Ok(File {
            tensors,
            metadata: header.metadata().clone().unwrap_or_default(),
            path,
        })
    }

    fn bad(&self, detail: String) -> Error {
        Error::Format {
            path: self.path.to_path_buf(),
            detail,
        }
    }

    fn meta(&self, name: &str) -> Result<&str> {
        self.metadata
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| self.bad(format!("metadata lacks '{name}'")))
    }

    fn meta_count(&self, name: &str) -> Result<usize> {
        let text = self.meta(name)?;
        text.parse().ok().filter(|&v| v > 0).ok_or_else(|| {
            self.bad(format!(
                "metadata '{name}' is '{text}', not a positive count"
            ))
        })
    }

    fn meta_space(&self, name: &str) -> Result<SearchSpace> {
        let text = self.meta(name)?;
        SearchSpace::parse(text)
            .map_err(|e| self.bad(format!("metadata '{name}' is not a space: {e}")))
    }

    fn meta_subnet(&self, space: &SearchSpace) -> Result<Subnet> {
        let text = self.meta(key::SUBNET)?;
        space
            .parse_subnet(text)
            .map_err(|e| self.bad(format!("metadata 'subnet': {e}")))
    }

    /// The config the metadata records, with `image_size` and `space` checked against what
    /// the caller knows.
    fn recorded(&self, space: SearchSpace, options: &LoadOptions) -> Result<SuperNetConfig> {
        let variant = self.meta(key::VARIANT)?;
        let variant = Variant::from_name(variant).ok_or_else(|| {
            self.bad(format!(
                "metadata 'variant' is '{variant}', not sum or concat"
            ))
        })?;
        let image_size = self.meta_count(key::IMAGE_SIZE)?;
        if let Some(side) = options.image_size.filter(|&s| s != image_size) {
            return Err(self.bad(format!(
                "the weights are for {image_size}-pixel images, the data has {side}-pixel images"
            )));
        }
        Ok(SuperNetConfig {
            variant,
            space,
            channels: self.meta_count(key::CHANNELS)?,
            hidden: self.meta_count(key::HIDDEN)?,
            image_size,
            classes: self.meta_count(key::CLASSES)?,
        })
    }

    /// A SuperNet checkpoint of ours.
    fn described(&self, options: &LoadOptions) -> Result<(SuperNetConfig, Trained)> {
        let space = self.meta_space(key::SPACE)?;
        self.refuse_other_space(&space, options)?;
        let trained = match self.meta(key::MODE)? {
            "oneshot" => Trained::OneShot,
            "standalone" => Trained::Standalone(self.meta_subnet(&space)?),
            other => {
                return Err(self.bad(format!(
                    "metadata 'mode' is '{other}', not oneshot or standalone"
                )))
            }
        };
        Ok((self.recorded(space, options)?, trained))
    }

    /// An exported subnet: the SuperNet over its one path.
    fn exported(&self, options: &LoadOptions) -> Result<(SuperNetConfig, Trained)> {
        let source = self.meta_space(key::SPACE)?;
        let subnet = self.meta_subnet(&source)?;
        let architecture = self.meta_space(key::ARCHITECTURE)?;
        if architecture != source.only(&subnet) {
            return Err(self.bad(format!(
                "metadata 'architecture' {architecture} is not subnet {subnet} of {source}"
            )));
        }
        if let Some(given) = &options.space {
            if *given != architecture && *given != source {
                return Err(self.bad(format!(
                    "holds subnet {subnet} of the space {source}, but --space says {given}"
                )));
            }
        }
        let trained = Trained::Exported {
            subnet,
            space: source,
        };
        Ok((self.recorded(architecture, options)?, trained))
    }

    fn refuse_other_space(&self, space: &SearchSpace, options: &LoadOptions) -> Result<()> {
        match &options.space {
            Some(given) if given != space => Err(self.bad(format!(
                "holds a SuperNet over the space {space}, but --space says {given}"
            ))),
            _ => Ok(()),
        }
    }

    /// The first dimension of a weight (its output channels).
    fn out_channels(&self, name: &str) -> Result<usize> {
        let shape = self.shape(name)?;
        shape.first().copied().ok_or_else(|| {
            self.bad(format!(
                "tensor {name} has no dimensions, expected a weight"
            ))
        })
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.tensors
            .tensor(name)
            .map(|t| t.shape().to_vec())
            .map_err(|_| self.bad(format!("missing tensor {name}")))
    }

    /// No metadata (PyTorch): the space from `--space` or the names, the variant from the
    /// presence of `block1.mix.weight`, the sizes from the shapes.
    fn inferred(&self, options: &LoadOptions) -> Result<SuperNetConfig> {
        let variant = if self.tensors.tensor("block1.mix.weight").is_ok() {
            Variant::Concat
        } else {
            Variant::Sum
        };
        let space = match &options.space {
            Some(space) => space.clone(),
            None => self.space_from_names(variant)?,
        };
        let first = match space.choices(0).iter().find_map(output_tensor) {
            Some(name) => format!("block1.{name}"),
            None => "block1.mix.weight".to_string(),
        };
        let channels = self.out_channels(&first)?;
        let fc1 = self.shape("fc1.weight")?;
        let fc2 = self.shape("fc2.weight")?;
        let (&[hidden, flat], &[classes, _]) = (fc1.as_slice(), fc2.as_slice()) else {
            return Err(self.bad(format!(
                "fc1.weight {fc1:?} and fc2.weight {fc2:?} must be matrices"
            )));
        };
        let side = ((flat / channels.max(1)) as f64).sqrt().round() as usize;
        if channels == 0 || channels * side * side != flat {
            return Err(self.bad(format!(
                "fc1.weight {fc1:?} does not fit {channels} channels of a square map"
            )));
        }
        let blocks = space.block_count();
        let image_size = match options.image_size {
            Some(size) if space.side_after(size) != side => {
                return Err(self.bad(format!(
                    "fc1.weight {fc1:?} expects a {side}x{side} map, but {size}-pixel images give {0}x{0} after {blocks} blocks",
                    space.side_after(size)
                )))
            }
            Some(size) => size,
            // MNIST's 28 pixels when they fit, else the smallest image that pools to `side`.
            None if space.side_after(28) == side => 28,
            None => side << blocks,
        };
        Ok(SuperNetConfig {
            variant,
            space,
            channels,
            hidden,
            image_size,
            classes,
        })
    }

    /// Every `block{i}.{module}.*` of a kind with parameters (`conv5`, `conv3d2`, `sep3`) gives
    /// block i that choice (in `Choice` order: convs by kernel, then separable convs); a Concat
    /// mix with more slots than those means a choice without parameters, whose kind and place
    /// only `--space` can say.
    fn space_from_names(&self, variant: Variant) -> Result<SearchSpace> {
        let mut blocks: Vec<Vec<Choice>> = Vec::new();
        for name in self.tensors.names() {
            let Some((block, choice)) = block_choice(name) else {
                continue;
            };
            if blocks.len() < block {
                blocks.resize(block, Vec::new());
            }
            if !blocks[block - 1].contains(&choice) {
                blocks[block - 1].push(choice);
            }
        }
        let need_space = |why: String| {
            self.bad(format!(
                "{why}; give the space with --space (a file without metadata cannot say it)"
            ))
        };
        for (b, choices) in blocks.iter_mut().enumerate() {
            let block = b + 1;
            if choices.is_empty() {
                return Err(need_space(format!("block {block} has no conv tensors")));
            }
            choices.sort_unstable();
            if variant == Variant::Concat {
                let mix = self.shape(&format!("block{block}.mix.weight"))?;
                let first = output_tensor(&choices[0]).expect("a choice read from its tensors");
                let channels = self.out_channels(&format!("block{block}.{first}"))?;
                if mix.get(1) != Some(&(choices.len() * channels)) {
                    return Err(need_space(format!(
                        "block{block}.mix.weight {mix:?} has other slots than the block's {} convs (an identity?)",
                        choices.len()
                    )));
                }
            }
        }
        if blocks.is_empty() {
            return Err(self.bad("no block{i}.conv{k}.weight tensors: not a SuperNet".into()));
        }
        SearchSpace::new(blocks)
            .map_err(|e| self.bad(format!("the tensor names give no valid space: {e}")))
    }

    /// Every parameter of `config`, read from the tensor `rename(name)`, with its shape
    /// checked; a tensor the config has no place for is refused.
    fn values(
        &self,
        config: &SuperNetConfig,
        rename: fn(&str) -> String,
    ) -> Result<Vec<(String, Vec<f32>)>> {
        config
            .space
            .check_image_side(config.image_size)
            .map_err(|e| self.bad(e.to_string()))?;
        let shapes = config.parameter_shapes();
        let stored: Vec<String> = shapes.iter().map(|p| rename(&p.name)).collect();
        let mut names = self.tensors.names();
        names.sort_unstable();
        if let Some(extra) = names.into_iter().find(|n| !stored.iter().any(|s| s == n)) {
            return Err(self.bad(format!(
                "unexpected tensor {extra} for a {} SuperNet over the space {}",
                config.variant.name(),
                config.space
            )));
        }
        shapes
            .iter()
            .zip(&stored)
            .map(|(p, name)| {
                let context = format!(" of the space {}", config.space);
                let values = self.tensor(name, &p.shape, &context)?;
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return Err(self.bad(format!(
                        "tensor {name} holds {} at element {i}: not weights to evaluate",
                        values[i]
                    )));
                }
                Ok((p.name.clone(), values))
            })
            .collect()
    }

    /// A tensor's f32 values, its shape checked; `context` ends each error (" of the space X").
    fn tensor(&self, name: &str, shape: &[usize], context: &str) -> Result<Vec<f32>> {
        let tensor = self
            .tensors
            .tensor(name)
            .map_err(|_| self.bad(format!("missing tensor {name}{context}")))?;
        if tensor.dtype() != Dtype::F32 {
            return Err(self.bad(format!(
                "tensor {name} is {:?}, expected F32",
                tensor.dtype()
            )));
        }
        if tensor.shape() != shape {
            return Err(self.bad(format!(
                "tensor {name} has shape {:?}, expected {shape:?}{context}",
                tensor.shape()
            )));
        }
        Ok(tensor
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// `block2.conv5.weight` -> (2, the 5x5 conv): the block and the choice a parameter belongs to.
fn block_choice(name: &str) -> Option<(usize, Choice)> {
    let rest = name.strip_prefix("block")?;
    let (block, rest) = rest.split_once('.')?;
    let (module, _) = rest.split_once('.')?;
    let block = block.parse().ok().filter(|&b| b > 0 && b <= MAX_BLOCKS)?;
    Some((block, Choice::from_module(module)?))
}

/// `conv5.weight`: the tensor of a choice whose first dimension is the block's channels.
fn output_tensor(choice: &Choice) -> Option<String> {
    Some(format!(
        "{}.{}",
        choice.module()?,
        choice.output_parameter()?
    ))
}

fn format_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        detail: format!("not a valid safetensors file: {e}"),
    }
}
