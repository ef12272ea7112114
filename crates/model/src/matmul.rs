//! Single-precision matrix products for the fused recurrence.
//!
//! Where the CPU has AVX-512, products run on our own kernel: the right-hand side is packed
//! once into column panels ([`Rhs::packed`]) and reused, so the recurrent weight is packed once
//! per sequence instead of once per time step, and each `8 x 32` tile of the result is
//! computed in registers (32 vector registers hold 16 accumulators, the two panel vectors and
//! the broadcast). Elsewhere, and for one-off products, the `gemm` crate runs them.

use gemm::Parallelism;
use rayon::prelude::*;

/// A read-only matrix inside a slice, given by its sizes and strides.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Operand<'a> {
    /// A row-major `[rows, cols]` matrix whose rows are `row_stride` apart.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major `[cols, rows]` matrix whose rows are `row_stride` apart.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: row_stride,
        }
    }

    #[cfg(test)]
    fn at(&self, row: usize, col: usize) -> f32 {
        self.data[row * self.row_stride + col * self.col_stride]
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "operand out of bounds");
        }
    }
}

/// Rows of one register tile.
const MR: usize = 8;
/// Columns of one register tile and of one packed panel: two 16-float vectors.
const NR: usize = 32;
/// The depth of one packed block: a `KC x NR` panel (32 KiB) stays in L1 across a row block.
const KC: usize = 256;
/// Rows per parallel task; their packed block (`MC x KC`, 256 KiB) stays in L2.
const MC: usize = 256;

/// Packing costs a copy of the right-hand side; below this many left-hand rows the `gemm`
/// crate's unpacked path is as fast.
const PACK_ROWS: usize = 64;

/// Parallel products only pay off above this many multiply-adds (flex's own threshold).
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// The right-hand side of products: packed into panels where our kernel runs, as given
/// elsewhere.
pub(crate) enum Rhs<'a> {
    /// `KC`-deep blocks of `NR`-column panels, zero-padded past the last column.
    Packed {
        panels: Vec<f32>,
        rows: usize,
        cols: usize,
    },
    Plain(Operand<'a>),
}

impl<'a> Rhs<'a> {
    /// Packs `rhs` where the AVX-512 kernel runs.
    pub fn packed(rhs: Operand<'a>) -> Self {
        rhs.check();
        if !avx512::available() {
            return Rhs::Plain(rhs);
        }
        let (rows, cols) = (rhs.rows, rhs.cols);
        let width = cols.div_ceil(NR) * NR;
        let mut panels = crate::buffer::zeros(rows * width);
        for k0 in (0..rows).step_by(KC) {
            let depth = KC.min(rows - k0);
            let block = &mut panels[k0 * width..(k0 + depth) * width];
            block
                .par_chunks_mut(depth * NR)
                .enumerate()
                .for_each(|(p, panel)| {
                    let columns = p * NR..cols.min(p * NR + NR);
                    // Read along whichever direction is contiguous in memory.
                    if rhs.row_stride == 1 {
                        for (j, column) in columns.enumerate() {
                            let start = column * rhs.col_stride + k0;
                            let values = &rhs.data[start..start + depth];
                            for (row, &value) in panel.chunks_exact_mut(NR).zip(values) {
                                row[j] = value;
                            }
                        }
                    } else {
                        debug_assert_eq!(rhs.col_stride, 1);
                        let width = columns.len();
                        for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
                            let start = (k0 + kk) * rhs.row_stride + columns.start;
                            row[..width].copy_from_slice(&rhs.data[start..start + width]);
                        }
                    }
                });
        }
        Rhs::Packed { panels, rows, cols }
    }

    /// Packs `rhs` where that pays: when it will meet at least `PACK_ROWS` left-hand rows in
    /// all (one product or many).
    pub fn for_rows(rhs: Operand<'a>, rows: usize) -> Self {
        if rows >= PACK_ROWS {
            Self::packed(rhs)
        } else {
            Self::plain(rhs)
        }
    }

    /// `rhs` as it is, for the `gemm` crate's product.
    fn plain(rhs: Operand<'a>) -> Self {
        rhs.check();
        Rhs::Plain(rhs)
    }

    fn rows(&self) -> usize {
        match self {
            Rhs::Packed { rows, .. } => *rows,
            Rhs::Plain(operand) => operand.rows,
        }
    }

    fn cols(&self) -> usize {
        match self {
            Rhs::Packed { cols, .. } => *cols,
            Rhs::Plain(operand) => operand.cols,
        }
    }
}

