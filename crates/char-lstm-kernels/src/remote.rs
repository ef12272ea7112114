//! Our ops on the devices of a Burn remote server (`trainer serve`): a client on `--backend
//! remote` runs each of them there as Burn custom operations, one message an op, instead of the
//! many tensor ops (and round trips) of the composed forward and backward. A server of flex
//! devices hosts the fused CPU ops; one of GPU devices (with the `gpu` feature) the recurrence
//! and Adam as GPU kernels, and leaves the rest to Burn's composed ops.
//!
//! An op travels as two custom operations, `char-lstm/{name}/forward` and
//! `char-lstm/{name}/backward`, with the settings of its CPU form ([`HostedOp`]) whatever the
//! server runs. The forward's outputs are the op's output and the buffers its backward needs,
//! which stay on the server as tensors; the backward takes the inputs, the output, those buffers
//! and the output's gradient, and returns the inputs' gradients. A server of this crate answers
//! `char-lstm/hosted` with one flag per op of [`OPS`] ([`host_fused_ops`], `host_gpu_ops`,
//! [`host_no_fused_ops`]); a client asks each device once, and composes the ops it does not
//! host. A server that registered none (plain Burn, or a `trainer serve` older than this) fails
//! that first question.

use std::sync::{Mutex, PoisonError};

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::backend::ir::{BackendIr, CustomOpIr, HandleContainer, ScalarIr, TensorIr};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DispatchDevice, Flex, Remote, RemoteDevice};
use burn::remote::CustomOpClient;
use burn::server::RemoteServer;
use burn::tensor::{DType, Shape, Tensor, TensorData};

use crate::cpu::adam::{StepConstants, fused_update};
use crate::cpu::cross_entropy::CrossEntropy;
use crate::cpu::dropout::Mask;
use crate::cpu::flex_op::{self, FlexOp, HostedOp};
use crate::cpu::projection::Projection;
use crate::cpu::recurrence::Recurrence;
use crate::custom_op::{self, CustomOp, OpBackend, op_backend};

op_backend!(Remote);

/// The id of the question which ops a server hosts.
const HOSTED: &str = "char-lstm/hosted";

/// The name of Adam's step of one parameter, an op without autodiff.
const ADAM: &str = "adam";

/// The ops a server may host, in the order of the flags that answer [`HOSTED`].
const OPS: [&str; 5] = [
    Recurrence::NAME,
    Projection::NAME,
    CrossEntropy::NAME,
    Mask::NAME,
    ADAM,
];

/// The id of the custom operation of op `name`'s `pass` (`forward` or `backward`; Adam's
/// `step`).
fn id(name: &str, pass: &str) -> String {
    format!("char-lstm/{name}/{pass}")
}

/// The remote device `tensor` lives on; `None` for any other device.
pub(crate) fn remote_device<const D: usize>(tensor: &Tensor<D>) -> Option<RemoteDevice> {
    match tensor.device().inner().as_dispatch() {
        DispatchDevice::Remote(device) => Some(device.clone()),
        _ => None,
    }
}

/// Whether `tensor` lives on a remote device whose server hosts op `name`; asks the server the
/// first time for each device.
pub(crate) fn hosts<const D: usize>(tensor: &Tensor<D>, name: &str) -> bool {
    static ANSWERS: Mutex<Vec<(RemoteDevice, Vec<&str>)>> = Mutex::new(Vec::new());
    let Some(device) = remote_device(tensor) else {
        return false;
    };
    let mut answers = ANSWERS.lock().unwrap_or_else(PoisonError::into_inner);
    let index = match answers.iter().position(|(known, _)| *known == device) {
        Some(index) => index,
        None => {
            let hosted = ask_hosted(&device);
            answers.push((device, hosted));
            answers.len() - 1
        }
    };
    answers[index].1.contains(&name)
}

