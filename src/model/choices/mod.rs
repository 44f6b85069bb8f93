//! The kinds of choice a block offers, one module each behind two traits: `Kind` (its spec
//! token, whether it may stand in block 1, its parameters with their PyTorch names and shapes,
//! its size and operations, its names in an exported subnet) and `Forward` (its forward pass on
//! the tape, fused with ReLU and the pool where it ends in a conv).
//!
//! `Choice` is one of them. The rest of the program asks the choice and never matches on kinds:
//! a new kind is its module and its lines in this file (the variant, its arm in `each_kind!`,
//! and its parser in `PARSERS` / its module reader in `MODULE_READERS`).

mod conv;
mod pool;
mod sep;
mod skip;

use std::fmt;

pub use conv::Conv;
pub use pool::Pool;
pub use sep::Sep;
pub use skip::Skip;

use crate::engine::{Backend, Tape, Tensor};
use crate::error::Result;

/// One of a choice's parameters: its name under the choice's module and its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamShape {
    pub name: &'static str,
    pub shape: Vec<usize>,
}

impl ParamShape {
    pub fn new(name: &'static str, shape: Vec<usize>) -> Self {
        ParamShape { name, shape }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the program asks of a kind of choice, whatever the backend.
pub trait Kind {
    /// As the spec writes it: `5`, `3d2`, `sep3`, `max3`, `skip`.
    fn token(&self) -> String;
    /// As tables show it: `5x5`, `3x3 d2`, `sep 3x3`, `max 3x3`, `skip`.
    fn label(&self) -> String;
    /// Why the values of a parsed token are not a choice (an even kernel), if they are not.
    fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
    /// The side of the input window one output pixel sees.
    fn receptive_field(&self) -> usize;
    /// Its module in a block's `state_dict` (`conv5`, `conv3d2`, `sep3`); `None` for a kind
    /// without parameters, which needs the block's channels at its input (never block 1).
    fn module(&self) -> Option<String> {
        None
    }
    /// Its parameters from `in_channels` to `channels`, in `state_dict` order.
    fn parameters(&self, _in_channels: usize, _channels: usize) -> Vec<ParamShape> {
        Vec::new()
    }
    /// The parameter whose first dimension is the block's channel count (how a file without
    /// metadata tells the channels).
    fn output_parameter(&self) -> Option<&'static str> {
        None
    }
    /// Its module in an exported subnet (`conv`, `sep`), where one choice per block needs no
    /// size in the name.
    fn exported_module(&self) -> Option<&'static str> {
        None
    }
    /// Multiply-adds (comparisons or additions for a pool) per image, on a `side x side` map.
    fn operations(&self, in_channels: usize, channels: usize, side: usize) -> f64;
    /// Floats per image it keeps besides its output (a separable conv's depthwise output).
    fn hidden_activations(&self, _in_channels: usize, _side: usize) -> f64 {
        0.0
    }
}

/// A kind's forward pass; `params` are its tensors in `Kind::parameters` order.
pub trait Forward {
    fn forward<B: Backend>(
        &self,
        tape: &Tape<'_, B>,
        x: &Tensor<B>,
        params: &[Tensor<B>],
    ) -> Result<Tensor<B>>;

    /// `maxpool2(relu(forward))` as the fused op, for a kind that ends in a conv; `None` for
    /// the others, which run the separate ops.
    fn forward_relu_pool<B: Backend>(
        &self,
        _tape: &Tape<'_, B>,
        _x: &Tensor<B>,
        _params: &[Tensor<B>],
    ) -> Result<Option<Tensor<B>>> {
        Ok(None)
    }
}

/// One alternative of a block. The order (kind, then size) is the order a file without
/// metadata lists a block's choices in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Choice {
    Conv(Conv),
    Sep(Sep),
    Pool(Pool),
    /// The identity.
    Skip,
}

/// `$body` with `$kind` bound to the choice's kind value: the one match on kinds.
macro_rules! each_kind {
    ($choice:expr, $kind:ident => $body:expr) => {
        match $choice {
            Choice::Conv($kind) => $body,
            Choice::Sep($kind) => $body,
            Choice::Pool($kind) => $body,
            Choice::Skip => {
                let $kind = &Skip;
                $body
            }
        }
    };
}

/// A token's parser per kind: `None` when the token is not of that kind's form.
type Parser = fn(&str) -> Option<std::result::Result<Choice, String>>;
const PARSERS: [Parser; 4] = [conv::parse, sep::parse, pool::parse, skip::parse];

/// A `state_dict` module's reader per kind with parameters (`conv3d2` -> that conv).
const MODULE_READERS: [fn(&str) -> Option<Choice>; 2] = [conv::from_module, sep::from_module];

/// The forms a token takes, for the error that names none of them.
const FORMS: &str =
    "a dilated conv kdD (3d2), a separable conv sepK, a pool maxK or avgK, with K odd";

impl Choice {
    /// A plain `kernel x kernel` conv.
    pub const fn conv(kernel: usize) -> Self {
        Choice::Conv(Conv::plain(kernel))
    }

    /// The choice a spec token names; the error says why the token names none.
    pub fn parse(token: &str) -> std::result::Result<Choice, String> {
        let parsed = PARSERS.iter().find_map(|parse| parse(token));
        let choice = parsed
            .unwrap_or_else(|| Err(format!("neither an odd kernel size nor skip, nor {FORMS}")))?;
        choice.check()?;
        Ok(choice)
    }

