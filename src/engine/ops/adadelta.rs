//! adadelta: PyTorch's `torch.optim.Adadelta` (no weight decay), one fused elementwise kernel.
//!
//! In PyTorch's order, per element:
//! `square_avg = square_avg * rho + (1 - rho) * g * g`; `std = sqrt(square_avg + eps)`;
//! `delta = sqrt(acc_delta + eps) / std * g`; `acc_delta = acc_delta * rho + (1 - rho) * delta * delta`;
//! `param = param - lr * delta`.
//! A parameter without a gradient (an inactive branch) takes the step with `g = 0`: its
//! accumulators decay and its value stays bit for bit (`p + -lr * 0 == p`).
//!
//! On the GPU the parameters, their gradient slots and both accumulators are each one buffer
//! of the same layout (`Memory::upload_group`, `gradient_slots`, `zeros_group`), so one
//! dispatch steps every parameter: the slots of parameters without a gradient are cleared
//! first, which makes their step the zero-gradient one.

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::CpuBackend;
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, Bound, GpuBackend, GpuStorage};
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

/// One parameter's part of an optimizer step.
pub struct ParamStep<'a, S> {
    pub param: &'a S,
    /// `None`: a zero gradient.
    pub grad: Option<&'a S>,
    /// Where the backward pass writes this parameter's gradient, if the backend keeps one.
    pub grad_slot: Option<&'a S>,
    pub square_avg: &'a S,
    pub acc_delta: &'a S,
    pub len: usize,
}

pub trait AdadeltaKernel: Memory {
    /// Steps every parameter; a backend that can do it at once (the GPU) overrides this.
    fn adadelta_step_all(
        &self,
        c: &AdadeltaConfig,
        params: &[ParamStep<'_, Self::Storage>],
    ) -> Result<()> {
        for p in params {
            self.adadelta_step(c, p.param, p.grad, p.square_avg, p.acc_delta, p.len)?;
        }
        Ok(())
    }

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
    /// Zero accumulators, laid out as the parameters are (`Memory::zeros_group`).
    pub fn new(backend: &B, params: &[Tensor<B>], config: AdadeltaConfig) -> Result<Self> {
        config.validate()?;
        let lens: Vec<usize> = params.iter().map(Tensor::numel).collect();
        Ok(Adadelta {
            config,
            square_avg: backend.zeros_group(&lens)?,
            acc_delta: backend.zeros_group(&lens)?,
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
        let steps: Vec<ParamStep<'_, B::Storage>> = (params.iter().enumerate())
            .map(|(i, param)| ParamStep {
                param: param.storage(),
                grad: grads.get(param).map(Tensor::storage),
                grad_slot: param.grad_slot(),
                square_avg: &self.square_avg[i],
                acc_delta: &self.acc_delta[i],
                len: param.numel(),
            })
            .collect();
        backend.adadelta_step_all(&self.config, &steps)
    }

    /// `(square_avg, acc_delta)` of parameter `i`.
    pub fn state(&self, i: usize) -> (&B::Storage, &B::Storage) {
        (&self.square_avg[i], &self.acc_delta[i])
    }

    /// Sets the accumulators of parameter `i` (resuming a training), in place, so they keep
    /// their layout; lengths are the caller's.
    pub fn restore(
        &self,
        backend: &B,
        i: usize,
        square_avg: &[f32],
        acc_delta: &[f32],
    ) -> Result<()> {
        for (values, into) in [
            (square_avg, &self.square_avg[i]),
            (acc_delta, &self.acc_delta[i]),
        ] {
            backend.copy_into(&backend.upload(values)?, into, 0, values.len())?;
        }
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
    includes: &[],
    params: AdadeltaParams::FIELDS,
    entries: &[STEP, STEP_ZERO_GRAD],
};

/// The values from the start of the first view to the end of the last, when `views` lie in
/// order in one buffer, as the views of a group do.
fn span(views: &[&GpuStorage]) -> Option<GpuStorage> {
    let (first, last) = (views.first()?, views.last()?);
    views
        .iter()
        .all(|v| v.shares_buffer(first))
        .then(|| first.spanning(last))
}

impl GpuBackend {
    fn clear_run(&self, run: &mut Vec<&GpuStorage>) {
        if let Some(all) = span(run) {
            self.clear(&all);
        }
        run.clear();
    }

    /// Steps every parameter in one dispatch when parameters, slots and accumulators are four
    /// groups of one layout (what `SuperNet` and `Adadelta` allocate). Returns false, having
    /// done nothing, otherwise.
    fn adadelta_at_once(
        &self,
        c: &AdadeltaConfig,
        params: &[ParamStep<'_, GpuStorage>],
    ) -> Result<bool> {
        let Some(slots) = params
            .iter()
            .map(|p| p.grad_slot)
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(false);
        };
        let groups = [
            params.iter().map(|p| p.param).collect::<Vec<_>>(),
            slots,
            params.iter().map(|p| p.square_avg).collect(),
            params.iter().map(|p| p.acc_delta).collect(),
        ];
        let laid_out_alike = (0..params.len()).all(|i| {
            groups
                .iter()
                .all(|g| g[i].first_value() == groups[0][i].first_value())
        });
        let spans: Option<Vec<GpuStorage>> = groups.iter().map(|g| span(g)).collect();
        let Some(spans) = spans.filter(|_| laid_out_alike) else {
            return Ok(false);
        };
        let slots = &groups[1];
        // Runs of parameters without a gradient are cleared with one command each.
        let mut unused: Vec<&GpuStorage> = Vec::new();
        for (p, slot) in params.iter().zip(slots) {
            match p.grad {
                None => {
                    unused.push(slot);
                    continue;
                }
                Some(grad) if !grad.same(slot) => self.copy_into(grad, slot, 0, p.len)?,
                Some(_) => {}
            }
            self.clear_run(&mut unused);
        }
        self.clear_run(&mut unused);
        let len = spans[0].values() as usize;
        let buffers: Vec<Bound> = spans.iter().map(|s| bound(s, len)).collect();
        self.launch(&SHADER, &STEP, &c.params(len), &buffers, len)?;
        Ok(true)
    }
}

impl AdadeltaKernel for GpuBackend {
    fn adadelta_step_all(
        &self,
        c: &AdadeltaConfig,
        params: &[ParamStep<'_, GpuStorage>],
    ) -> Result<()> {
        if self.adadelta_at_once(c, params)? {
            return Ok(());
        }
        for p in params {
            self.adadelta_step(c, p.param, p.grad, p.square_avg, p.acc_delta, p.len)?;
        }
        Ok(())
    }

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
