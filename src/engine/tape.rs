//! The autograd tape: ops are recorded in execution order and walked in reverse.
//!
//! Each op module adds its method to `Tape` (`tape.conv2d(..)`, `tape.relu(..)`) that runs the
//! forward kernel and records the op's `Saved` values, whose `Backward` implementation (in the
//! same module) is the op's backward pass.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use crate::engine::backend::{Backend, GradInto};
use crate::engine::tensor::{Tensor, TensorId};
use crate::error::{Error, Result};

/// What one recorded op saved for its backward pass, and that pass: each op module implements
/// it for its own `Saved`, so the tape names no op.
pub(crate) trait Backward<B: Backend> {
    /// The gradients of the op's inputs, given the gradient of its output.
    fn backward(
        &self,
        backend: &B,
        targets: &GradTargets,
        grad_out: &Tensor<B>,
    ) -> Result<Vec<InputGrad<B>>>;
}

/// A gradient for the tensor `id`, as an op's backward hands it upstream.
pub(crate) type InputGrad<B> = (TensorId, Tensor<B>);

/// Hands `grad` upstream only if `input` wants a gradient (a constant weight gets none).
pub(crate) fn push_if_required<B: Backend>(
    grads: &mut Vec<InputGrad<B>>,
    input: &Tensor<B>,
    grad: B::Storage,
) {
    if input.requires_grad() {
        grads.push((input.id(), Tensor::from_storage(grad, input.shape(), false)));
    }
}

/// Which parameters an op's backward writes straight into their gradient slots: those with a
/// slot that one recorded op used. A parameter used by several gets new buffers, summed as
/// any tensor's gradients are (a slot written twice would lose the first).
pub(crate) struct GradTargets {
    single_use: HashSet<TensorId>,
}

impl GradTargets {
    /// The slots of a layer's weight and bias, where they are targets.
    pub(crate) fn of<'t, B: Backend>(
        &self,
        weight: &'t Tensor<B>,
        bias: &'t Tensor<B>,
    ) -> GradInto<'t, B::Storage> {
        let slot = |t: &'t Tensor<B>| t.grad_slot().filter(|_| self.single_use.contains(&t.id()));
        GradInto {
            weight: slot(weight),
            bias: slot(bias),
        }
    }
}

struct Node<'b, B: Backend> {
    output: TensorId,
    op: Box<dyn Backward<B> + 'b>,
}

/// Records ops run on `backend`. A tape made with `inference` records nothing.
pub struct Tape<'b, B: Backend> {
    backend: &'b B,
    nodes: RefCell<Vec<Node<'b, B>>>,
    recording: bool,
    /// How many recorded ops used each leaf that has a gradient slot.
    slot_uses: RefCell<HashMap<TensorId, usize>>,
}

impl<'b, B: Backend> Tape<'b, B> {
    /// A tape that records every op whose output needs a gradient.
    pub fn new(backend: &'b B) -> Self {
        Tape {
            backend,
            nodes: RefCell::new(Vec::new()),
            recording: true,
            slot_uses: RefCell::new(HashMap::new()),
        }
    }

    /// A tape for evaluation: ops run, nothing is kept for a backward pass.
    pub fn inference(backend: &'b B) -> Self {
        Tape {
            recording: false,
            ..Tape::new(backend)
        }
    }

