//! Subnets and branch masks.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::model::space::MAX_BLOCKS;

/// One architecture of a SuperNet: per block, the index of its choice in that block's list
/// (see `SearchSpace`). Named by one digit per block, block 1 first: `10` in the study's space
/// is the 5x5 conv in block 1 and the 3x3 in block 2.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    /// Only the first `blocks` entries are used; the rest stay 0 so that equality, order and
    /// hashing see the choices alone.
    choices: [u8; MAX_BLOCKS],
    blocks: u8,
}

impl Subnet {
    /// Panics on more than `MAX_BLOCKS` choices: every space keeps that limit.
    pub fn new(choices: &[u8]) -> Self {
        assert!(
            choices.len() <= MAX_BLOCKS,
            "a subnet has at most {MAX_BLOCKS} blocks"
        );
        let mut all = [0; MAX_BLOCKS];
        all[..choices.len()].copy_from_slice(choices);
        Subnet {
            choices: all,
            blocks: choices.len() as u8,
        }
    }

    /// The choice index of every block, block 1 first.
    pub fn choices(&self) -> &[u8] {
        &self.choices[..self.blocks as usize]
    }

    /// Blocks the subnet makes a choice in.
    pub fn len(&self) -> usize {
        self.blocks as usize
    }

    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }
}

/// "131": one digit per block, block 1 first, as in the PyTorch fixtures and the results files.
impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for choice in self.choices() {
            write!(f, "{choice}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subnet({self})")
    }
}

/// Parses "1,3,1" or "131" into choice indices; whether they fit a space is
/// `SearchSpace::parse_subnet`'s question.
impl FromStr for Subnet {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let digits: Vec<&str> = if text.contains(',') {
            text.split(',').map(str::trim).collect()
        } else {
            text.split_terminator("").skip(1).collect()
        };
        let invalid = || {
            Error::invalid(
                "subnet",
                format!("'{text}' is not a subnet name; expected one digit per block, like 1,0"),
            )
        };
        if digits.is_empty() || digits.len() > MAX_BLOCKS {
            return Err(invalid());
        }
        let choices = digits
            .iter()
            .map(|d| match d.as_bytes() {
                [digit @ b'0'..=b'9'] => Ok(digit - b'0'),
                _ => Err(invalid()),
            })
            .collect::<Result<Vec<u8>>>()?;
        Ok(Subnet::new(&choices))
    }
}

/// How a block mixes its choices: one factor per choice, in the block's order. Sum computes
/// `sum_j factor_j * op_j(x)`, Concat concatenates the scaled outputs. A zero factor means the
/// choice is not computed at all, so it gets no gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockMask {
    factors: Vec<f32>,
}

impl BlockMask {
    /// Choice `choice` of `choices` at 1, the others off.
    pub fn one_hot(choice: usize, choices: usize) -> Self {
        BlockMask {
            factors: (0..choices).map(|i| (i == choice) as u8 as f32).collect(),
        }
    }

    /// Every choice on with factor 1 (the "all paths" SuperNet used as a reference network).
    pub fn all_paths(choices: usize) -> Self {
        BlockMask {
            factors: vec![1.0; choices],
        }
    }

    /// Any factors, one per choice (for example the study's `1 - c` and `c`).
    pub fn from_factors(factors: Vec<f32>) -> Self {
        BlockMask { factors }
    }

    pub fn factors(&self) -> &[f32] {
        &self.factors
    }
}
