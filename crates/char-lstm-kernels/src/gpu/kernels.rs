//! The recurrence's `#[cube]` kernels (CubeCL's `Tensor` is not Burn's, so they live apart
//! from the host code).
//!
//! Two layouts: per step, one launch per layer and time step over the whole GPU (cube
//! `(x, y)` owns all four gates of [`UNITS`] hidden units for a block of batch rows, so the
//! cell update stays inside it, and the kernel boundary is the barrier between steps); per
//! row, one cube per batch row running the whole time loop in one launch.

use cubecl::prelude::*;

/// Hidden units per cube in the per-step kernels: `4 * UNITS` gate columns each, so a
/// `512`-unit layer spreads over 128 cubes.
pub(crate) const UNITS: u32 = 4;

#[cube]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `tanh` through `exp`, which saturates to +-1 instead of overflowing to NaN for large `|x|`.
#[cube]
fn tanh_of(x: f32) -> f32 {
    1.0 - 2.0 / ((2.0 * x).exp() + 1.0)
}

/// `c_{t-1}` of row `b`, unit `j`: `c_0` at the first step, else the cell saved at `t - 1`.
#[cube]
fn previous_cell(
    cells: &Tensor<f32>,
    c0: &Tensor<f32>,
    b: usize,
    t: usize,
    steps: usize,
    hidden: usize,
    j: usize,
) -> f32 {
    let mut c_prev = c0[b * hidden + j];
    if t > 0 {
        c_prev = cells[(b * steps + t - 1) * hidden + j];
    }
    c_prev
}

/// The gates and the cell update of row `b`, unit `j` at step `t` from its four gate sums
/// (with `projected` already added): saves `i, f, g, o`, `c_t` and `h_t`, returns `h_t`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn cell_forward(
    a_i: f32,
    a_f: f32,
    a_g: f32,
    a_o: f32,
    c0: &Tensor<f32>,
    output: &mut Tensor<f32>,
    gates: &mut Tensor<f32>,
    cells: &mut Tensor<f32>,
    b: usize,
    t: usize,
    steps: usize,
    #[comptime] hidden: usize,
    j: usize,
) -> f32 {
    let row = (b * steps + t) * 4 * hidden;
    let i = sigmoid(a_i);
    let f = sigmoid(a_f);
    let g = tanh_of(a_g);
    let o = sigmoid(a_o);
    // `previous_cell` takes read-only tensors: CubeCL cannot pass a mutable one as such.
    let mut c_prev = c0[b * hidden + j];
    if t > 0 {
        c_prev = cells[(b * steps + t - 1) * hidden + j];
    }
    let c = f * c_prev + i * g;
    let h = o * tanh_of(c);
    gates[row + j] = i;
    gates[row + hidden + j] = f;
    gates[row + 2 * hidden + j] = g;
    gates[row + 3 * hidden + j] = o;
    cells[(b * steps + t) * hidden + j] = c;
    output[(b * steps + t) * hidden + j] = h;
    h
}

/// The gate gradients of row `b`, unit `j` at step `t` from `d h_t` (the output's gradient
/// plus the recurrent one) and `d c_t` from the step after: writes them to `d_projected` and
/// returns `d c_{t-1}`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn cell_backward(
    gates: &Tensor<f32>,
    cells: &Tensor<f32>,
    c0: &Tensor<f32>,
    d_h: f32,
    d_c_next: f32,
    d_projected: &mut Tensor<f32>,
    b: usize,
    t: usize,
    steps: usize,
    #[comptime] hidden: usize,
    j: usize,
) -> f32 {
    let row = (b * steps + t) * 4 * hidden;
    let i = gates[row + j];
    let f = gates[row + hidden + j];
    let g = gates[row + 2 * hidden + j];
    let o = gates[row + 3 * hidden + j];
    let tanh_c = tanh_of(cells[(b * steps + t) * hidden + j]);
    let d_c = d_c_next + d_h * o * (1.0 - tanh_c * tanh_c);
    let c_prev = previous_cell(cells, c0, b, t, steps, hidden, j);
    d_projected[row + j] = d_c * g * i * (1.0 - i);
    d_projected[row + hidden + j] = d_c * c_prev * f * (1.0 - f);
    d_projected[row + 2 * hidden + j] = d_c * i * (1.0 - g * g);
    d_projected[row + 3 * hidden + j] = d_h * tanh_c * o * (1.0 - o);
    d_c * f
}

/// This unit's place in a per-step cube: `(b, j)` and whether both are in range. Cube `x`
/// owns units `x * UNITS ..`, cube `y` batch rows `y * rows ..`.
#[cube]
fn step_position(
    batch: usize,
    #[comptime] hidden: usize,
    #[comptime] rows: usize,
) -> (usize, usize, bool) {
    let units = UNITS as usize;
    let p = UNIT_POS_X as usize;
    let j = CUBE_POS_X as usize * units + p % units;
    let b = CUBE_POS_Y as usize * rows + p / units;
    (b, j, b < batch && j < hidden)
}

