//! Single-precision matrix products for the fused ops.
//!
//! Where the active path has a register tile ([`Tile`]: AVX-512 or AVX2), products run on our
//! own kernel: the right-hand side is packed once into column panels ([`Rhs::packed`]) and
//! reused, so the recurrent weight is packed once per sequence instead of once per time step,
//! and each tile of the result is computed in registers. Every row of a product is then the
//! same bits whatever the other rows are. On the portable path, and for products with few
//! left-hand rows, the `gemm` crate runs them.

use std::ops::Range;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::cpu::tile::Tile;

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

/// Whether a product replaces the destination's values or adds to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// `dst = lhs * rhs`.
    Replace,
    /// `dst += lhs * rhs`.
    Add,
}

/// Whether a product may use every core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// On the calling thread (the caller runs in parallel already).
    One,
    /// Over every core, when the product is large enough to pay for it.
    All,
}

/// The depth of one packed block: a `KC x NR` panel stays in L1 across a row block.
const KC: usize = 256;
/// Rows per parallel task, at most; their packed block (`MC x KC`) stays in L2.
const MC: usize = 256;

/// [`step_matmul`] keeps every depth block of its rows packed while it passes over each panel;
/// above this many values (a quarter of a 2 MiB L2) those no longer stay in L2, and it runs
/// [`matmul`]'s order instead.
const STEP_LHS_VALUES: usize = 1 << 17;

/// Packing costs a copy of the right-hand side; below this many left-hand rows the `gemm`
/// crate's unpacked path is as fast.
const PACK_ROWS: usize = 64;

/// Parallel products only pay off above this many multiply-adds (flex's own threshold).
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// A product of few rows is split by columns over the cores above this many multiply-adds,
/// where each thread's share outweighs waking the others.
const COLUMN_PARALLEL_WORK: usize = 1 << 19;

/// And when each thread gets at least this many panels.
const COLUMN_PARALLEL_PANELS: usize = 4;

/// The right-hand side of products: packed into panels where our kernel runs, as given
/// elsewhere.
pub(crate) enum Rhs<'a> {
    /// `KC`-deep blocks of `tile.cols()`-column panels, zero-padded past the last column.
    Packed {
        tile: Tile,
        panels: Vec<f32>,
        rows: usize,
        cols: usize,
    },
    /// The operand as it is, for the `gemm` crate.
    Plain(Operand<'a>),
    /// A row-major copy, for the `gemm` crate, that outlives the operand.
    Owned {
        values: Vec<f32>,
        rows: usize,
        cols: usize,
    },
}

impl<'a> Rhs<'a> {
    /// Packs `rhs` for the active path's tile; as it is on the portable path.
    pub fn packed(rhs: Operand<'a>) -> Self {
        rhs.check();
        match Tile::active() {
            Some(tile) => pack(tile, rhs),
            None => Rhs::Plain(rhs),
        }
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
            Rhs::Packed { rows, .. } | Rhs::Owned { rows, .. } => *rows,
            Rhs::Plain(operand) => operand.rows,
        }
    }

    fn cols(&self) -> usize {
        match self {
            Rhs::Packed { cols, .. } | Rhs::Owned { cols, .. } => *cols,
            Rhs::Plain(operand) => operand.cols,
        }
    }
}

impl Rhs<'static> {
    /// [`Rhs::packed`] of `rhs`, holding its own copy of the values on the portable path too,
    /// so that it outlives `rhs`.
    pub fn packed_owned(rhs: Operand<'_>) -> Self {
        rhs.check();
        match Tile::active() {
            Some(tile) => pack(tile, rhs),
            None => {
                let values = (0..rhs.rows)
                    .flat_map(|r| (0..rhs.cols).map(move |c| (r, c)))
                    .map(|(r, c)| rhs.data[r * rhs.row_stride + c * rhs.col_stride])
                    .collect();
                Rhs::Owned {
                    values,
                    rows: rhs.rows,
                    cols: rhs.cols,
                }
            }
        }
    }
}

