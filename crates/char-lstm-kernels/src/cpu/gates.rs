//! The LSTM's gate nonlinearities and cell update, forward and backward, one row at a time,
//! compiled for each instruction-set path.

use crate::simd::per_simd_path;

/// `e^x` in plain arithmetic that the compiler vectorizes (libm's `expf` is a call per
/// element): `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-7 Taylor polynomial for `e^r`
/// (relative error below 1e-7), and `2^n` put straight into the exponent bits. Clamped to
/// `[-87, 88]`, where `e^x` is a normal f32.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let poly = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let exponent = shifted.to_bits() as i32 - ROUND.to_bits() as i32 + 127;
    poly * f32::from_bits((exponent << 23) as u32)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 1 - 2 / (e^{2x} + 1)`; its absolute error stays near f32's epsilon.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// The four gate blocks `i, f, g, o` of one row of `[4 * hidden]` pre-activations.
fn gate_blocks(row: &mut [f32]) -> [&mut [f32]; 4] {
    let hidden = row.len() / 4;
    let (i, rest) = row.split_at_mut(hidden);
    let (f, rest) = rest.split_at_mut(hidden);
    let (g, o) = rest.split_at_mut(hidden);
    [i, f, g, o]
}

/// How much of the previous cell and hidden state each element of a row keeps (zoneout,
/// Krueger et al. 2016): `0` or `1` per element in training, the zoneout probability at test
/// time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keep<'a> {
    /// The cell's, `[hidden]`.
    pub(crate) cell: &'a [f32],
    /// The hidden state's, `[hidden]`.
    pub(crate) hidden: &'a [f32],
}

impl<'a> Keep<'a> {
    /// The keep weights laid out as one row of `[2 * hidden]`: the cell's, then the hidden
    /// state's.
    pub(crate) fn halves(row: &'a [f32]) -> Self {
        let (cell, hidden) = row.split_at(row.len() / 2);
        Keep { cell, hidden }
    }

    /// No zoneout, for the rows of a layer without it (never read).
    const NONE: Keep<'static> = Keep {
        cell: &[],
        hidden: &[],
    };
}

/// `keep * old + (1 - keep) * new`.
#[inline(always)]
fn mix(keep: f32, old: f32, new: f32) -> f32 {
    keep * old + (1.0 - keep) * new
}

/// [`cell_update`], with zoneout when `ZONED` (then `h_prev` and `keep` are read; a layer
/// without it never pays for the mixing).
#[inline(always)]
fn update_row<const ZONED: bool>(
    gates: &mut [f32],
    c_prev: &[f32],
    h_prev: &[f32],
    keep: Keep<'_>,
    c: &mut [f32],
    h: &mut [f32],
) {
    let n = c.len();
    let [gi, gf, gg, go] = gate_blocks(gates);
    // Every slice cut to `n` where the compiler sees it, so the loop has no bounds checks.
    let (gi, gf, gg, go) = (&mut gi[..n], &mut gf[..n], &mut gg[..n], &mut go[..n]);
    let (c_prev, h) = (&c_prev[..n], &mut h[..n]);
    let (h_prev, keep_c, keep_h) = if ZONED {
        (&h_prev[..n], &keep.cell[..n], &keep.hidden[..n])
    } else {
        (h_prev, keep.cell, keep.hidden)
    };
    for j in 0..n {
        let (i, f, g, o) = (sigmoid(gi[j]), sigmoid(gf[j]), tanh(gg[j]), sigmoid(go[j]));
        (gi[j], gf[j], gg[j], go[j]) = (i, f, g, o);
        let candidate = f * c_prev[j] + i * g;
        let output = o * tanh(candidate);
        if ZONED {
            c[j] = mix(keep_c[j], c_prev[j], candidate);
            h[j] = mix(keep_h[j], h_prev[j], output);
        } else {
            (c[j], h[j]) = (candidate, output);
        }
    }
}

per_simd_path! {
    /// Gate nonlinearities and the cell update of one row, in one pass: the pre-activations in
    /// `gates` become the activations; writes `c_t` and `h_t`.
    pub(crate) fn cell_update(gates: &mut [f32], c_prev: &[f32], c: &mut [f32], h: &mut [f32]) {
        update_row::<false>(gates, c_prev, &[], Keep::NONE, c, h)
    }
}

per_simd_path! {
    /// [`cell_update`] with zoneout: each element of `c_t` and `h_t` keeps `keep` of
    /// `c_{t-1}` and `h_{t-1}` and takes the rest from the update
    /// (`c_t = k_c c_{t-1} + (1 - k_c) (f c_{t-1} + i g)`,
    /// `h_t = k_h h_{t-1} + (1 - k_h) o tanh(f c_{t-1} + i g)`).
    pub(crate) fn zoned_cell_update(
        gates: &mut [f32],
        c_prev: &[f32],
        h_prev: &[f32],
        keep: Keep<'_>,
        c: &mut [f32],
        h: &mut [f32],
    ) {
        update_row::<true>(gates, c_prev, h_prev, keep, c, h)
    }
}

/// [`gate_gradients`], with zoneout when `ZONED` (then `keep` is read, `c` is not, and `dh`
/// leaves as the part of the gradient of `h_{t-1}` that zoneout carries past the gates).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gradients_row<const ZONED: bool>(
    a: &[f32],
    c: &[f32],
    c_prev: &[f32],
    keep: Keep<'_>,
    d_out: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    da: &mut [f32],
) {
    let n = dc.len();
    let [di, df, dg, d_o] = gate_blocks(da);
    let (di, df, dg, d_o) = (&mut di[..n], &mut df[..n], &mut dg[..n], &mut d_o[..n]);
    let (ai, af, ag, ao) = (&a[..n], &a[n..2 * n], &a[2 * n..3 * n], &a[3 * n..4 * n]);
    let (c_prev, d_out, dh) = (&c_prev[..n], &d_out[..n], &mut dh[..n]);
    let (c, keep_c, keep_h) = if ZONED {
        (c, &keep.cell[..n], &keep.hidden[..n])
    } else {
        (&c[..n], keep.cell, keep.hidden)
    };
    for j in 0..n {
        let (i, f, g, o) = (ai[j], af[j], ag[j], ao[j]);
        let dh_j = d_out[j] + dh[j];
        // Without zoneout the update is `c_t` itself; with it, recomputed from the gates.
        let (candidate, d_output, dc_kept) = if ZONED {
            let (k_c, k_h) = (keep_c[j], keep_h[j]);
            dh[j] = k_h * dh_j;
            (
                f * c_prev[j] + i * g,
                (1.0 - k_h) * dh_j,
                (1.0 - k_c) * dc[j],
            )
        } else {
            (c[j], dh_j, dc[j])
        };
        let tc = tanh(candidate);
        let dc_j = dc_kept + d_output * o * (1.0 - tc * tc);
        di[j] = dc_j * g * i * (1.0 - i);
        df[j] = dc_j * c_prev[j] * f * (1.0 - f);
        dg[j] = dc_j * i * (1.0 - g * g);
        d_o[j] = d_output * tc * o * (1.0 - o);
        dc[j] = if ZONED {
            keep_c[j] * dc[j] + dc_j * f
        } else {
            dc_j * f
        };
    }
}

per_simd_path! {
    /// The gate pre-activation gradients `da` of one row at one step, from the activations
    /// `a`, the cells `c_t` and `c_{t-1}`, and the gradients reaching `h_t` (`d_out + dh`) and
    /// `c_t` (`dc`, which leaves as the gradient of `c_{t-1}`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gate_gradients(
        a: &[f32],
        c: &[f32],
        c_prev: &[f32],
        d_out: &[f32],
        dh: &mut [f32],
        dc: &mut [f32],
        da: &mut [f32],
    ) {
        gradients_row::<false>(a, c, c_prev, Keep::NONE, d_out, dh, dc, da)
    }
}

per_simd_path! {
    /// [`gate_gradients`] of [`zoned_cell_update`], from the activations `a` and `c_{t-1}`:
    /// `dh` comes in as the gradient reaching `h_t` from the step after and leaves as the part
    /// of the gradient of `h_{t-1}` that zoneout carries past the gates (`k_h (d_out + dh)`),
    /// to which the product through `W_hh` is added.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn zoned_gate_gradients(
        a: &[f32],
        c_prev: &[f32],
        keep: Keep<'_>,
        d_out: &[f32],
        dh: &mut [f32],
        dc: &mut [f32],
        da: &mut [f32],
    ) {
        gradients_row::<true>(a, &[], c_prev, keep, d_out, dh, dc, da)
    }
}

per_simd_path! {
    /// Multiplicative integration (Wu et al. 2016) of one row: `gates` comes in as the input
    /// projection `p = x W_ih^T + b_ih + b_hh` and leaves as the pre-activations
    /// `p + u ⊙ (1 + p)`, for the recurrent product `u = h_{t-1} W_hh^T` (`recurrent`).
    pub(crate) fn integrate(gates: &mut [f32], recurrent: &[f32]) {
        let n = gates.len();
        let recurrent = &recurrent[..n];
        for j in 0..n {
            let p = gates[j];
            gates[j] = p + recurrent[j] * (1.0 + p);
        }
    }
}

per_simd_path! {
    /// The gradients of [`integrate`] for one row, from the pre-activations' gradients `d`
    /// (in `d_gates`), the projection `p` and the recurrent product `u`: the recurrent
    /// product's, `d ⊙ (1 + p)`, into `d_recurrent`; the projection's, `d ⊙ (1 + u)`, over
    /// `d_gates`.
    pub(crate) fn integration_gradients(
        d_gates: &mut [f32],
        d_recurrent: &mut [f32],
        projected: &[f32],
        recurrent: &[f32],
    ) {
        let n = d_gates.len();
        let (d_recurrent, projected, recurrent) =
            (&mut d_recurrent[..n], &projected[..n], &recurrent[..n]);
        for j in 0..n {
            let d = d_gates[j];
            d_recurrent[j] = d * (1.0 + projected[j]);
            d_gates[j] = d * (1.0 + recurrent[j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 1/1024 from -100 to 100, against libm, within a few f32 ulps.
    #[test]
    fn fast_transcendentals_match_libm() {
        for k in -102_400..=102_400 {
            let x = k as f32 / 1024.0;
            if x.abs() < 87.0 {
                let (ours, libm) = (exp(x), x.exp());
                assert!(
                    (ours - libm).abs() <= 3e-7 * libm,
                    "exp({x}): {ours} vs {libm}"
                );
            }
            let libm_sigmoid = 1.0 / (1.0 + (-x).exp());
            assert!(
                (sigmoid(x) - libm_sigmoid).abs() <= 3e-7,
                "sigmoid({x}): {} vs {libm_sigmoid}",
                sigmoid(x)
            );
            assert!(
                (tanh(x) - x.tanh()).abs() <= 3e-7,
                "tanh({x}): {} vs {}",
                tanh(x),
                x.tanh()
            );
        }
    }
}
