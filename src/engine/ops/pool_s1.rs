//! pool_s1: K x K pooling, stride 1, padding K/2 (K odd), so the output is the input's size:
//! the search spaces' parameter-free `maxK` and `avgK` choices.
//!
//! Shapes: x `[N, C, H, W]` -> out `[N, C, H, W]`. Output pixel (y, x) pools the window
//! centred on input pixel (y, x), cut off at the border: padding never takes part.
//! - `Max`: the window's maximum; the forward keeps the flat input index of its first maximum
//!   in row-major window order (ties are common after ReLU; PyTorch's CPU kernel keeps the
//!   first too). Backward: each window's gradient goes to its argmax; windows overlap, so an
//!   input pixel gets the sum of the gradients of every window whose argmax it is.
//! - `Avg`: the mean of the window's pixels inside the image (`count_include_pad=False`).
//!   Backward: an input pixel gets `grad_out[w] / count[w]` from every window w over it.
//!
//! Both backwards are gathers over input pixels on the GPU (no atomics), each pixel adding its
//! windows' terms in row-major window order, from 0. The CPU scatters window by window in
//! row-major order instead, which hands every pixel the same terms in the same order: the two
//! backends agree to the rounding of the division (WGSL's need not be exact), nothing more.

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::{computed, output, shared, storage, CpuBackend};
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend};
use crate::engine::backends::reference::ReferenceBackend;
use crate::engine::tape::{Backward, GradTargets, InputGrad, Tape};
use crate::engine::tensor::{Tensor, TensorId};
use crate::error::{Error, Result};

const OP: &str = "pool_s1";

/// What a window computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// The maximum of the window's pixels inside the image.
    Max,
    /// The mean of the window's pixels inside the image.
    Avg,
}

impl PoolKind {
    fn name(self) -> &'static str {
        match self {
            PoolKind::Max => "max",
            PoolKind::Avg => "avg",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolS1Dims {
    pub kind: PoolKind,
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
}

impl PoolS1Dims {
    /// Checks x `[N, C, H, W]` (H, W >= 1) and the kernel (odd, so the window has a centre).
    pub fn from_shape(x: &[usize], kind: PoolKind, kernel: usize) -> Result<Self> {
        let what = || format!("x {x:?}, {} kernel {kernel}", kind.name());
        let [batch, channels, height, width] = *x else {
            return Err(Error::shape(
                OP,
                format!("x must be [N, C, H, W]; got {}", what()),
            ));
        };
        if kernel % 2 == 0 {
            return Err(Error::shape(
                OP,
                format!(
                    "kernel must be odd (>= 1) for same-size output; got {}",
                    what()
                ),
            ));
        }
        if height == 0 || width == 0 {
            return Err(Error::shape(
                OP,
                format!("x must be at least 1x1; got {}", what()),
            ));
        }
        let len = x.iter().try_fold(1usize, |len, &d| len.checked_mul(d));
        if len.is_none_or(|len| len > u32::MAX as usize) {
            return Err(Error::shape(
                OP,
                format!("x has more values than u32 indices address; got {}", what()),
            ));
        }
        Ok(PoolS1Dims {
            kind,
            batch,
            channels,
            height,
            width,
            kernel,
        })
    }

    /// How far a window reaches from its centre: K/2, capped at the image's larger side (a
    /// wider window covers no more pixels), so index sums stay small.
    pub fn radius(&self) -> usize {
        (self.kernel / 2).min(self.height.max(self.width))
    }

    /// Values in x, and in out (the same shape).
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.height * self.width
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.height, self.width]
    }

    /// The rows (or columns) of the window centred on `centre`, inside an image side of `size`.
    fn span(&self, centre: usize, size: usize) -> std::ops::Range<usize> {
        let r = self.radius();
        centre.saturating_sub(r)..(centre + r + 1).min(size)
    }

    fn params(&self) -> PoolS1Params {
        PoolS1Params {
            batch: self.batch as u32,
            channels: self.channels as u32,
            height: self.height as u32,
            width: self.width as u32,
            radius: self.radius() as u32,
        }
    }
}

