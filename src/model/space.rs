//! Search spaces as data: the SuperNet's blocks and each block's choices.
//!
//! Spec syntax: blocks separated by `/`, a block's choices by `,`; a choice is a token of one of
//! the kinds in `model::choices`: an odd kernel size `k` (a k x k conv, padding k/2, with bias),
//! `kdD` (dilated), `sepK` (depthwise-separable), `maxK` / `avgK` (stride-1 pools) or `skip`
//! (the identity). `3,5/3,5` is the
//! original study (4 subnets); `1,3,5,7/1,3,5,7/1,3,5,7` has 64. A few spaces have names
//! (`PRESETS`). A subnet is one choice per block, named by one digit per block, block 1 first,
//! the index of its choice in the block (`131` in `3,5,7/1,3,5,skip/3,5` = 5x5, identity, 5x5).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
pub use crate::model::choices::Choice;
use crate::model::subnet::{BlockMask, Subnet};

/// A subnet's name has one digit per block, so a block offers at most ten choices.
pub const MAX_CHOICES: usize = 10;
/// Blocks a subnet can hold (each block halves the image side: 256 pixels allow 8).
pub const MAX_BLOCKS: usize = 8;

/// What `--space` is named after, on the command line and in errors.
const FLAG: &str = "--space";

/// Named spaces: (name, spec, what it is).
pub const PRESETS: [(&str, &str, &str); 4] = [
    (
        "study",
        "3,5/3,5",
        "the original study: 2 blocks of 3x3 or 5x5, 4 subnets",
    ),
    (
        "large",
        "1,3,5,7/1,3,5,7/1,3,5,7",
        "3 blocks of 1x1, 3x3, 5x5 or 7x7, 64 subnets",
    ),
    (
        "fixture",
        "3,5,7/1,3,5,skip/3,5",
        "the PyTorch reference space, with an identity: 24 subnets",
    ),
    (
        "ops",
        "3,5,3d2,sep3/3,5,3d2,sep3,max3,avg3,skip",
        "convs, a dilated and a separable conv, then also pools and an identity: 28 subnets",
    ),
];

/// The blocks of a SuperNet, each with its choices in order (the order names and slots follow).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SearchSpace {
    blocks: Vec<Vec<Choice>>,
}

impl Default for SearchSpace {
    fn default() -> Self {
        SearchSpace::study()
    }
}

impl SearchSpace {
    /// `3,5/3,5`: two blocks, each a 3x3 or a 5x5 conv.
    pub fn study() -> Self {
        let block = vec![Choice::conv(3), Choice::conv(5)];
        SearchSpace {
            blocks: vec![block.clone(), block],
        }
    }

    /// Checks the rules every space keeps (see `parse` for the spec syntax).
    pub fn new(blocks: Vec<Vec<Choice>>) -> Result<Self> {
        let space = SearchSpace { blocks };
        space.check()?;
        Ok(space)
    }

