//! The 3x3, 5x5 and 7x7 forward (and so the input gradient) with AVX2 + FMA, 8 pixels of a row per
//! vector: each image is zero-padded plane by plane, and for each block of 8 output channels
//! and each run of 8 pixels, the 8 channels' sums are 8 vector accumulators. Each tap loads its
//! 8 input values as one vector (straight from the padded row) and feeds 8 FMAs, and each
//! channel's 8 sums are stored as one vector where they lie in `[N, O, H, W]`: the
//! channels-last kernel stores one value per channel and pixel, and the compiler, left to
//! vectorise this layout itself, turned the overlapping row loads into shuffles (1.5-3x
//! slower), hence intrinsics here.
//!
//! Every output element receives the bias, then its terms channel by channel, kernel row by
//! kernel row, tap by tap, each with one fused multiply-add: the same order and rounding as
//! the channels-last kernel built for FMA.

use std::arch::x86_64::{
    __m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_storeu_ps,
};

use super::{block_channels, Lanes, LANES};
use crate::engine::ops::conv2d::Conv2dDims;

/// One image `[C, H, W]` -> zero-padded planes `[C, H + 2p, W + 2p]` in `out`, with `LANES`
/// zeros more: the last run of pixels of the last row reads up to 7 values past its plane.
pub(super) fn pad_planes(d: &Conv2dDims, image: &[f32], out: &mut Vec<f32>) {
    let (h, w, pad) = (d.height, d.width, d.pad());
    let padded_width = w + 2 * pad;
    let padded_plane = (h + 2 * pad) * padded_width;
    out.clear();
    out.resize(d.in_channels * padded_plane + LANES, 0.0);
    for (plane, padded) in image
        .chunks_exact(h * w)
        .zip(out.chunks_exact_mut(padded_plane))
    {
        let padded_rows = padded.chunks_exact_mut(padded_width).skip(pad);
        for (row, padded_row) in plane.chunks_exact(w).zip(padded_rows) {
            padded_row[pad..pad + w].copy_from_slice(row);
        }
    }
}

/// The padded image's geometry, as the kernel walks it.
struct Planes<'a> {
    padded: &'a [f32],
    channels: usize,
    /// Values per padded row.
    row: usize,
    /// Values per padded plane.
    plane: usize,
}

/// One image for a kernel of size `K`: `padded` from [`pad_planes`], `weight_lanes`
/// `[O / 8, C, K, K, 8]`, `out` `[O, H, W]`.
#[target_feature(enable = "avx2,fma")]
pub(super) fn forward_image<const K: usize>(
    d: &Conv2dDims,
    padded: &[f32],
    weight_lanes: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    let (w, hw) = (d.width, d.height * d.width);
    let planes = Planes {
        padded,
        channels: d.in_channels,
        row: w + K - 1,
        plane: (d.height + K - 1) * (w + K - 1),
    };
    let taps = d.in_channels * K * K;
    for (block, block_weights) in weight_lanes.chunks_exact(taps * LANES).enumerate() {
        let (block_weights, _) = block_weights.as_chunks::<LANES>();
        let (first, lanes, start) = block_channels(bias, block, d.out_channels);
        let block_out = &mut out[first * hw..][..lanes * hw];
        for y in 0..d.height {
            for x in (0..w).step_by(LANES) {
                let sums = pixel_sums::<K>(&planes, block_weights, &start, y * planes.row + x);
                let pixels = LANES.min(w - x);
                for (plane_out, sums) in block_out.chunks_exact_mut(hw).zip(sums) {
                    store(&mut plane_out[y * w + x..][..pixels], sums);
                }
            }
        }
    }
}

/// `sums[o]`: output channel `o` of the block at the 8 pixels whose window starts at padded
/// position `at`: its bias, then every tap's term.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn pixel_sums<const K: usize>(
    planes: &Planes,
    filter: &[Lanes],
    start: &Lanes,
    at: usize,
) -> [__m256; LANES] {
    let mut sums: [__m256; LANES] = std::array::from_fn(|o| _mm256_set1_ps(start[o]));
    let mut weights = filter.iter();
    for c in 0..planes.channels {
        for ky in 0..K {
            let row = &planes.padded[c * planes.plane + ky * planes.row + at..][..K - 1 + LANES];
            for kx in 0..K {
                let weight = weights.next().expect("one weight vector per tap");
                let values = load(row[kx..kx + LANES].try_into().expect("8 values"));
                for (sum, &weight) in sums.iter_mut().zip(weight) {
                    *sum = _mm256_fmadd_ps(values, _mm256_set1_ps(weight), *sum);
                }
            }
        }
    }
    sums
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load(values: &Lanes) -> __m256 {
    // SAFETY: `values` holds the 8 f32 read; unaligned loads are allowed.
    unsafe { _mm256_loadu_ps(values.as_ptr()) }
}

/// The first `out.len()` (at most 8) values of `vector` into `out`: one vector store when
/// all 8 go (a copy of a variable length would call `memmove`).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn store(out: &mut [f32], vector: __m256) {
    if let Ok(out) = <&mut Lanes>::try_from(&mut *out) {
        // SAFETY: `out` has room for the 8 f32 written; unaligned stores are allowed.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), vector) };
        return;
    }
    let mut lanes: Lanes = [0.0; LANES];
    // SAFETY: as above, into `lanes`.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), vector) };
    for (out, value) in out.iter_mut().zip(lanes) {
        *out = value;
    }
}
