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

per_simd_path! {
    /// Gate nonlinearities and the cell update of one row, in one pass: the pre-activations in
    /// `gates` become the activations; writes `c_t` and `h_t`.
    pub(crate) fn cell_update(gates: &mut [f32], c_prev: &[f32], c: &mut [f32], h: &mut [f32]) {
        let n = c.len();
        let [gi, gf, gg, go] = gate_blocks(gates);
        // Every slice cut to `n` where the compiler sees it, so the loop has no bounds checks.
        let (gi, gf, gg, go) = (&mut gi[..n], &mut gf[..n], &mut gg[..n], &mut go[..n]);
        let (c_prev, h) = (&c_prev[..n], &mut h[..n]);
        for j in 0..n {
            let (i, f, g, o) = (sigmoid(gi[j]), sigmoid(gf[j]), tanh(gg[j]), sigmoid(go[j]));
            (gi[j], gf[j], gg[j], go[j]) = (i, f, g, o);
            c[j] = f * c_prev[j] + i * g;
            h[j] = o * tanh(c[j]);
        }
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
        dh: &[f32],
        dc: &mut [f32],
        da: &mut [f32],
    ) {
        let n = dc.len();
        let [di, df, dg, d_o] = gate_blocks(da);
        let (di, df, dg, d_o) = (&mut di[..n], &mut df[..n], &mut dg[..n], &mut d_o[..n]);
        let (ai, af, ag, ao) = (&a[..n], &a[n..2 * n], &a[2 * n..3 * n], &a[3 * n..4 * n]);
        let (c, c_prev, d_out, dh) = (&c[..n], &c_prev[..n], &d_out[..n], &dh[..n]);
        for j in 0..n {
            let (i, f, g, o) = (ai[j], af[j], ag[j], ao[j]);
            let tc = tanh(c[j]);
            let dh_j = d_out[j] + dh[j];
            let dc_j = dc[j] + dh_j * o * (1.0 - tc * tc);
            di[j] = dc_j * g * i * (1.0 - i);
            df[j] = dc_j * c_prev[j] * f * (1.0 - f);
            dg[j] = dc_j * i * (1.0 - g * g);
            d_o[j] = dh_j * tc * o * (1.0 - o);
            dc[j] = dc_j * f;
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
