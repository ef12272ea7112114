//! Our kernels launched on Burn's CubeCL backend: the recurrence's, in either
//! [`GpuRecurrence`] layout (Adam's launch is in `adam.rs`). Both layouts save the same
//! activations, so a forward in one and a backward in the other agree.

use burn::backend::ops::FloatTensorOps;
use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeDevice};
use cubecl::prelude::{CubeCount, CubeDim};

use crate::cpu::adam::StepConstants;
use crate::gpu::fusion::CubeKernels;
use crate::gpu::kernels::{
    UNITS, backward_kernel, backward_step_kernel, forward_kernel, forward_step_kernel,
    initial_hidden_gradient_kernel,
};
use crate::gpu::layout::GpuRecurrence;

/// Units per cube at most in the per-row kernels; each strides over the hidden units.
const MAX_THREADS: u32 = 256;

/// Batch rows per cube at most in the per-step kernels: `UNITS` threads per row.
const MAX_ROWS: usize = 32;

/// Terms of the per-step kernels' reductions staged per pair of barriers at most; fewer where
/// shared memory is smaller.
const MAX_DEPTH: usize = 128;

impl CubeKernels for CubeBackend {
    fn max_shared_memory(device: &CubeDevice) -> usize {
        device.client().properties().hardware.max_shared_memory_size
    }

    fn adam_step(
        constants: StepConstants,
        param: CubeTensor,
        grad: CubeTensor,
        moment_1: CubeTensor,
        moment_2: CubeTensor,
    ) -> [CubeTensor; 3] {
        crate::gpu::adam::launch(constants, param, grad, moment_1, moment_2)
    }

    fn recurrence_forward(
        layout: GpuRecurrence,
        projected: CubeTensor,
        weight_hh: CubeTensor,
        h0: CubeTensor,
        c0: CubeTensor,
    ) -> [CubeTensor; 3] {
        let [batch, steps, hidden] = dims(&projected);
        let projected = into_contiguous(projected);
        // `W_hh^T`, `[hidden, 4 * hidden]`: unit `j` of gate `q` reads column `q * hidden + j`,
        // so neighbouring units read neighbouring addresses.
        let weight_t = into_contiguous(CubeBackend::float_transpose(weight_hh));
        let (h0, c0) = (into_contiguous(h0), into_contiguous(c0));
        let output = empty_like(&projected, [batch * (steps + 1) * hidden]);
        let gates = empty_like(&projected, [batch, steps, 4 * hidden]);
        let cells = empty_like(&projected, [batch, steps, hidden]);
        let client = projected.client.clone();
        match layout {
            GpuRecurrence::PerStep => {
                let rows = batch.min(MAX_ROWS);
                let depth = staged_depth(&projected, rows, 4 * UNITS as usize, hidden);
                let (count, dim) = per_step_shape(batch, hidden, rows);
                for t in 0..steps {
                    forward_step_kernel::launch(
                        &client,
                        count.clone(),
                        dim,
                        projected.clone().into_tensor_arg(),
                        weight_t.clone().into_tensor_arg(),
                        h0.clone().into_tensor_arg(),
                        c0.clone().into_tensor_arg(),
                        output.clone().into_tensor_arg(),
                        gates.clone().into_tensor_arg(),
                        cells.clone().into_tensor_arg(),
                        batch as u32,
                        steps as u32,
                        t as u32,
                        hidden,
                        rows,
                        depth,
                    );
                }
            }
            GpuRecurrence::PerRow => {
                let (count, dim) = per_row_shape(&projected, batch, hidden);
                forward_kernel::launch(
                    &client,
                    count,
                    dim,
                    projected.into_tensor_arg(),
                    weight_t.into_tensor_arg(),
                    h0.into_tensor_arg(),
                    c0.into_tensor_arg(),
                    output.clone().into_tensor_arg(),
                    gates.clone().into_tensor_arg(),
                    cells.clone().into_tensor_arg(),
                    steps as u32,
                    hidden,
                );
            }
        }
        [output, gates, cells]
    }

