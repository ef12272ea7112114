//! Dropout between layers: per element, or one mask per sequence.

use burn::nn::Dropout;
use burn::tensor::{Device, Tensor};

use crate::fused;

/// `dropout.forward(input)`, as one op on flex.
pub(crate) fn dropout<const D: usize>(dropout: &Dropout, input: Tensor<D>) -> Tensor<D> {
    fused::dropout(dropout, input)
}

/// [`dropout`] with one mask per sequence: element `[b, t, f]` of `input`
/// (`[batch, seq_len, features]`) is kept at every step `t` or at none (Gal and Ghahramani's
/// variational dropout, AWD-LSTM's locked dropout). The mask is `[batch, 1, features]`,
/// drawn by [`dropout`] and broadcast over the steps.
pub(crate) fn locked_dropout(dropout_layer: &Dropout, input: Tensor<3>) -> Tensor<3> {
    let [batch, _, features] = input.dims();
    broadcast_dropout(dropout_layer, input, [batch, 1, features])
}

/// [`locked_dropout`] when `variational`, else [`dropout`] per element: dropout on the
/// inputs of a layer, `[batch, seq_len, features]`.
pub(crate) fn sequence_dropout(
    dropout_layer: &Dropout,
    input: Tensor<3>,
    variational: bool,
) -> Tensor<3> {
    if variational {
        locked_dropout(dropout_layer, input)
    } else {
        dropout(dropout_layer, input)
    }
}

/// Whether `dropout_layer` changes a tensor on `device`: in training, with autodiff, and a
/// probability above 0.
pub(crate) fn drops(dropout_layer: &Dropout, device: &Device) -> bool {
    dropout_layer.training.is_enabled() && device.is_autodiff() && dropout_layer.prob > 0.0
}

/// [`dropout`] of whole rows of `table` (`[rows, columns]`): each row is kept, scaled, or
/// zeroed as a whole (AWD-LSTM's embedding dropout, which drops every occurrence of a token
/// in a batch when applied to the embedding table).
pub(crate) fn row_dropout(dropout_layer: &Dropout, table: Tensor<2>) -> Tensor<2> {
    let [rows, _] = table.dims();
    broadcast_dropout(dropout_layer, table, [rows, 1])
}

/// `input` times a [`dropout`] mask of ones of `mask_shape`, broadcast over `input`; `input`
/// itself outside training.
fn broadcast_dropout<const D: usize>(
    dropout_layer: &Dropout,
    input: Tensor<D>,
    mask_shape: [usize; D],
) -> Tensor<D> {
    let device = input.device();
    if !drops(dropout_layer, &device) {
        return input;
    }
    input * dropout(dropout_layer, Tensor::ones(mask_shape, &device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;
    use burn::tensor::{Device, Distribution};

    const SIZE: [usize; 3] = [8, 125, 1000];

    /// Values in `[1, 2)`, so a zero in the output can only come from the mask.
    fn input(device: &Device) -> Tensor<3> {
        Tensor::random(SIZE, Distribution::Uniform(1.0, 2.0), device)
    }

    /// A locked mask keeps or drops an element at every step alike, drops about `prob` of
    /// them, scales the kept ones by `1 / (1 - prob)`, and passes the gradient through the
    /// same mask.
    #[test]
    fn locked_dropout_keeps_one_mask_over_the_steps() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex().autodiff();
        device.seed(12);
        let prob = 0.4;
        let layer = DropoutConfig::new(prob).init();
        let [batch, seq, features] = SIZE;
        let x = input(&device).require_grad();
        let r = Tensor::<3>::random(SIZE, Distribution::Uniform(-1.0, 1.0), &device);
        let y = locked_dropout(&layer, x.clone());
        let grads = (y.clone() * r.clone()).sum().backward();
        let values = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
        let dx = values(x.grad(&grads).unwrap());
        let (x, y, r) = (values(x), values(y), values(r));
        let scale = (1.0 / (1.0 - prob)) as f32;
        let mut dropped = 0;
        for b in 0..batch {
            for f in 0..features {
                let at = |t: usize| (b * seq + t) * features + f;
                let kept = y[at(0)] != 0.0;
                dropped += usize::from(!kept);
                for t in 0..seq {
                    let i = at(t);
                    let (value, grad) = if kept {
                        (x[i] * scale, r[i] * scale)
                    } else {
                        (0.0, 0.0)
                    };
                    assert_eq!((y[i], dx[i]), (value, grad), "[{b}, {t}, {f}]");
                }
            }
        }
        let n = (batch * features) as f64;
        let tolerance = 4.0 * (n * prob * (1.0 - prob)).sqrt();
        assert!(
            (dropped as f64 - n * prob).abs() < tolerance,
            "{dropped} of {n} dropped"
        );
        let outside = locked_dropout(&layer, input(&Device::flex()));
        assert!(
            values(outside).iter().all(|&v| v >= 1.0),
            "off outside training"
        );
    }

    /// Row dropout keeps or drops each row whole, scaled by `1 / (1 - prob)`, and drops some
    /// rows but not all.
    #[test]
    fn row_dropout_keeps_or_drops_whole_rows() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex().autodiff();
        device.seed(3);
        let layer = DropoutConfig::new(0.5).init();
        let table = Tensor::<2>::random([64, 16], Distribution::Uniform(1.0, 2.0), &device);
        let dropped = row_dropout(&layer, table.clone());
        let (table, dropped) = (table.into_data(), dropped.into_data());
        let (table, dropped) = (
            table.as_slice::<f32>().unwrap(),
            dropped.as_slice::<f32>().unwrap(),
        );
        let mut zero_rows = 0;
        for (row, out) in table.chunks(16).zip(dropped.chunks(16)) {
            if out[0] == 0.0 {
                zero_rows += 1;
                assert!(out.iter().all(|&v| v == 0.0), "{out:?}");
            } else {
                let scaled: Vec<f32> = row.iter().map(|v| v * 2.0).collect();
                assert_eq!(out, &scaled[..]);
            }
        }
        assert!(
            (1..64).contains(&zero_rows),
            "{zero_rows} of 64 rows dropped"
        );
    }
}
