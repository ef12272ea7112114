//! Large `f32` buffers written by every core.
//!
//! `vec![0.0; n]` on a block that glibc hands out again is a `memset` on the calling thread
//! alone (the block held other values), and the ops allocate from Burn's thread while the other
//! cores wait: before these, that `memset` was the largest item on that thread in a training
//! step's profile (`scripts/profile-training.sh`). These write the values over every core.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Below this many values one thread writes them sooner than it wakes the others.
const PARALLEL_LEN: usize = 1 << 16;

/// `len` zeros.
pub(crate) fn zeros(len: usize) -> Vec<f32> {
    if len < PARALLEL_LEN {
        return vec![0.0; len];
    }
    // SAFETY: `fill` writes every value of the chunk.
    unsafe {
        filled(len, PARALLEL_LEN, |_, chunk| {
            chunk.fill(MaybeUninit::new(0.0))
        })
    }
}

/// A copy of `values`.
pub(crate) fn copied(values: &[f32]) -> Vec<f32> {
    let mut buffer = Vec::with_capacity(values.len());
    values.par_iter().copied().collect_into_vec(&mut buffer);
    buffer
}

/// `row` repeated `times` times, one after the other.
pub(crate) fn repeated(row: &[f32], times: usize) -> Vec<f32> {
    if row.is_empty() || row.len() * times < PARALLEL_LEN {
        return row.repeat(times);
    }
    let rows_per_chunk = PARALLEL_LEN.div_ceil(row.len());
    // SAFETY: chunks are whole rows (a multiple of the row's length long), and the loop writes
    // each of them.
    unsafe {
        filled(row.len() * times, rows_per_chunk * row.len(), |_, chunk| {
            for copy in chunk.chunks_exact_mut(row.len()) {
                for (value, &x) in copy.iter_mut().zip(row) {
                    value.write(x);
                }
            }
        })
    }
}

/// `values`, a row-major `[rows, cols]` matrix, as `[cols, rows]`.
pub(crate) fn transposed(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(values.len(), rows * cols, "a [{rows}, {cols}] matrix");
    // Each task writes `BLOCK` rows of the result, reading one cache line of each source row.
    const BLOCK: usize = 16;
    if values.is_empty() {
        return Vec::new();
    }
    // SAFETY: a chunk is the result's rows `BLOCK * index ..` (the last chunk fewer), `rows`
    // values each, and the loops write every value of each of them.
    unsafe {
        filled(rows * cols, BLOCK * rows, |index, chunk| {
            let first = index * BLOCK;
            for (r, source) in values.chunks_exact(cols).enumerate() {
                let source = &source[first..first + chunk.len() / rows];
                for (c, &value) in source.iter().enumerate() {
                    chunk[c * rows + r].write(value);
                }
            }
        })
    }
}

/// A buffer of `len` values, written in chunks of `chunk_len` (the last may be shorter) by
/// `write`, given each chunk's index, in parallel.
///
/// # Safety
/// `write` must write every value of the chunk it is given.
unsafe fn filled(
    len: usize,
    chunk_len: usize,
    write: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut buffer = Vec::with_capacity(len);
    buffer.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk_len)
        .enumerate()
        .for_each(|(index, chunk)| write(index, chunk));
    // SAFETY: the chunks cover the first `len` values of the spare capacity, and the caller
    // guarantees that `write` wrote each of them.
    unsafe { buffer.set_len(len) };
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_hold_what_they_say_at_every_size() {
        for len in [0, 1, PARALLEL_LEN - 1, PARALLEL_LEN, 3 * PARALLEL_LEN + 5] {
            assert_eq!(zeros(len), vec![0.0; len], "zeros({len})");
        }
        let values: Vec<f32> = (0..3 * PARALLEL_LEN + 5).map(|i| i as f32).collect();
        assert_eq!(copied(&values), values);
        for (width, times) in [(3, 0), (1, 7), (65, 2000), (2048, 33), (7, PARALLEL_LEN)] {
            let row: Vec<f32> = (0..width).map(|i| i as f32 + 0.5).collect();
            assert_eq!(
                repeated(&row, times),
                row.repeat(times),
                "{width} x {times}"
            );
        }
        for (rows, cols) in [(0, 5), (1, 1), (3, 40), (40, 3), (17, 33)] {
            let matrix: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let expected: Vec<f32> = (0..cols * rows)
                .map(|at| matrix[(at % rows) * cols + at / rows])
                .collect();
            assert_eq!(transposed(&matrix, rows, cols), expected, "{rows} x {cols}");
        }
    }
}