    pub fn backend(&self) -> &'b B {
        self.backend
    }

    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an op over `inputs` must be recorded (and its output track gradients).
    /// Every op whose backward writes parameter gradients (conv2d, conv_relu_pool, linear)
    /// asks this first, so it also counts the uses of leaves with slots.
    pub(crate) fn tracks(&self, inputs: &[&Tensor<B>]) -> bool {
        let tracked = self.recording && inputs.iter().any(|t| t.requires_grad());
        if tracked {
            let mut uses = self.slot_uses.borrow_mut();
            for t in inputs.iter().filter(|t| t.grad_slot().is_some()) {
                *uses.entry(t.id()).or_default() += 1;
            }
        }
        tracked
    }

    /// Keeps what `saved` makes for the backward pass of `output` when the tape tracks it.
    pub(crate) fn record<S: Backward<B> + 'b>(
        &self,
        output: &Tensor<B>,
        saved: impl FnOnce() -> S,
    ) {
        if self.recording && output.requires_grad() {
            self.nodes.borrow_mut().push(Node {
                output: output.id(),
                op: Box::new(saved()),
            });
        }
    }

    /// Back-propagates from a scalar `loss`: walks the tape in reverse, summing gradients where
    /// a tensor fed several ops. Returns the gradients of the leaves (the parameters).
    ///
    /// On a backend with gradient slots (the GPU), a parameter's gradient is its slot: the next
    /// backward pass over that parameter, on any tape, overwrites it. Read the gradients (or
    /// step the optimizer) before the next backward pass; copy one to keep it.
    pub fn backward(&self, loss: &Tensor<B>) -> Result<Gradients<B>> {
        if loss.numel() != 1 {
            return Err(Error::shape(
                "backward",
                format!("loss must hold one value, got shape {:?}", loss.shape()),
            ));
        }
        let seed = Tensor::from_slice(self.backend, &[1.0], loss.shape())?;
        self.backward_from(loss, seed)
    }

    /// Back-propagates a given gradient of `output` (a vector-Jacobian product): the gradients
    /// of `sum(output * grad_output)` with respect to the leaves.
    pub fn backward_from(
        &self,
        output: &Tensor<B>,
        grad_output: Tensor<B>,
    ) -> Result<Gradients<B>> {
        if grad_output.shape() != output.shape() {
            return Err(Error::shape(
                "backward",
                format!(
                    "gradient {:?} for an output {:?}",
                    grad_output.shape(),
                    output.shape()
                ),
            ));
        }
        let targets = GradTargets {
            single_use: (self.slot_uses.borrow().iter())
                .filter(|(_, &uses)| uses == 1)
                .map(|(&id, _)| id)
                .collect(),
        };
        let mut grads: HashMap<TensorId, Tensor<B>> = HashMap::new();
        grads.insert(output.id(), grad_output);
        for node in self.nodes.borrow().iter().rev() {
            // An intermediate's gradient is used once, here; dropping it frees the buffer.
            let Some(grad_out) = grads.remove(&node.output) else {
                continue;
            };
            for (id, grad) in node.op.backward(self.backend, &targets, &grad_out)? {
                accumulate(self.backend, &mut grads, id, grad)?;
            }
        }
        Ok(Gradients { by_id: grads })
    }
}

fn accumulate<B: Backend>(
    backend: &B,
    grads: &mut HashMap<TensorId, Tensor<B>>,
    id: TensorId,
    grad: Tensor<B>,
) -> Result<()> {
    let summed = match grads.remove(&id) {
        Some(previous) => crate::engine::ops::add::add(backend, &previous, &grad)?,
        None => grad,
    };
    grads.insert(id, summed);
    Ok(())
}

/// Gradients of the leaves that required them, by tensor.
pub struct Gradients<B: Backend> {
    by_id: HashMap<TensorId, Tensor<B>>,
}

impl<B: Backend> Default for Gradients<B> {
    fn default() -> Self {
        Gradients {
            by_id: HashMap::new(),
        }
    }
}

impl<B: Backend> Gradients<B> {
    /// Sets the gradient of `tensor` (for optimizers driven by gradients from elsewhere).
    pub fn insert(&mut self, tensor: &Tensor<B>, grad: Tensor<B>) -> Result<()> {
        if grad.shape() != tensor.shape() {
            return Err(Error::shape(
                "gradients",
                format!(
                    "gradient {:?} for a tensor {:?}",
                    grad.shape(),
                    tensor.shape()
                ),
            ));
        }
        self.by_id.insert(tensor.id(), grad);
        Ok(())
    }

    /// The gradient of `tensor`, or `None` when no recorded op used it (an inactive branch).
    pub fn get(&self, tensor: &Tensor<B>) -> Option<&Tensor<B>> {
        self.by_id.get(&tensor.id())
    }
}
