//! Register tiles of the packed matrix product, one per instruction-set path: each computes
//! `dst[rows, cols] (+)= lhs * panel` for one `MR x NR` block in registers.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::simd::Simd;

/// The register tile a packed right-hand side was laid out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tile {
    /// `8 x 32`: 16 accumulators of 16 lanes.
    Avx512,
    /// `6 x 16`: 12 accumulators of 8 lanes.
    Avx2,
}

impl Tile {
    /// The tile of the active path; `None` where products run on the `gemm` crate.
    pub fn active() -> Option<Self> {
        match Simd::active() {
            Simd::Avx512 => Some(Tile::Avx512),
            Simd::Avx2 => Some(Tile::Avx2),
            Simd::Portable => None,
        }
    }

    /// Rows of one tile.
    pub fn rows(self) -> usize {
        match self {
            Tile::Avx512 => 8,
            Tile::Avx2 => 6,
        }
    }

    /// Columns of one tile and of one packed panel.
    pub fn cols(self) -> usize {
        match self {
            Tile::Avx512 => 32,
            Tile::Avx2 => 16,
        }
    }

    /// `dst[rows, cols] (+)= lhs * panel`: `lhs` is `[depth, self.rows()]`, `panel` is
    /// `[depth, self.cols()]`, `dst`'s rows are `stride` apart. Each value is one fused
    /// multiply-add chain over the depth in order, then (when accumulating) one addition of
    /// `dst`, so every tile computes the same bits.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        self,
        rows: usize,
        depth: usize,
        lhs: &[f32],
        panel: &[f32],
        dst: &mut [f32],
        stride: usize,
        cols: usize,
        accumulate: bool,
    ) {
        assert!((1..=self.rows()).contains(&rows) && (1..=self.cols()).contains(&cols));
        assert!(lhs.len() >= depth * self.rows() && panel.len() >= depth * self.cols());
        assert!(dst.len() > (rows - 1) * stride + cols - 1);
        #[cfg(target_arch = "x86_64")]
        {
            let (lhs, panel, dst) = (lhs.as_ptr(), panel.as_ptr(), dst.as_mut_ptr());
            // SAFETY: panels of a tile are packed only where its path is supported (`Tile`
            // comes from the active path), and the asserts keep every read and masked write
            // inside the slices.
            unsafe {
                match self {
                    Tile::Avx512 => {
                        avx512::tile(rows, depth, lhs, panel, dst, stride, cols, accumulate)
                    }
                    Tile::Avx2 => {
                        avx2::tile(rows, depth, lhs, panel, dst, stride, cols, accumulate)
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no tile is active off x86-64 ({rows} {depth} {stride} {cols} {accumulate})")
    }
}
