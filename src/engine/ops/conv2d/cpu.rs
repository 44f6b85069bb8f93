//! The CPU twin of conv2d.
//!
//! Weights are rearranged to `[O / 8, C, K, K, 8]`, so that 8 output channels go together:
//! one 256-bit vector, with fused multiply-adds where the CPU has AVX2 and FMA (chosen at run
//! time). The forward has three kernels:
//! - 3x3, 5x5 and 7x7 with AVX2 + FMA (`rows_avx2`): 8 pixels of a row per vector over zero-padded
//!   planes, each block's 8 channels as 8 accumulators;
//! - 1x1 (`pointwise`): the same layout, in portable code;
//! - any other case (other kernel sizes, dilation, no AVX2): each image rearranged
//!   channels-last and zero-padded (`[H + 2p, W + 2p, C]`), a vector of 8 channels per pixel,
//!   7 pixels at a time, the taps `D` apart for dilation D.
//!
//! Groups: a grouped convolution runs as the dense one over its block-diagonal weight (zeros
//! where an output does not read an input channel); see `Grouped`.
//!
//! All give every output element the bias, then its terms channel by channel, kernel row by
//! kernel row, as in `shaders/conv2d.wgsl`; the first and the last agree bit for bit (a unit
//! test). Images run in parallel (rayon).
//!
//! The input gradient is this same forward over the output gradient, with the kernel flipped
//! and its channel axes swapped. The weight gradient first lays each block of 8 output-gradient
//! planes out channels-last (one vector per pixel; each plane's sum, the bias gradient, is taken
//! on the way), then, per image, sums input value x the 8 output-channel gradients over the
//! pixels in row-major order, a few kernel rows' sums at a time held in registers; images are
//! then summed in order.

use rayon::prelude::*;

use super::{Conv2dDims, ConvGeometry};
use crate::engine::backends::cpu::vectorised_fn;

#[cfg(target_arch = "x86_64")]
mod rows_avx2;
#[cfg(target_arch = "x86_64")]
mod transpose_avx2;

/// Output channels computed together: one 256-bit vector of f32.
const LANES: usize = 8;
type Lanes = [f32; LANES];

fn blocks(channels: usize) -> usize {
    channels.div_ceil(LANES)
}

/// `a * b + c`, fused when the caller was compiled for FMA.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Whether the active build fuses multiply-adds (the CPU has AVX2 and FMA, and they are not
/// turned off by `SUPERNET_CPU_BUILD`).
#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    crate::engine::backends::cpu::CpuBuild::active().has_fma()
}

