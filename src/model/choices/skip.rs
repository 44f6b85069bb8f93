//! `skip`: the identity; no parameters.

use super::{Choice, Forward, Kind};
use crate::engine::{Backend, Tape, Tensor};
use crate::error::Result;

pub struct Skip;

const TOKEN: &str = "skip";

pub(super) fn parse(token: &str) -> Option<std::result::Result<Choice, String>> {
    (token == TOKEN).then_some(Ok(Choice::Skip))
}

impl Kind for Skip {
    fn token(&self) -> String {
        TOKEN.into()
    }

    fn label(&self) -> String {
        TOKEN.into()
    }

    fn receptive_field(&self) -> usize {
        1
    }

    fn operations(&self, _in_channels: usize, _channels: usize, _side: usize) -> f64 {
        0.0
    }
}

impl Forward for Skip {
    fn forward<B: Backend>(
        &self,
        _tape: &Tape<'_, B>,
        x: &Tensor<B>,
        _params: &[Tensor<B>],
    ) -> Result<Tensor<B>> {
        Ok(x.clone())
    }
}