/// `rhs` in `tile`'s panels.
fn pack(tile: Tile, rhs: Operand<'_>) -> Rhs<'static> {
    let (rows, cols, nr) = (rhs.rows, rhs.cols, tile.cols());
    let width = cols.div_ceil(nr) * nr;
    let mut panels = crate::cpu::buffer::zeros(rows * width);
    for k0 in (0..rows).step_by(KC) {
        let depth = KC.min(rows - k0);
        let block = &mut panels[k0 * width..(k0 + depth) * width];
        block
            .par_chunks_mut(depth * nr)
            .enumerate()
            .for_each(|(p, panel)| {
                let columns = p * nr..cols.min(p * nr + nr);
                // Read along whichever direction is contiguous in memory.
                if rhs.row_stride == 1 {
                    for (j, column) in columns.enumerate() {
                        let start = column * rhs.col_stride + k0;
                        let values = &rhs.data[start..start + depth];
                        for (row, &value) in panel.chunks_exact_mut(nr).zip(values) {
                            row[j] = value;
                        }
                    }
                } else {
                    debug_assert_eq!(rhs.col_stride, 1);
                    let width = columns.len();
                    for (kk, row) in panel.chunks_exact_mut(nr).enumerate() {
                        let start = (k0 + kk) * rhs.row_stride + columns.start;
                        row[..width].copy_from_slice(&rhs.data[start..start + width]);
                    }
                }
            });
    }
    Rhs::Packed {
        tile,
        panels,
        rows,
        cols,
    }
}

/// Row-major `dst[m, n] (+)= lhs[m, k] * rhs[k, n]`, with `dst`'s rows `dst_stride` apart.
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_stride: usize,
    write: Write,
    lhs: Operand<'_>,
    rhs: &Rhs<'_>,
    threads: Threads,
) {
    let (m, k, n) = checked_sizes(dst, dst_stride, lhs, rhs);
    let parallel = threads == Threads::All && m * n * k >= PARALLEL_WORK;
    match rhs {
        Rhs::Plain(rhs) => gemm_crate(dst, dst_stride, write, lhs, rhs, parallel),
        Rhs::Owned { values, rows, cols } => {
            let rhs = Operand::rows(values, *rows, *cols, *cols);
            gemm_crate(dst, dst_stride, write, lhs, &rhs, parallel)
        }
        Rhs::Packed { tile, panels, .. } => {
            if m == 0 || n == 0 {
                return;
            }
            let lhs = LhsRows {
                lhs,
                first: 0,
                rows: m,
            };
            let out = Out {
                dst,
                stride: dst_stride,
                write,
            };
            let threads_count = rayon::current_num_threads();
            if parallel && m >= tile.rows() * threads_count {
                by_row_blocks(*tile, out, lhs, panels, n);
            } else if threads == Threads::All
                && m * n * k >= COLUMN_PARALLEL_WORK
                && n >= COLUMN_PARALLEL_PANELS * tile.cols() * threads_count
            {
                by_column_blocks(*tile, out, lhs, panels, n);
            } else {
                let all = 0..n.div_ceil(tile.cols());
                for rows in (0..m).step_by(MC / tile.rows() * tile.rows()) {
                    let block = LhsRows {
                        first: rows,
                        rows: (MC / tile.rows() * tile.rows()).min(m - rows),
                        ..lhs
                    };
                    let dst = &mut out.dst[rows * dst_stride..];
                    packed_rows(*tile, dst, dst_stride, write, block, panels, n, all.clone());
                }
            }
        }
    }
}

/// The order in which [`step_matmul`] reads the right-hand side's column panels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sweep {
    /// First panel to last.
    Ascending,
    /// Last panel to first.
    Descending,
}