/// Row-major `dst[m, n] (+)= lhs[m, k] * rhs[k, n]`, with `dst`'s rows `dst_stride` apart.
/// `parallel` lets a large product use every core.
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_stride: usize,
    accumulate: bool,
    lhs: Operand<'_>,
    rhs: &Rhs<'_>,
    parallel: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols());
    assert_eq!(k, rhs.rows(), "inner dimensions differ");
    lhs.check();
    assert!(m == 0 || n == 0 || (m - 1) * dst_stride + n <= dst.len());
    let parallel = parallel && m * n * k >= PARALLEL_WORK;
    match rhs {
        Rhs::Plain(rhs) => gemm_crate(dst, dst_stride, accumulate, lhs, rhs, parallel),
        Rhs::Packed { panels, .. } => {
            if m == 0 || n == 0 {
                return;
            }
            // Each task owns `block` rows of `dst` (the last one may be short): at most `MC`,
            // and as many tasks as a multiple of the thread count, so no thread idles at the end.
            let block = if parallel {
                let tasks = m
                    .div_ceil(MC)
                    .next_multiple_of(rayon::current_num_threads());
                m.div_ceil(tasks).next_multiple_of(MR)
            } else {
                MC
            };
            let run = |(index, dst): (usize, &mut [f32])| {
                let rows = block.min(m - index * block);
                packed_rows(
                    dst,
                    dst_stride,
                    accumulate,
                    lhs,
                    index * block,
                    rows,
                    panels,
                    n,
                );
            };
            let dst = &mut dst[..(m - 1) * dst_stride + n];
            if parallel {
                dst.par_chunks_mut(block * dst_stride)
                    .enumerate()
                    .for_each(run);
            } else {
                dst.chunks_mut(block * dst_stride).enumerate().for_each(run);
            }
        }
    }
}

/// `rows` rows of the product from `lhs` row `first`, into `dst` (which starts at that row).
#[allow(clippy::too_many_arguments)]
fn packed_rows(
    dst: &mut [f32],
    dst_stride: usize,
    accumulate: bool,
    lhs: Operand<'_>,
    first: usize,
    rows: usize,
    panels: &[f32],
    n: usize,
) {
    let k = lhs.cols;
    let width = n.div_ceil(NR) * NR;
    let groups = rows.div_ceil(MR);
    let mut packed_lhs = vec![0.0f32; groups * MR * KC.min(k.max(1))];
    for k0 in (0..k).step_by(KC) {
        let depth = KC.min(k - k0);
        // Each group of `MR` rows as `[depth, MR]`, zero-padded past the last row.
        for g in 0..groups {
            let group = &mut packed_lhs[g * MR * depth..(g + 1) * MR * depth];
            let group_rows = MR.min(rows - g * MR);
            pack_group(lhs, first + g * MR, group_rows, k0, group);
        }
        let block = &panels[k0 * width..(k0 + depth) * width];
        for (p, panel) in block.chunks(depth * NR).enumerate() {
            let cols = NR.min(n - p * NR);
            for g in 0..groups {
                let group_rows = MR.min(rows - g * MR);
                let start = g * MR * dst_stride + p * NR;
                let end = start + (group_rows - 1) * dst_stride + cols;
                avx512::tile(
                    group_rows,
                    depth,
                    &packed_lhs[g * MR * depth..(g + 1) * MR * depth],
                    panel,
                    &mut dst[start..end],
                    dst_stride,
                    cols,
                    accumulate || k0 > 0,
                );
            }
        }
    }
}

/// Rows `first..first + rows` (at most `MR`) of `lhs`, columns `k0..`, into `group` as
/// `[depth, MR]`; the kernel does not read the values past `rows` in each `MR`.
fn pack_group(lhs: Operand<'_>, first: usize, rows: usize, k0: usize, group: &mut [f32]) {
    let depth = group.len() / MR;
    if lhs.row_stride == 1 {
        // A transposed operand: each column's `rows` values are contiguous.
        for (kk, column) in group.chunks_exact_mut(MR).enumerate() {
            let start = first + (k0 + kk) * lhs.col_stride;
            column[..rows].copy_from_slice(&lhs.data[start..start + rows]);
        }
    } else {
        // Rows are contiguous: every operand is `Operand::rows` or `Operand::transposed`.
        debug_assert_eq!(lhs.col_stride, 1);
        for r in 0..rows {
            let start = (first + r) * lhs.row_stride + k0;
            let row = &lhs.data[start..start + depth];
            for (column, &value) in group.chunks_exact_mut(MR).zip(row) {
                column[r] = value;
            }
        }
    }
}