/// Defines `$name(args)`: `$generic::<true>(args)` compiled for AVX2 + FMA where the CPU has
/// them (fused multiply-adds), else `$generic::<false>(args)`.
macro_rules! fma_dispatched {
    ($(#[$meta:meta])* $vis:vis fn $name:ident = $generic:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn fused($($arg: $ty),*) {
                $generic::<true>($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if crate::engine::ops::conv2d::cpu::has_avx2_fma() {
                // SAFETY: the CPU has the features `fused` is compiled for.
                return unsafe { fused($($arg),*) };
            }
            $generic::<false>($($arg),*)
        }
    };
}

/// One image `[C, H, W]` -> zero-padded channels-last `[H + 2p, W + 2p, C]` in `out`.
fn pad_channels_last(d: &Conv2dDims, image: &[f32], out: &mut Vec<f32>) {
    let (c_in, h, w, pad) = (d.in_channels, d.height, d.width, d.pad());
    let padded_width = w + 2 * pad;
    out.clear();
    out.resize((h + 2 * pad) * padded_width * c_in, 0.0);
    for y in 0..h {
        let start = ((y + pad) * padded_width + pad) * c_in;
        let padded_row = &mut out[start..start + w * c_in];
        match c_in {
            1 => padded_row.copy_from_slice(&image[y * w..][..w]),
            LANES => interleave_row(image, h * w, y * w, padded_row.as_chunks_mut().0),
            _ => {
                for (c, plane) in image.chunks_exact(h * w).enumerate() {
                    for (x, &value) in plane[y * w..][..w].iter().enumerate() {
                        padded_row[x * c_in + c] = value;
                    }
                }
            }
        }
    }
}

vectorised_fn! {
    /// `row[x][c] = planes[c][first + x]` for 8 planes of `plane_len` values: each pixel's
    /// vector built in registers and stored once.
    fn interleave_row(planes: &[f32], plane_len: usize, first: usize, row: &mut [Lanes]) {
        for (x, pixel) in row.iter_mut().enumerate() {
            *pixel = std::array::from_fn(|c| planes[c * plane_len + first + x]);
        }
    }
}

/// Output block `block`: its first channel, how many channels it has (8 but in a last partial
/// block) and their biases, zero past the last channel.
fn block_channels(bias: &[f32], block: usize, channels: usize) -> (usize, usize, Lanes) {
    let first = block * LANES;
    let lanes = LANES.min(channels - first);
    let mut start: Lanes = [0.0; LANES];
    start[..lanes].copy_from_slice(&bias[first..first + lanes]);
    (first, lanes, start)
}

/// Weights `[O, C, K, K]` -> `[O / 8, C, K, K, 8]`, zero past the last output channel.
fn weights_by_lanes(d: &Conv2dDims, weight: &[f32]) -> Vec<f32> {
    let taps = d.in_channels * d.kernel() * d.kernel();
    let mut lanes = vec![0.0; blocks(d.out_channels) * taps * LANES];
    for (o, filter) in weight.chunks_exact(taps).enumerate() {
        let (block, lane) = (o / LANES, o % LANES);
        for (tap, &value) in filter.iter().enumerate() {
            lanes[(block * taps + tap) * LANES + lane] = value;
        }
    }
    lanes
}

/// out[n, o, y, x] = bias[o] + sum over c, ky, kx of
/// x[n, c, y + ky D - pad, x + kx D - pad] * w[o, c, ky, kx] (c over o's group).
pub fn forward(d: &Conv2dDims, x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    if let Some(grouped) = Grouped::of(d) {
        let dense = grouped.dense_weight(weight);
        return forward(&grouped.dense, x, &dense, bias, out);
    }
    let weight_lanes = weights_by_lanes(d, weight);
    let (in_len, out_len) = (
        d.in_channels * d.height * d.width,
        d.out_channels * d.height * d.width,
    );
    let images = out.par_chunks_mut(out_len).zip(x.par_chunks(in_len));
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() && matches!(d.kernel(), 3 | 5 | 7) && d.dilation() == 1 {
        images.for_each_init(Vec::new, |padded, (out, image)| {
            rows_avx2::pad_planes(d, image, padded);
            // SAFETY (both): the CPU has the features `forward_image` is compiled for.
            match d.kernel() {
                3 => unsafe { rows_avx2::forward_image::<3>(d, padded, &weight_lanes, bias, out) },
                5 => unsafe { rows_avx2::forward_image::<5>(d, padded, &weight_lanes, bias, out) },
                _ => unsafe { rows_avx2::forward_image::<7>(d, padded, &weight_lanes, bias, out) },
            }
        });
        return;
    }
    // A 1x1 kernel has one tap: dilation changes nothing.
    if d.kernel() == 1 {
        images.for_each_init(Vec::new, |image_copy, (out, image)| {
            pointwise::with_slack(image, image_copy);
            pointwise::forward_image(d, image_copy, &weight_lanes, bias, out);
        });
    } else {
        images.for_each_init(Vec::new, |padded, (out, image)| {
            pad_channels_last(d, image, padded);
            forward_image(d, padded, &weight_lanes, bias, out);
        });
    }
}

/// A grouped convolution (G > 1) run as the dense one over its block-diagonal weight: output o
/// has its weights at its group's input channels and zeros at every other. A zero tap adds an
/// exact zero, so each output element still gets the grouped sum's terms in the same order
/// (bias, then its group's channels, kernel row by kernel row: the WGSL kernels' order), and
/// the dense weight gradient's block-diagonal taps are the grouped one's. The fast kernels keep
/// 8 output channels per vector all reading one input channel, which a grouped convolution's
/// do not (a depthwise one's 8 outputs read 8 channels); the dense detour keeps them, at G
/// times the multiply-adds: a depthwise 8-channel 3x3 costs a dense 8 -> 8 3x3, which the row
/// kernels do at full speed.
struct Grouped {
    /// The same convolution with one group.
    dense: Conv2dDims,
    in_per_group: usize,
    out_per_group: usize,
    taps: usize,
}

impl Grouped {
    /// `None` for one group.
    fn of(d: &Conv2dDims) -> Option<Grouped> {
        (d.groups() > 1).then(|| Grouped {
            dense: Conv2dDims {
                geometry: ConvGeometry {
                    groups: 1,
                    ..d.geometry
                },
                ..*d
            },
            in_per_group: d.in_per_group(),
            out_per_group: d.out_per_group(),
            taps: d.kernel() * d.kernel(),
        })
    }

    /// Where output o's weights lie among the dense weight's input channels: its group's first.
    fn first_channel(&self, o: usize) -> usize {
        o / self.out_per_group * self.in_per_group
    }

    /// `[O, C / G, K, K]` -> the block-diagonal `[O, C, K, K]`.
    fn dense_weight(&self, weight: &[f32]) -> Vec<f32> {
        let d = &self.dense;
        let part = self.in_per_group * self.taps;
        let mut dense = vec![0.0; d.weight_len()];
        let rows = dense.chunks_exact_mut(d.in_channels * self.taps);
        for (o, (row, filter)) in rows.zip(weight.chunks_exact(part)).enumerate() {
            row[self.first_channel(o) * self.taps..][..part].copy_from_slice(filter);
        }
        dense
    }

    /// The block-diagonal taps of a dense `[O, C, K, K]` weight (gradient): `[O, C / G, K, K]`.
    fn taps_of(&self, dense: &[f32], grouped: &mut [f32]) {
        let part = self.in_per_group * self.taps;
        let rows = dense.chunks_exact(self.dense.in_channels * self.taps);
        for (o, (row, filter)) in rows.zip(grouped.chunks_exact_mut(part)).enumerate() {
            filter.copy_from_slice(&row[self.first_channel(o) * self.taps..][..part]);
        }
    }
}

mod pointwise {
    //! The 1x1 forward (the Concat SuperNet's channel mix, and its input gradient): 8 pixels
    //! per vector and a block's 8 output channels as 8 accumulators, so each input vector
    //! feeds 8 FMAs and the sums are stored as they lie in `[N, O, H, W]`, a vector per
    //! channel. (3x3 and 5x5 use this layout too, in `rows_avx2`: written portably like this,
    //! their overlapping row loads became shuffles.)
    use super::{add_scaled, block_channels, Conv2dDims, Lanes, LANES};

    /// The image `[C, H, W]` with `LANES` zeros after it: a row's last vector of pixels may
    /// read past the last plane's end.
    pub(super) fn with_slack(image: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(image);
        out.resize(image.len() + LANES, 0.0);
    }

    fma_dispatched! {
        pub(super) fn forward_image = forward_image_lanes(
            d: &Conv2dDims,
            image: &[f32],
            weight_lanes: &[f32],
            bias: &[f32],
            out: &mut [f32],
        )
    }

    /// Each block of 8 output channels, each row in vectors of 8 pixels (the last one stored
    /// in part where the width is not a multiple of 8).
    #[inline(always)]
    fn forward_image_lanes<const FMA: bool>(
        d: &Conv2dDims,
        image: &[f32],
        weight_lanes: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) {
        let (w, hw) = (d.width, d.height * d.width);
        let blocks = weight_lanes.chunks_exact(d.in_channels * LANES);
        for (block, block_weights) in blocks.enumerate() {
            let (block_weights, _) = block_weights.as_chunks::<LANES>();
            let (first, lanes, start) = block_channels(bias, block, d.out_channels);
            for row in (0..hw).step_by(w) {
                for x in (0..w).step_by(LANES) {
                    let sums = pixel_sums::<FMA>(hw, image, block_weights, &start, row + x);
                    let pixels = LANES.min(w - x);
                    for (o, sums) in sums[..lanes].iter().enumerate() {
                        out[(first + o) * hw + row + x..][..pixels]
                            .copy_from_slice(&sums[..pixels]);
                    }
                }
            }
        }
    }

    /// `sums[o][p]`: output channel `o` of the block at `pixel + p`: its bias, then each input
    /// channel's term in order.
    #[inline(always)]
    fn pixel_sums<const FMA: bool>(
        hw: usize,
        image: &[f32],
        filter: &[Lanes],
        start: &Lanes,
        pixel: usize,
    ) -> [Lanes; LANES] {
        let mut sums: [Lanes; LANES] = std::array::from_fn(|o| [start[o]; LANES]);
        for (c, weight) in filter.iter().enumerate() {
            let values: &Lanes = image[c * hw + pixel..][..LANES]
                .try_into()
                .expect("a vector");
            for (sum, &weight) in sums.iter_mut().zip(weight) {
                add_scaled::<FMA>(sum, weight, values);
            }
        }
        sums
    }
}

fma_dispatched! {
    fn forward_image = forward_image_lanes(
        d: &Conv2dDims,
        padded: &[f32],
        weight_lanes: &[f32],
        bias: &[f32],
        out: &mut [f32],
    )
}

/// Pixels of a row computed together: seven independent accumulator vectors keep the FMA units
/// busy while each weight vector is loaded once, and the SuperNet's rows (28 and 14 pixels)
/// divide evenly; other widths finish a row one pixel at a time.
const PIXELS: usize = 7;

/// One image: for each block of 8 output channels, rows of pixels in groups of seven.
#[inline(always)]
fn forward_image_lanes<const FMA: bool>(
    d: &Conv2dDims,
    padded: &[f32],
    weight_lanes: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    let (w, hw) = (d.width, d.height * d.width);
    let taps = d.in_channels * d.kernel() * d.kernel();
    for (block, block_weights) in weight_lanes.chunks_exact(taps * LANES).enumerate() {
        let (block_weights, _) = block_weights.as_chunks::<LANES>();
        let (first, lanes, start) = block_channels(bias, block, d.out_channels);
        let mut store = |y: usize, x: usize, acc: &Lanes| {
            for (lane, &value) in acc[..lanes].iter().enumerate() {
                out[(first + lane) * hw + y * w + x] = value;
            }
        };
        for y in 0..d.height {
            let mut x = 0;
            while x + PIXELS <= w {
                let acc = pixel_sums::<FMA, PIXELS>(d, padded, block_weights, start, y, x);
                acc.iter()
                    .enumerate()
                    .for_each(|(p, acc)| store(y, x + p, acc));
                x += PIXELS;
            }
            for x in x..w {
                store(
                    y,
                    x,
                    &pixel_sums::<FMA, 1>(d, padded, block_weights, start, y, x)[0],
                );
            }
        }
    }
}

/// `pixel_sums`, with the kernel size a constant for the common kernels (1, 3, 5, 7; and 3, 5
/// dilated).
#[inline(always)]
fn pixel_sums<const FMA: bool, const PX: usize>(
    d: &Conv2dDims,
    padded: &[f32],
    filter: &[Lanes],
    start: Lanes,
    y: usize,
    x: usize,
) -> [Lanes; PX] {
    if d.dilation() != 1 {
        return match d.kernel() {
            3 => pixel_sums_taps::<FMA, PX>(d, 3, padded, filter, start, y, x),
            5 => pixel_sums_taps::<FMA, PX>(d, 5, padded, filter, start, y, x),
            _ => pixel_sums_any::<FMA, PX>(d, padded, filter, start, y, x),
        };
    }
    match d.kernel() {
        1 => pixel_sums_k::<FMA, PX, 1>(d, padded, filter, start, y, x),
        3 => pixel_sums_k::<FMA, PX, 3>(d, padded, filter, start, y, x),
        5 => pixel_sums_k::<FMA, PX, 5>(d, padded, filter, start, y, x),
        7 => pixel_sums_k::<FMA, PX, 7>(d, padded, filter, start, y, x),
        _ => pixel_sums_any::<FMA, PX>(d, padded, filter, start, y, x),
    }
}

/// Values a row of the window holds: `PX + K - 1` at most (generic const arithmetic is not
/// stable, so a fixed bound that covers PIXELS = 7 and K = 7).
const WINDOW: usize = 16;

/// Like `pixel_sums_any` for a constant `K`: each window row's `PX + K - 1` input values are
/// loaded once and shared by the `K` taps of the row (instead of one load per tap and pixel).
/// Each output element still receives its terms channel by channel, row by row, tap by tap.
#[inline(always)]
fn pixel_sums_k<const FMA: bool, const PX: usize, const K: usize>(
    d: &Conv2dDims,
    padded: &[f32],
    filter: &[Lanes],
    start: Lanes,
    y: usize,
    x: usize,
) -> [Lanes; PX] {
    const { assert!(PX + K - 1 <= WINDOW) };
    let c_in = d.in_channels;
    let padded_width = d.width + 2 * d.pad();
    let mut acc = [start; PX];
    let mut rows = filter.chunks_exact(K);
    for c in 0..c_in {
        for ky in 0..K {
            let row = (y + ky) * padded_width + x;
            let mut window = [0.0f32; WINDOW];
            for (i, value) in window[..PX + K - 1].iter_mut().enumerate() {
                *value = padded[(row + i) * c_in + c];
            }
            let weights = rows.next().expect("one weight vector per tap");
            for (kx, weight) in weights.iter().enumerate() {
                for (p, acc) in acc.iter_mut().enumerate() {
                    for lane in 0..LANES {
                        acc[lane] = madd::<FMA>(window[kx + p], weight[lane], acc[lane]);
                    }
                }
            }
        }
    }
    acc
}

/// `start` plus every tap's contribution, for the `PX` pixels from (y, x), channel by channel,
/// kernel row by kernel row.
#[inline(always)]
fn pixel_sums_any<const FMA: bool, const PX: usize>(
    d: &Conv2dDims,
    padded: &[f32],
    filter: &[Lanes],
    start: Lanes,
    y: usize,
    x: usize,
) -> [Lanes; PX] {
    pixel_sums_taps::<FMA, PX>(d, d.kernel(), padded, filter, start, y, x)
}

/// `pixel_sums_any` for a kernel of `k` taps a side (a constant where the caller passes one,
/// this being inlined), the taps `D` apart: one load per tap and pixel.
#[inline(always)]
fn pixel_sums_taps<const FMA: bool, const PX: usize>(
    d: &Conv2dDims,
    k: usize,
    padded: &[f32],
    filter: &[Lanes],
    start: Lanes,
    y: usize,
    x: usize,
) -> [Lanes; PX] {
    let (c_in, dilation) = (d.in_channels, d.dilation());
    let padded_width = d.width + 2 * d.pad();
    let mut acc = [start; PX];
    let mut weights = filter.iter();
    for c in 0..c_in {
        for ky in 0..k {
            let row = (y + ky * dilation) * padded_width + x;
            for kx in 0..k {
                let weight = weights.next().expect("one weight vector per tap");
                for (p, acc) in acc.iter_mut().enumerate() {
                    let value = padded[(row + kx * dilation + p) * c_in + c];
                    for lane in 0..LANES {
                        acc[lane] = madd::<FMA>(value, weight[lane], acc[lane]);
                    }
                }
            }
        }
    }
    acc
}

/// grad_x[n, c, iy, ix] = sum over o, ky, kx of grad_out[n, o, iy - ky D + pad, ix - kx D + pad] * w[o, c, ky, kx]:
/// the forward over `grad_out` with the kernel flipped and its channel axes swapped (the
/// same dilation: flipped, tap ky reads `iy + ky D - pad` as the forward does).
pub fn backward_input(d: &Conv2dDims, weight: &[f32], grad_out: &[f32], grad_x: &mut [f32]) {
    if let Some(grouped) = Grouped::of(d) {
        let dense = grouped.dense_weight(weight);
        return backward_input(&grouped.dense, &dense, grad_out, grad_x);
    }
    let k = d.kernel();
    let transposed = Conv2dDims {
        in_channels: d.out_channels,
        out_channels: d.in_channels,
        ..*d
    };
    let mut flipped = vec![0.0; weight.len()];
    for o in 0..d.out_channels {
        for c in 0..d.in_channels {
            for tap in 0..k * k {
                flipped[(c * d.out_channels + o) * k * k + (k * k - 1 - tap)] =
                    weight[(o * d.in_channels + c) * k * k + tap];
            }
        }
    }
    forward(
        &transposed,
        grad_out,
        &flipped,
        &vec![0.0; d.in_channels],
        grad_x,
    );
}

/// Per-image weight gradients `[N, O, C, K, K]`: the image's pixels in row-major order, each
/// adding input value x output gradient to every weight it touches; and per-image bias
/// gradients `[N, O]`: each output-gradient plane summed in row-major order.
pub fn param_partials(
    d: &Conv2dDims,
    x: &[f32],
    grad_out: &[f32],
    weight_partials: &mut [f32],
    bias_partials: &mut [f32],
) {
    if let Some(grouped) = Grouped::of(d) {
        let mut dense = vec![0.0; d.batch * grouped.dense.weight_len()];
        param_partials(&grouped.dense, x, grad_out, &mut dense, bias_partials);
        let images = dense.chunks_exact(grouped.dense.weight_len());
        for (dense, grouped_image) in images.zip(weight_partials.chunks_exact_mut(d.weight_len())) {
            grouped.taps_of(dense, grouped_image);
        }
        return;
    }
    let (in_len, out_len) = (
        d.in_channels * d.height * d.width,
        d.out_channels * d.height * d.width,
    );
    let images = weight_partials
        .par_chunks_mut(d.weight_len())
        .zip(bias_partials.par_chunks_mut(d.out_channels))
        .zip(x.par_chunks(in_len))
        .zip(grad_out.par_chunks(out_len));
    images.for_each_init(
        || (Vec::new(), Vec::new(), Vec::new()),
        |(padded, grad_lanes, grad_pixels), (((weights, bias), image), grad_out)| {
            pad_channels_last(d, image, padded);
            grad_lanes.clear();
            grad_lanes.resize(
                blocks(d.out_channels) * d.in_channels * d.kernel() * d.kernel() * LANES,
                0.0,
            );
            let image_grads = ImageGrads {
                grad_out,
                grad_pixels,
                grad_lanes,
                bias,
            };
            weight_grad_image(d, padded, image_grads);
            from_lanes(d, grad_lanes, weights);
        },
    );
}

/// One image's output gradient and what its parameter gradients are gathered in.
struct ImageGrads<'a> {
    grad_out: &'a [f32],
    /// Scratch: one block's output gradient, a vector per pixel.
    grad_pixels: &'a mut Vec<Lanes>,
    /// `[O / 8, C, K, K, 8]` weight-gradient sums.
    grad_lanes: &'a mut [f32],
    /// `[O]` bias-gradient sums.
    bias: &'a mut [f32],
}