impl Sweep {
    /// Time step `t`'s sweep: alternating, so that each step starts on the panels the step
    /// before it read last.
    pub fn of_step(t: usize) -> Self {
        if t.is_multiple_of(2) {
            Sweep::Ascending
        } else {
            Sweep::Descending
        }
    }
}

/// [`matmul`] of a few rows on the calling thread, for one time step of a recurrence: each
/// column panel of a packed `rhs` is read through its whole depth before the next, in `sweep`
/// order. A layer's recurrent weight is larger than a core's L2; read once per step and in
/// alternating directions, each step starts on the panels the step before left in L2 rather
/// than on those it evicted first. Each tile of the result adds up the same depth blocks in
/// the same order as in [`matmul`], so the values are the same bits.
pub(crate) fn step_matmul(
    dst: &mut [f32],
    dst_stride: usize,
    write: Write,
    lhs: Operand<'_>,
    rhs: &Rhs<'_>,
    sweep: Sweep,
) {
    let Rhs::Packed { tile, panels, .. } = rhs else {
        return matmul(dst, dst_stride, write, lhs, rhs, Threads::One);
    };
    let (m, k, n) = checked_sizes(dst, dst_stride, lhs, rhs);
    let (mr, nr) = (tile.rows(), tile.cols());
    let groups = m.div_ceil(mr);
    if groups * mr * k > STEP_LHS_VALUES {
        return matmul(dst, dst_stride, write, lhs, rhs, Threads::One);
    }
    if m == 0 || n == 0 {
        return;
    }
    // Every depth block of the rows in groups of `mr`, as `packed_rows` packs one; the block
    // at depth `k0` starts at `groups * mr * k0`.
    let mut packed_lhs = vec![0.0f32; groups * mr * k];
    for k0 in (0..k).step_by(KC) {
        let depth = KC.min(k - k0);
        let block = &mut packed_lhs[groups * mr * k0..groups * mr * (k0 + depth)];
        for (g, group) in block.chunks_exact_mut(mr * depth).enumerate() {
            pack_group(lhs, g * mr, mr.min(m - g * mr), k0, mr, group);
        }
    }
    let (count, width) = (n.div_ceil(nr), n.div_ceil(nr) * nr);
    for i in 0..count {
        let p = match sweep {
            Sweep::Ascending => i,
            Sweep::Descending => count - 1 - i,
        };
        for k0 in (0..k).step_by(KC) {
            let depth = KC.min(k - k0);
            let panel = &panels[k0 * width + p * depth * nr..][..depth * nr];
            let add = write == Write::Add || k0 > 0;
            let block = &packed_lhs[groups * mr * k0..groups * mr * (k0 + depth)];
            let cols = p * nr..n.min(p * nr + nr);
            panel_product(*tile, dst, dst_stride, add, block, m, panel, cols);
        }
    }
}

/// One depth block of a product: rows `0..rows` of `dst` (`stride` apart), columns `cols`,
/// from the rows packed in groups of `tile.rows()` (`packed_lhs`, `[depth, mr]` each) and one
/// panel; added to `dst` when `add`.
#[allow(clippy::too_many_arguments)]
fn panel_product(
    tile: Tile,
    dst: &mut [f32],
    stride: usize,
    add: bool,
    packed_lhs: &[f32],
    rows: usize,
    panel: &[f32],
    cols: Range<usize>,
) {
    let mr = tile.rows();
    let depth = panel.len() / tile.cols();
    for (g, group) in packed_lhs.chunks_exact(mr * depth).enumerate() {
        let group_rows = mr.min(rows - g * mr);
        let start = g * mr * stride + cols.start;
        let end = start + (group_rows - 1) * stride + cols.len();
        let dst = &mut dst[start..end];
        tile.run(
            group_rows,
            depth,
            group,
            panel,
            dst,
            stride,
            cols.len(),
            add,
        );
    }
}

