//! The recurrence's `#[cube]` kernels (CubeCL's `Tensor` is not Burn's, so they live apart
//! from the host code).

use cubecl::prelude::*;

#[cube]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `tanh` through `exp`, which saturates to +-1 instead of overflowing to NaN for large `|x|`.
#[cube]
fn tanh_of(x: f32) -> f32 {
    1.0 - 2.0 / ((2.0 * x).exp() + 1.0)
}

/// Cube `b` runs batch row `b` through every step; shapes as in
/// [`super::recurrence::recurrence`], with `weight_t = W_hh^T` and `gates`, `cells` as in
/// [`super::recurrence`]'s activations.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_kernel(
    projected: &Tensor<f32>,
    weight_t: &Tensor<f32>,
    h0: &Tensor<f32>,
    c0: &Tensor<f32>,
    output: &mut Tensor<f32>,
    gates: &mut Tensor<f32>,
    cells: &mut Tensor<f32>,
    steps: u32,
    #[comptime] hidden: u32,
) {
    let b = CUBE_POS_X as usize;
    let threads = CUBE_DIM_X as usize;
    let steps = steps as usize;
    let hidden = hidden as usize;
    let g4 = 4 * hidden;
    // h_{t-1} in one half, h_t written to the other: one barrier per step.
    let mut h = Shared::new_slice(2 * hidden);
    let mut j = UNIT_POS_X as usize;
    while j < hidden {
        h[j] = h0[b * hidden + j];
        j += threads;
    }
    sync_cube();
    for t in 0..steps {
        let read = (t % 2) * hidden;
        let write = hidden - read;
        let row = (b * steps + t) * g4;
        let mut j = UNIT_POS_X as usize;
        while j < hidden {
            let mut a_i = projected[row + j];
            let mut a_f = projected[row + hidden + j];
            let mut a_g = projected[row + 2 * hidden + j];
            let mut a_o = projected[row + 3 * hidden + j];
            for k in 0..hidden {
                let h_k = h[read + k];
                let w = k * g4 + j;
                a_i += h_k * weight_t[w];
                a_f += h_k * weight_t[w + hidden];
                a_g += h_k * weight_t[w + 2 * hidden];
                a_o += h_k * weight_t[w + 3 * hidden];
            }
            let i = sigmoid(a_i);
            let f = sigmoid(a_f);
            let g = tanh_of(a_g);
            let o = sigmoid(a_o);
            let mut c_prev = c0[b * hidden + j];
            if t > 0 {
                c_prev = cells[(b * steps + t - 1) * hidden + j];
            }
            let c = f * c_prev + i * g;
            let h_t = o * tanh_of(c);
            gates[row + j] = i;
            gates[row + hidden + j] = f;
            gates[row + 2 * hidden + j] = g;
            gates[row + 3 * hidden + j] = o;
            cells[(b * steps + t) * hidden + j] = c;
            output[(b * steps + t) * hidden + j] = h_t;
            h[write + j] = h_t;
            j += threads;
        }
        sync_cube();
    }
    // `c_T` after every row's hidden states.
    let tail = CUBE_COUNT_X as usize * steps * hidden;
    let mut j = UNIT_POS_X as usize;
    while j < hidden {
        output[tail + b * hidden + j] = cells[(b * steps + steps - 1) * hidden + j];
        j += threads;
    }
}

/// Backpropagation through time for batch row `b`: `weight` is `W_hh` (`[4 * hidden, hidden]`,
/// so unit `j` reads column `j`), `d_output` the gradient of the forward's output; writes the
/// gradient of `projected` and those of `h_0` and `c_0` (`[batch, hidden]`; `d_c0` carries
/// the cell gradient from step to step on the way).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_kernel(
    weight: &Tensor<f32>,
    gates: &Tensor<f32>,
    cells: &Tensor<f32>,
    c0: &Tensor<f32>,
    d_output: &Tensor<f32>,
    d_projected: &mut Tensor<f32>,
    d_h0: &mut Tensor<f32>,
    d_c0: &mut Tensor<f32>,
    steps: u32,
    #[comptime] hidden: u32,
) {
    let b = CUBE_POS_X as usize;
    let threads = CUBE_DIM_X as usize;
    let steps = steps as usize;
    let hidden = hidden as usize;
    let g4 = 4 * hidden;
    // The gate gradients of step t + 1 in one half (zeros before the last step), step t's
    // written to the other.
    let mut d_a = Shared::new_slice(2 * g4);
    let mut r = UNIT_POS_X as usize;
    while r < g4 {
        d_a[r] = 0.0f32;
        r += threads;
    }
    let tail = CUBE_COUNT_X as usize * steps * hidden;
    let mut j = UNIT_POS_X as usize;
    while j < hidden {
        d_c0[b * hidden + j] = d_output[tail + b * hidden + j];
        j += threads;
    }
    sync_cube();
    for s in 0..steps {
        let t = steps - 1 - s;
        let read = (s % 2) * g4;
        let write = g4 - read;
        let row = (b * steps + t) * g4;
        let mut j = UNIT_POS_X as usize;
        while j < hidden {
            let mut d_h = d_output[(b * steps + t) * hidden + j];
            for r in 0..g4 {
                d_h += d_a[read + r] * weight[r * hidden + j];
            }
            let i = gates[row + j];
            let f = gates[row + hidden + j];
            let g = gates[row + 2 * hidden + j];
            let o = gates[row + 3 * hidden + j];
            let tanh_c = tanh_of(cells[(b * steps + t) * hidden + j]);
            let d_c = d_c0[b * hidden + j] + d_h * o * (1.0 - tanh_c * tanh_c);
            let mut c_prev = c0[b * hidden + j];
            if t > 0 {
                c_prev = cells[(b * steps + t - 1) * hidden + j];
            }
            let d_i = d_c * g * i * (1.0 - i);
            let d_f = d_c * c_prev * f * (1.0 - f);
            let d_g = d_c * i * (1.0 - g * g);
            let d_o = d_h * tanh_c * o * (1.0 - o);
            d_projected[row + j] = d_i;
            d_projected[row + hidden + j] = d_f;
            d_projected[row + 2 * hidden + j] = d_g;
            d_projected[row + 3 * hidden + j] = d_o;
            d_a[write + j] = d_i;
            d_a[write + hidden + j] = d_f;
            d_a[write + 2 * hidden + j] = d_g;
            d_a[write + 3 * hidden + j] = d_o;
            d_c0[b * hidden + j] = d_c * f;
            j += threads;
        }
        sync_cube();
    }
    // d h_0 = dA_1 W_hh, from the half written last.
    let last = (steps % 2) * g4;
    let mut j = UNIT_POS_X as usize;
    while j < hidden {
        let mut d_h = 0.0f32;
        for r in 0..g4 {
            d_h += d_a[last + r] * weight[r * hidden + j];
        }
        d_h0[b * hidden + j] = d_h;
        j += threads;
    }
}