    /// The choice whose `state_dict` module is `module` (`conv5`, `sep3`).
    pub fn from_module(module: &str) -> Option<Choice> {
        MODULE_READERS.iter().find_map(|read| read(module))
    }

    fn kind(&self) -> &dyn Kind {
        each_kind!(self, kind => kind)
    }

    pub fn token(&self) -> String {
        self.kind().token()
    }

    pub fn check(&self) -> std::result::Result<(), String> {
        self.kind().check()
    }

    pub fn receptive_field(&self) -> usize {
        self.kind().receptive_field()
    }

    pub fn module(&self) -> Option<String> {
        self.kind().module()
    }

    /// Whether it has no parameters, so it needs the block's channels at its input.
    pub fn is_parameter_free(&self) -> bool {
        self.module().is_none()
    }

    pub fn parameters(&self, in_channels: usize, channels: usize) -> Vec<ParamShape> {
        self.kind().parameters(in_channels, channels)
    }

    /// How many values its parameters hold.
    pub fn parameter_count(&self, in_channels: usize, channels: usize) -> usize {
        let shapes = self.parameters(in_channels, channels);
        shapes.iter().map(ParamShape::len).sum()
    }

    pub fn output_parameter(&self) -> Option<&'static str> {
        self.kind().output_parameter()
    }

    pub fn exported_module(&self) -> Option<&'static str> {
        self.kind().exported_module()
    }

    pub fn operations(&self, in_channels: usize, channels: usize, side: usize) -> f64 {
        self.kind().operations(in_channels, channels, side)
    }

    pub fn hidden_activations(&self, in_channels: usize, side: usize) -> f64 {
        self.kind().hidden_activations(in_channels, side)
    }

    pub fn forward<B: Backend>(
        &self,
        tape: &Tape<'_, B>,
        x: &Tensor<B>,
        params: &[Tensor<B>],
    ) -> Result<Tensor<B>> {
        each_kind!(self, kind => kind.forward(tape, x, params))
    }

    pub fn forward_relu_pool<B: Backend>(
        &self,
        tape: &Tape<'_, B>,
        x: &Tensor<B>,
        params: &[Tensor<B>],
    ) -> Result<Option<Tensor<B>>> {
        each_kind!(self, kind => kind.forward_relu_pool(tape, x, params))
    }
}

/// "5x5" or "skip", as tables show a choice.
impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind().label())
    }
}

/// The odd number a token holds after `prefix` (`sep3` -> 3); `None` when the token has
/// another form, an error when the prefix stands without a number or with an even one.
fn odd_size_after(prefix: &str, token: &str) -> Option<std::result::Result<usize, String>> {
    let digits = token.strip_prefix(prefix)?;
    if digits.is_empty() {
        return Some(Err(format!(
            "needs a window size: {prefix}3, {prefix}5, ..."
        )));
    }
    let size = match digits.parse::<u16>() {
        Ok(size) => size as usize,
        Err(_) => return Some(Err(format!("'{digits}' is not a size"))),
    };
    Some(if size % 2 == 1 {
        Ok(size)
    } else {
        Err(format!(
            "a window size must be odd (same padding puts {prefix}K/2 on each side)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for token in ["5", "3d2", "5d3", "sep3", "sep5", "max3", "avg5", "skip"] {
            let choice = Choice::parse(token).expect(token);
            assert_eq!(choice.token(), token);
        }
    }

    #[test]
    fn modules_name_the_kind_and_read_back() {
        for (token, module) in [("5", "conv5"), ("3d2", "conv3d2"), ("sep3", "sep3")] {
            let choice = Choice::parse(token).expect(token);
            assert_eq!(choice.module().as_deref(), Some(module));
            assert_eq!(Choice::from_module(module), Some(choice));
        }
        for token in ["max3", "avg3", "skip"] {
            let choice = Choice::parse(token).expect(token);
            assert!(choice.module().is_none() && choice.is_parameter_free());
        }
        assert_eq!(Choice::from_module("mix"), None);
        assert_eq!(Choice::from_module("conv"), None);
    }

    #[test]
    fn parameters_follow_pytorch() {
        let sep = Choice::parse("sep3").expect("sep3");
        let shapes: Vec<(&str, Vec<usize>)> = (sep.parameters(8, 16).into_iter())
            .map(|p| (p.name, p.shape))
            .collect();
        assert_eq!(
            shapes,
            [
                ("depthwise.weight", vec![8, 1, 3, 3]),
                ("depthwise.bias", vec![8]),
                ("pointwise.weight", vec![16, 8, 1, 1]),
                ("pointwise.bias", vec![16]),
            ]
        );
        let dilated = Choice::parse("3d2").expect("3d2");
        assert_eq!(dilated.parameter_count(8, 8), 8 * 8 * 9 + 8);
        assert_eq!(dilated.receptive_field(), 5);
        assert_eq!(sep.parameter_count(8, 8), 8 * 9 + 8 + 64 + 8);
    }

    #[test]
    fn kinds_sort_by_kind_then_size() {
        let mut choices: Vec<Choice> = ["skip", "sep3", "5", "3d2", "3", "max3"]
            .iter()
            .map(|t| Choice::parse(t).expect(t))
            .collect();
        choices.sort();
        let tokens: Vec<String> = choices.iter().map(Choice::token).collect();
        assert_eq!(tokens, ["3", "3d2", "5", "sep3", "max3", "skip"]);
    }
}
