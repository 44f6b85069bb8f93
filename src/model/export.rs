//! `supernet export`: one subnet of a SuperNet as a plain CNN, only its active weights, under
//! names a plain PyTorch module loads with `strict=True` (the README shows the module):
//!
//! ```text
//! block{i}.conv.{weight,bias}   the block's conv, dilated or not (`model::choices`)
//! block{i}.sep.{depthwise,pointwise}.{weight,bias}   a separable conv
//!                               (nothing for a choice without parameters: a pool, skip)
//! block{i}.mix.{weight,bias}    Concat: the 1x1 mix cut to the subnet's slot, [C, C, 1, 1]
//! fc1.{weight,bias}, fc2.{weight,bias}
//! ```
//! Each kind names its module (`Choice::exported_module`). The `__metadata__` holds the
//! architecture (`5/skip/5`, one choice per block: it says the dilation and the sizes), the space and
//! subnet it came from, and the sizes. `checkpoint::read` reads such a file back as the
//! SuperNet over that one path, whose forward pass is the subnet's.

use std::collections::HashMap;
use std::path::Path;

use crate::engine::{Backend, Tensor};
use crate::error::{Error, Result};
use crate::model::checkpoint::{self, key};
use crate::model::{Choice, Subnet, SuperNet};

/// `format` of an exported subnet.
pub const FORMAT: &str = "subnet";

/// `(name, shape, values)` of one tensor to write.
type Named = (String, Vec<usize>, Vec<f32>);

/// Writes subnet `subnet` of `net` to `path` as a plain network (atomically).
pub fn export<B: Backend>(
    backend: &B,
    net: &SuperNet<B>,
    subnet: &Subnet,
    path: &Path,
) -> Result<()> {
    let space = &net.config.space;
    if !space.contains(subnet) {
        return Err(Error::invalid(
            "export",
            format!("{subnet} is not a subnet of the space {space}"),
        ));
    }
    let mut tensors = Vec::new();
    for (b, &choice) in subnet.choices().iter().enumerate() {
        let block = net.block(b);
        let prefix = format!("block{}", b + 1);
        let branch = &block.branches[choice as usize];
        if let Some(module) = branch.choice.exported_module() {
            let in_channels = net.config.in_channels(b);
            let shapes = branch.choice.parameters(in_channels, net.config.channels);
            for (p, tensor) in shapes.iter().zip(&branch.params) {
                let name = format!("{prefix}.{module}.{}", p.name);
                tensors.push(named(backend, &name, tensor)?);
            }
        }
        if let Some(mix) = &block.mix {
            let channels = net.config.channels;
            let slots = block.branches.len();
            let weight = mix.weight.to_vec(backend)?;
            let weight = mix_slot(&weight, channels, slots, choice as usize);
            tensors.push((
                format!("{prefix}.mix.weight"),
                vec![channels, channels, 1, 1],
                weight,
            ));
            tensors.push(named(backend, &format!("{prefix}.mix.bias"), &mix.bias)?);
        }
    }
    for name in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] {
        tensors.push(named(backend, name, net.parameter(name)?)?);
    }
    checkpoint::write(&tensors, metadata(net, subnet), path)
}

fn named<B: Backend>(backend: &B, name: &str, tensor: &Tensor<B>) -> Result<Named> {
    Ok((
        name.to_string(),
        tensor.shape().to_vec(),
        tensor.to_vec(backend)?,
    ))
}

/// Columns `slot*C .. (slot+1)*C` of a mix weight `[C, slots*C, 1, 1]`: the 1x1 conv over
/// the one slot a subnet fills (the others hold zeros in the SuperNet).
fn mix_slot(weight: &[f32], channels: usize, slots: usize, slot: usize) -> Vec<f32> {
    weight
        .chunks_exact(slots * channels)
        .flat_map(|out| out[slot * channels..(slot + 1) * channels].iter().copied())
        .collect()
}

fn metadata<B: Backend>(net: &SuperNet<B>, subnet: &Subnet) -> HashMap<String, String> {
    let mut metadata = checkpoint::config_metadata(&net.config);
    let architecture = net.config.space.only(subnet).to_string();
    metadata.insert(key::FORMAT.into(), FORMAT.into());
    metadata.insert(key::ARCHITECTURE.into(), architecture);
    metadata.insert(key::SUBNET.into(), subnet.to_string());
    metadata
}

/// The name of a one-path SuperNet's parameter in an exported file: `block2.conv5.weight` ->
/// `block2.conv.weight`, `block1.sep3.depthwise.bias` -> `block1.sep.depthwise.bias`; every
/// other name is the same.
pub fn exported_name(name: &str) -> String {
    let parts = name.split_once('.').and_then(|(block, rest)| {
        let (module, tail) = rest.split_once('.')?;
        let exported = Choice::from_module(module)?.exported_module()?;
        block
            .starts_with("block")
            .then(|| format!("{block}.{exported}.{tail}"))
    });
    parts.unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_the_kernel_size() {
        assert_eq!(exported_name("block2.conv5.weight"), "block2.conv.weight");
        assert_eq!(exported_name("block1.conv11.bias"), "block1.conv.bias");
        assert_eq!(exported_name("block2.conv3d2.weight"), "block2.conv.weight");
        assert_eq!(
            exported_name("block1.sep3.pointwise.weight"),
            "block1.sep.pointwise.weight"
        );
        assert_eq!(exported_name("block3.mix.weight"), "block3.mix.weight");
        assert_eq!(exported_name("fc1.weight"), "fc1.weight");
    }

    /// A [2, 3*2, 1, 1] mix: output row o holds slots 0, 1, 2 of two channels each.
    #[test]
    fn the_mix_is_cut_to_its_slot() {
        let weight: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(mix_slot(&weight, 2, 3, 1), [2.0, 3.0, 8.0, 9.0]);
        assert_eq!(mix_slot(&weight, 2, 3, 0), [0.0, 1.0, 6.0, 7.0]);
    }
}
