//! Training: the learning-rate schedule (the loops arrive with the `oneshot` command).

mod schedule;

pub use schedule::StepLr;
