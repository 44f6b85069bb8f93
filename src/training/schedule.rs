//! PyTorch's `StepLR(step_size=1, gamma)`: the learning rate is multiplied by `gamma` after
//! every epoch.

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLr {
    pub initial: f64,
    pub gamma: f64,
}

impl StepLr {
    /// The learning rate of epoch `epoch` (counted from 0), multiplied step by step as PyTorch
    /// does, in f64, so the values agree to the last bit before the cast to f32.
    pub fn lr(&self, epoch: usize) -> f32 {
        self.lr_f64(epoch) as f32
    }

    /// The same in f64, as the schedule states it (what the metrics files record).
    pub fn lr_f64(&self, epoch: usize) -> f64 {
        (0..epoch).fold(self.initial, |lr, _| lr * self.gamma)
    }
}