/// The ops of [`OPS`] the server hosts, from its answer to [`HOSTED`].
///
/// # Panics
/// Where the server has no answer: its session has stopped on the unknown operation, so no op
/// can run there any more.
fn ask_hosted(device: &RemoteDevice) -> Vec<&'static str> {
    let client = CustomOpClient::new(device);
    let answer = TensorIr::uninit(
        client.create_empty_handle(),
        Shape::from([OPS.len()]),
        DType::F32,
    );
    let answer = client.register(CustomOpIr::new(HOSTED, &[], &[answer]));
    let answer = Remote::from_plain(answer.into_iter().next().expect("one output"));
    let flags = answer
        .try_into_data()
        .ok()
        .and_then(|data| data.try_to_vec::<f32>().ok())
        .filter(|flags| flags.len() == OPS.len())
        .unwrap_or_else(|| {
            panic!(
                "the server cannot say which of char-lstm's fused ops it hosts: it is not a \
                 `trainer serve` of this version or later"
            )
        });
    OPS.into_iter()
        .zip(flags)
        .filter_map(|(name, flag)| (flag == 1.0).then_some(name))
        .collect()
}

/// Runs `op` on its server, as [`flex_op::run`] does on flex.
pub(crate) fn run<const N: usize, O: HostedOp<N>>(
    op: O,
    inputs: [Tensor<1>; N],
) -> Option<Tensor<1>> {
    custom_op::run::<Remote, _, N>(Shipped(op), inputs)
}

/// A [`HostedOp`] as the client sends it.
#[derive(Debug)]
struct Shipped<O, const N: usize>(O);

impl<O: HostedOp<N>, const N: usize> CustomOp<Remote, N> for Shipped<O, N> {
    /// What the backward needs, on the server.
    type Saved = Vec<FloatTensor<Remote>>;

    fn forward(&self, inputs: &[FloatTensor<Remote>; N]) -> (FloatTensor<Remote>, Self::Saved) {
        let lens = self.0.output_lens(inputs.each_ref().map(len));
        let mut outputs = ship(
            id(O::NAME, "forward"),
            inputs.to_vec(),
            &lens,
            self.0.settings(),
        );
        let output = outputs.remove(0);
        (output, outputs)
    }

    fn backward(
        &self,
        inputs: &[FloatTensor<Remote>; N],
        output: &FloatTensor<Remote>,
        saved: &Self::Saved,
        d_output: FloatTensor<Remote>,
    ) -> [FloatTensor<Remote>; N] {
        let lens = inputs.each_ref().map(len);
        let mut all = inputs.to_vec();
        all.push(output.clone());
        all.extend(saved.iter().cloned());
        all.push(d_output);
        let gradients = ship(id(O::NAME, "backward"), all, &lens, self.0.settings());
        gradients
            .try_into()
            .unwrap_or_else(|_| panic!("one gradient per input"))
    }
}

/// The number of values of `tensor`.
fn len(tensor: &FloatTensor<Remote>) -> usize {
    tensor.shape().num_elements()
}

/// Sends the custom operation `id` of `inputs` and `settings` to the inputs' server; its flat
/// outputs of `output_lens` values.
fn ship(
    id: String,
    inputs: Vec<FloatTensor<Remote>>,
    output_lens: &[usize],
    settings: Vec<u64>,
) -> Vec<FloatTensor<Remote>> {
    let client = CustomOpClient::new(&inputs[0].device());
    let outputs = output_lens
        .iter()
        .map(|&len| TensorIr::uninit(client.create_empty_handle(), Shape::from([len]), DType::F32))
        .collect();
    client.register(CustomOpIr {
        id,
        inputs: inputs.into_iter().map(|input| input.into_ir()).collect(),
        outputs,
        scalars: settings.into_iter().map(ScalarIr::UInt).collect(),
    })
}

