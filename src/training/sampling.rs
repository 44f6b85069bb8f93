//! How one-shot training draws the subnet of each minibatch.
//!
//! `Uniform` draws every subnet of the space with equal probability, independently per step
//! (the study). `Fair` follows FairNAS's strict fairness over each block's own K choices: a
//! block deals its choices in a shuffled round, one per step, so every choice of the block
//! trains exactly once per K steps; a block with fewer choices starts its next round sooner.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha12Rng;

use crate::error::Result;
use crate::model::{SearchSpace, Subnet};
use crate::training::resume::{RngState, SamplerState};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sampling {
    #[default]
    Uniform,
    Fair,
}

impl Sampling {
    pub fn name(&self) -> &'static str {
        match self {
            Sampling::Uniform => "uniform",
            Sampling::Fair => "fair",
        }
    }
}

/// Draws subnets of a space from a seeded stream.
pub struct SubnetSampler {
    sampling: Sampling,
    space: SearchSpace,
    rng: ChaCha12Rng,
    /// Per block, what is left of its current fair round, next last.
    rounds: Vec<Vec<u8>>,
}

impl SubnetSampler {
    pub fn new(sampling: Sampling, space: SearchSpace, rng: ChaCha12Rng) -> Self {
        let rounds = vec![Vec::new(); space.block_count()];
        SubnetSampler {
            sampling,
            space,
            rng,
            rounds,
        }
    }

    /// Where the stream and the rounds are, to resume from.
    pub fn state(&self) -> SamplerState {
        SamplerState {
            rng: RngState::of(&self.rng),
            rounds: self.rounds.clone(),
        }
    }

    pub fn restore(&mut self, state: &SamplerState) -> Result<()> {
        self.rng = state.rng.rng()?;
        self.rounds = state.rounds.clone();
        Ok(())
    }

    pub fn next_subnet(&mut self) -> Subnet {
        match self.sampling {
            Sampling::Uniform => {
                let index = self.rng.random_range(0..self.space.subnet_count());
                self.space.subnet_at(index)
            }
            Sampling::Fair => self.next_fair(),
        }
    }

    /// Each block's next choice of its round; a block whose round is used up deals a new
    /// shuffled one first (blocks in order, so the stream is the same on every run).
    fn next_fair(&mut self) -> Subnet {
        let choices: Vec<u8> = (0..self.space.block_count())
            .map(|block| {
                if self.rounds[block].is_empty() {
                    let k = self.space.choices(block).len() as u8;
                    let mut round: Vec<u8> = (0..k).collect();
                    round.shuffle(&mut self.rng);
                    round.reverse();
                    self.rounds[block] = round;
                }
                self.rounds[block]
                    .pop()
                    .expect("a round has one entry per choice")
            })
            .collect();
        Subnet::new(&choices)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn draws(sampling: Sampling, spec: &str, steps: usize) -> Vec<Subnet> {
        let space = SearchSpace::parse(spec).expect("space");
        let mut sampler = SubnetSampler::new(sampling, space, ChaCha12Rng::seed_from_u64(3));
        (0..steps).map(|_| sampler.next_subnet()).collect()
    }

    /// After every complete round of a block's K steps, each of its choices has been drawn
    /// equally often; here K = 2 (the study), 3 and 4 in one space.
    #[test]
    fn fair_sampling_trains_every_choice_of_a_block_once_per_round() {
        for spec in ["3,5/3,5", "3,5,7/1,3,5,skip/3,5"] {
            let space = SearchSpace::parse(spec).expect("space");
            let subnets = draws(Sampling::Fair, spec, 1200);
            for block in 0..space.block_count() {
                let k = space.choices(block).len();
                for round_end in (k..=subnets.len()).step_by(k) {
                    for choice in 0..k as u8 {
                        let count = subnets[..round_end]
                            .iter()
                            .filter(|s| s.choices()[block] == choice)
                            .count();
                        assert_eq!(
                            count * k,
                            round_end,
                            "{spec}: block {} choice {choice} after {round_end} steps",
                            block + 1
                        );
                    }
                }
            }
            for subnet in space.subnets() {
                assert!(
                    subnets.contains(&subnet),
                    "{spec}: fair sampling never drew {subnet}"
                );
            }
        }
    }

    /// Uniform sampling is not fair step by step, but covers the subnets evenly on average.
    #[test]
    fn uniform_sampling_covers_the_subnets_evenly() {
        let subnets = draws(Sampling::Uniform, "3,5/3,5", 4000);
        for subnet in SearchSpace::study().subnets() {
            let count = subnets.iter().filter(|&&s| s == subnet).count();
            assert!(
                (900..=1100).contains(&count),
                "{subnet} drawn {count} times of 4000"
            );
        }
        let unfair_round = subnets
            .chunks(2)
            .any(|pair| pair[0].choices()[0] == pair[1].choices()[0]);
        assert!(unfair_round, "uniform draws behaved like fair rounds");
    }
}