    fn recurrence_backward(
        layout: GpuRecurrence,
        weight_hh: CubeTensor,
        gates: CubeTensor,
        cells: CubeTensor,
        c0: CubeTensor,
        d_output: CubeTensor,
    ) -> [CubeTensor; 3] {
        let [batch, steps, hidden] = dims(&gates);
        let d_output = into_contiguous(d_output);
        let (weight, gates) = (into_contiguous(weight_hh), into_contiguous(gates));
        let (cells, c0) = (into_contiguous(cells), into_contiguous(c0));
        let d_projected = empty_like(&d_output, [batch, steps, 4 * hidden]);
        let d_h0 = empty_like(&d_output, [batch, hidden]);
        let d_c0 = empty_like(&d_output, [batch, hidden]);
        let client = d_output.client.clone();
        match layout {
            GpuRecurrence::PerStep => {
                let rows = batch.min(MAX_ROWS);
                let depth = staged_depth(&d_output, rows, UNITS as usize, 4 * hidden);
                let (count, dim) = per_step_shape(batch, hidden, rows);
                for t in (0..steps).rev() {
                    backward_step_kernel::launch(
                        &client,
                        count.clone(),
                        dim,
                        weight.clone().into_tensor_arg(),
                        gates.clone().into_tensor_arg(),
                        cells.clone().into_tensor_arg(),
                        c0.clone().into_tensor_arg(),
                        d_output.clone().into_tensor_arg(),
                        d_projected.clone().into_tensor_arg(),
                        d_c0.clone().into_tensor_arg(),
                        batch as u32,
                        steps as u32,
                        t as u32,
                        hidden,
                        rows,
                        depth,
                    );
                }
                initial_hidden_gradient_kernel::launch(
                    &client,
                    count,
                    dim,
                    weight.into_tensor_arg(),
                    d_projected.clone().into_tensor_arg(),
                    d_h0.clone().into_tensor_arg(),
                    batch as u32,
                    steps as u32,
                    hidden,
                    rows,
                    depth,
                );
            }
            GpuRecurrence::PerRow => {
                let (count, dim) = per_row_shape(&d_output, batch, hidden);
                backward_kernel::launch(
                    &client,
                    count,
                    dim,
                    weight.into_tensor_arg(),
                    gates.into_tensor_arg(),
                    cells.into_tensor_arg(),
                    c0.into_tensor_arg(),
                    d_output.into_tensor_arg(),
                    d_projected.clone().into_tensor_arg(),
                    d_h0.clone().into_tensor_arg(),
                    d_c0.clone().into_tensor_arg(),
                    steps as u32,
                    hidden,
                );
            }
        }
        [d_projected, d_h0, d_c0]
    }
}

/// `[batch, steps, hidden]` sizes of `projected` or `gates` (`[batch, steps, 4 * hidden]`).
fn dims(gates: &CubeTensor) -> [usize; 3] {
    let [batch, steps, width] = gates.meta.shape().dims::<3>();
    [batch, steps, width / 4]
}

/// Per step: a cube for every [`UNITS`] hidden units and `rows` batch rows, a unit for each
/// pair.
fn per_step_shape(batch: usize, hidden: usize, rows: usize) -> (CubeCount, CubeDim) {
    let units = UNITS as usize;
    (
        CubeCount::Static(
            hidden.div_ceil(units) as u32,
            batch.div_ceil(rows) as u32,
            1,
        ),
        CubeDim::new_1d((units * rows) as u32),
    )
}

/// The terms of a reduction of length `len` a per-step cube stages at once: up to
/// [`MAX_DEPTH`] (no more than the reduction needs), halved until its two tiles (`rows` by
/// `depth + 1`, and `depth` by `columns`) fit in the device's shared memory.
fn staged_depth(tensor: &CubeTensor, rows: usize, columns: usize, len: usize) -> usize {
    let shared = tensor.client.properties().hardware.max_shared_memory_size;
    let mut depth = MAX_DEPTH.min(len.next_power_of_two());
    while depth > 8 && 4 * (rows * (depth + 1) + depth * columns) > shared {
        depth /= 2;
    }
    depth
}