/// The `gemm` crate's product, for CPUs without AVX-512 and for unpacked operands.
fn gemm_crate(
    dst: &mut [f32],
    dst_stride: usize,
    accumulate: bool,
    lhs: Operand<'_>,
    rhs: &Operand<'_>,
    parallel: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let parallelism = if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: `Operand::check` and the caller's assert keep every element gemm touches inside
    // the three slices, and `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// `dst[rows, cols] (+)= lhs * panel` for one register tile: `lhs` is `[depth, MR]`,
    /// `panel` is `[depth, NR]`, `dst`'s rows are `stride` apart.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tile(
        rows: usize,
        depth: usize,
        lhs: &[f32],
        panel: &[f32],
        dst: &mut [f32],
        stride: usize,
        cols: usize,
        accumulate: bool,
    ) {
        assert!((1..=MR).contains(&rows) && (1..=NR).contains(&cols));
        assert!(lhs.len() >= depth * MR && panel.len() >= depth * NR);
        assert!(dst.len() > (rows - 1) * stride + cols - 1);
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
        // SAFETY: `Rhs::packed` only builds panels where `available()` holds, and the asserts
        // keep every read and (masked) write inside the slices.
        unsafe {
            kernel(
                depth,
                lhs.as_ptr(),
                panel.as_ptr(),
                dst.as_mut_ptr(),
                stride,
                cols,
                accumulate,
            )
        }
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
}

#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    pub(super) fn available() -> bool {
        false
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn tile(
        _rows: usize,
        _depth: usize,
        _lhs: &[f32],
        _panel: &[f32],
        _dst: &mut [f32],
        _stride: usize,
        _cols: usize,
        _accumulate: bool,
    ) {
        unreachable!("panels are only packed where AVX-512 is available")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(len: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Products of every size class (tile and panel edges, several depth blocks, one row,
    /// transposed operands, accumulation into a strided destination) against a plain f64 loop.
    #[test]
    fn products_match_a_plain_loop() {
        let mut rng = StdRng::seed_from_u64(7);
        let shapes = [
            (1, 1, 1),
            (1, 512, 2048),
            (16, 512, 2048),
            (7, 33, 31),
            (9, 300, 65),
            (300, 513, 40),
            (2048, 40, 33),
        ];
        for (m, k, n) in shapes {
            for (transposed_lhs, transposed_rhs, accumulate) in [
                (false, false, false),
                (true, true, true),
                (false, true, true),
            ] {
                let (a, b) = (random(m * k, &mut rng), random(k * n, &mut rng));
                let lhs = if transposed_lhs {
                    Operand::transposed(&a, m, k, m)
                } else {
                    Operand::rows(&a, m, k, k)
                };
                let rhs = if transposed_rhs {
                    Operand::transposed(&b, k, n, k)
                } else {
                    Operand::rows(&b, k, n, n)
                };
                let stride = n + 3;
                let start = random(m * stride, &mut rng);
                let expected: Vec<f64> = (0..m * stride)
                    .map(|at| {
                        let (i, j) = (at / stride, at % stride);
                        let base = if accumulate || j >= n {
                            start[at] as f64
                        } else {
                            0.0
                        };
                        if j >= n {
                            return base;
                        }
                        base + (0..k)
                            .map(|l| lhs.at(i, l) as f64 * rhs.at(l, j) as f64)
                            .sum::<f64>()
                    })
                    .collect();
                for packed in [true, false] {
                    let rhs = if packed {
                        Rhs::packed(rhs)
                    } else {
                        Rhs::plain(rhs)
                    };
                    let mut dst = start.clone();
                    matmul(&mut dst, stride, accumulate, lhs, &rhs, true);
                    for (at, (&got, &want)) in dst.iter().zip(&expected).enumerate() {
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * (1.0 + k as f64).sqrt(),
                            "{m}x{k}x{n} (packed {packed}, transposed {transposed_lhs}/\
                             {transposed_rhs}) at {at}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