/// `[O / 8, C, K, K, 8]` -> `[O, C, K, K]`.
fn from_lanes(d: &Conv2dDims, lanes: &[f32], weights: &mut [f32]) {
    let taps = d.in_channels * d.kernel() * d.kernel();
    for (o, filter) in weights.chunks_exact_mut(taps).enumerate() {
        let (block, lane) = (o / LANES, o % LANES);
        for (tap, value) in filter.iter_mut().enumerate() {
            *value = lanes[(block * taps + tap) * LANES + lane];
        }
    }
}

/// The output gradient of channels `first..first + 8` of one image, channels-last: one vector
/// of 8 per pixel (zero past the last channel), so each pixel's gradients load as one vector
/// instead of being assembled lane by lane on the stack in the hot loop. Returns each plane's
/// sum in row-major order (the bias gradient), taken on the way.
fn grad_by_pixel(d: &Conv2dDims, grad_out: &[f32], first: usize, pixels: &mut Vec<Lanes>) -> Lanes {
    let hw = d.height * d.width;
    let lanes = LANES.min(d.out_channels - first);
    let planes = &grad_out[first * hw..][..lanes * hw];
    pixels.clear();
    pixels.resize(hw, [0.0; LANES]);
    let mut full = Vec::new();
    let planes = if lanes == LANES {
        planes
    } else {
        full.extend_from_slice(planes);
        full.resize(LANES * hw, 0.0);
        &full
    };
    #[cfg(target_arch = "x86_64")]
    if crate::engine::backends::cpu::CpuBuild::active().has_avx2() {
        // SAFETY: the active build never exceeds the CPU's, which has AVX2.
        return unsafe { transpose_avx2::gather_pixels(planes, pixels) };
    }
    gather_pixels(planes, pixels)
}