    /// A spec (`3,5/1,3,5,skip`) or a preset's name (`study`).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if let Some((_, spec, _)) = PRESETS.iter().find(|(name, _, _)| *name == text) {
            return Self::parse(spec);
        }
        let quoted = shortened(text, 60);
        let invalid = |detail: String| Error::invalid(FLAG, format!("'{quoted}': {detail}"));
        if text.is_empty() {
            return Err(invalid("no blocks; expected e.g. 3,5/3,5".into()));
        }
        let blocks = text
            .split('/')
            .enumerate()
            .map(|(b, block)| parse_block(b + 1, block).map_err(&invalid))
            .collect::<Result<Vec<_>>>()?;
        SearchSpace::new(blocks).map_err(|e| match e {
            Error::Invalid { detail, .. } => invalid(detail),
            other => other,
        })
    }

    fn check(&self) -> Result<()> {
        let invalid = |detail: String| Error::invalid(FLAG, detail);
        if self.blocks.is_empty() {
            return Err(invalid("a space needs at least one block".into()));
        }
        if self.blocks.len() > MAX_BLOCKS {
            return Err(invalid(format!(
                "{} blocks; at most {MAX_BLOCKS}",
                self.blocks.len()
            )));
        }
        for (b, choices) in self.blocks.iter().enumerate() {
            let block = b + 1;
            if choices.is_empty() {
                return Err(invalid(format!("block {block} has no choices")));
            }
            if choices.len() > MAX_CHOICES {
                return Err(invalid(format!(
                    "block {block} has {} choices; at most {MAX_CHOICES} (a subnet's name has one digit per block)",
                    choices.len()
                )));
            }
            for (i, choice) in choices.iter().enumerate() {
                let token = choice.token();
                if choices[..i].contains(choice) {
                    return Err(invalid(format!(
                        "block {block} choice '{token}' appears twice"
                    )));
                }
                if let Err(why) = choice.check() {
                    return Err(invalid(format!("block {block} choice '{token}': {why}")));
                }
                if choice.is_parameter_free() && block == 1 {
                    return Err(invalid(format!(
                        "block 1 choice '{token}': a choice without parameters needs an input with the block's channels, and block 1's input is the 1-channel image"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether images of `side` pixels fit: every block halves the side (floor), which must
    /// stay at least 1, and no kernel is wider than `2 * input side - 1` (wider taps only ever
    /// see padding).
    pub fn check_image_side(&self, side: usize) -> Result<()> {
        let mut sides = vec![side];
        for choices in &self.blocks {
            let input = *sides.last().expect("starts with the image side");
            if input < 2 {
                let chain: Vec<String> = sides.iter().map(usize::to_string).collect();
                return Err(Error::invalid(
                    FLAG,
                    format!(
                        "'{self}' has {} blocks, but {side}-pixel images allow at most {}: each block halves the side ({})",
                        self.blocks.len(),
                        sides.len() - 1,
                        chain.join(" -> ")
                    ),
                ));
            }
            let widest = 2 * input - 1;
            let too_wide = choices.iter().find(|c| c.receptive_field() > widest);
            if let Some(choice) = too_wide {
                return Err(Error::invalid(
                    FLAG,
                    format!(
                        "'{self}': block {} choice '{}' is wider than its {input}x{input} input allows (at most {widest})",
                        sides.len(),
                        choice.token()
                    ),
                ));
            }
            sides.push(input / 2);
        }
        Ok(())
    }

    /// The side of the map after every block's 2x2 pool (floor), for `image_side` inputs.
    pub fn side_after(&self, image_side: usize) -> usize {
        image_side >> self.blocks.len()
    }

    pub fn blocks(&self) -> &[Vec<Choice>] {
        &self.blocks
    }

    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// The choices of block `block` (counted from 0).
    pub fn choices(&self, block: usize) -> &[Choice] {
        &self.blocks[block]
    }

    pub fn subnet_count(&self) -> usize {
        self.blocks.iter().map(Vec::len).product()
    }

    /// Subnet number `index` in the space's order: block 1's choice varies fastest, so the
    /// study's order is 00, 10, 01, 11.
    pub fn subnet_at(&self, index: usize) -> Subnet {
        let mut rest = index;
        let choices: Vec<u8> = self
            .blocks
            .iter()
            .map(|choices| {
                let choice = rest % choices.len();
                rest /= choices.len();
                choice as u8
            })
            .collect();
        Subnet::new(&choices)
    }

    /// Every subnet, in the space's order (see `subnet_at`).
    pub fn subnets(&self) -> Vec<Subnet> {
        (0..self.subnet_count())
            .map(|i| self.subnet_at(i))
            .collect()
    }

    /// Whether `subnet` makes one valid choice per block of this space.
    pub fn contains(&self, subnet: &Subnet) -> bool {
        subnet.len() == self.blocks.len()
            && subnet
                .choices()
                .iter()
                .zip(&self.blocks)
                .all(|(&c, choices)| (c as usize) < choices.len())
    }

    /// Parses `1,3,1` or `131` as a subnet of this space; the error names the text and what
    /// each block takes.
    pub fn parse_subnet(&self, text: &str) -> Result<Subnet> {
        let invalid = |why: String| {
            Error::invalid(
                "--subnet",
                format!("'{text}' is not a subnet of the space {self}: {why}"),
            )
        };
        let subnet: Subnet = text.parse().map_err(|_| {
            invalid(format!(
                "expected one digit per block, like {}; {}",
                self.example_subnet(),
                self.takes_all()
            ))
        })?;
        if subnet.len() != self.blocks.len() {
            let plural = if subnet.len() == 1 { "" } else { "s" };
            return Err(invalid(format!(
                "{} choice{plural} for {} blocks; {}",
                subnet.len(),
                self.blocks.len(),
                self.takes_all()
            )));
        }
        for (b, (&c, choices)) in subnet.choices().iter().zip(&self.blocks).enumerate() {
            if c as usize >= choices.len() {
                return Err(invalid(self.takes(b)));
            }
        }
        Ok(subnet)
    }

    /// "block 1 takes 0 (3x3) or 1 (5x5)".
    fn takes(&self, block: usize) -> String {
        let options: Vec<String> = self.blocks[block]
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{i} ({c})"))
            .collect();
        let listed = match options.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        format!("block {} takes {listed}", block + 1)
    }

    fn takes_all(&self) -> String {
        (0..self.blocks.len())
            .map(|b| self.takes(b))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The last subnet of the space, written with commas: `1,1` for the study.
    fn example_subnet(&self) -> String {
        let last = self.subnet_at(self.subnet_count() - 1);
        last.choices()
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// What each digit of a subnet's name means: "one digit per block, block 1 first: 0 =
    /// 3x3, 1 = 5x5" when every block has the same choices, else block by block.
    pub fn key(&self) -> String {
        let choices = |block: &[Choice]| {
            block
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{i} = {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.blocks.iter().all(|b| *b == self.blocks[0]) {
            return format!(
                "one digit per block, block 1 first: {}",
                choices(&self.blocks[0])
            );
        }
        let blocks: Vec<String> = self
            .blocks
            .iter()
            .enumerate()
            .map(|(b, block)| format!("block {}: {}", b + 1, choices(block)))
            .collect();
        format!("one digit per block, block 1 first; {}", blocks.join("; "))
    }

    /// What `subnet` is, block by block: "5x5, skip, 5x5".
    pub fn describe(&self, subnet: &Subnet) -> String {
        self.path(subnet)
            .iter()
            .map(Choice::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The choice `subnet` makes in every block.
    pub fn path(&self, subnet: &Subnet) -> Vec<Choice> {
        subnet
            .choices()
            .iter()
            .zip(&self.blocks)
            .map(|(&c, choices)| choices[c as usize])
            .collect()
    }

    /// The space with only `subnet`'s choice in each block: the architecture of that subnet
    /// as a plain network (`5/skip/5`).
    pub fn only(&self, subnet: &Subnet) -> SearchSpace {
        SearchSpace {
            blocks: self.path(subnet).into_iter().map(|c| vec![c]).collect(),
        }
    }

    /// The branch factors of `subnet`: its choice at 1 in every block, the others not computed.
    pub fn masks(&self, subnet: &Subnet) -> Vec<BlockMask> {
        subnet
            .choices()
            .iter()
            .zip(&self.blocks)
            .map(|(&c, choices)| BlockMask::one_hot(c as usize, choices.len()))
            .collect()
    }

    /// Every choice of every block on with factor 1 (the KL proxy's reference network).
    pub fn all_paths(&self) -> Vec<BlockMask> {
        self.blocks
            .iter()
            .map(|choices| BlockMask::all_paths(choices.len()))
            .collect()
    }
}

/// The spec: `3,5/1,3,5,skip`.
impl fmt::Display for SearchSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks: Vec<String> = self
            .blocks
            .iter()
            .map(|choices| {
                let tokens: Vec<String> = choices.iter().map(Choice::token).collect();
                tokens.join(",")
            })
            .collect();
        write!(f, "{}", blocks.join("/"))
    }
}

impl FromStr for SearchSpace {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        SearchSpace::parse(text)
    }
}

impl serde::Serialize for SearchSpace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// One block of a spec (`1,3,5,skip`); errors say which block and token.
fn parse_block(block: usize, text: &str) -> std::result::Result<Vec<Choice>, String> {
    if text.trim().is_empty() {
        return Err(format!("block {block} has no choices"));
    }
    text.split(',')
        .map(str::trim)
        .map(|token| match token {
            "" => Err(format!("block {block} has an empty choice")),
            _ => Choice::parse(token).map_err(|why| {
                let token = shortened(token, 20);
                format!("block {block} choice '{token}': {why}")
            }),
        })
        .collect()
}

/// Text as an error quotes it: at most `longest` characters.
fn shortened(token: &str, longest: usize) -> String {
    match token.char_indices().nth(longest) {
        Some((end, _)) => format!("{}...", &token[..end]),
        None => token.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(spec: &str) -> String {
        SearchSpace::parse(spec).expect_err(spec).to_string()
    }

    #[test]
    fn the_default_is_the_study() {
        let space = SearchSpace::parse("3,5/3,5").expect("study");
        assert_eq!(space, SearchSpace::study());
        assert_eq!(SearchSpace::parse("study").expect("preset"), space);
        assert_eq!(space.to_string(), "3,5/3,5");
        let names: Vec<String> = space.subnets().iter().map(Subnet::to_string).collect();
        assert_eq!(names, ["00", "10", "01", "11"]);
    }

    #[test]
    fn presets_parse_to_their_sizes() {
        let sizes: Vec<usize> = PRESETS
            .iter()
            .map(|(name, _, _)| SearchSpace::parse(name).expect(name).subnet_count())
            .collect();
        assert_eq!(sizes, [4, 64, 24, 28]);
    }

    #[test]
    fn subnets_are_named_by_choice_index_block_1_first() {
        let space = SearchSpace::parse("3,5,7/1,3,5,skip/3,5").expect("fixture");
        let subnet = space.parse_subnet("131").expect("131");
        assert_eq!(space.describe(&subnet), "5x5, skip, 5x5");
        assert_eq!(
            space.key(),
            "one digit per block, block 1 first; block 1: 0 = 3x3, 1 = 5x5, 2 = 7x7; \
             block 2: 0 = 1x1, 1 = 3x3, 2 = 5x5, 3 = skip; block 3: 0 = 3x3, 1 = 5x5"
        );
        assert_eq!(
            SearchSpace::study().key(),
            "one digit per block, block 1 first: 0 = 3x3, 1 = 5x5"
        );
        assert_eq!(space.parse_subnet("1,3,1").expect("1,3,1"), subnet);
        assert_eq!(space.only(&subnet).to_string(), "5/skip/5");
        let all = space.subnets();
        assert_eq!(all.len(), 24);
        assert_eq!(all[1].to_string(), "100");
        assert_eq!(all[3].to_string(), "010");
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 24);
        assert!(all.iter().all(|s| space.contains(s)));
    }

    #[test]
    fn every_spec_error_names_the_token_and_the_reason() {
        let cases: [(&str, &[&str]); 9] = [
            ("3,4/3,5", &["'3,4/3,5'", "block 1 choice '4'", "odd"]),
            ("skip,3/3", &["block 1 choice 'skip'", "1-channel image"]),
            ("3,5//3", &["block 2 has no choices"]),
            ("3,,5/3", &["block 1 has an empty choice"]),
            ("3,5/5,3,5", &["block 2 choice '5' appears twice"]),
            (
                "1,3,5,7,9,11,13,15,17,19,21/3",
                &["block 1 has 11 choices", "at most 10"],
            ),
            (
                "3,x/3",
                &["block 1 choice 'x'", "neither an odd kernel size nor skip"],
            ),
            ("", &["no blocks"]),
            ("3/3/3/3/3/3/3/3/3", &["9 blocks", "at most 8"]),
        ];
        for (spec, words) in cases {
            let message = error(spec);
            assert!(message.starts_with("--space"), "{message}");
            for word in words {
                assert!(message.contains(word), "{spec}: '{message}' lacks '{word}'");
            }
        }
    }

    #[test]
    fn every_choice_kind_error_names_the_token_and_the_reason() {
        let cases: [(&str, &[&str]); 9] = [
            ("3,sep4/3", &["block 1 choice 'sep4'", "odd"]),
            ("3,max3/3", &["block 1 choice 'max3'", "1-channel image"]),
            ("3/3,avg5", &[]),
            ("3d0/3", &["block 1 choice '3d0'", "at least 2"]),
            ("3d1/3", &["block 1 choice '3d1'", "write '3'"]),
            ("2d2/3", &["block 1 choice '2d2'", "odd"]),
            ("3/avg", &["block 2 choice 'avg'", "needs a window size"]),
            ("3,3d2/3d2,5,3d2", &["block 2 choice '3d2' appears twice"]),
            ("3/sepx", &["block 2 choice 'sepx'", "not a size"]),
        ];
        for (spec, words) in cases {
            if words.is_empty() {
                assert!(SearchSpace::parse(spec).is_ok(), "{spec}");
                continue;
            }
            let message = error(spec);
            assert!(message.starts_with("--space"), "{message}");
            for word in words {
                assert!(message.contains(word), "{spec}: '{message}' lacks '{word}'");
            }
        }
        let long = format!("3/{}", "9".repeat(100_000));
        assert!(error(&long).len() < 300, "a long token is shortened");
    }

    #[test]
    fn the_ops_space_holds_the_study_and_every_kind() {
        let ops = SearchSpace::parse("ops").expect("ops");
        assert_eq!(ops.subnet_count(), 28);
        assert_eq!(ops.to_string(), "3,5,3d2,sep3/3,5,3d2,sep3,max3,avg3,skip");
        for (name, described) in [
            ("00", "3x3, 3x3"),
            ("11", "5x5, 5x5"),
            ("32", "sep 3x3, 3x3 d2"),
            ("14", "5x5, max 3x3"),
            ("25", "3x3 d2, avg 3x3"),
            ("36", "sep 3x3, skip"),
        ] {
            let subnet = ops.parse_subnet(name).expect(name);
            assert_eq!(ops.describe(&subnet), described);
        }
        let wide = SearchSpace::parse("3/3/7d3").expect("parses");
        let message = wide.check_image_side(28).expect_err("too wide").to_string();
        assert!(
            message.contains("'7d3'") && message.contains("at most 13"),
            "{message}"
        );
    }

    #[test]
    fn more_blocks_than_the_image_side_allows_are_refused() {
        let four = SearchSpace::parse("3/3/3/1").expect("four blocks");
        assert!(four.check_image_side(28).is_ok());
        assert_eq!(four.side_after(28), 1);
        let five = SearchSpace::parse("3/3/3/1/1").expect("five blocks");
        let message = five.check_image_side(28).expect_err("too deep").to_string();
        for word in [
            "5 blocks",
            "28-pixel images allow at most 4",
            "28 -> 14 -> 7 -> 3 -> 1",
        ] {
            assert!(message.contains(word), "'{message}' lacks '{word}'");
        }
        let wide = SearchSpace::parse("3/3/15").expect("parses");
        let message = wide.check_image_side(28).expect_err("too wide").to_string();
        assert!(
            message.contains("block 3 choice '15'") && message.contains("at most 13"),
            "{message}"
        );
    }

    #[test]
    fn a_subnet_outside_the_space_is_refused_with_what_each_block_takes() {
        let space = SearchSpace::study();
        let message = space.parse_subnet("2,0").expect_err("2,0").to_string();
        assert!(
            message.contains("'2,0'") && message.contains("0 (3x3) or 1 (5x5)"),
            "{message}"
        );
        let message = space.parse_subnet("1,0,1").expect_err("three").to_string();
        assert!(message.contains("3 choices for 2 blocks"), "{message}");
        let fixture = SearchSpace::parse("fixture").expect("fixture");
        let message = fixture.parse_subnet("141").expect_err("141").to_string();
        assert!(
            message.contains("block 2 takes 0 (1x1), 1 (3x3), 2 (5x5) or 3 (skip)"),
            "{message}"
        );
    }

    #[test]
    fn masks_are_one_hot_and_all_paths_all_ones() {
        let space = SearchSpace::parse("fixture").expect("fixture");
        let masks = space.masks(&space.parse_subnet("131").expect("131"));
        let factors: Vec<&[f32]> = masks.iter().map(|m| m.factors()).collect();
        assert_eq!(
            factors,
            [&[0.0, 1.0, 0.0][..], &[0.0, 0.0, 0.0, 1.0], &[0.0, 1.0]]
        );
        assert!(space
            .all_paths()
            .iter()
            .all(|m| m.factors().iter().all(|&f| f == 1.0)));
    }
}
