//! Adam's step of one parameter as one kernel on Burn's CubeCL backend, where Burn's `Adam`
//! launches about ten: each value's moments and new value in one pass, with the expressions of
//! the CPU pass (`cpu/adam.rs`) and of Burn's `Adam`.

use burn::backend::tensor::FloatTensor;
use burn::tensor::Tensor;
use burn_cubecl::Cube;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::{CubeCount, CubeDim};

use crate::cpu::adam::StepConstants;
use crate::gpu::cube_backend::empty_like;
use crate::gpu::fusion::CubeKernels;
use crate::gpu::gpu_primitive;
use kernel::adam_kernel;

/// Threads per cube.
const THREADS: u32 = 256;

/// Cubes at most, about as many threads as a large GPU runs at once (an H100's 132
/// multiprocessors hold 2,048 each); a larger parameter takes several values per thread.
const MAX_CUBES: u32 = 1024;

/// The kernel (CubeCL's `Tensor` is not Burn's, so it lives apart from the host code).
mod kernel {
    use cubecl::prelude::*;

    /// One step of Adam for every value: `param_out`, `m_out`, `v_out` from `param`, `grad` and
    /// the moments `m`, `v` (not read when `first` is 1); each thread takes the values `stride`
    /// (the threads of the grid) apart.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn adam_kernel(
        param: &Tensor<f32>,
        grad: &Tensor<f32>,
        m: &Tensor<f32>,
        v: &Tensor<f32>,
        param_out: &mut Tensor<f32>,
        m_out: &mut Tensor<f32>,
        v_out: &mut Tensor<f32>,
        beta_1: f32,
        beta_2: f32,
        combined_factor: f32,
        epsilon: f32,
        decay: f32,
        lr: f32,
        first: u32,
        stride: u32,
    ) {
        let mut i = ABSOLUTE_POS;
        while i < param.len() {
            let g = grad[i];
            let mut m_new = g * (1.0 - beta_1);
            let mut v_new = g * g * (1.0 - beta_2);
            if first == 0 {
                m_new = m[i] * beta_1 + g * (1.0 - beta_1);
                v_new = v[i] * beta_2 + g * g * (1.0 - beta_2);
            }
            m_out[i] = m_new;
            v_out[i] = v_new;
            param_out[i] =
                param[i] * decay - m_new * combined_factor / (v_new.sqrt() + epsilon) * lr;
            i += stride as usize;
        }
    }
}

/// Launches the kernel over flat tensors: `[parameter, moment_1, moment_2]` after it.
pub(crate) fn launch(
    k: StepConstants,
    param: CubeTensor,
    grad: CubeTensor,
    moment_1: CubeTensor,
    moment_2: CubeTensor,
) -> [CubeTensor; 3] {
    let len = param.meta.shape().num_elements();
    let [param, grad, moment_1, moment_2] = [param, grad, moment_1, moment_2].map(into_contiguous);
    let outputs = [(); 3].map(|_| empty_like(&param, [len]));
    let cubes = (len.div_ceil(THREADS as usize).max(1) as u32).min(MAX_CUBES);
    adam_kernel::launch(
        &param.client.clone(),
        CubeCount::Static(cubes, 1, 1),
        CubeDim::new_1d(THREADS),
        param.into_tensor_arg(),
        grad.into_tensor_arg(),
        moment_1.into_tensor_arg(),
        moment_2.into_tensor_arg(),
        outputs[0].clone().into_tensor_arg(),
        outputs[1].clone().into_tensor_arg(),
        outputs[2].clone().into_tensor_arg(),
        k.beta_1,
        k.beta_2,
        k.combined_factor,
        k.epsilon,
        k.decay,
        k.lr,
        u32::from(k.first),
        cubes * THREADS,
    );
    outputs
}

/// One Adam step of `tensor` when it, `grad` and the moments (`None` at the first step) are
/// `f32` on Burn's CubeCL backend (with or without fusion): `[parameter, moment_1, moment_2]`
/// after it; `None` elsewhere.
pub(crate) fn step<const D: usize>(
    constants: StepConstants,
    tensor: &Tensor<D>,
    grad: &Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
) -> Option<[Tensor<D>; 3]> {
    let shape = tensor.shape();
    let flat = |t: &Tensor<D>| gpu_primitive(&t.clone().reshape([-1]));
    let moments = match &moments {
        Some((m, v)) => Some((flat(m)?, flat(v)?)),
        None => None,
    };
    let results = update(constants, flat(tensor)?, flat(grad)?, moments);
    Some(results.map(|t| Tensor::<1>::from_primitive::<Cube>(t).reshape(shape.clone())))
}

/// One Adam step of a flat parameter, its gradient and the moments before it (`None` at the
/// first step): `[parameter, moment_1, moment_2]` after it.
pub(crate) fn update(
    constants: StepConstants,
    param: FloatTensor<Cube>,
    grad: FloatTensor<Cube>,
    moments: Option<(FloatTensor<Cube>, FloatTensor<Cube>)>,
) -> [FloatTensor<Cube>; 3] {
    // Not read at the first step.
    let (m, v) = moments.unwrap_or_else(|| (grad.clone(), grad.clone()));
    Cube::adam_step(constants, param, grad, m, v)
}