/// One step of Adam with `constants` of `param` (its gradient `grad`, the moments before, none
/// at the first step) on the server of its remote device, where that hosts the ops: the new
/// parameter and moments, as [`fused_update`] computes them there; `None` elsewhere.
pub(crate) fn adam_step<const D: usize>(
    constants: StepConstants,
    param: &Tensor<D>,
    grad: &Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
) -> Option<[Tensor<D>; 3]> {
    if !hosts(param, ADAM) {
        return None;
    }
    let shape = param.shape();
    let flat = |t: &Tensor<D>| Remote::plain(t.clone().reshape([-1]));
    let mut inputs = vec![flat(param)?, flat(grad)?];
    if let Some((m, v)) = &moments {
        inputs.extend([flat(m)?, flat(v)?]);
    }
    let len = shape.num_elements();
    let outputs = ship(
        id(ADAM, "step"),
        inputs,
        &[len; 3],
        adam_settings(constants),
    );
    let outputs: [FloatTensor<Remote>; 3] = outputs.try_into().ok()?;
    Some(outputs.map(|t| Remote::from_plain(t).reshape(shape.clone())))
}

/// Adam's constants as settings of its custom operation.
fn adam_settings(k: StepConstants) -> Vec<u64> {
    let floats = [
        k.beta_1,
        k.beta_2,
        k.combined_factor,
        k.epsilon,
        k.decay,
        k.lr,
    ];
    let floats = floats.iter().map(|x| u64::from(x.to_bits()));
    floats.chain([u64::from(k.first)]).collect()
}

/// The constants of [`adam_settings`].
fn adam_constants(settings: &[u64]) -> StepConstants {
    let float = |i: usize| f32::from_bits(settings[i] as u32);
    StepConstants {
        beta_1: float(0),
        beta_2: float(1),
        combined_factor: float(2),
        epsilon: float(3),
        decay: float(4),
        lr: float(5),
        first: settings[6] == 1,
    }
}

/// `server`, for flex devices, with the fused CPU ops hosted and the clients' question answered.
pub fn host_fused_ops(server: RemoteServer) -> RemoteServer {
    let server = server.with_custom_op::<Flex, _>(HOSTED, answer::<Flex>(&OPS));
    let server = host_adam::<Flex>(server, fused_update);
    let server = host::<Flex, Recurrence, 4>(server);
    let server = host::<Flex, Projection, 3>(server);
    let server = host::<Flex, CrossEntropy, 1>(server);
    host::<Flex, Mask, 1>(server)
}

/// `server`, for GPU devices (Burn's CubeCL backend: wgpu, cuda), with the recurrence and
/// Adam hosted as GPU kernels and the clients' question answered; the recurrence only in the
/// per-step layout (the default), which fits any size.
#[cfg(feature = "gpu")]
pub fn host_gpu_ops(server: RemoteServer) -> RemoteServer {
    use crate::gpu::layout::GpuRecurrence;
    use burn_cubecl::Cube;

    let hosted: &[&str] = match GpuRecurrence::active() {
        GpuRecurrence::PerStep => &[Recurrence::NAME, ADAM],
        GpuRecurrence::PerRow => &[ADAM],
    };
    let server = server.with_custom_op::<Cube, _>(HOSTED, answer::<Cube>(hosted));
    let server = host_adam::<Cube>(server, crate::gpu::adam::update);
    host::<Cube, crate::gpu::recurrence::Recurrence, 4>(server)
}

/// `server`, for devices of backend `B`, telling clients that it hosts no fused ops, so that they
/// compose theirs.
pub fn host_no_fused_ops<B: BackendIr>(server: RemoteServer) -> RemoteServer {
    server.with_custom_op::<B, _>(HOSTED, answer::<B>(&[]))
}

/// A handler that answers [`HOSTED`]: 1 for each op of [`OPS`] in `hosted`, else 0.
fn answer<B: BackendIr>(
    hosted: &'static [&'static str],
) -> impl Fn(&mut HandleContainer<B::Handle>, &CustomOpIr, &B::Device) + Send + Sync + 'static {
    move |handles, ir, device| {
        let flags = OPS.map(|name| if hosted.contains(&name) { 1.0f32 } else { 0.0 });
        let answer = B::float_from_data(TensorData::new(flags.to_vec(), [OPS.len()]), device);
        handles.register_float_tensor::<B>(&ir.outputs[0].id, answer);
    }
}