/// A product's `(m, k, n)`, once its operands and destination are checked to fit each other.
fn checked_sizes(
    dst: &[f32],
    dst_stride: usize,
    lhs: Operand<'_>,
    rhs: &Rhs<'_>,
) -> (usize, usize, usize) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols());
    assert_eq!(k, rhs.rows(), "inner dimensions differ");
    lhs.check();
    assert!(m == 0 || n == 0 || (m - 1) * dst_stride + n <= dst.len());
    (m, k, n)
}

/// Where a product goes: `dst`'s rows `stride` apart.
struct Out<'a> {
    dst: &'a mut [f32],
    stride: usize,
    write: Write,
}

/// A product with many rows over every core: each task owns a block of rows of `dst` (the last
/// one may be short), at most `MC`, and as many tasks as a multiple of the thread count, so no
/// thread idles at the end. Blocks are whole tiles high when there are more than one per
/// thread; with one each they are equal, as a tile's time goes with its rows (32 rows on 2
/// threads as 16 + 16, not as 18 + 14 in 6-row tiles).
fn by_row_blocks(tile: Tile, out: Out<'_>, lhs: LhsRows<'_>, panels: &[f32], n: usize) {
    let m = lhs.rows;
    let threads = rayon::current_num_threads();
    let tasks = m.div_ceil(MC).next_multiple_of(threads);
    let block = match m.div_ceil(tasks) {
        block if tasks > threads => block.next_multiple_of(tile.rows()),
        block => block,
    };
    let all = 0..n.div_ceil(tile.cols());
    let dst = &mut out.dst[..(m - 1) * out.stride + n];
    dst.par_chunks_mut(block * out.stride)
        .enumerate()
        .for_each(|(index, dst)| {
            let rows = LhsRows {
                first: index * block,
                rows: block.min(m - index * block),
                ..lhs
            };
            packed_rows(
                tile,
                dst,
                out.stride,
                out.write,
                rows,
                panels,
                n,
                all.clone(),
            );
        });
}

/// A product with few rows (one character of a few streams) over every core: each thread takes
/// a share of the panels into a buffer of its own, copied into `dst` after. Every value is
/// computed as it is by one thread, so the bits do not change.
fn by_column_blocks(tile: Tile, out: Out<'_>, lhs: LhsRows<'_>, panels: &[f32], n: usize) {
    let (m, nr) = (lhs.rows, tile.cols());
    let count = n.div_ceil(nr);
    let per_task = count.div_ceil(rayon::current_num_threads());
    let parts: Vec<(usize, usize, Vec<f32>)> = (0..count)
        .step_by(per_task)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|first| {
            let range = first..count.min(first + per_task);
            let (from, to) = (range.start * nr, n.min(range.end * nr));
            let width = to - from;
            let mut part = vec![0.0f32; m * width];
            if out.write == Write::Add {
                for (row, part) in part.chunks_exact_mut(width).enumerate() {
                    part.copy_from_slice(&out.dst[row * out.stride + from..][..width]);
                }
            }
            packed_rows(tile, &mut part, width, out.write, lhs, panels, n, range);
            (from, width, part)
        })
        .collect();
    for (from, width, part) in parts {
        for (row, part) in part.chunks_exact(width).enumerate() {
            out.dst[row * out.stride + from..][..width].copy_from_slice(part);
        }
    }
}

/// Rows `first..first + rows` of a left-hand side.
#[derive(Clone, Copy)]
struct LhsRows<'a> {
    lhs: Operand<'a>,
    first: usize,
    rows: usize,
}