/// One forward step `t` of every batch row: the four gate sums `projected + h_{t-1} W_hh^T`
/// of this cube's units over its rows, `depth` terms of the reduction at a time staged in
/// shared memory (`h_{t-1}` rows and the `4 * UNITS` columns of `weight_t = W_hh^T`), then the
/// cell update. `h_{t-1}` is `h0` at the first step, else row `t - 1` of `output`; shapes as in
/// [`forward_kernel`].
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_step_kernel(
    projected: &Tensor<f32>,
    weight_t: &Tensor<f32>,
    h0: &Tensor<f32>,
    c0: &Tensor<f32>,
    output: &mut Tensor<f32>,
    gates: &mut Tensor<f32>,
    cells: &mut Tensor<f32>,
    batch: u32,
    steps: u32,
    t: u32,
    #[comptime] hidden: usize,
    #[comptime] rows: usize,
    #[comptime] depth: usize,
) {
    let batch = batch as usize;
    let steps = steps as usize;
    let t = t as usize;
    let units = UNITS as usize;
    let threads = CUBE_DIM_X as usize;
    let (b, j, live) = step_position(batch, hidden, rows);
    let u = UNIT_POS_X as usize % units;
    let r = UNIT_POS_X as usize / units;
    // Rows padded by one so that the rows a plane reads sit in different banks.
    let mut h_tile = Shared::new_slice(rows * (depth + 1));
    let mut w_tile = Shared::new_slice(depth * 4 * units);
    let mut a_i = 0.0f32;
    let mut a_f = 0.0f32;
    let mut a_g = 0.0f32;
    let mut a_o = 0.0f32;
    let mut k0 = 0usize;
    while k0 < hidden {
        let mut e = UNIT_POS_X as usize;
        while e < rows * depth {
            let row = CUBE_POS_Y as usize * rows + e / depth;
            let k = k0 + e % depth;
            let mut value = 0.0f32;
            if row < batch && k < hidden {
                if t == 0 {
                    value = h0[row * hidden + k];
                } else {
                    value = output[(row * steps + t - 1) * hidden + k];
                }
            }
            h_tile[(e / depth) * (depth + 1) + e % depth] = value;
            e += threads;
        }
        let mut e = UNIT_POS_X as usize;
        while e < depth * 4 * units {
            let k = k0 + e / (4 * units);
            let column = e % (4 * units);
            let unit = CUBE_POS_X as usize * units + column % units;
            let mut value = 0.0f32;
            if k < hidden && unit < hidden {
                value = weight_t[k * 4 * hidden + (column / units) * hidden + unit];
            }
            w_tile[e] = value;
            e += threads;
        }
        sync_cube();
        for kk in 0..depth {
            let h_k = h_tile[r * (depth + 1) + kk];
            let w = kk * 4 * units + u;
            a_i += h_k * w_tile[w];
            a_f += h_k * w_tile[w + units];
            a_g += h_k * w_tile[w + 2 * units];
            a_o += h_k * w_tile[w + 3 * units];
        }
        sync_cube();
        k0 += depth;
    }
    if live {
        let row = (b * steps + t) * 4 * hidden + j;
        a_i += projected[row];
        a_f += projected[row + hidden];
        a_g += projected[row + 2 * hidden];
        a_o += projected[row + 3 * hidden];
        cell_forward(
            a_i, a_f, a_g, a_o, c0, output, gates, cells, b, t, steps, hidden, j,
        );
        if t + 1 == steps {
            // `c_T` after every row's hidden states.
            output[(batch * steps + b) * hidden + j] = cells[(b * steps + t) * hidden + j];
        }
    }
}

/// `sum_r d_a[b, r] W_hh[r, j]` over the `4 * hidden` gate gradients `d_a` of step `t` (row
/// `t` of `d_projected`), for this unit's `(b, j)` of a per-step cube, staged as in
/// [`forward_step_kernel`]; zero where `live` is false (no step after the last).
#[cube]
#[allow(clippy::too_many_arguments)]
fn recurrent_gradient(
    d_projected: &mut Tensor<f32>,
    weight: &Tensor<f32>,
    batch: usize,
    steps: usize,
    t: usize,
    live: bool,
    #[comptime] hidden: usize,
    #[comptime] rows: usize,
    #[comptime] depth: usize,
) -> f32 {
    let units = UNITS as usize;
    let threads = CUBE_DIM_X as usize;
    let u = UNIT_POS_X as usize % units;
    let r = UNIT_POS_X as usize / units;
    let mut a_tile = Shared::new_slice(rows * (depth + 1));
    let mut w_tile = Shared::new_slice(depth * units);
    let mut sum = 0.0f32;
    let mut k0 = 0usize;
    while k0 < 4 * hidden {
        let mut e = UNIT_POS_X as usize;
        while e < rows * depth {
            let row = CUBE_POS_Y as usize * rows + e / depth;
            let k = k0 + e % depth;
            let mut value = 0.0f32;
            if live && row < batch && k < 4 * hidden {
                value = d_projected[(row * steps + t) * 4 * hidden + k];
            }
            a_tile[(e / depth) * (depth + 1) + e % depth] = value;
            e += threads;
        }
        let mut e = UNIT_POS_X as usize;
        while e < depth * units {
            let k = k0 + e / units;
            let unit = CUBE_POS_X as usize * units + e % units;
            let mut value = 0.0f32;
            if live && k < 4 * hidden && unit < hidden {
                value = weight[k * hidden + unit];
            }
            w_tile[e] = value;
            e += threads;
        }
        sync_cube();
        for kk in 0..depth {
            sum += a_tile[r * (depth + 1) + kk] * w_tile[kk * units + u];
        }
        sync_cube();
        k0 += depth;
    }
    sum
}