/// An op that a remote server's devices of backend `B` run for clients that send
/// [`ServedOp::Sent`].
pub(crate) trait ServedOp<B: Backend, const N: usize>: CustomOp<B, N> {
    /// The op as clients send it: its name and settings.
    type Sent: HostedOp<N>;

    /// The op that runs `sent` here.
    fn served(sent: Self::Sent) -> Self;

    /// What the backward needs, as flat tensors: the forward's outputs after its output.
    fn saved_buffers(saved: Self::Saved) -> Vec<FloatTensor<B>>;

    /// What the backward needs, from [`ServedOp::saved_buffers`] as the backward receives them.
    fn saved_from(&self, buffers: Vec<FloatTensor<B>>) -> Self::Saved;
}

/// The CPU ops run on flex as they run on flex at a client.
impl<O: HostedOp<N>, const N: usize> ServedOp<Flex, N> for O {
    type Sent = O;

    fn served(sent: O) -> O {
        sent
    }

    fn saved_buffers(saved: O::Saved) -> Vec<FlexTensor> {
        O::saved_buffers(saved)
            .into_iter()
            .map(flex_op::flat)
            .collect()
    }

    fn saved_from(&self, buffers: Vec<FlexTensor>) -> O::Saved {
        O::saved_from(
            buffers
                .iter()
                .map(|buffer| flex_op::values(buffer).into_owned())
                .collect(),
        )
    }
}

/// `server` with `O`'s forward and backward as handlers for devices of backend `B`.
fn host<B: BackendIr, O: ServedOp<B, N>, const N: usize>(server: RemoteServer) -> RemoteServer {
    let name = <O::Sent as FlexOp<N>>::NAME;
    let op = |ir: &CustomOpIr| O::served(O::Sent::from_settings(&settings(ir)));
    server
        .with_custom_op::<B, _>(&id(name, "forward"), move |handles, ir, _| {
            let inputs = received::<B>(handles, ir).try_into();
            let inputs = inputs.unwrap_or_else(|_| panic!("{}: {N} inputs", ir.id));
            let (output, saved) = op(ir).forward(&inputs);
            let outputs = std::iter::once(output).chain(O::saved_buffers(saved));
            send::<B>(handles, ir, outputs);
        })
        .with_custom_op::<B, _>(&id(name, "backward"), move |handles, ir, _| {
            let op = op(ir);
            let mut received = received::<B>(handles, ir);
            let d_output = received.pop().expect("the output's gradient");
            let mut saved = received.split_off(N);
            let output = saved.remove(0);
            let inputs = received.try_into();
            let inputs = inputs.unwrap_or_else(|_| panic!("{}: {N} inputs", ir.id));
            let saved = op.saved_from(saved);
            send::<B>(handles, ir, op.backward(&inputs, &output, &saved, d_output));
        })
}

/// One step of Adam: the new parameter and moments from the parameter, its gradient and the
/// moments before it (`None` at the first step).
type AdamUpdate<B> = fn(
    StepConstants,
    FloatTensor<B>,
    FloatTensor<B>,
    Option<(FloatTensor<B>, FloatTensor<B>)>,
) -> [FloatTensor<B>; 3];

/// `server` with Adam's step by `update` as the handler for devices of backend `B`.
fn host_adam<B: BackendIr>(server: RemoteServer, update: AdamUpdate<B>) -> RemoteServer {
    server.with_custom_op::<B, _>(&id(ADAM, "step"), move |handles, ir, _| {
        let constants = adam_constants(&settings(ir));
        let mut received = received::<B>(handles, ir).into_iter();
        let param = received.next().expect("the parameter");
        let grad = received.next().expect("its gradient");
        let moments = received.next().zip(received.next());
        send::<B>(handles, ir, update(constants, param, grad, moments));
    })
}

/// The op's settings, as [`ship`] sent them.
fn settings(ir: &CustomOpIr) -> Vec<u64> {
    ir.scalars
        .iter()
        .map(|scalar| match scalar {
            ScalarIr::UInt(value) => *value,
            other => panic!(
                "a setting of {}: {other:?}, expected an unsigned integer",
                ir.id
            ),
        })
        .collect()
}

