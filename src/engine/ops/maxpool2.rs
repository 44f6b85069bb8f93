//! maxpool2: 2x2 max-pool, stride 2, floor on odd sizes (a 7x7 map pools to 3x3).
//!
//! Shapes: x `[N, C, H, W]` -> out `[N, C, H/2, W/2]`. The forward keeps the flat input index of
//! the first maximum in row-major window order (ties are common after ReLU, as in PyTorch);
//! the backward is a gather over input elements, so it needs no atomics.

use crate::engine::backend::{Backend, Memory};
use crate::engine::backends::cpu::{computed, output, shared, storage, CpuBackend};
use crate::engine::backends::gpu::kernels::{kernel_params, Entry, KernelParams, ShaderSpec};
use crate::engine::backends::gpu::{bound, GpuBackend};
use crate::engine::tape::{Backward, GradTargets, InputGrad, Tape};
use crate::engine::tensor::{Tensor, TensorId};
use crate::error::{Error, Result};

const OP: &str = "maxpool2";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2Dims {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Pool2Dims {
    pub fn from_shape(x: &[usize]) -> Result<Self> {
        let [batch, channels, height, width] = *x else {
            return Err(Error::shape(
                OP,
                format!("x must be [N, C, H, W]; got {x:?}"),
            ));
        };
        if height < 2 || width < 2 {
            return Err(Error::shape(
                OP,
                format!("x must be at least 2x2; got {x:?}"),
            ));
        }
        Ok(Pool2Dims {
            batch,
            channels,
            height,
            width,
        })
    }

    pub fn out_height(&self) -> usize {
        self.height / 2
    }

    pub fn out_width(&self) -> usize {
        self.width / 2
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.channels * self.height * self.width
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.channels * self.out_height() * self.out_width()
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [
            self.batch,
            self.channels,
            self.out_height(),
            self.out_width(),
        ]
    }

    fn params(&self) -> Pool2Params {
        Pool2Params {
            batch: self.batch as u32,
            channels: self.channels as u32,
            height: self.height as u32,
            width: self.width as u32,
        }
    }
}

pub trait MaxPool2Kernel: Memory {
    /// `(out, argmax)`: argmax holds the flat input index of each window's first maximum.
    fn maxpool2_forward(
        &self,
        d: &Pool2Dims,
        x: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Indices)>;
    fn maxpool2_backward(
        &self,
        d: &Pool2Dims,
        argmax: &Self::Indices,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage>;
}

pub(crate) struct Saved<B: Backend> {
    dims: Pool2Dims,
    input: TensorId,
    argmax: B::Indices,
}

impl<B: Backend> Tape<'_, B> {
    pub fn maxpool2(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        let dims = Pool2Dims::from_shape(x.shape())?;
        let (out, argmax) = self.backend().maxpool2_forward(&dims, x.storage())?;
        let out = Tensor::from_storage(out, &dims.output_shape(), self.tracks(&[x]));
        self.record(&out, || {
            Saved {
                dims,
                input: x.id(),
                argmax,
            }
        });
        Ok(out)
    }
}

impl<B: Backend> Backward<B> for Saved<B> {
    fn backward(&self, backend: &B, _targets: &GradTargets, grad_out: &Tensor<B>) -> Result<Vec<InputGrad<B>>> {
        let saved = self;
    let d = &saved.dims;
    let grad_x = backend.maxpool2_backward(d, &saved.argmax, grad_out.storage())?;
    let shape = [d.batch, d.channels, d.height, d.width];
    Ok(vec![(
        saved.input,
        Tensor::from_storage(grad_x, &shape, false),
    )])
}
}

pub mod cpu {
    use rayon::prelude::*;

    use super::Pool2Dims;

    /// Window (oy, ox) scanned row by row; a later value wins only if larger. Planes run in
    /// parallel.
    pub fn forward(d: &Pool2Dims, x: &[f32], out: &mut [f32], argmax: &mut [u32]) {
        let plane_in = d.height * d.width;
        let plane_out = d.out_height() * d.out_width();
        let planes = out
            .par_chunks_mut(plane_out)
            .zip(argmax.par_chunks_mut(plane_out))
            .enumerate();
        planes.for_each(|(plane, (out, argmax))| {
            let base = plane * plane_in;
            let x = &x[base..base + plane_in];
            #[cfg(target_arch = "x86_64")]
            if crate::engine::backends::cpu::CpuBuild::active().has_avx2() {
                // SAFETY: the active build never exceeds the CPU's, which has AVX2.
                return unsafe { rows_avx2::pool_plane(x, d.width, base as u32, out, argmax) };
            }
            pool_plane(x, d.width, base as u32, out, argmax);
        });
    }

    /// One plane, window by window.
    fn pool_plane(x: &[f32], width: usize, base: u32, out: &mut [f32], argmax: &mut [u32]) {
        let out_width = width / 2;
        let rows = out
            .chunks_exact_mut(out_width)
            .zip(argmax.chunks_exact_mut(out_width));
        for (oy, (out, argmax)) in rows.enumerate() {
            let row = Rows::new(x, width, oy);
            for (ox, (out, argmax)) in out.iter_mut().zip(argmax.iter_mut()).enumerate() {
                (*out, *argmax) = row.window(ox, base);
            }
        }
    }

    /// The two input rows under output row `oy`.
    struct Rows<'a> {
        top: &'a [f32],
        bottom: &'a [f32],
        width: usize,
        /// Flat index of the top row's first value in the plane.
        start: usize,
    }

    impl<'a> Rows<'a> {
        fn new(plane: &'a [f32], width: usize, oy: usize) -> Self {
            let start = 2 * oy * width;
            Rows {
                top: &plane[start..start + width],
                bottom: &plane[start + width..start + 2 * width],
                width,
                start,
            }
        }

        /// Window `ox`: its maximum and the flat index of its first maximum (plus `base`).
        /// Comparisons select rather than branch (ties after ReLU are common).
        #[inline(always)]
        fn window(&self, ox: usize, base: u32) -> (f32, u32) {
            let (top, bottom, width) = (self.top, self.bottom, self.width);
            let mut best = top[2 * ox];
            let mut offset = 0;
            for (value, candidate) in [
                (top[2 * ox + 1], 1),
                (bottom[2 * ox], width),
                (bottom[2 * ox + 1], width + 1),
            ] {
                let larger = value > best;
                best = if larger { value } else { best };
                offset = if larger { candidate } else { offset };
            }
            (best, base + (self.start + 2 * ox + offset) as u32)
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod rows_avx2 {
        //! Eight windows at a time with AVX2: each row's values split into even and odd
        //! columns (two shuffles and a lane permute per 16 values), then the window's four
        //! values compared in the scalar order, the index of the winner kept by blending.
        use std::arch::x86_64::{
            __m256, __m256i, _mm256_add_epi32, _mm256_blendv_epi8, _mm256_blendv_ps,
            _mm256_castpd_ps, _mm256_castps_pd, _mm256_castps_si256, _mm256_cmp_ps,
            _mm256_loadu_ps, _mm256_permute4x64_pd, _mm256_set1_epi32, _mm256_setr_epi32,
            _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_storeu_si256, _CMP_GT_OQ,
        };

        use super::Rows;

        /// Windows per vector.
        const LANES: usize = 8;

        /// `super::pool_plane`, eight windows of a row at a time, the rest one by one.
        #[target_feature(enable = "avx2")]
        pub(super) fn pool_plane(
            x: &[f32],
            width: usize,
            base: u32,
            out: &mut [f32],
            argmax: &mut [u32],
        ) {
            let out_width = width / 2;
            let rows = out
                .chunks_exact_mut(out_width)
                .zip(argmax.chunks_exact_mut(out_width));
            for (oy, (out, argmax)) in rows.enumerate() {
                let row = Rows::new(x, width, oy);
                let (out_groups, out_rest) = out.as_chunks_mut::<LANES>();
                let (argmax_groups, argmax_rest) = argmax.as_chunks_mut::<LANES>();
                for (g, (out, argmax)) in out_groups.iter_mut().zip(argmax_groups).enumerate() {
                    eight_windows(&row, g * LANES, base, out, argmax);
                }
                let done = out_groups.len() * LANES;
                let rest = out_rest.iter_mut().zip(argmax_rest.iter_mut());
                for (ox, (out, argmax)) in (done..).zip(rest) {
                    (*out, *argmax) = row.window(ox, base);
                }
            }
        }

        /// Windows `ox..ox + 8` of the row.
        #[inline]
        #[target_feature(enable = "avx2")]
        fn eight_windows(
            row: &Rows,
            ox: usize,
            base: u32,
            out: &mut [f32; LANES],
            argmax: &mut [u32; LANES],
        ) {
            let (top_left, top_right) = even_odd(&row.top[2 * ox..][..2 * LANES]);
            let (bottom_left, bottom_right) = even_odd(&row.bottom[2 * ox..][..2 * LANES]);
            let width = row.width as i32;
            let mut best = top_left;
            let mut offset = _mm256_set1_epi32(0);
            for (values, candidate) in [
                (top_right, 1),
                (bottom_left, width),
                (bottom_right, width + 1),
            ] {
                let larger = _mm256_cmp_ps::<_CMP_GT_OQ>(values, best);
                best = _mm256_blendv_ps(best, values, larger);
                let candidate = _mm256_set1_epi32(candidate);
                offset = _mm256_blendv_epi8(offset, candidate, _mm256_castps_si256(larger));
            }
            let first = _mm256_set1_epi32((base as usize + row.start + 2 * ox) as i32);
            let columns = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
            let index = _mm256_add_epi32(_mm256_add_epi32(first, columns), offset);
            // SAFETY: `out` and `argmax` each hold the 8 values written; unaligned stores are allowed.
            unsafe {
                _mm256_storeu_ps(out.as_mut_ptr(), best);
                _mm256_storeu_si256(argmax.as_mut_ptr().cast::<__m256i>(), index);
            }
        }

        /// 16 values -> (the 8 at even positions, the 8 at odd positions), in order.
        #[inline]
        #[target_feature(enable = "avx2")]
        fn even_odd(values: &[f32]) -> (__m256, __m256) {
            let values: &[f32; 2 * LANES] = values.try_into().expect("16 values");
            // SAFETY: `values` holds the 16 f32 read; unaligned loads are allowed.
            let (low, high) = unsafe {
                (
                    _mm256_loadu_ps(values.as_ptr()),
                    _mm256_loadu_ps(values[LANES..].as_ptr()),
                )
            };
            // Within each 128-bit half: [l0 l2 h0 h2 | l4 l6 h4 h6]; then the 64-bit pairs
            // reordered to [l0 l2 l4 l6 h0 h2 h4 h6].
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(low, high);
            let odd = _mm256_shuffle_ps::<0b11_01_11_01>(low, high);
            let in_order = |v: __m256| {
                _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
            };
            (in_order(even), in_order(odd))
        }
    }

    /// The AVX2 pool against the window-by-window one: the same maxima and the same argmax,
    /// with many ties (values drawn from five levels, as after ReLU) and widths that leave
    /// windows for the one-by-one rest.
    #[cfg(all(test, target_arch = "x86_64"))]
    #[test]
    fn avx2_pool_matches_window_by_window() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        if !std::arch::is_x86_feature_detected!("avx2") {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI machines must have AVX2"
            );
            eprintln!("no AVX2 on this CPU: the vector pool is not used here");
            return;
        }
        let mut rng = StdRng::seed_from_u64(3);
        for (height, width) in [(28, 28), (14, 14), (5, 9), (4, 34), (3, 17)] {
            let x: Vec<f32> = (0..height * width)
                .map(|_| f32::from(rng.random_range(0u8..5)) * 0.5)
                .collect();
            let outputs = (height / 2) * (width / 2);
            let (mut out, mut argmax) = (vec![0.0; outputs], vec![0; outputs]);
            let (mut vector_out, mut vector_argmax) = (vec![0.0; outputs], vec![0; outputs]);
            pool_plane(&x, width, 100, &mut out, &mut argmax);
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { rows_avx2::pool_plane(&x, width, 100, &mut vector_out, &mut vector_argmax) };
            assert_eq!(out, vector_out, "maxima, {height}x{width}");
            assert_eq!(argmax, vector_argmax, "argmax, {height}x{width}");
        }
    }

    /// Each window's gradient goes to its argmax. Windows do not overlap, so this scatter
    /// writes every input element at most once: the same result as the GPU's gather.
    /// Planes run in parallel: a plane's argmax indices all fall inside its own input plane.
    pub fn backward(d: &Pool2Dims, argmax: &[u32], grad_out: &[f32], grad_x: &mut [f32]) {
        let plane_in = d.height * d.width;
        let plane_out = d.out_height() * d.out_width();
        let planes = grad_x[..d.input_len()]
            .par_chunks_mut(plane_in)
            .zip(argmax[..d.output_len()].par_chunks(plane_out))
            .zip(grad_out[..d.output_len()].par_chunks(plane_out))
            .enumerate();
        planes.for_each(|(plane, ((grad_x, argmax), grad_out))| {
            let base = plane * plane_in;
            grad_x.fill(0.0);
            for (&index, &grad) in argmax.iter().zip(grad_out) {
                grad_x[index as usize - base] = grad;
            }
        });
    }
}

