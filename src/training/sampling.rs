//! How one-shot training draws the subnet of each minibatch.
//!
//! `Uniform` draws each of the four subnets with equal probability, independently per step (the
//! study). `Fair` follows FairNAS's strict fairness: the options of every block are drawn as a
//! shuffled round, so over each round of two steps every option of every block trains exactly
//! once.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::model::{Subnet, BLOCKS};

/// Options per block: the 3x3 and the 5x5 conv.
const OPTIONS: u8 = 2;

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

/// Draws subnets from a seeded stream.
pub struct SubnetSampler {
    sampling: Sampling,
    rng: StdRng,
    /// What is left of the current fair round, next last.
    round: Vec<Subnet>,
}

impl SubnetSampler {
    pub fn new(sampling: Sampling, rng: StdRng) -> Self {
        SubnetSampler {
            sampling,
            rng,
            round: Vec::new(),
        }
    }

    pub fn next_subnet(&mut self) -> Subnet {
        match self.sampling {
            Sampling::Uniform => Subnet::ALL[self.rng.random_range(0..Subnet::ALL.len())],
            Sampling::Fair => {
                if self.round.is_empty() {
                    self.round = self.fair_round();
                }
                self.round
                    .pop()
                    .expect("a fair round has one subnet per option")
            }
        }
    }

    /// Every block's options in a shuffled order; step `i` of the round takes option `i` of
    /// every block's order.
    fn fair_round(&mut self) -> Vec<Subnet> {
        let orders: [Vec<u8>; BLOCKS] = std::array::from_fn(|_| {
            let mut options: Vec<u8> = (0..OPTIONS).collect();
            options.shuffle(&mut self.rng);
            options
        });
        let mut round: Vec<Subnet> = (0..OPTIONS as usize)
            .map(|i| Subnet(std::array::from_fn(|block| orders[block][i])))
            .collect();
        round.reverse();
        round
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn draws(sampling: Sampling, steps: usize) -> Vec<Subnet> {
        let mut sampler = SubnetSampler::new(sampling, StdRng::seed_from_u64(3));
        (0..steps).map(|_| sampler.next_subnet()).collect()
    }

    /// After every complete round, each option of each block has been drawn equally often.
    #[test]
    fn fair_sampling_trains_every_option_of_a_block_equally_often() {
        let subnets = draws(Sampling::Fair, 1000);
        for round_end in (OPTIONS as usize..=subnets.len()).step_by(OPTIONS as usize) {
            for block in 0..BLOCKS {
                let fives = subnets[..round_end]
                    .iter()
                    .filter(|s| s.0[block] == 1)
                    .count();
                assert_eq!(
                    2 * fives,
                    round_end,
                    "block {} after {round_end} steps",
                    block + 1
                );
            }
        }
        for subnet in Subnet::ALL {
            assert!(
                subnets.contains(&subnet),
                "fair sampling never drew {subnet}"
            );
        }
    }

    /// Uniform sampling is not fair step by step, but covers the four subnets evenly on average.
    #[test]
    fn uniform_sampling_covers_the_subnets_evenly() {
        let subnets = draws(Sampling::Uniform, 4000);
        for subnet in Subnet::ALL {
            let count = subnets.iter().filter(|&&s| s == subnet).count();
            assert!(
                (900..=1100).contains(&count),
                "{subnet} drawn {count} times of 4000"
            );
        }
        let unfair_round = subnets.chunks(2).any(|pair| pair[0].0[0] == pair[1].0[0]);
        assert!(unfair_round, "uniform draws behaved like fair rounds");
    }
}
