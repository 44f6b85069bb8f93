//! The weight gradient's transpose of 8 output-gradient planes into one vector per pixel, 8
//! pixels at a time with AVX2: 8 loads, an 8x8 transpose in registers (unpack, shuffle, lane
//! permute: 24 shuffles) and 8 stores, instead of 8 scalar loads and 7 inserts per pixel.

use std::arch::x86_64::{
    __m256, _mm256_add_ps, _mm256_permute2f128_ps, _mm256_set1_ps, _mm256_shuffle_ps,
    _mm256_unpackhi_ps, _mm256_unpacklo_ps,
};

use super::rows_avx2::{load, store};
use super::{Lanes, LANES};

/// `pixels[i][lane] = planes[lane][i]` for 8 planes of `pixels.len()` values, returning each
/// plane's sum, pixels added in order: `super::gather_pixels`, 8 pixels at a time.
#[target_feature(enable = "avx2")]
pub(super) fn gather_pixels(planes: &[f32], pixels: &mut [Lanes]) -> Lanes {
    let hw = pixels.len();
    let (groups, rest) = pixels.as_chunks_mut::<LANES>();
    let mut sums = _mm256_set1_ps(0.0);
    for (g, group) in groups.iter_mut().enumerate() {
        let rows: [__m256; LANES] = std::array::from_fn(|lane| {
            load(
                planes[lane * hw + g * LANES..][..LANES]
                    .try_into()
                    .expect("8 values"),
            )
        });
        for (pixel, vector) in group.iter_mut().zip(transpose(rows)) {
            store(pixel, vector);
            sums = _mm256_add_ps(sums, vector);
        }
    }
    let mut plane_sums: Lanes = [0.0; LANES];
    store(&mut plane_sums, sums);
    let done = groups.len() * LANES;
    for (i, pixel) in (done..).zip(rest) {
        *pixel = std::array::from_fn(|lane| planes[lane * hw + i]);
        for lane in 0..LANES {
            plane_sums[lane] += pixel[lane];
        }
    }
    plane_sums
}

/// Rows `r[k] = [k0 .. k7]` -> columns `[0k 1k .. 7k]`.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose(r: [__m256; LANES]) -> [__m256; LANES] {
    // Pairs of rows interleaved: [00 10 01 11 | 04 14 05 15], ...
    let t: [__m256; LANES] = std::array::from_fn(|i| {
        let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // Four rows' worth per 128-bit half: [00 10 20 30 | 04 14 24 34], ...
    let u = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    // Low halves give columns 0-3, high halves columns 4-7.
    std::array::from_fn(|k| {
        if k < 4 {
            _mm256_permute2f128_ps::<0x20>(u[k], u[k + 4])
        } else {
            _mm256_permute2f128_ps::<0x31>(u[k - 4], u[k])
        }
    })
}