vectorised_fn! {
    /// `pixels[i][lane] = planes[lane][i]`, returning each plane's sum. Pixel by pixel, each
    /// pixel's vector is built in registers and stored once (stored lane by lane and loaded
    /// back, it would stall on store forwarding), and the eight sums are eight independent
    /// chains of additions, one vector add per pixel.
    fn gather_pixels(planes: &[f32], pixels: &mut [Lanes]) -> Lanes {
        let hw = pixels.len();
        let mut sums: Lanes = [0.0; LANES];
        for (i, pixel) in pixels.iter_mut().enumerate() {
            let grads: Lanes = std::array::from_fn(|lane| planes[lane * hw + i]);
            *pixel = grads;
            for lane in 0..LANES {
                sums[lane] += grads[lane];
            }
        }
        sums
    }
}

fma_dispatched! {
    fn weight_grad_image = weight_grad_image_lanes(d: &Conv2dDims, padded: &[f32], grads: ImageGrads)
}

/// One image: each pixel adds input value x its 8 output-channel gradients to every tap's sum,
/// pixels in row-major order.
#[inline(always)]
fn weight_grad_image_lanes<const FMA: bool>(d: &Conv2dDims, padded: &[f32], grads: ImageGrads) {
    let taps = d.in_channels * d.kernel() * d.kernel();
    let blocks = grads.grad_lanes.chunks_exact_mut(taps * LANES);
    for (block, (block_sums, bias)) in blocks.zip(grads.bias.chunks_mut(LANES)).enumerate() {
        let (block_sums, _) = block_sums.as_chunks_mut::<LANES>();
        let plane_sums = grad_by_pixel(d, grads.grad_out, block * LANES, grads.grad_pixels);
        bias.copy_from_slice(&plane_sums[..bias.len()]);
        let pixels = grads.grad_pixels.as_slice();
        match d.kernel() {
            1 => kernel_row_sums::<FMA, 1, 8>(d, padded, pixels, block_sums),
            3 => kernel_row_sums::<FMA, 3, 3>(d, padded, pixels, block_sums),
            5 => kernel_row_sums::<FMA, 5, 1>(d, padded, pixels, block_sums),
            7 => kernel_row_sums::<FMA, 7, 1>(d, padded, pixels, block_sums),
            _ => pixel_group_sums::<FMA>(d, padded, pixels, block_sums),
        }
    }
}

