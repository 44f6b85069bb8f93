//! `maxK` and `avgK`: a K x K pool, stride 1, padding K/2, the output the input's size. Max:
//! the padding never wins, ties go to the first maximum in row-major window order. Average:
//! over the window's pixels inside the image (`count_include_pad=False`). No parameters.

use std::cmp::Ordering;

use super::{odd_size_after, Choice, Forward, Kind};
use crate::engine::{Backend, PoolKind, Tape, Tensor};
use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool {
    pub kind: PoolKind,
    pub size: usize,
}

/// Each pooling kind's token prefix.
const PREFIXES: [(PoolKind, &str); 2] = [(PoolKind::Max, "max"), (PoolKind::Avg, "avg")];

pub(super) fn parse(token: &str) -> Option<std::result::Result<Choice, String>> {
    PREFIXES.iter().find_map(|&(kind, prefix)| {
        let size = odd_size_after(prefix, token)?;
        Some(size.map(|size| Choice::Pool(Pool { kind, size })))
    })
}

impl Pool {
    fn prefix(&self) -> &'static str {
        let (_, prefix) = PREFIXES
            .iter()
            .find(|(k, _)| *k == self.kind)
            .expect("listed");
        prefix
    }

    /// Max before average, then by size.
    fn order(&self) -> (usize, usize) {
        let kind = PREFIXES.iter().position(|(k, _)| *k == self.kind);
        (kind.expect("listed"), self.size)
    }
}

impl PartialOrd for Pool {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pool {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order().cmp(&other.order())
    }
}

impl Kind for Pool {
    fn token(&self) -> String {
        format!("{}{}", self.prefix(), self.size)
    }

    fn label(&self) -> String {
        format!("{} {1}x{1}", self.prefix(), self.size)
    }

    fn receptive_field(&self) -> usize {
        self.size
    }

    fn operations(&self, _in_channels: usize, channels: usize, side: usize) -> f64 {
        (channels * self.size * self.size * side * side) as f64
    }
}

impl Forward for Pool {
    fn forward<B: Backend>(
        &self,
        tape: &Tape<'_, B>,
        x: &Tensor<B>,
        _params: &[Tensor<B>],
    ) -> Result<Tensor<B>> {
        tape.pool_s1(x, self.kind, self.size)
    }
}