pub trait PoolS1Kernel: Memory {
    /// `(out, argmax)`; for `Max`, argmax holds the flat input index of each window's first
    /// maximum (row-major window order); for `Avg` there is none.
    fn pool_s1_forward(
        &self,
        d: &PoolS1Dims,
        x: &Self::Storage,
    ) -> Result<(Self::Storage, Option<Self::Indices>)>;
    /// grad_x from grad_out; `argmax` is the forward's (needed for `Max`, ignored for `Avg`).
    fn pool_s1_backward(
        &self,
        d: &PoolS1Dims,
        argmax: Option<&Self::Indices>,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage>;
}

/// The forward's argmax, which a `Max` backward cannot do without.
fn needed<I>(argmax: Option<&I>) -> Result<&I> {
    argmax.ok_or_else(|| Error::invalid(OP, "the max backward needs the forward's argmax"))
}

pub(crate) struct Saved<B: Backend> {
    dims: PoolS1Dims,
    input: TensorId,
    argmax: Option<B::Indices>,
}

impl<B: Backend> Tape<'_, B> {
    /// `kernel` x `kernel` pooling (odd `kernel`), stride 1, padding `kernel / 2`, the padding
    /// never counted: the output has x's shape.
    pub fn pool_s1(&self, x: &Tensor<B>, kind: PoolKind, kernel: usize) -> Result<Tensor<B>> {
        let dims = PoolS1Dims::from_shape(x.shape(), kind, kernel)?;
        let (out, argmax) = self.backend().pool_s1_forward(&dims, x.storage())?;
        let out = Tensor::from_storage(out, &dims.shape(), self.tracks(&[x]));
        self.record(&out, || Saved {
            dims,
            input: x.id(),
            argmax,
        });
        Ok(out)
    }
}

impl<B: Backend> Backward<B> for Saved<B> {
    fn backward(
        &self,
        backend: &B,
        _targets: &GradTargets,
        grad_out: &Tensor<B>,
    ) -> Result<Vec<InputGrad<B>>> {
        let d = &self.dims;
        let grad_x = backend.pool_s1_backward(d, self.argmax.as_ref(), grad_out.storage())?;
        Ok(vec![(
            self.input,
            Tensor::from_storage(grad_x, &d.shape(), false),
        )])
    }
}

pub mod cpu {
    //! Planes run in parallel; within a plane, windows in row-major order, each window's
    //! pixels in row-major order: the order of the WGSL kernels.
    use rayon::prelude::*;

    use super::PoolS1Dims;

    /// Each window's maximum and the flat index of its first maximum (a later pixel wins only
    /// if larger).
    pub fn max_forward(d: &PoolS1Dims, x: &[f32], out: &mut [f32], argmax: &mut [u32]) {
        let (height, width) = (d.height, d.width);
        let plane_len = height * width;
        let planes = out[..d.len()]
            .par_chunks_mut(plane_len)
            .zip(argmax[..d.len()].par_chunks_mut(plane_len))
            .enumerate();
        planes.for_each(|(plane, (out, argmax))| {
            let base = plane * plane_len;
            let x = &x[base..base + plane_len];
            for y in 0..height {
                let rows = d.span(y, height);
                for cx in 0..width {
                    let columns = d.span(cx, width);
                    let mut best = rows.start * width + columns.start;
                    let mut best_value = x[best];
                    for row in rows.clone() {
                        let row = row * width;
                        for j in row + columns.start..row + columns.end {
                            let larger = x[j] > best_value;
                            best_value = if larger { x[j] } else { best_value };
                            best = if larger { j } else { best };
                        }
                    }
                    out[y * width + cx] = best_value;
                    argmax[y * width + cx] = (base + best) as u32;
                }
            }
        });
    }

    /// Each window's pixels summed from 0 in row-major order, divided by their count.
    pub fn avg_forward(d: &PoolS1Dims, x: &[f32], out: &mut [f32]) {
        let (height, width) = (d.height, d.width);
        let plane_len = height * width;
        let planes = out[..d.len()].par_chunks_mut(plane_len).enumerate();
        planes.for_each(|(plane, out)| {
            let base = plane * plane_len;
            let x = &x[base..base + plane_len];
            for y in 0..height {
                let rows = d.span(y, height);
                for cx in 0..width {
                    let columns = d.span(cx, width);
                    let mut sum = 0.0f32;
                    for row in rows.clone() {
                        let row = row * width;
                        for &value in &x[row + columns.start..row + columns.end] {
                            sum += value;
                        }
                    }
                    out[y * width + cx] = sum / (rows.len() * columns.len()) as f32;
                }
            }
        });
    }