/// One backward step `t` of every batch row, in reverse time: `d h_t` from the output's
/// gradient and the gate gradients of step `t + 1` (already in `d_projected`), then this
/// step's gate gradients; `d_c` carries `d c_t` from launch to launch (the output's `c_T`
/// gradient before the last step) and ends as `d c_0`. Shapes as in [`backward_kernel`].
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_step_kernel(
    weight: &Tensor<f32>,
    gates: &Tensor<f32>,
    cells: &Tensor<f32>,
    c0: &Tensor<f32>,
    d_output: &Tensor<f32>,
    d_projected: &mut Tensor<f32>,
    d_c: &mut Tensor<f32>,
    batch: u32,
    steps: u32,
    t: u32,
    #[comptime] hidden: usize,
    #[comptime] rows: usize,
    #[comptime] depth: usize,
) {
    let batch = batch as usize;
    let steps = steps as usize;
    let t = t as usize;
    let last = t + 1 == steps;
    let d_h_next = recurrent_gradient(
        d_projected,
        weight,
        batch,
        steps,
        t + 1,
        !last,
        hidden,
        rows,
        depth,
    );
    let (b, j, live) = step_position(batch, hidden, rows);
    if live {
        let mut d_c_next = d_c[b * hidden + j];
        if last {
            d_c_next = d_output[(batch * steps + b) * hidden + j];
        }
        let d_h = d_output[(b * steps + t) * hidden + j] + d_h_next;
        d_c[b * hidden + j] = cell_backward(
            gates,
            cells,
            c0,
            d_h,
            d_c_next,
            d_projected,
            b,
            t,
            steps,
            hidden,
            j,
        );
    }
}

/// `d h_0 = d_a_0 W_hh`, after the backward's first step; shapes as in [`backward_kernel`]
/// (`d_projected` is only read, mutable as [`backward_step_kernel`]'s, whose reduction this
/// shares: CubeCL cannot pass a mutable tensor as a read-only one).
#[cube(launch)]
pub(crate) fn initial_hidden_gradient_kernel(
    weight: &Tensor<f32>,
    d_projected: &mut Tensor<f32>,
    d_h0: &mut Tensor<f32>,
    batch: u32,
    steps: u32,
    #[comptime] hidden: usize,
    #[comptime] rows: usize,
    #[comptime] depth: usize,
) {
    let batch = batch as usize;
    let sum = recurrent_gradient(
        d_projected,
        weight,
        batch,
        steps as usize,
        0,
        true,
        hidden,
        rows,
        depth,
    );
    let (b, j, live) = step_position(batch, hidden, rows);
    if live {
        d_h0[b * hidden + j] = sum;
    }
}

/// Per row: cube `b` runs batch row `b` through every step; shapes as in
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
    #[comptime] hidden: usize,
) {
    let b = CUBE_POS_X as usize;
    let threads = CUBE_DIM_X as usize;
    let steps = steps as usize;
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
            h[write + j] = cell_forward(
                a_i, a_f, a_g, a_o, c0, output, gates, cells, b, t, steps, hidden, j,
            );
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

/// Per row: backpropagation through time for batch row `b`: `weight` is `W_hh`
/// (`[4 * hidden, hidden]`, so unit `j` reads column `j`), `d_output` the gradient of the
/// forward's output; writes the gradient of `projected` and those of `h_0` and `c_0`
/// (`[batch, hidden]`; `d_c0` carries the cell gradient from step to step on the way).
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
    #[comptime] hidden: usize,
) {
    let b = CUBE_POS_X as usize;
    let threads = CUBE_DIM_X as usize;
    let steps = steps as usize;
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
            let d_c = d_c0[b * hidden + j];
            d_c0[b * hidden + j] = cell_backward(
                gates,
                cells,
                c0,
                d_h,
                d_c,
                d_projected,
                b,
                t,
                steps,
                hidden,
                j,
            );
            for q in 0..4usize {
                d_a[write + q * hidden + j] = d_projected[row + q * hidden + j];
            }
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
