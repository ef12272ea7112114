//! The `6 x 16` AVX2 tile: 16 vector registers hold 12 accumulators, two panel vectors and the
//! broadcast.

use std::arch::x86_64::*;

const MR: usize = 6;
const NR: usize = 16;

/// See [`super::Tile::run`].
///
/// # Safety
/// The CPU has AVX2 and FMA; `lhs` holds `depth * MR` and `panel` `depth * NR` values; `dst`
/// holds `rows` rows of `cols` values, `stride` apart.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile(
    rows: usize,
    depth: usize,
    lhs: *const f32,
    panel: *const f32,
    dst: *mut f32,
    stride: usize,
    cols: usize,
    accumulate: bool,
) {
    let kernel = match rows {
        1 => kernel::<1>,
        2 => kernel::<2>,
        3 => kernel::<3>,
        4 => kernel::<4>,
        5 => kernel::<5>,
        _ => kernel::<6>,
    };
    // SAFETY: as the caller guarantees.
    unsafe { kernel(depth, lhs, panel, dst, stride, cols, accumulate) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const R: usize>(
    depth: usize,
    lhs: *const f32,
    panel: *const f32,
    dst: *mut f32,
    stride: usize,
    cols: usize,
    accumulate: bool,
) {
    // The destination rows are far apart in memory and the hardware prefetcher does not guess
    // them, so a tile whose rows are not cached stalls on them after its loop: ask for them now,
    // a whole depth of multiply-adds ahead (each row's 64 bytes may span two cache lines).
    for r in 0..R {
        let row = dst.wrapping_add(r * stride).cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(63));
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for kk in 0..depth {
        // SAFETY: the caller guarantees `depth * NR` panel and `depth * MR` lhs values.
        let (b0, b1, a) = unsafe {
            (
                _mm256_loadu_ps(panel.add(kk * NR)),
                _mm256_loadu_ps(panel.add(kk * NR + 8)),
                lhs.add(kk * MR),
            )
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            let a = _mm256_set1_ps(unsafe { *a.add(r) });
            acc[0] = _mm256_fmadd_ps(a, b0, acc[0]);
            acc[1] = _mm256_fmadd_ps(a, b1, acc[1]);
        }
    }
    // Lane `i` of the mask for the vector at column `from` is set where `from + i < cols`.
    let mask = |from: usize| -> __m256i {
        let n = cols.saturating_sub(from).min(8) as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    };
    let masks = (mask(0), mask(8));
    // SAFETY: as the caller guarantees.
    unsafe {
        if cols == NR {
            write_rows::<true, R>(&acc, dst, stride, accumulate, masks)
        } else {
            write_rows::<false, R>(&acc, dst, stride, accumulate, masks)
        }
    }
}

/// `dst`'s rows `(+)=` the accumulators: the values `masks` select, or with `FULL` all 16 of a
/// row (masked accesses are slow on some CPUs, AMD's Zen among them, so a whole tile reads
/// and writes plainly).
///
/// # Safety
/// The CPU has AVX2; `dst` holds `R` rows `stride` apart with the selected values.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn write_rows<const FULL: bool, const R: usize>(
    acc: &[[__m256; 2]; R],
    dst: *mut f32,
    stride: usize,
    accumulate: bool,
    (m0, m1): (__m256i, __m256i),
) {
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: row `r < R` has the selected values from `dst + r * stride`.
        unsafe {
            let row = dst.add(r * stride);
            let (mut v0, mut v1) = (acc[0], acc[1]);
            if accumulate {
                v0 = _mm256_add_ps(v0, load::<FULL>(row, m0));
                v1 = _mm256_add_ps(v1, load::<FULL>(row.add(8), m1));
            }
            store::<FULL>(row, m0, v0);
            store::<FULL>(row.add(8), m1, v1);
        }
    }
}

/// The 8 values at `at`, or with `FULL` false those `mask` selects.
///
/// # Safety
/// The CPU has AVX2; the selected values are readable.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load<const FULL: bool>(at: *const f32, mask: __m256i) -> __m256 {
    // SAFETY: as the caller guarantees.
    unsafe {
        if FULL {
            _mm256_loadu_ps(at)
        } else {
            _mm256_maskload_ps(at, mask)
        }
    }
}

/// Writes `value` to the 8 values at `at`, or with `FULL` false to those `mask` selects.
///
/// # Safety
/// The CPU has AVX2; the selected values are writable.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store<const FULL: bool>(at: *mut f32, mask: __m256i, value: __m256) {
    // SAFETY: as the caller guarantees.
    unsafe {
        if FULL {
            _mm256_storeu_ps(at, value)
        } else {
            _mm256_maskstore_ps(at, mask, value)
        }
    }
}