impl MaxPool2Kernel for CpuBackend {
    fn maxpool2_forward(
        &self,
        d: &Pool2Dims,
        x: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Indices)> {
        let mut out = output(d.output_len());
        let mut argmax = vec![0; d.output_len()];
        cpu::forward(d, &x.borrow(), &mut out, &mut argmax);
        Ok((storage(out), shared(argmax)))
    }

    fn maxpool2_backward(
        &self,
        d: &Pool2Dims,
        argmax: &Self::Indices,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        Ok(computed(d.input_len(), |grad_x| {
            cpu::backward(d, &argmax.borrow(), &grad_out.borrow(), grad_x)
        }))
    }
}

kernel_params! {
    /// The input's shape; the output's follows.
    pub(crate) struct Pool2Params { batch: u32, channels: u32, height: u32, width: u32 }
}

const FORWARD: Entry = Entry::new("forward", &[1, 2, 3]);
const BACKWARD: Entry = Entry::new("backward", &[4, 5, 6]);

pub(crate) const SHADER: ShaderSpec = ShaderSpec {
    name: OP,
    source: include_str!("../../../shaders/maxpool2.wgsl"),
    includes: &[],
    params: Pool2Params::FIELDS,
    entries: &[FORWARD, BACKWARD],
};

impl MaxPool2Kernel for GpuBackend {
    fn maxpool2_forward(
        &self,
        d: &Pool2Dims,
        x: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Indices)> {
        let out = self.alloc_values(OP, d.output_len())?;
        let argmax = self.launch_into(
            &SHADER,
            &FORWARD,
            &d.params(),
            &[bound(x, d.input_len()), bound(&out, d.output_len())],
            d.output_len(),
        )?;
        Ok((out, argmax))
    }

    fn maxpool2_backward(
        &self,
        d: &Pool2Dims,
        argmax: &Self::Indices,
        grad_out: &Self::Storage,
    ) -> Result<Self::Storage> {
        self.launch_into(
            &SHADER,
            &BACKWARD,
            &d.params(),
            &[
                bound(argmax, d.output_len()),
                bound(grad_out, d.output_len()),
            ],
            d.input_len(),
        )
    }
}