/// The product of `lhs`'s rows and the columns of panels `range`, into `dst` (which starts at
/// the first of those rows and columns).
#[allow(clippy::too_many_arguments)]
fn packed_rows(
    tile: Tile,
    dst: &mut [f32],
    dst_stride: usize,
    write: Write,
    lhs: LhsRows<'_>,
    panels: &[f32],
    n: usize,
    range: Range<usize>,
) {
    let (mr, nr) = (tile.rows(), tile.cols());
    let LhsRows { lhs, first, rows } = lhs;
    let k = lhs.cols;
    let width = n.div_ceil(nr) * nr;
    let groups = rows.div_ceil(mr);
    let mut packed_lhs = vec![0.0f32; groups * mr * KC.min(k.max(1))];
    for k0 in (0..k).step_by(KC) {
        let depth = KC.min(k - k0);
        // Each group of `mr` rows as `[depth, mr]`, zero-padded past the last row.
        for g in 0..groups {
            let group = &mut packed_lhs[g * mr * depth..(g + 1) * mr * depth];
            let group_rows = mr.min(rows - g * mr);
            pack_group(lhs, first + g * mr, group_rows, k0, mr, group);
        }
        let block = &panels[k0 * width..(k0 + depth) * width];
        let panels = block.chunks(depth * nr).enumerate();
        let add = write == Write::Add || k0 > 0;
        let packed_lhs = &packed_lhs[..groups * mr * depth];
        for (p, panel) in panels.skip(range.start).take(range.len()) {
            let cols = (p - range.start) * nr..(p - range.start) * nr + nr.min(n - p * nr);
            panel_product(tile, dst, dst_stride, add, packed_lhs, rows, panel, cols);
        }
    }
}

/// Rows `first..first + rows` (at most `mr`) of `lhs`, columns `k0..`, into `group` as
/// `[depth, mr]`; the kernel does not read the values past `rows` in each `mr`.
fn pack_group(
    lhs: Operand<'_>,
    first: usize,
    rows: usize,
    k0: usize,
    mr: usize,
    group: &mut [f32],
) {
    let depth = group.len() / mr;
    if lhs.row_stride == 1 {
        // A transposed operand: each column's `rows` values are contiguous.
        for (kk, column) in group.chunks_exact_mut(mr).enumerate() {
            let start = first + (k0 + kk) * lhs.col_stride;
            column[..rows].copy_from_slice(&lhs.data[start..start + rows]);
        }
    } else {
        // Rows are contiguous: every operand is `Operand::rows` or `Operand::transposed`.
        debug_assert_eq!(lhs.col_stride, 1);
        for r in 0..rows {
            let start = (first + r) * lhs.row_stride + k0;
            let row = &lhs.data[start..start + depth];
            for (column, &value) in group.chunks_exact_mut(mr).zip(row) {
                column[r] = value;
            }
        }
    }
}

