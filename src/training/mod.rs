//! Training: the loop (one-shot or stand-alone), evaluation, the schedule, the metrics, and the
//! proxies of subnet quality (KL divergence after one-shot training, zero-cost at initialisation).

pub mod claim;
pub mod config;
mod device_data;
mod evaluate;
pub mod experiment;
pub mod kl_math;
mod kl_proxy;
mod metrics;
pub mod resume;
mod sampling;
mod schedule;
mod trainer;
mod zero_cost;

pub use config::{Mode, TrainConfig};
pub use device_data::{Batch, DeviceSplit};
pub use evaluate::{evaluate, evaluate_subnets, forward_subnets, EVAL_BATCH};
pub use kl_proxy::{kl_proxy, sample_indices, KlProxy};
pub use metrics::{stalled_epochs, EpochMetrics, SubnetMetrics};
pub use sampling::{Sampling, SubnetSampler};
pub use schedule::StepLr;
pub use trainer::{Observer, Silent, Trainer};
pub use zero_cost::{zero_cost, ZeroCost};
