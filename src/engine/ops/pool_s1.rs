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
//! windows' terms in row-major window order, from 0. The CPU adds every element's terms in the
//! same order (its max backward scatters window by window in row-major order, which hands each
//! pixel the same terms in the same order), so the two backends agree to the rounding of the
//! division (WGSL's need not be exact), nothing more.

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
        if kernel.is_multiple_of(2) {
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
    //! Planes run in parallel. Every element gets its terms in the order of the WGSL kernels:
    //! a window's pixels (max, avg forward) or the windows over a pixel (avg backward) in
    //! row-major order, from the first pixel (max) or from 0 (the sums).
    //!
    //! A plane is copied into a frame `r = K/2` wide of values that change nothing: -inf for
    //! max (never larger, so never the first maximum), 0 for the sums (a sum from 0 is never
    //! -0, so adding 0 leaves its bits). Then every window is whole, and eight neighbouring
    //! outputs (a vector) go through the K x K taps together, each tap one load: the taps in
    //! row-major order give each output its pixels in row-major window order, as the clipped
    //! windows of the WGSL kernels do. Outputs sit at the frame's row stride; the `2r` columns
    //! past each row are scratch, never read back. What the planes share (pixel counts, each
    //! window's first pixel, each tap's index step) is worked out once per call (`Plan`).
    use rayon::prelude::*;

    use super::PoolS1Dims;
    use crate::engine::backends::cpu::vectorised_fn;

    /// Outputs per pass step: a 256-bit vector of f32.
    const LANES: usize = 8;

    /// One worker's buffers for a plane at a time.
    struct Frame {
        /// Window side (`2r + 1`), and the frame's row stride (`width + 2r`).
        taps: usize,
        stride: usize,
        /// The plane at (y + r, x + r), the frame around it, and values more so that every
        /// tap's pass stays inside.
        values: Vec<f32>,
        /// Per output (at the frame's stride, rounded up to whole vectors): the running maximum
        /// or sum.
        acc: Vec<f32>,
        /// Per output: the flat-index step from it to its running maximum's pixel (wrapping
        /// when negative), which gives the argmax without a division.
        tap: Vec<u32>,
    }

    impl Frame {
        fn new(d: &PoolS1Dims) -> Self {
            let r = d.radius();
            let stride = d.width + 2 * r;
            let outputs = (d.height * stride).next_multiple_of(LANES);
            Frame {
                taps: 2 * r + 1,
                stride,
                values: vec![0.0; 2 * r * stride + 2 * r + outputs],
                acc: vec![0.0; outputs],
                tap: vec![0; outputs],
            }
        }

        /// `plane` (or `value(y, x)` of each of its pixels) framed by `fill`.
        fn put(&mut self, d: &PoolS1Dims, fill: f32, mut value: impl FnMut(usize, usize) -> f32) {
            let r = d.radius();
            self.values.fill(fill);
            let rows = self.values[r * self.stride..].chunks_exact_mut(self.stride);
            for (y, row) in rows.take(d.height).enumerate() {
                for (x, v) in row[r..r + d.width].iter_mut().enumerate() {
                    *v = value(y, x);
                }
            }
        }

        /// The accumulator of output (y, x).
        fn at(&self, y: usize, x: usize) -> usize {
            y * self.stride + x
        }
    }

    /// Every output from its start in `acc` and `tap`: the taps in row-major order, a later
    /// value winning only if larger and recording its tap's `deltas` entry (one per tap, in
    /// that order). Eight outputs at a time, kept in registers over the taps.
    fn max_passes(values: &[f32], stride: usize, deltas: &[u32], acc: &mut [f32], tap: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        if crate::engine::backends::cpu::CpuBuild::active().has_avx2() {
            // SAFETY: the active build never exceeds the CPU's, which has AVX2.
            return unsafe { max_avx2::max_passes(values, stride, deltas, acc, tap) };
        }
        max_passes_portable(values, stride, deltas, acc, tap);
    }

    /// The side of a window of `deltas.len()` taps.
    #[inline(always)]
    fn side(deltas: &[u32]) -> usize {
        deltas.len().isqrt()
    }

    /// `max_passes` lane by lane.
    fn max_passes_portable(
        values: &[f32],
        stride: usize,
        deltas: &[u32],
        acc: &mut [f32],
        tap: &mut [u32],
    ) {
        let taps = side(deltas);
        let (acc, _) = acc.as_chunks_mut::<LANES>();
        let (tap, _) = tap.as_chunks_mut::<LANES>();
        for (i, (best, tap)) in acc.iter_mut().zip(tap.iter_mut()).enumerate() {
            for dy in 0..taps {
                for dx in 0..taps {
                    let t = deltas[dy * taps + dx];
                    let values = &values[i * LANES + dy * stride + dx..][..LANES];
                    for lane in 0..LANES {
                        if values[lane] > best[lane] {
                            best[lane] = values[lane];
                            tap[lane] = t;
                        }
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod max_avx2 {
        //! `max_passes` with AVX2: the compiler turns the portable loop's two selects into
        //! branches, so the comparison and the blends are written out.
        use std::arch::x86_64::{
            __m256i, _mm256_blendv_epi8, _mm256_blendv_ps, _mm256_castps_si256, _mm256_cmp_ps,
            _mm256_loadu_ps, _mm256_loadu_si256, _mm256_set1_epi32, _mm256_storeu_ps,
            _mm256_storeu_si256, _CMP_GT_OQ,
        };

        use super::{side, LANES};

        #[target_feature(enable = "avx2")]
        pub(super) fn max_passes(
            values: &[f32],
            stride: usize,
            deltas: &[u32],
            acc: &mut [f32],
            tap: &mut [u32],
        ) {
            let taps = side(deltas);
            let (acc, _) = acc.as_chunks_mut::<LANES>();
            let (tap, _) = tap.as_chunks_mut::<LANES>();
            let reach = (taps - 1) * (stride + 1);
            for (i, (best, tap)) in acc.iter_mut().zip(tap.iter_mut()).enumerate() {
                // Every value the taps read, bounds-checked once.
                let values = &values[i * LANES..][..reach + LANES];
                // SAFETY: `best` and `tap` hold 8 values each, and every load below reads 8
                // values of `values` from `dy * stride + dx <= reach`; unaligned accesses are
                // allowed.
                unsafe {
                    let mut max = _mm256_loadu_ps(best.as_ptr());
                    let mut at = _mm256_loadu_si256(tap.as_ptr().cast::<__m256i>());
                    for dy in 0..taps {
                        for dx in 0..taps {
                            let t = _mm256_set1_epi32(deltas[dy * taps + dx] as i32);
                            let value = _mm256_loadu_ps(values.as_ptr().add(dy * stride + dx));
                            // Ordered: a NaN is never larger, as with `>`.
                            let larger = _mm256_cmp_ps::<_CMP_GT_OQ>(value, max);
                            max = _mm256_blendv_ps(max, value, larger);
                            at = _mm256_blendv_epi8(at, t, _mm256_castps_si256(larger));
                        }
                    }
                    _mm256_storeu_ps(best.as_mut_ptr(), max);
                    _mm256_storeu_si256(tap.as_mut_ptr().cast::<__m256i>(), at);
                }
            }
        }
    }

    /// The AVX2 passes against the lane-by-lane ones: the same maxima and taps, with many
    /// ties (five levels, as after ReLU), a -inf frame, and windows of 1 to 7 taps a side.
    #[cfg(all(test, target_arch = "x86_64"))]
    #[test]
    fn avx2_max_passes_match_lane_by_lane() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        if !std::arch::is_x86_feature_detected!("avx2") {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI machines must have AVX2"
            );
            eprintln!("no AVX2 on this CPU: the vector passes are not used here");
            return;
        }
        let mut rng = StdRng::seed_from_u64(5);
        for (kernel, height, width) in [(1, 3, 5), (3, 14, 14), (5, 7, 9), (7, 2, 3), (3, 1, 1)] {
            let shape = [1, 1, height, width];
            let d = PoolS1Dims::from_shape(&shape, super::PoolKind::Max, kernel);
            let d = d.expect("shape");
            let mut frame = Frame::new(&d);
            let levels = [f32::NEG_INFINITY, 0.0, 0.5, 1.0, 1.5];
            frame.put(&d, f32::NEG_INFINITY, |_, _| levels[rng.random_range(1..5)]);
            let len = frame.acc.len();
            let start: Vec<f32> = (0..len).map(|_| levels[rng.random_range(0..5)]).collect();
            let start_tap: Vec<u32> = (0..len as u32).collect();
            let deltas: Vec<u32> = (1000..).take(frame.taps * frame.taps).collect();
            let (mut acc, mut tap) = (start.clone(), start_tap.clone());
            max_passes_portable(&frame.values, frame.stride, &deltas, &mut acc, &mut tap);
            let (mut vector_acc, mut vector_tap) = (start, start_tap);
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe {
                max_avx2::max_passes(
                    &frame.values,
                    frame.stride,
                    &deltas,
                    &mut vector_acc,
                    &mut vector_tap,
                )
            };
            assert_eq!(acc, vector_acc, "maxima, k{kernel} {height}x{width}");
            assert_eq!(tap, vector_tap, "taps, k{kernel} {height}x{width}");
        }
    }

    vectorised_fn! {
        /// Every output's sum from 0 over the taps in row-major order, into `acc`. Eight
        /// outputs at a time, kept in registers over the taps.
        fn sum_passes(values: &[f32], stride: usize, taps: usize, acc: &mut [f32]) {
            let (acc, _) = acc.as_chunks_mut::<LANES>();
            for (i, out) in acc.iter_mut().enumerate() {
                let mut sums = [0.0f32; LANES];
                for dy in 0..taps {
                    for dx in 0..taps {
                        let values = &values[i * LANES + dy * stride + dx..][..LANES];
                        for lane in 0..LANES {
                            sums[lane] += values[lane];
                        }
                    }
                }
                *out = sums;
            }
        }
    }

    /// What every plane of a call shares, by output (at the frame's stride, as `acc`).
    struct Plan {
        /// The window's in-image pixel count.
        counts: Vec<f32>,
        /// The frame index of the window's first in-image pixel (max).
        first: Vec<usize>,
        /// The flat-index step from the output to that pixel (max; wrapping when negative).
        first_delta: Vec<u32>,
        /// Per tap, row-major: the flat-index step from the output to the tap's pixel.
        deltas: Vec<u32>,
    }

    impl Plan {
        fn new(d: &PoolS1Dims) -> Self {
            let (width, r) = (d.width, d.radius() as isize);
            let frame = Frame::new(d);
            let taps = frame.taps;
            let step = |dy: isize, dx: isize| (dy * width as isize + dx) as u32;
            let mut plan = Plan {
                counts: vec![1.0; frame.acc.len()],
                first: vec![0; frame.acc.len()],
                first_delta: vec![0; frame.acc.len()],
                deltas: (0..taps * taps)
                    .map(|t| step((t / taps) as isize - r, (t % taps) as isize - r))
                    .collect(),
            };
            // Pixel (y, x) of the plane is at frame.at(y, x) + corner in the frame.
            let corner = frame.at(d.radius(), d.radius());
            for y in 0..d.height {
                let rows = d.span(y, d.height);
                for cx in 0..width {
                    let columns = d.span(cx, width);
                    let at = frame.at(y, cx);
                    plan.counts[at] = (rows.len() * columns.len()) as f32;
                    plan.first[at] = corner + frame.at(rows.start, columns.start);
                    let dy = rows.start as isize - y as isize;
                    let dx = columns.start as isize - cx as isize;
                    plan.first_delta[at] = step(dy, dx);
                }
            }
            plan
        }
    }

    /// Each window's maximum and the flat index of its first maximum (a later pixel wins only
    /// if larger). Each window starts from its first in-image pixel, as the WGSL kernel does.
    pub fn max_forward(d: &PoolS1Dims, x: &[f32], out: &mut [f32], argmax: &mut [u32]) {
        let width = d.width;
        let plane_len = d.height * width;
        let plan = Plan::new(d);
        let planes = out[..d.len()]
            .par_chunks_mut(plane_len)
            .zip(argmax[..d.len()].par_chunks_mut(plane_len))
            .enumerate();
        planes.for_each_init(
            || Frame::new(d),
            |f, (plane, (out, argmax))| {
                let base = plane * plane_len;
                let x = &x[base..base + plane_len];
                f.put(d, f32::NEG_INFINITY, |y, cx| x[y * width + cx]);
                for ((acc, &first), (tap, &delta)) in (f.acc.iter_mut().zip(&plan.first))
                    .zip(f.tap.iter_mut().zip(&plan.first_delta))
                {
                    (*acc, *tap) = (f.values[first], delta);
                }
                max_passes(&f.values, f.stride, &plan.deltas, &mut f.acc, &mut f.tap);
                let rows = (out.chunks_exact_mut(width).zip(argmax.chunks_exact_mut(width)))
                    .zip(f.acc.chunks(f.stride).zip(f.tap.chunks(f.stride)));
                for (y, ((out, argmax), (acc, tap))) in rows.enumerate() {
                    out.copy_from_slice(&acc[..width]);
                    let row = (base + y * width) as u32;
                    for (cx, (argmax, &tap)) in argmax.iter_mut().zip(tap).enumerate() {
                        *argmax = (row + cx as u32).wrapping_add(tap);
                    }
                }
            },
        );
    }

    /// Each window's pixels summed from 0 in row-major order, divided by their count.
    pub fn avg_forward(d: &PoolS1Dims, x: &[f32], out: &mut [f32]) {
        let width = d.width;
        let plane_len = d.height * width;
        let plan = Plan::new(d);
        let planes = out[..d.len()].par_chunks_mut(plane_len).enumerate();
        planes.for_each_init(
            || Frame::new(d),
            |f, (plane, out)| {
                let x = &x[plane * plane_len..][..plane_len];
                f.put(d, 0.0, |y, cx| x[y * width + cx]);
                sum_passes(&f.values, f.stride, f.taps, &mut f.acc);
                let rows = out.chunks_exact_mut(width).zip(f.acc.chunks(f.stride));
                for ((out, acc), counts) in rows.zip(plan.counts.chunks(f.stride)) {
                    for ((out, &sum), &count) in out.iter_mut().zip(acc).zip(counts) {
                        *out = sum / count;
                    }
                }
            },
        );
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

    /// Each window's term `grad_out / count`, then each pixel's sum of the terms of the windows
    /// over it. The window centred on (y, x) covers (y', x') exactly when the one centred on
    /// (y', x') covers (y, x), so that is the forward's window sum over the terms, in row-major
    /// window order as the GPU's gather adds them.
    pub fn avg_backward(d: &PoolS1Dims, grad_out: &[f32], grad_x: &mut [f32]) {
        let width = d.width;
        let plane_len = d.height * width;
        let plan = Plan::new(d);
        let planes = grad_x[..d.len()]
            .par_chunks_mut(plane_len)
            .zip(grad_out[..d.len()].par_chunks(plane_len));
        planes.for_each_init(
            || Frame::new(d),
            |f, (grad_x, grad_out)| {
                let stride = f.stride;
                let count = |y: usize, cx: usize| plan.counts[y * stride + cx];
                f.put(d, 0.0, |y, cx| grad_out[y * width + cx] / count(y, cx));
                sum_passes(&f.values, f.stride, f.taps, &mut f.acc);
                for (grad_x, acc) in grad_x.chunks_exact_mut(width).zip(f.acc.chunks(f.stride)) {
                    grad_x.copy_from_slice(&acc[..width]);
                }
            },
        );
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