/// The taps of a block, `ROWS` kernel rows (one channel's row of `K` taps each) at a time: their
/// `ROWS x K` sums stay in registers for a whole pass over the image, and being independent,
/// the FMAs of one pixel need not wait for each other. 8 sums for 1x1, 9 for 3x3, 5 for 5x5,
/// 7 for 7x7:
/// with two 5x5 rows (10 sums) the compiler spilled sums to the stack, three times slower.
#[inline(always)]
fn kernel_row_sums<const FMA: bool, const K: usize, const ROWS: usize>(
    d: &Conv2dDims,
    padded: &[f32],
    grad_pixels: &[Lanes],
    sums: &mut [Lanes],
) {
    let (kernel_rows, _) = sums.as_chunks_mut::<K>();
    for (group, rows) in kernel_rows.chunks_mut(ROWS).enumerate() {
        let first = group * ROWS;
        if let Ok(rows) = <&mut [[Lanes; K]; ROWS]>::try_from(&mut *rows) {
            *rows = pass_sums::<FMA, K, ROWS>(d, padded, grad_pixels, first);
        } else {
            for (i, row) in rows.iter_mut().enumerate() {
                *row = pass_sums::<FMA, K, 1>(d, padded, grad_pixels, first + i)[0];
            }
        }
    }
}

