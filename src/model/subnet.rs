//! Subnets and branch masks.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Blocks in the SuperNet; a subnet makes one choice per block.
pub const BLOCKS: usize = 2;

/// One architecture of the SuperNet: per block, 0 = the 3x3 conv, 1 = the 5x5 conv.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet(pub [u8; BLOCKS]);

impl Subnet {
    /// The four subnets in the study's order: `[0,0]`, `[1,0]`, `[0,1]`, `[1,1]`.
    pub const ALL: [Subnet; 4] = [
        Subnet([0, 0]),
        Subnet([1, 0]),
        Subnet([0, 1]),
        Subnet([1, 1]),
    ];

    /// The branch factors of every block: the chosen conv at 1, the other not computed.
    pub fn masks(&self) -> [BlockMask; BLOCKS] {
        self.0.map(BlockMask::choice)
    }
}

/// "10" for `[1, 0]`: block 1 first, as in the PyTorch fixtures and the results files.
impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.0[0], self.0[1])
    }
}

/// Parses "1,0" (or "10").
impl FromStr for Subnet {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let digits: Vec<&str> = if text.contains(',') {
            text.split(',').map(str::trim).collect()
        } else {
            text.trim().split_terminator("").skip(1).collect()
        };
        let invalid = || {
            Error::invalid("subnet", format!("'{text}' is not a subnet; expected two choices of 0 (3x3) or 1 (5x5), like 1,0"))
        };
        match digits.as_slice() {
            [a, b] => match (*a, *b) {
                ("0" | "1", "0" | "1") => Ok(Subnet([(*a == "1") as u8, (*b == "1") as u8])),
                _ => Err(invalid()),
            },
            _ => Err(invalid()),
        }
    }
}

/// How a block mixes its two branches: `y = conv3(x) * conv3 + conv5(x) * conv5` (Sum) or the
/// concatenation of both scaled outputs (Concat). A zero factor means the branch is not
/// computed at all, so it gets no gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockMask {
    pub conv3: f32,
    pub conv5: f32,
}

impl BlockMask {
    /// `c = 0` picks the 3x3 conv, `c = 1` the 5x5: factors `1 - c` and `c`.
    pub fn choice(c: u8) -> Self {
        BlockMask {
            conv3: 1.0 - c as f32,
            conv5: c as f32,
        }
    }

    /// Both branches on (the "all paths" SuperNet used as a reference network).
    pub fn all_paths() -> Self {
        BlockMask {
            conv3: 1.0,
            conv5: 1.0,
        }
    }
}