    /// Window by window in row-major order, each window's gradient added to its argmax: every
    /// pixel gets its windows' gradients in row-major window order, as the GPU's gather adds
    /// them. A plane's argmax indices all fall inside its own input plane.
    pub fn max_backward(d: &PoolS1Dims, argmax: &[u32], grad_out: &[f32], grad_x: &mut [f32]) {
        let plane_len = d.height * d.width;
        let planes = grad_x[..d.len()]
            .par_chunks_mut(plane_len)
            .zip(argmax[..d.len()].par_chunks(plane_len))
            .zip(grad_out[..d.len()].par_chunks(plane_len))
            .enumerate();
        planes.for_each(|(plane, ((grad_x, argmax), grad_out))| {
            let base = plane * plane_len;
            grad_x.fill(0.0);
            for (&index, &grad) in argmax.iter().zip(grad_out) {
                grad_x[index as usize - base] += grad;
            }
        });
    }

    /// Window by window in row-major order, `grad_out / count` added to each of its pixels:
    /// every pixel gets its windows' terms in row-major window order, as the GPU's gather adds
    /// them.
    pub fn avg_backward(d: &PoolS1Dims, grad_out: &[f32], grad_x: &mut [f32]) {
        let (height, width) = (d.height, d.width);
        let plane_len = height * width;
        let planes = grad_x[..d.len()]
            .par_chunks_mut(plane_len)
            .zip(grad_out[..d.len()].par_chunks(plane_len));
        planes.for_each(|(grad_x, grad_out)| {
            grad_x.fill(0.0);
            for y in 0..height {
                let rows = d.span(y, height);
                for cx in 0..width {
                    let columns = d.span(cx, width);
                    let count = (rows.len() * columns.len()) as f32;
                    let term = grad_out[y * width + cx] / count;
                    for row in rows.clone() {
                        let row = row * width;
                        for grad in &mut grad_x[row + columns.start..row + columns.end] {
                            *grad += term;
                        }
                    }
                }
            }
        });
    }
}

impl PoolS1Kernel for CpuBackend {
    fn pool_s1_forward(
        &self,
        d: &PoolS1Dims,
        x: &Self::Storage,
    ) -> Result<(Self::Storage, Option<Self::Indices>)> {
        let x = &x.borrow();
        let mut out = output(d.len());
        let argmax = match d.kind {
            PoolKind::Max => {
                let mut argmax = vec![0; d.len()];
                cpu::max_forward(d, x, &mut out, &mut argmax);
                Some(shared(argmax))
            }
            PoolKind::Avg => {
                cpu::avg_forward(d, x, &mut out);
                None
            }
        };
        Ok((storage(out), argmax))
    }

    fn pool_s1_backward(
        &self,
        d: &PoolS1Dims,
        argmax: Option<&Self::Indices>,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let grad_out = &grad_out.borrow();
        Ok(match d.kind {
            PoolKind::Max => {
                let argmax = &needed(argmax)?.borrow();
                computed(d.len(), |grad_x| {
                    cpu::max_backward(d, argmax, grad_out, grad_x)
                })
            }
            PoolKind::Avg => computed(d.len(), |grad_x| cpu::avg_backward(d, grad_out, grad_x)),
        })
    }
}

// ---- the reference: the definitions as plain loops ------------------------------------------

/// The reference's window centred on (y, x): every in-image pixel within `kernel / 2` rows and
/// columns, in row-major order, as flat indices into the plane starting at `base`.
fn reference_window(d: &PoolS1Dims, base: usize, y: usize, x: usize) -> Vec<usize> {
    let r = (d.kernel / 2) as isize;
    let mut pixels = Vec::new();
    for dy in -r..=r {
        for dx in -r..=r {
            let (py, px) = (y as isize + dy, x as isize + dx);
            if (0..d.height as isize).contains(&py) && (0..d.width as isize).contains(&px) {
                pixels.push(base + py as usize * d.width + px as usize);
            }
        }
    }
    pixels
}

/// Every window as (output index, its pixels), planes, rows and columns in order.
fn reference_windows(d: &PoolS1Dims) -> Vec<(usize, Vec<usize>)> {
    let mut windows = Vec::new();
    for plane in 0..d.batch * d.channels {
        let base = plane * d.height * d.width;
        for y in 0..d.height {
            for x in 0..d.width {
                windows.push((base + y * d.width + x, reference_window(d, base, y, x)));
            }
        }
    }
    windows
}

