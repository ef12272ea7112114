//! The fused CPU ops on the flex devices of a Burn remote server (`trainer serve`): a client on
//! `--backend remote` runs each of them there as Burn custom operations, one message an op,
//! instead of the many tensor ops (and round trips) of the composed forward and backward.
//!
//! A [`HostedOp`] travels as two custom operations, `char-lstm/{name}/forward` and
//! `char-lstm/{name}/backward`. The forward's outputs are the op's output and the buffers its
//! backward needs, which stay on the server as tensors; the backward takes the inputs, the output,
//! those buffers and the output's gradient, and returns the inputs' gradients. A server that hosts
//! them answers `char-lstm/hosted` with 1 ([`host_fused_ops`]), one of another backend with 0
//! ([`host_no_fused_ops`]); a client asks each device once, and composes the ops where the answer
//! is 0. A server that registered neither (plain Burn, or a `trainer serve` older than this) fails
//! that first question.

use std::sync::{Mutex, PoisonError};

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::backend::ir::{BackendIr, CustomOpIr, HandleContainer, ScalarIr, TensorIr};
use burn::backend::tensor::FloatTensor;
use burn::backend::{DispatchDevice, Flex, Remote, RemoteDevice};
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

/// The id of the question whether a server hosts the ops.
const HOSTED: &str = "char-lstm/hosted";

/// The id of Adam's step of one parameter.
const ADAM: &str = "char-lstm/adam";

/// The id of the custom operation of op `name`'s `pass` (`forward` or `backward`).
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

/// Whether `tensor` lives on a remote device whose server hosts the ops; asks the server the first
/// time for each device.
pub(crate) fn hosts<const D: usize>(tensor: &Tensor<D>) -> bool {
    static ANSWERS: Mutex<Vec<(RemoteDevice, bool)>> = Mutex::new(Vec::new());
    let Some(device) = remote_device(tensor) else {
        return false;
    };
    let mut answers = ANSWERS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, hosted)) = answers.iter().find(|(known, _)| *known == device) {
        return *hosted;
    }
    let hosted = ask_hosted(&device);
    answers.push((device, hosted));
    hosted
}

