//! adadelta: PyTorch's `torch.optim.Adadelta` (no weight decay), one fused elementwise kernel.
//!
//! In PyTorch's order, per element:
//! `square_avg = square_avg * rho + (1 - rho) * g * g`; `std = sqrt(square_avg + eps)`;
//! `delta = sqrt(acc_delta + eps) / std * g`; `acc_delta = acc_delta * rho + (1 - rho) * delta * delta`;
//! `param = param - lr * delta`.
//! A parameter without a gradient (an inactive branch) takes the step with `g = 0`: its
//! accumulators decay and its value stays bit for bit (`p + -lr * 0 == p`).

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::CpuBackend;
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend};
use crate::engine::tape::Gradients;
use crate::engine::tensor::Tensor;
use crate::error::{Error, Result};

const OP: &str = "adadelta";

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdadeltaConfig {
    pub lr: f32,
    pub rho: f32,
    pub eps: f32,
}

impl Default for AdadeltaConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        AdadeltaConfig {
            lr: 1.0,
            rho: 0.9,
            eps: 1e-6,
        }
    }
}

impl AdadeltaConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(Error::invalid(
                OP,
                format!("learning rate must be finite and >= 0, got {}", self.lr),
            ));
        }
        if !(0.0..=1.0).contains(&self.rho) {
            return Err(Error::invalid(
                OP,
                format!("rho must be in [0, 1], got {}", self.rho),
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::invalid(
                OP,
                format!("eps must be finite and > 0, got {}", self.eps),
            ));
        }
        Ok(())
    }

    fn params(&self, len: usize) -> AdadeltaParams {
        AdadeltaParams {
            len: len as u32,
            lr: self.lr,
            rho: self.rho,
            eps: self.eps,
        }
    }
}

pub trait AdadeltaKernel: Memory {
    /// Updates `param`, `square_avg` and `acc_delta` in place; `grad = None` means a zero gradient.
    fn adadelta_step(
        &self,
        c: &AdadeltaConfig,
        param: &Self::Storage,
        grad: Option<&Self::Storage>,
        square_avg: &Self::Storage,
        acc_delta: &Self::Storage,
        len: usize,
    ) -> Result<()>;
}

/// Per-parameter accumulators, in the order of the parameter list given to `new`.
pub struct Adadelta<B: Backend> {
    pub config: AdadeltaConfig,
    square_avg: Vec<B::Storage>,
    acc_delta: Vec<B::Storage>,
}

impl<B: Backend> Adadelta<B> {
    pub fn new(backend: &B, params: &[Tensor<B>], config: AdadeltaConfig) -> Result<Self> {
        config.validate()?;
        let zeros = |p: &Tensor<B>| backend.zeros(p.numel());
        Ok(Adadelta {
            config,
            square_avg: params.iter().map(zeros).collect::<Result<_>>()?,
            acc_delta: params.iter().map(zeros).collect::<Result<_>>()?,
        })
    }

    /// Steps every parameter: those without a gradient with a zero one, as PyTorch does.
    pub fn step(&mut self, backend: &B, params: &[Tensor<B>], grads: &Gradients<B>) -> Result<()> {
        if params.len() != self.square_avg.len() {
            return Err(Error::invalid(
                OP,
                format!(
                    "built for {} parameters, stepped with {}",
                    self.square_avg.len(),
                    params.len()
                ),
            ));
        }
        for (i, param) in params.iter().enumerate() {
            let grad = grads.get(param).map(Tensor::storage);
            backend.adadelta_step(
                &self.config,
                param.storage(),
                grad,
                &self.square_avg[i],
                &self.acc_delta[i],
                param.numel(),
            )?;
        }
        Ok(())
    }

    /// `(square_avg, acc_delta)` of parameter `i`.
    pub fn state(&self, i: usize) -> (&B::Storage, &B::Storage) {
        (&self.square_avg[i], &self.acc_delta[i])
    }

    /// Sets the accumulators of parameter `i` (resuming a training); lengths are the caller's.
    pub fn restore(
        &mut self,
        backend: &B,
        i: usize,
        square_avg: &[f32],
        acc_delta: &[f32],
    ) -> Result<()> {
        self.square_avg[i] = backend.upload(square_avg)?;
        self.acc_delta[i] = backend.upload(acc_delta)?;
        Ok(())
    }
}

pub mod cpu {
    use super::AdadeltaConfig;

    pub fn step(
        c: &AdadeltaConfig,
        param: &mut [f32],
        grad: Option<&[f32]>,
        square_avg: &mut [f32],
        acc_delta: &mut [f32],
    ) {
        for i in 0..param.len() {
            let g = grad.map_or(0.0, |g| g[i]);
            square_avg[i] = square_avg[i] * c.rho + (1.0 - c.rho) * g * g;
            let std = (square_avg[i] + c.eps).sqrt();
            let delta = (acc_delta[i] + c.eps).sqrt() / std * g;
            acc_delta[i] = acc_delta[i] * c.rho + (1.0 - c.rho) * delta * delta;
            param[i] += -c.lr * delta;
        }
    }
}

impl AdadeltaKernel for CpuBackend {
    fn adadelta_step(
        &self,
        c: &AdadeltaConfig,
        param: &Self::Storage,
        grad: Option<&Self::Storage>,
        square_avg: &Self::Storage,
        acc_delta: &Self::Storage,
        len: usize,
    ) -> Result<()> {
        let grad = grad.map(|g| g.borrow());
        cpu::step(
            c,
            &mut param.borrow_mut()[..len],
            grad.as_ref().map(|g| &g[..len]),
            &mut square_avg.borrow_mut()[..len],
            &mut acc_delta.borrow_mut()[..len],
        );
        Ok(())
    }
}

kernel_params! {
    /// `len` parameters and the optimizer's settings.
    pub(crate) struct AdadeltaParams { len: u32, lr: f32, rho: f32, eps: f32 }
}

const STEP: Entry = Entry::new("step", &[1, 2, 3, 4]);
const STEP_ZERO_GRAD: Entry = Entry::new("step_zero_grad", &[5, 6]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/adadelta.wgsl"),
    params: AdadeltaParams::FIELDS,
    entries: &[STEP, STEP_ZERO_GRAD],
};

impl AdadeltaKernel for GpuBackend {
    fn adadelta_step(
        &self,
        c: &AdadeltaConfig,
        param: &Self::Storage,
        grad: Option<&Self::Storage>,
        square_avg: &Self::Storage,
        acc_delta: &Self::Storage,
        len: usize,
    ) -> Result<()> {
        match grad {
            Some(grad) => self.launch(
                &SHADER,
                &STEP,
                &c.params(len),
                &[
                    bound(param, len),
                    bound(grad, len),
                    bound(square_avg, len),
                    bound(acc_delta, len),
                ],
                len,
            ),
            None => self.launch(
                &SHADER,
                &STEP_ZERO_GRAD,
                &c.params(len),
                &[bound(square_avg, len), bound(acc_delta, len)],
                len,
            ),
        }
    }
}