impl PoolS1Kernel for ReferenceBackend {
    // x [N][C][H][W] -> out [N][C][H][W] (and, for max, argmax of the same shape)
    fn pool_s1_forward(
        &self,
        d: &PoolS1Dims,
        x: &Self::Storage,
    ) -> Result<(Self::Storage, Option<Self::Indices>)> {
        let x = x.borrow();
        let mut out = vec![0.0; d.len()];
        let mut argmax = vec![0; d.len()];
        for (i, window) in reference_windows(d) {
            match d.kind {
                // The first maximum: a later pixel wins only if strictly larger.
                PoolKind::Max => {
                    let mut best = window[0];
                    for &j in &window {
                        if x[j] > x[best] {
                            best = j;
                        }
                    }
                    out[i] = x[best];
                    argmax[i] = best as u32;
                }
                // The sum in f64, rounded once with the division.
                PoolKind::Avg => {
                    let sum: f64 = window.iter().map(|&j| f64::from(x[j])).sum();
                    out[i] = (sum / window.len() as f64) as f32;
                }
            }
        }
        let argmax = (d.kind == PoolKind::Max).then(|| shared(argmax));
        Ok((storage(out), argmax))
    }

    // grad_out [N][C][H][W] -> grad_x [N][C][H][W], summed in f64 and rounded once: each
    // window's gradient goes to its argmax (max), or grad_out / count to each of its pixels
    // (avg); a pixel under several windows gets the sum of theirs.
    fn pool_s1_backward(
        &self,
        d: &PoolS1Dims,
        argmax: Option<&Self::Indices>,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let grad_out = grad_out.borrow();
        let argmax = match d.kind {
            PoolKind::Max => needed(argmax)?.borrow().clone(),
            PoolKind::Avg => Vec::new(),
        };
        let mut grad_x = vec![0.0f64; d.len()];
        for (w, window) in reference_windows(d) {
            for &p in &window {
                grad_x[p] += match d.kind {
                    PoolKind::Max if argmax[w] as usize == p => f64::from(grad_out[w]),
                    PoolKind::Max => 0.0,
                    PoolKind::Avg => f64::from(grad_out[w]) / window.len() as f64,
                };
            }
        }
        Ok(storage(grad_x.into_iter().map(|g| g as f32).collect()))
    }
}

// ---- the GPU ---------------------------------------------------------------------------------

kernel_params! {
    /// The input's shape (the output's too) and the window's reach, `PoolS1Dims::radius`.
    pub(crate) struct PoolS1Params {
        batch: u32,
        channels: u32,
        height: u32,
        width: u32,
        radius: u32,
    }
}

const MAX_FORWARD: Entry = Entry::new("max_forward", &[1, 2, 3]);
const MAX_BACKWARD: Entry = Entry::new("max_backward", &[4, 5, 6]);
const AVG_FORWARD: Entry = Entry::new("avg_forward", &[7, 8]);
const AVG_BACKWARD: Entry = Entry::new("avg_backward", &[9, 10]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/pool_s1.wgsl"),
    includes: &[],
    params: PoolS1Params::FIELDS,
    entries: &[MAX_FORWARD, MAX_BACKWARD, AVG_FORWARD, AVG_BACKWARD],
};

impl PoolS1Kernel for GpuBackend {
    fn pool_s1_forward(
        &self,
        d: &PoolS1Dims,
        x: &Self::Storage,
    ) -> Result<(Self::Storage, Option<Self::Indices>)> {
        let len = d.len();
        match d.kind {
            PoolKind::Max => {
                let out = self.alloc_values(OP, len)?;
                let argmax = self.launch_into(
                    &SHADER,
                    &MAX_FORWARD,
                    &d.params(),
                    &[bound(x, len), bound(&out, len)],
                    len,
                )?;
                Ok((out, Some(argmax)))
            }
            PoolKind::Avg => {
                let out =
                    self.launch_into(&SHADER, &AVG_FORWARD, &d.params(), &[bound(x, len)], len)?;
                Ok((out, None))
            }
        }
    }

    fn pool_s1_backward(
        &self,
        d: &PoolS1Dims,
        argmax: Option<&Self::Indices>,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        let len = d.len();
        match d.kind {
            PoolKind::Max => self.launch_into(
                &SHADER,
                &MAX_BACKWARD,
                &d.params(),
                &[bound(needed(argmax)?, len), bound(grad_out, len)],
                len,
            ),
            PoolKind::Avg => self.launch_into(
                &SHADER,
                &AVG_BACKWARD,
                &d.params(),
                &[bound(grad_out, len)],
                len,
            ),
        }
    }
}