/// The server's answer to [`HOSTED`].
///
/// # Panics
/// Where the server has no answer: its session has stopped on the unknown operation, so no op
/// can run there any more.
fn ask_hosted(device: &RemoteDevice) -> bool {
    let client = CustomOpClient::new(device);
    let answer = TensorIr::uninit(client.create_empty_handle(), Shape::from([1]), DType::F32);
    let answer = client.register(CustomOpIr::new(HOSTED, &[], &[answer]));
    let answer = Remote::from_plain(answer.into_iter().next().expect("one output"));
    let values = answer.try_into_data().unwrap_or_else(|_| {
        panic!(
            "the server cannot say whether it hosts char-lstm's fused ops: it is not a \
             `trainer serve` of this version or later"
        )
    });
    values.iter::<f32>().next() == Some(1.0)
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
    if !hosts(param) {
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
        ADAM.to_string(),
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

/// `server`, for flex devices, with the fused ops hosted and the clients' question answered.
pub fn host_fused_ops(server: RemoteServer) -> RemoteServer {
    let server = server
        .with_custom_op::<Flex, _>(HOSTED, answer::<Flex>(1.0))
        .with_custom_op::<Flex, _>(ADAM, |handles, ir, _| {
            let constants = adam_constants(&settings(ir));
            let mut received = received(handles, ir).into_iter();
            let param = received.next().expect("the parameter");
            let grad = received.next().expect("its gradient");
            let moments = received.next().zip(received.next());
            send(handles, ir, fused_update(constants, param, grad, moments));
        });
    let server = host::<Recurrence, 4>(server);
    let server = host::<Projection, 3>(server);
    let server = host::<CrossEntropy, 1>(server);
    host::<Mask, 1>(server)
}

/// `server`, for devices of backend `B`, telling clients that it hosts no fused ops, so that they
/// compose theirs.
pub fn host_no_fused_ops<B: BackendIr>(server: RemoteServer) -> RemoteServer {
    server.with_custom_op::<B, _>(HOSTED, answer::<B>(0.0))
}

/// A handler that answers [`HOSTED`] with `value`.
fn answer<B: BackendIr>(
    value: f32,
) -> impl Fn(&mut HandleContainer<B::Handle>, &CustomOpIr, &B::Device) + Send + Sync + 'static {
    move |handles, ir, device| {
        let answer = B::float_from_data(TensorData::new(vec![value], [1]), device);
        handles.register_float_tensor::<B>(&ir.outputs[0].id, answer);
    }
}

/// `server` with `O`'s forward and backward as handlers.
fn host<O: HostedOp<N>, const N: usize>(server: RemoteServer) -> RemoteServer {
    server
        .with_custom_op::<Flex, _>(&id(O::NAME, "forward"), |handles, ir, _| {
            let op = O::from_settings(&settings(ir));
            let received = received(handles, ir);
            let values: Vec<_> = received.iter().map(flex_op::values).collect();
            let inputs = std::array::from_fn(|i| values[i].as_ref());
            let (output, saved) = FlexOp::forward(&op, inputs);
            let outputs = std::iter::once(output).chain(O::saved_buffers(saved));
            send(handles, ir, outputs.map(flex_op::flat));
        })
        .with_custom_op::<Flex, _>(&id(O::NAME, "backward"), |handles, ir, _| {
            let op = O::from_settings(&settings(ir));
            let received = received(handles, ir);
            let values: Vec<_> = received.iter().map(flex_op::values).collect();
            let (d_output, rest) = values.split_last().expect("the output's gradient");
            let (inputs, rest) = rest.split_at(N);
            let (output, saved) = rest.split_first().expect("the output");
            let saved = O::saved_from(saved.iter().map(|buffer| buffer.to_vec()).collect());
            let inputs = std::array::from_fn(|i| inputs[i].as_ref());
            let gradients = FlexOp::backward(&op, inputs, output, &saved, d_output);
            send(handles, ir, gradients.map(flex_op::flat));
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
fn received(
    handles: &mut HandleContainer<<Flex as BackendIr>::Handle>,
    ir: &CustomOpIr,
) -> Vec<FlexTensor> {
    ir.inputs
        .iter()
        .map(|input| handles.get_float_tensor::<Flex>(input))
        .collect()
}

/// Registers `tensors` as the op's outputs.
fn send(
    handles: &mut HandleContainer<<Flex as BackendIr>::Handle>,
    ir: &CustomOpIr,
    tensors: impl IntoIterator<Item = FlexTensor>,
) {
    for (output, tensor) in ir.outputs.iter().zip(tensors) {
        handles.register_float_tensor::<Flex>(&output.id, tensor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;
    use burn::remote::RemoteHost;
    use burn::server::WebSocketTransport;
    use burn::tensor::{Device, Distribution, Int};

    /// A device of a server of one flex device on a free loopback port, set up by `with_ops`,
    /// serving on a thread of its own until the test process ends.
    fn served(with_ops: fn(RemoteServer) -> RemoteServer) -> Device {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let server = with_ops(RemoteServer::new([Device::flex()]));
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
        let there = served(host_fused_ops).autodiff();
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

    /// Adam's step of a parameter through a server that hosts the ops is the fused pass there:
    /// the same bits as that pass here, at the first step (no moments yet) and after, with and
    /// without weight decay.
    #[test]
    fn adam_through_the_server_is_the_fused_pass_there() {
        let _rng = crate::testing::device_rng();
        let there = served(host_fused_ops);
        let here = Device::flex();
        here.seed(3);
        let random = || Tensor::<2>::random([37, 19], Distribution::Uniform(-1.0, 1.0), &here);
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
            let moments = |device: &Device| {
                let on = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), device);
                (!first).then(|| (on(&m), on(&v)))
            };
            let remote = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), &there);
            let shipped = adam_step(constants, &remote(&param), &remote(&grad), moments(&there))
                .expect("hosted");
            let flex = |t: &Tensor<2>| {
                let flat: Tensor<1> = t.clone().reshape([-1]);
                flat.try_into_primitive::<Flex>().expect("on flex")
            };
            let local = fused_update(
                constants,
                flex(&param),
                flex(&grad),
                moments(&here).map(|(m, v)| (flex(&m), flex(&v))),
            );
            for (shipped, local) in shipped.into_iter().zip(local) {
                assert_eq!(
                    values(shipped.reshape([-1])),
                    flex_op::values(&local).to_vec()
                );
            }
        }
    }

    /// A server that cannot answer the question (plain Burn's, or an older `trainer serve`)
    /// stops the client with a message that says so, rather than a decoding error.
    #[test]
    #[should_panic(expected = "cannot say whether it hosts char-lstm's fused ops")]
    fn a_server_that_cannot_answer_is_named_as_such() {
        let there = served(|server| server);
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
        let there = served(host_no_fused_ops::<Flex>);
        let zeros = |shape: [usize; 2]| Tensor::<2>::zeros(shape, &there);
        let projected = Tensor::<3>::zeros([1, 2, 8], &there);
        let recurrence =
            crate::fused_recurrence(&projected, &zeros([8, 2]), &zeros([1, 2]), &zeros([1, 2]));
        assert!(recurrence.is_none());
    }
}