/// One pass over the image for kernel rows `first..first + ROWS` (row `r` being channel
/// `r / K`, kernel row `r % K`): every tap's sum of input value x output gradients, pixels in
/// row-major order. Taps `D` apart for dilation D.
#[inline(always)]
fn pass_sums<const FMA: bool, const K: usize, const ROWS: usize>(
    d: &Conv2dDims,
    padded: &[f32],
    grad_pixels: &[Lanes],
    first: usize,
) -> [[Lanes; K]; ROWS] {
    let (c_in, dilation) = (d.in_channels, d.dilation());
    let padded_width = d.width + 2 * d.pad();
    // Where each kernel row's first tap reads, relative to the pixel's own padded position,
    // and how far apart a row's taps are.
    let row_offsets: [usize; ROWS] = std::array::from_fn(|r| {
        let (c, ky) = ((first + r) / K, (first + r) % K);
        ky * dilation * padded_width * c_in + c
    });
    let tap_step = dilation * c_in;
    let mut sums = [[[0.0f32; LANES]; K]; ROWS];
    for (y, row) in grad_pixels.chunks_exact(d.width).enumerate() {
        for (x, &grad) in row.iter().enumerate() {
            let pixel = (y * padded_width + x) * c_in;
            let values: [[f32; K]; ROWS] = std::array::from_fn(|r| {
                std::array::from_fn(|kx| padded[pixel + row_offsets[r] + kx * tap_step])
            });
            for (row_sums, row_values) in sums.iter_mut().zip(values) {
                for (sum, value) in row_sums.iter_mut().zip(row_values) {
                    add_scaled::<FMA>(sum, value, &grad);
                }
            }
        }
    }
    sums
}