/// The `gemm` crate's product, for the portable path and for unpacked operands.
fn gemm_crate(
    dst: &mut [f32],
    dst_stride: usize,
    write: Write,
    lhs: Operand<'_>,
    rhs: &Operand<'_>,
    parallel: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let accumulate = write == Write::Add;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Simd;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(len: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Products of every size class (tile and panel edges, several depth blocks, one row,
    /// transposed operands, accumulation into a strided destination) against a plain f64 loop,
    /// on every path this CPU supports, packed, plain and owned.
    #[test]
    fn products_match_a_plain_loop_on_every_path() {
        let mut rng = StdRng::seed_from_u64(7);
        let shapes = [
            (1, 1, 1),
            (1, 512, 2048),
            (16, 512, 2048),
            (7, 33, 31),
            (9, 300, 65),
            (13, 17, 9),
            // Few rows and many columns: split by columns over the cores.
            (3, 700, 1001),
            (300, 513, 40),
            (2048, 40, 33),
        ];
        for (m, k, n) in shapes {
            for (transposed_lhs, transposed_rhs, write) in [
                (false, false, Write::Replace),
                (true, true, Write::Add),
                (false, true, Write::Add),
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
                        let base = if write == Write::Add || j >= n {
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
                for simd in Simd::supported() {
                    simd.run(|| {
                        for kind in ["packed", "plain", "owned"] {
                            let rhs = match kind {
                                "packed" => Rhs::packed(rhs),
                                "plain" => Rhs::plain(rhs),
                                _ => Rhs::packed_owned(rhs),
                            };
                            let mut dst = start.clone();
                            matmul(&mut dst, stride, write, lhs, &rhs, Threads::All);
                            for (at, (&got, &want)) in dst.iter().zip(&expected).enumerate() {
                                assert!(
                                    (got as f64 - want).abs() <= 1e-5 * (1.0 + k as f64).sqrt(),
                                    "{m}x{k}x{n} ({simd:?}, {kind}, transposed \
                                     {transposed_lhs}/{transposed_rhs}) at {at}: {got} vs {want}"
                                );
                            }
                        }
                    });
                }
            }
        }
    }

    /// On our tiles each row of a product is the same bits whatever rows it is computed with,
    /// and every tile computes the same bits, so one stream alone and in a batch, on either
    /// path, give identical results.
    #[test]
    fn packed_rows_are_the_same_bits_alone_in_a_batch_and_on_every_tile() {
        let mut rng = StdRng::seed_from_u64(3);
        // Large enough that the batch and the single row are split by columns over the cores.
        let (m, k, n) = (11, 600, 1070);
        let (a, b) = (random(m * k, &mut rng), random(k * n, &mut rng));
        let tiles: Vec<Simd> = Simd::supported()
            .into_iter()
            .filter(|s| *s != Simd::Portable)
            .collect();
        let mut results = Vec::new();
        for simd in tiles {
            simd.run(|| {
                let rhs = Rhs::packed(Operand::rows(&b, k, n, n));
                let mut all = vec![0.0; m * n];
                let lhs = Operand::rows(&a, m, k, k);
                matmul(&mut all, n, Write::Replace, lhs, &rhs, Threads::All);
                for row in 0..m {
                    let mut alone = vec![0.0; n];
                    let lhs = Operand::rows(&a[row * k..], 1, k, k);
                    matmul(&mut alone, n, Write::Replace, lhs, &rhs, Threads::One);
                    assert_eq!(alone, all[row * n..(row + 1) * n], "{simd:?} row {row}");
                }
                results.push(all);
            });
        }
        for pair in results.windows(2) {
            assert_eq!(pair[0], pair[1], "tiles differ");
        }
    }

    /// A time step's product gives the same bits as `matmul` on the calling thread, in either
    /// sweep, on every path: several depth blocks, a short last panel, more rows than a tile,
    /// accumulating or not, and a transposed left-hand side in a strided destination.
    #[test]
    fn step_products_are_the_bits_of_matmul_in_either_sweep() {
        let mut rng = StdRng::seed_from_u64(11);
        // The last has too many rows to keep packed, and runs `matmul`'s order.
        for (m, k, n) in [
            (16, 512, 2048),
            (9, 600, 70),
            (1, 1, 1),
            (3, 256, 33),
            (80, 2048, 40),
        ] {
            let (a, b) = (random(m * k, &mut rng), random(k * n, &mut rng));
            let stride = n + 5;
            let start = random(m * stride, &mut rng);
            for simd in Simd::supported() {
                simd.run(|| {
                    let rhs = Rhs::packed(Operand::rows(&b, k, n, n));
                    for (lhs, write) in [
                        (Operand::rows(&a, m, k, k), Write::Replace),
                        (Operand::transposed(&a, m, k, m), Write::Add),
                    ] {
                        let mut expected = start.clone();
                        matmul(&mut expected, stride, write, lhs, &rhs, Threads::One);
                        for sweep in [Sweep::Ascending, Sweep::Descending] {
                            let mut dst = start.clone();
                            step_matmul(&mut dst, stride, write, lhs, &rhs, sweep);
                            assert_eq!(dst, expected, "{m}x{k}x{n} {simd:?} {write:?} {sweep:?}");
                        }
                    }
                });
            }
        }
        assert_eq!(Sweep::of_step(0), Sweep::Ascending);
        assert_eq!(Sweep::of_step(7), Sweep::Descending);
    }
}