/// Per row: one cube per batch row, as many units as fit up to [`MAX_THREADS`] and the hidden
/// size.
fn per_row_shape(tensor: &CubeTensor, batch: usize, hidden: usize) -> (CubeCount, CubeDim) {
    let hardware = &tensor.client.properties().hardware;
    let max = hardware.max_cube_dim.0.min(hardware.max_units_per_cube);
    let threads = (hidden as u32).clamp(1, MAX_THREADS.min(max));
    (
        CubeCount::Static(batch as u32, 1, 1),
        CubeDim::new_1d(threads),
    )
}

/// An uninitialised `f32` tensor on `tensor`'s device.
pub(crate) fn empty_like<const D: usize>(tensor: &CubeTensor, shape: [usize; D]) -> CubeTensor {
    empty_device_dtype(
        tensor.client.clone(),
        tensor.device.clone(),
        Shape::new(shape),
        DType::F32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::TensorMetadata;
    use burn::tensor::{Device, Distribution, Tensor};
    use burn_cubecl::Cube;

    type FloatTensor = burn::backend::tensor::FloatTensor<Cube>;

    /// Forward then backward in `layout` on random inputs: the six results, flat.
    fn run(
        layout: GpuRecurrence,
        inputs: &[Tensor<1>; 5],
        [batch, steps, hidden]: [usize; 3],
    ) -> Vec<Vec<f32>> {
        let [projected, weight, h0, c0, d_output] = inputs.clone().map(|tensor| {
            tensor
                .try_into_primitive::<Cube>()
                .unwrap_or_else(|_| panic!("a wgpu tensor"))
        });
        let shaped = |tensor: FloatTensor, shape: &[usize]| {
            Cube::float_reshape(tensor, Shape::from(shape.to_vec()))
        };
        let forward = Cube::recurrence_forward(
            layout,
            shaped(projected, &[batch, steps, 4 * hidden]),
            shaped(weight.clone(), &[4 * hidden, hidden]),
            shaped(h0, &[batch, hidden]),
            shaped(c0.clone(), &[batch, hidden]),
        );
        let [_, gates, cells] = forward.clone();
        let backward = Cube::recurrence_backward(
            layout,
            shaped(weight, &[4 * hidden, hidden]),
            gates,
            cells,
            shaped(c0, &[batch, hidden]),
            d_output,
        );
        forward
            .into_iter()
            .chain(backward)
            .map(|tensor| {
                let len = tensor.shape().num_elements();
                Tensor::<1>::from_primitive::<Cube>(shaped(tensor, &[len]))
                    .into_data()
                    .try_to_vec::<f32>()
                    .expect("f32")
            })
            .collect()
    }

    /// The per-step kernels (checked against composed ops in the model crate) and the per-row
    /// ones give the same outputs, activations and gradients, on shapes with partial unit
    /// blocks, several row blocks and reductions longer than one staged slice.
    #[test]
    fn both_layouts_agree_in_outputs_activations_and_gradients() {
        let _launches = crate::testing::gpu_launches();
        let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
        for dims @ [batch, steps, hidden] in [[1, 4, 5], [33, 3, 40], [3, 2, 70]] {
            let random =
                |len: usize| Tensor::<1>::random([len], Distribution::Uniform(-1.0, 1.0), &device);
            let inputs = [
                random(batch * steps * 4 * hidden),
                random(4 * hidden * hidden) * 0.3,
                random(batch * hidden),
                random(batch * hidden),
                random(batch * (steps + 1) * hidden),
            ];
            let per_step = run(GpuRecurrence::PerStep, &inputs, dims);
            let per_row = run(GpuRecurrence::PerRow, &inputs, dims);
            let names = ["output", "gates", "cells", "d_projected", "d_h0", "d_c0"];
            for ((name, a), b) in names.iter().zip(&per_step).zip(&per_row) {
                assert_eq!(a.len(), b.len(), "{name}");
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                        "{name} {dims:?}: per step {x}, per row {y}"
                    );
                }
            }
        }
    }
}