/// `sum += scale * vector`, lane by lane.
#[inline(always)]
fn add_scaled<const FMA: bool>(sum: &mut Lanes, scale: f32, vector: &Lanes) {
    for lane in 0..LANES {
        sum[lane] = madd::<FMA>(scale, vector[lane], sum[lane]);
    }
}

/// Any kernel size: for each group of seven pixels of a row, every tap's sum in turn.
#[inline(always)]
fn pixel_group_sums<const FMA: bool>(
    d: &Conv2dDims,
    padded: &[f32],
    grad_pixels: &[Lanes],
    sums: &mut [Lanes],
) {
    for (y, row) in grad_pixels.chunks_exact(d.width).enumerate() {
        let (groups, rest) = row.as_chunks::<PIXELS>();
        for (g, grads) in groups.iter().enumerate() {
            add_pixel_products::<FMA, PIXELS>(d, padded, sums, grads, y, g * PIXELS);
        }
        let done = groups.len() * PIXELS;
        for (i, grad) in rest.iter().enumerate() {
            add_pixel_products::<FMA, 1>(d, padded, sums, &[*grad], y, done + i);
        }
    }
}

/// For every tap, adds the products of the `PX` pixels from (y, x), in pixel order.
#[inline(always)]
fn add_pixel_products<const FMA: bool, const PX: usize>(
    d: &Conv2dDims,
    padded: &[f32],
    sums: &mut [Lanes],
    grads: &[Lanes; PX],
    y: usize,
    x: usize,
) {
    let (c_in, k, dilation) = (d.in_channels, d.kernel(), d.dilation());
    let padded_width = d.width + 2 * d.pad();
    let mut sums = sums.iter_mut();
    for c in 0..c_in {
        for ky in 0..k {
            let row = (y + ky * dilation) * padded_width + x;
            for kx in 0..k {
                let sum = sums.next().expect("one gradient vector per tap");
                let mut acc = *sum;
                for (p, grad) in grads.iter().enumerate() {
                    let value = padded[(row + kx * dilation + p) * c_in + c];
                    for lane in 0..LANES {
                        acc[lane] = madd::<FMA>(value, grad[lane], acc[lane]);
                    }
                }
                *sum = acc;
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The AVX2 transpose of output-gradient planes against the portable one: the same
    /// vectors and the same plane sums, for plane sizes with and without a rest of pixels.
    #[test]
    fn avx2_transpose_matches_portable() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI machines must have AVX2"
            );
            eprintln!("no AVX2 on this CPU: the vector transpose is not used here");
            return;
        }
        let mut rng = StdRng::seed_from_u64(5);
        for hw in [784, 196, 13, 5] {
            let planes: Vec<f32> = (0..LANES * hw)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let (mut portable, mut vector) = (vec![[0.0; LANES]; hw], vec![[0.0; LANES]; hw]);
            let portable_sums = gather_pixels(&planes, &mut portable);
            // SAFETY: the CPU has AVX2 (checked above).
            let vector_sums = unsafe { transpose_avx2::gather_pixels(&planes, &mut vector) };
            assert_eq!(portable, vector, "pixels, {hw} per plane");
            assert_eq!(portable_sums, vector_sums, "plane sums, {hw} per plane");
        }
    }

    /// The AVX2 row kernel (3x3, 5x5, 7x7) against the channels-last kernel built for FMA: the same
    /// terms in the same order with the same fused rounding, so the same bits, on shapes that
    /// leave part of a vector of pixels or channels unused.
    #[test]
    fn row_kernel_matches_channels_last_bit_for_bit() {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI machines must have AVX2 and FMA"
            );
            eprintln!("no AVX2 + FMA on this CPU: the row kernel is not used here");
            return;
        }
        let shapes = [
            // batch, in, out, height, width, kernel
            (2, 1, 8, 28, 28, 3),
            (2, 8, 8, 14, 14, 5),
            (1, 3, 5, 7, 5, 3),
            (1, 5, 11, 6, 7, 5),
            (2, 3, 4, 3, 2, 5),
            (3, 2, 5, 1, 1, 3),
            (1, 9, 17, 9, 10, 3),
            (2, 8, 8, 7, 7, 7),
            (1, 3, 9, 5, 11, 7),
        ];
        let mut rng = StdRng::seed_from_u64(7);
        for (batch, in_channels, out_channels, height, width, kernel) in shapes {
            let d = Conv2dDims {
                batch,
                in_channels,
                out_channels,
                height,
                width,
                geometry: ConvGeometry::plain(kernel),
            };
            let mut random = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
            };
            let x = random(batch * in_channels * height * width);
            let weight = random(d.weight_len());
            let bias = random(out_channels);
            let out_len = out_channels * height * width;
            let mut rows = vec![0.0; batch * out_len];
            forward(&d, &x, &weight, &bias, &mut rows);
            let weight_lanes = weights_by_lanes(&d, &weight);
            let mut padded = Vec::new();
            for (n, image) in x.chunks_exact(in_channels * height * width).enumerate() {
                let mut channels_last = vec![0.0; out_len];
                pad_channels_last(&d, image, &mut padded);
                // The FMA build: the CPU has AVX2 and FMA (checked above).
                forward_image(&d, &padded, &weight_lanes, &bias, &mut channels_last);
                let row_kernel = &rows[n * out_len..][..out_len];
                let same = row_kernel
                    .iter()
                    .zip(&channels_last)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{d:?}, image {n}: the two kernels differ");
            }
        }
    }
}