/// The op's inputs.
fn received<B: BackendIr>(
    handles: &mut HandleContainer<B::Handle>,
    ir: &CustomOpIr,
) -> Vec<FloatTensor<B>> {
    ir.inputs
        .iter()
        .map(|input| handles.get_float_tensor::<B>(input))
        .collect()
}

/// Registers `tensors` as the op's outputs.
fn send<B: BackendIr>(
    handles: &mut HandleContainer<B::Handle>,
    ir: &CustomOpIr,
    tensors: impl IntoIterator<Item = FloatTensor<B>>,
) {
    for (output, tensor) in ir.outputs.iter().zip(tensors) {
        handles.register_float_tensor::<B>(&output.id, tensor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;
    use burn::remote::RemoteHost;
    use burn::server::WebSocketTransport;
    use burn::tensor::{Device, Distribution, Int};

    /// The remote device of a server of `device` on a free loopback port, set up by `with_ops`,
    /// serving on a thread of its own until the test process ends.
    fn serving(device: Device, with_ops: fn(RemoteServer) -> RemoteServer) -> Device {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let server = with_ops(RemoteServer::new([device]));
        std::thread::spawn(move || server.serve(WebSocketTransport::from_listener(listener)));
        Device::remote_options(&RemoteHost::websocket(&url))
            .init()
            .expect("the server answers")
    }

    /// `tensor`'s values.
    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec().unwrap()
    }

    /// `values` as a tensor of `shape` on `device`, tracked.
    fn tracked<const D: usize>(values: &Tensor<D>, device: &Device) -> Tensor<D> {
        Tensor::from_data(values.to_data(), device).require_grad()
    }

    /// Every hosted op, forward and backward, through a server that hosts them: the same bits as
    /// on flex here, since the server runs the same code on the same values (dropout's mask
    /// included: its seed travels with the op).
    #[test]
    fn hosted_ops_run_on_the_server_as_on_flex() {
        let _rng = crate::testing::device_rng();
        let there = serving(Device::flex(), host_fused_ops).autodiff();
        let here = Device::flex().autodiff();
        here.seed(11);
        let plain = here.clone().without_autodiff();
        let random = |shape: [usize; 2]| {
            Tensor::<2>::random(shape, Distribution::Uniform(-1.0, 1.0), &plain)
        };
        let (batch, steps, hidden, vocab) = (3, 5, 6, 7);
        let projected = random([batch * steps, 4 * hidden]).reshape([batch, steps, 4 * hidden]);
        let [weight_hh, h0, c0] =
            [[4 * hidden, hidden], [batch, hidden], [batch, hidden]].map(random);
        let [w_out, b_out] = [random([vocab, hidden]), random([1, vocab])];
        let targets: Vec<i64> = (0..batch as i64 * steps as i64)
            .map(|i| i * 5 % 7)
            .collect();
        let run = |device: &Device| {
            let projected = tracked(&projected, device);
            let [weight_hh, h0, c0, w_out] =
                [&weight_hh, &h0, &c0, &w_out].map(|t| tracked(t, device));
            let b_out = tracked(&b_out.clone().reshape([vocab]), device);
            let states = crate::fused_recurrence(&projected, &weight_hh, &h0, &c0).expect("hosted");
            let hidden_states = states
                .slice(0..batch * steps * hidden)
                .reshape([batch * steps, hidden]);
            // The server in this process draws from flex's one generator, seeded alike for both.
            device.seed(5);
            let dropout = DropoutConfig::new(0.3).init();
            let hidden_states = crate::fused_dropout(&dropout, hidden_states).expect("hosted");
            let logits = crate::fused_projection(
                &hidden_states,
                &w_out,
                &b_out,
                crate::WeightLayout::OutputMajor,
            )
            .expect("hosted");
            let targets = Tensor::<1, Int>::from_data(
                TensorData::new(targets.clone(), [batch * steps]),
                device,
            );
            let loss = crate::fused_cross_entropy(&logits, &targets).expect("hosted");
            let grads = loss.backward();
            let gradient = |tensor: &Tensor<2>| values(tensor.grad(&grads).expect("a gradient"));
            vec![
                values(loss.clone()),
                values(projected.grad(&grads).expect("a gradient")),
                gradient(&weight_hh),
                gradient(&h0),
                gradient(&c0),
                gradient(&w_out),
                values(b_out.grad(&grads).expect("a gradient")),
            ]
        };
        assert_eq!(run(&there), run(&here));
    }

    /// A pass of Adam's step on `[parameter, gradient]` and the moments (`None` at the first
    /// step): `[parameter, moment_1, moment_2]` after it.
    type AdamPass = fn(
        StepConstants,
        &Tensor<2>,
        &Tensor<2>,
        Option<(Tensor<2>, Tensor<2>)>,
    ) -> Option<[Tensor<2>; 3]>;

    /// Adam's step of a parameter through the server of `there` against `pass` on `here`, the
    /// device it serves: the same bits at the first step (no moments yet) and after, with and
    /// without weight decay.
    fn adam_through_the_server_is(there: &Device, here: &Device, pass: AdamPass) {
        here.seed(3);
        let random = || Tensor::<2>::random([37, 19], Distribution::Uniform(-1.0, 1.0), here);
        let [param, grad, m, v] = [random(), random(), random(), random().abs()];
        for (decay, first) in [(1.0, true), (1.0, false), (0.995, false)] {
            let constants = StepConstants {
                beta_1: 0.9,
                beta_2: 0.999,
                combined_factor: 0.7,
                epsilon: 1e-8,
                decay,
                lr: 0.01,
                first,
            };
            let step = |device: &Device, pass: AdamPass| {
                let on = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), device);
                let moments = (!first).then(|| (on(&m), on(&v)));
                pass(constants, &on(&param), &on(&grad), moments).expect("the pass runs there")
            };
            let shipped = step(there, adam_step);
            for (shipped, local) in shipped.into_iter().zip(step(here, pass)) {
                assert_eq!(values(shipped), values(local));
            }
        }
    }

    /// Adam through a server of flex devices is the fused CPU pass there.
    #[test]
    fn adam_through_a_cpu_server_is_the_fused_pass_there() {
        let _rng = crate::testing::device_rng();
        let there = serving(Device::flex(), host_fused_ops);
        adam_through_the_server_is(
            &there,
            &Device::flex(),
            |constants, param, grad, moments| {
                let flex = |t: &Tensor<2>| {
                    let flat: Tensor<1> = t.clone().reshape([-1]);
                    flat.try_into_primitive::<Flex>().expect("on flex")
                };
                let moments = moments.map(|(m, v)| (flex(&m), flex(&v)));
                let updated = fused_update(constants, flex(param), flex(grad), moments);
                Some(updated.map(|t| Tensor::<1>::from_primitive::<Flex>(t).reshape(param.shape())))
            },
        );
    }

    /// A server that cannot answer the question (plain Burn's, or an older `trainer serve`)
    /// stops the client with a message that says so, rather than a decoding error.
    #[test]
    #[should_panic(expected = "cannot say which of char-lstm's fused ops it hosts")]
    fn a_server_that_cannot_answer_is_named_as_such() {
        let there = serving(Device::flex(), |server| server);
        crate::fused_projection(
            &Tensor::<2>::zeros([2, 3], &there),
            &Tensor::<2>::zeros([4, 3], &there),
            &Tensor::<1>::zeros([4], &there),
            crate::WeightLayout::OutputMajor,
        );
    }

    /// A server of another backend says it hosts none: the ops are left to Burn's composed ones.
    #[test]
    fn a_server_that_hosts_no_ops_leaves_them_to_burn() {
        let there = serving(Device::flex(), host_no_fused_ops::<Flex>);
        let zeros = |shape: [usize; 2]| Tensor::<2>::zeros(shape, &there);
        let projected = Tensor::<3>::zeros([1, 2, 8], &there);
        let recurrence =
            crate::fused_recurrence(&projected, &zeros([8, 2]), &zeros([1, 2]), &zeros([1, 2]));
        assert!(recurrence.is_none());
    }

    /// A server of a GPU device (wgpu; lavapipe on a machine without a GPU).
    #[cfg(feature = "gpu")]
    fn gpu() -> Device {
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
    }

    /// The recurrence through a server of a GPU device runs there as the GPU kernels: its output
    /// and its inputs' gradients match the fused CPU op here, over one step (which the local
    /// GPU path leaves to composed ops) and several.
    #[cfg(feature = "gpu")]
    #[test]
    fn a_gpu_server_runs_the_recurrence_as_its_kernels() {
        let _launches = crate::testing::gpu_launches();
        let _rng = crate::testing::device_rng();
        let there = serving(gpu(), host_gpu_ops).autodiff();
        let here = Device::flex();
        here.seed(13);
        let (batch, hidden) = (3, 6);
        for steps in [1, 5] {
            let random = |shape: [usize; 2]| {
                Tensor::<2>::random(shape, Distribution::Uniform(-1.0, 1.0), &here)
            };
            let inputs = [
                [batch * steps, 4 * hidden],
                [4 * hidden, hidden],
                [batch, hidden],
                [batch, hidden],
            ]
            .map(random);
            let weights = random([1, batch * (steps + 1) * hidden]).reshape([-1]);
            let run = |device: &Device| {
                let [projected, weight_hh, h0, c0] = inputs.each_ref().map(|t| tracked(t, device));
                let sequence = projected.clone().reshape([batch, steps, 4 * hidden]);
                let output =
                    crate::fused_recurrence(&sequence, &weight_hh, &h0, &c0).expect("hosted");
                let weights = Tensor::<1>::from_data(weights.to_data(), device);
                let grads = (output.clone() * weights).sum().backward();
                let gradients = [projected, weight_hh, h0, c0]
                    .map(|t| values(t.grad(&grads).expect("a gradient")));
                [vec![values(output)], gradients.to_vec()].concat()
            };
            let (on_gpu, on_cpu) = (run(&there), run(&here.clone().autodiff()));
            let names = ["output", "d_projected", "d_weight_hh", "d_h0", "d_c0"];
            for ((name, gpu), cpu) in names.iter().zip(&on_gpu).zip(&on_cpu) {
                assert_eq!(gpu.len(), cpu.len(), "{name}");
                for (x, y) in gpu.iter().zip(cpu) {
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                        "{name}, {steps} step(s): through the GPU server {x}, here {y}"
                    );
                }
            }
        }
    }

    /// Adam through a server of a GPU device is the GPU kernel there.
    #[cfg(feature = "gpu")]
    #[test]
    fn adam_through_a_gpu_server_is_the_kernel_there() {
        let _launches = crate::testing::gpu_launches();
        let there = serving(gpu(), host_gpu_ops);
        adam_through_the_server_is(&there, &gpu(), crate::gpu::adam::step);
    }

    /// A server of a GPU device hosts no CPU op: the projection, the loss and dropout are left
    /// to Burn's composed ops.
    #[cfg(feature = "gpu")]
    #[test]
    fn a_gpu_server_leaves_the_cpu_ops_to_burn() {
        let _launches = crate::testing::gpu_launches();
        let there = serving(gpu(), host_gpu_ops).autodiff();
        let zeros = |shape: [usize; 2]| Tensor::<2>::zeros(shape, &there);
        let projection = crate::fused_projection(
            &zeros([2, 3]),
            &zeros([4, 3]),
            &Tensor::<1>::zeros([4], &there),
            crate::WeightLayout::OutputMajor,
        );
        assert!(projection.is_none());
        let targets = Tensor::<1, Int>::zeros([2], &there);
        assert!(crate::fused_cross_entropy(&zeros([2, 4]), &targets).is_none());
        let dropout = DropoutConfig::new(0.5).init();
        assert!(crate::fused_dropout(&dropout, zeros([2, 4])).is_none());
    }
}
