//! The `8 x 32` AVX-512 tile: 32 vector registers hold 16 accumulators, two panel vectors and
//! the broadcast.

use std::arch::x86_64::*;

const MR: usize = 8;
const NR: usize = 32;

/// See [`super::Tile::run`].
///
/// # Safety
/// The CPU has AVX-512F; `lhs` holds `depth * MR` and `panel` `depth * NR` values; `dst` holds
/// `rows` rows of `cols` values, `stride` apart.
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
        6 => kernel::<6>,
        7 => kernel::<7>,
        _ => kernel::<8>,
    };
    // SAFETY: as the caller guarantees.
    unsafe { kernel(depth, lhs, panel, dst, stride, cols, accumulate) }
}

#[target_feature(enable = "avx512f")]
unsafe fn kernel<const R: usize>(
    depth: usize,
    lhs: *const f32,
    panel: *const f32,
    dst: *mut f32,
    stride: usize,
    cols: usize,
    accumulate: bool,
) {
    // A wide destination's rows (a step's gates, a large vocabulary's logits) are far apart,
    // and in a product of many rows they have left L2 by the time a tile adds to them: ask for
    // them a whole depth of multiply-adds ahead (each row's 128 bytes may span three lines).
    for r in 0..R {
        let row = dst.wrapping_add(r * stride).cast::<i8>();
        for offset in [0, 64, 127] {
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(offset));
        }
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for kk in 0..depth {
        // SAFETY: the caller guarantees `depth * NR` panel and `depth * MR` lhs values.
        let (b0, b1, a) = unsafe {
            (
                _mm512_loadu_ps(panel.add(kk * NR)),
                _mm512_loadu_ps(panel.add(kk * NR + 16)),
                lhs.add(kk * MR),
            )
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            let a = _mm512_set1_ps(unsafe { *a.add(r) });
            acc[0] = _mm512_fmadd_ps(a, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(a, b1, acc[1]);
        }
    }
    let mask = |from: usize| -> __mmask16 {
        let n = cols.saturating_sub(from).min(16);
        ((1u32 << n) - 1) as __mmask16
    };
    let (m0, m1) = (mask(0), mask(16));
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: masked accesses touch only the first `cols` values of row `r < rows`.
        unsafe {
            let row = dst.add(r * stride);
            let (mut v0, mut v1) = (acc[0], acc[1]);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row.add(16)));
            }
            _mm512_mask_storeu_ps(row, m0, v0);
            _mm512_mask_storeu_ps(row.add(16), m1, v1);
        }
    }
}
