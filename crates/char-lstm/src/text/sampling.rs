//! Choosing the next token from logits: temperature, top-k, top-p, greedy.

use burn::config::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[cfg(feature = "kernels")]
pub(crate) use char_lstm_kernels::softmax_weights;

/// The softmax's weights before normalizing, `e^((l - max) / temperature)`, with libm's `exp`
/// per token (the kernels crate's version is one vectorized pass).
#[cfg(not(feature = "kernels"))]
pub(crate) fn softmax_weights(logits: &[f32], temperature: f64, weights: &mut Vec<f64>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    weights.clear();
    weights.extend(
        logits
            .iter()
            .map(|&l| ((l as f64 - max) / temperature).exp()),
    );
}

/// How the next token is drawn from the model's logits.
#[derive(Config, Debug, PartialEq)]
pub struct SamplingConfig {
    /// Divides the logits before the softmax: below 1 sharpens, above 1 flattens; 0 is greedy
    /// (always the most likely token).
    #[config(default = 1.0)]
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens; 0 keeps all. Larger than the vocabulary
    /// keeps all.
    #[config(default = 0)]
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probabilities add up to at least
    /// `top_p` (nucleus sampling, after top-k and renormalized over what it kept, as Hugging
    /// Face's samplers do), in `(0, 1]`; 1 keeps all.
    #[config(default = 1.0)]
    pub top_p: f64,
    /// The random seed: the same seed, model and prompt give the same text.
    #[config(default = 0)]
    pub seed: u64,
}

/// A sampling setting that makes no sense.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SamplingError {
    /// Temperature must be a finite number >= 0.
    #[error("temperature {0} is invalid, expected a finite number >= 0 (0 = greedy)")]
    Temperature(f64),
    /// Top-p must be in `(0, 1]`.
    #[error("top_p {0} is invalid, expected a number in (0, 1]")]
    TopP(f64),
}

impl SamplingConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), SamplingError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(SamplingError::Temperature(self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SamplingError::TopP(self.top_p));
        }
        Ok(())
    }

    /// A sampler for one stream, seeded with `seed + stream`.
    pub fn init(&self, stream: u64) -> Result<Sampler, SamplingError> {
        self.validate()?;
        Ok(Sampler {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            rng: StdRng::seed_from_u64(self.seed.wrapping_add(stream)),
            order: Vec::new(),
            probs: Vec::new(),
            keys: Vec::new(),
            scratch_keys: Vec::new(),
            scratch_order: Vec::new(),
            block_sums: Vec::new(),
        })
    }
}

/// Draws tokens for one stream; reuses its buffers, so sampling allocates nothing per token.
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f64,
    top_k: usize,
    top_p: f64,
    rng: StdRng,
    /// The kept token ids, most likely first.
    order: Vec<u32>,
    probs: Vec<f64>,
    /// Sort keys of every token and the radix sort's second buffers, see
    /// [`Sampler::sort_most_likely`].
    keys: Vec<u64>,
    scratch_keys: Vec<u64>,
    scratch_order: Vec<u32>,
    /// The sums of blocks of [`BLOCK`] weights, see [`draw_in_order`].
    block_sums: Vec<f64>,
}

impl Sampler {
    /// Picks the next token id from `logits`, `[vocab_size]`.
    ///
    /// # Panics
    /// If `logits` is empty.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        assert!(!logits.is_empty(), "no logits to sample from");
        if self.temperature == 0.0 {
            return argmax(logits);
        }
        softmax_weights(logits, self.temperature, &mut self.probs);
        let mut keep = if self.top_k == 0 {
            logits.len()
        } else {
            self.top_k.min(logits.len())
        };
        if keep == logits.len() && self.top_p >= 1.0 {
            // Every token is kept: no order is needed, so the draw walks the ids in order.
            let uniform = self.rng.random::<f64>();
            return draw_in_order(&self.probs, &mut self.block_sums, uniform);
        }
        self.sort_most_likely(keep);
        let probs = &self.probs;
        if self.top_p < 1.0 {
            // The nucleus of what top-k kept, renormalized (as Hugging Face's samplers do).
            let top_k_mass: f64 = self.order[..keep]
                .iter()
                .map(|&id| probs[id as usize])
                .sum();
            let mut cumulative = 0.0;
            for (rank, &id) in self.order[..keep].iter().enumerate() {
                cumulative += probs[id as usize];
                if cumulative >= self.top_p * top_k_mass {
                    keep = rank + 1;
                    break;
                }
            }
        }
        let kept = self.order[..keep].iter().copied();
        draw(kept, probs, self.rng.random::<f64>())
    }

    /// Puts the `keep` most likely token ids first in `order`, most likely first (ties by
    /// id), from `probs`. The probabilities are never negative, so their bits order them as
    /// numbers: a stable radix sort of `!bits`, from ids in ascending order, is that order in
    /// time linear in the vocabulary.
    fn sort_most_likely(&mut self, keep: usize) {
        let len = self.probs.len();
        self.keys.clear();
        self.keys.extend(self.probs.iter().map(|p| !p.to_bits()));
        self.order.clear();
        self.order.extend(0..len as u32);
        self.scratch_keys.resize(len, 0);
        self.scratch_order.resize(len, 0);
        for shift in (0..64).step_by(8) {
            let digit = |key: u64| ((key >> shift) & 0xff) as usize;
            let mut starts = [0usize; 257];
            for &key in &self.keys {
                starts[digit(key) + 1] += 1;
            }
            if starts.contains(&len) {
                // Every key has this digit: the pass would change nothing.
                continue;
            }
            for d in 0..256 {
                starts[d + 1] += starts[d];
            }
            for (&key, &id) in self.keys.iter().zip(&self.order) {
                let at = &mut starts[digit(key)];
                self.scratch_keys[*at] = key;
                self.scratch_order[*at] = id;
                *at += 1;
            }
            std::mem::swap(&mut self.keys, &mut self.scratch_keys);
            std::mem::swap(&mut self.order, &mut self.scratch_order);
        }
        self.order.truncate(keep);
    }
}

/// The one of `ids` whose share of their total weight holds `uniform` of it, walking `ids` in
/// the order given.
fn draw(ids: impl Iterator<Item = u32> + Clone, weights: &[f64], uniform: f64) -> u32 {
    let mass: f64 = ids.clone().map(|id| weights[id as usize]).sum();
    walk(ids, weights, uniform * mass)
}

/// The id where `target` of weight, counted from the first of `ids`, runs out; rounding's last
/// sliver of mass goes to the last one with weight.
fn walk(ids: impl Iterator<Item = u32>, weights: &[f64], mut target: f64) -> u32 {
    let mut last = 0;
    for id in ids {
        let w = weights[id as usize];
        if w > 0.0 {
            target -= w;
            last = id;
            if target < 0.0 {
                break;
            }
        }
    }
    last
}

/// Weights per block of [`draw_in_order`].
const BLOCK: usize = 64;

/// [`draw`] over every id in order, in two levels: the sums of blocks of [`BLOCK`] weights
/// (summed in lanes, so they vectorize) find the block the draw falls in, and only that block
/// is walked one weight at a time. `block_sums` is scratch.
fn draw_in_order(weights: &[f64], block_sums: &mut Vec<f64>, uniform: f64) -> u32 {
    block_sums.clear();
    block_sums.extend(weights.chunks(BLOCK).map(sum_in_lanes));
    let mut target = uniform * block_sums.iter().sum::<f64>();
    let mut block = 0;
    for (index, &sum) in block_sums.iter().enumerate() {
        if sum > 0.0 {
            block = index;
        }
        if target < sum {
            break;
        }
        target -= sum;
    }
    walk(
        (block * BLOCK) as u32..weights.len() as u32,
        weights,
        target,
    )
}

/// The sum of `values` in 8 running sums, which the compiler keeps in vector registers.
fn sum_in_lanes(values: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().chain(rest).sum()
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    const LOGITS: [f32; 5] = [0.1, 2.0, -1.0, 1.5, 0.0];

    #[test]
    fn zero_temperature_is_greedy() {
        let mut sampler = SamplingConfig::new().with_temperature(0.0).init(0).unwrap();
        assert!((0..20).all(|_| sampler.sample(&LOGITS) == 1));
    }

    #[test]
    fn same_seed_same_draws_other_seed_other_draws() {
        let draws = |seed| {
            let mut s = SamplingConfig::new().with_seed(seed).init(0).unwrap();
            (0..64).map(|_| s.sample(&LOGITS)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn top_k_and_top_p_keep_only_their_set() {
        let mut top2 = SamplingConfig::new()
            .with_top_k(2)
            .with_temperature(5.0)
            .init(0)
            .unwrap();
        assert!((0..500).all(|_| matches!(top2.sample(&LOGITS), 1 | 3)));
        // Probabilities at T=1: 2.0 -> 0.47, 1.5 -> 0.29, so top_p 0.6 needs exactly these two.
        let mut nucleus = SamplingConfig::new().with_top_p(0.6).init(1).unwrap();
        let draws: Vec<u32> = (0..500).map(|_| nucleus.sample(&LOGITS)).collect();
        assert!(draws.iter().all(|&d| matches!(d, 1 | 3)));
        assert!(draws.contains(&1) && draws.contains(&3));
        let mut huge_k = SamplingConfig::new().with_top_k(1000).init(0).unwrap();
        assert!((0..500).all(|_| (huge_k.sample(&LOGITS) as usize) < LOGITS.len()));
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        let mut sampler = SamplingConfig::new().with_seed(3).init(0).unwrap();
        let mut counts = [0usize; 5];
        let n = 20_000;
        for _ in 0..n {
            counts[sampler.sample(&LOGITS) as usize] += 1;
        }
        let exp: Vec<f64> = LOGITS.iter().map(|&l| (l as f64).exp()).collect();
        let total: f64 = exp.iter().sum();
        for (count, e) in counts.iter().zip(&exp) {
            let expected = e / total;
            assert!(
                (*count as f64 / n as f64 - expected).abs() < 0.015,
                "{counts:?}"
            );
        }
    }

    /// The two-level draw picks what walking every id does: weights that are small integers
    /// sum exactly in any order, so the two must agree at every uniform, zero blocks, a short
    /// last block and the very ends included.
    #[test]
    fn the_draw_in_blocks_picks_what_the_walk_picks() {
        let mut block_sums = Vec::new();
        for len in [1, 7, 64, 65, 200, 6_001] {
            let weights: Vec<f64> = (0..len)
                .map(|i: usize| {
                    if (i / 64) % 3 == 1 {
                        0.0
                    } else {
                        ((i * 37) % 5) as f64
                    }
                })
                .collect();
            if weights.iter().all(|&w| w == 0.0) {
                continue;
            }
            let mass: f64 = weights.iter().sum();
            for step in 0..=1_000 {
                let uniform = (f64::from(step) / 1_000.0).min(1.0 - f64::EPSILON);
                let ids = 0..len as u32;
                assert_eq!(
                    draw_in_order(&weights, &mut block_sums, uniform),
                    draw(ids, &weights, uniform),
                    "len {len}, uniform {uniform}"
                );
            }
            // Every token with weight is reached at the uniform of its own first sliver.
            let mut before = 0.0;
            for (id, &w) in weights.iter().enumerate().filter(|(_, w)| **w > 0.0) {
                let drawn = draw_in_order(&weights, &mut block_sums, (before + 0.5) / mass);
                assert_eq!(drawn as usize, id, "len {len}");
                before += w;
            }
        }
    }

    #[test]
    fn invalid_settings_are_rejected() {
        assert_eq!(
            SamplingConfig::new().with_temperature(-1.0).validate(),
            Err(SamplingError::Temperature(-1.0))
        );
        assert!(
            SamplingConfig::new()
                .with_temperature(f64::NAN)
                .validate()
                .is_err()
        );
        assert!(SamplingConfig::new().with_top_p(0.0).validate().is_err());
        assert!(SamplingConfig::new().with_top_p(1.5).validate().is_err());
    }

    proptest::proptest! {
        /// The integer keys order the tokens exactly as comparing probabilities would (most
        /// likely first, ties by id), for every `keep`.
        #[test]
        fn integer_keys_order_tokens_by_probability_then_id(
            probs in proptest::collection::vec((0u32..6).prop_map(|p| f64::from(p) / 5.0), 1..60),
            keep in 1usize..70,
        ) {
            let mut sampler = SamplingConfig::new().init(0).unwrap();
            sampler.probs = probs.clone();
            let keep = keep.min(probs.len());
            sampler.sort_most_likely(keep);
            let mut expected: Vec<u32> = (0..probs.len() as u32).collect();
            expected.sort_by(|&a, &b| probs[b as usize].total_cmp(&probs[a as usize]).then(a.cmp(&b)));
            proptest::prop_assert_eq!(&sampler.order[..], &expected[..keep]);
        }

        /// Whatever the logits and settings, the draw is a valid id, inside the top-k set and
        /// inside the nucleus.
        #[test]
        fn draws_stay_in_the_vocabulary_and_the_kept_set(
            logits in proptest::collection::vec(-20.0f32..20.0, 1..40),
            top_k in 0usize..50,
            top_p in 0.01f64..=1.0,
            temperature in 0.0f64..3.0,
            seed in 0u64..1000,
        ) {
            let config = SamplingConfig::new().with_top_k(top_k).with_top_p(top_p).with_temperature(temperature).with_seed(seed);
            let mut sampler = config.init(0).unwrap();
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            // Ties at the cut may go either way: allow every id as likely as the k-th.
            let k = if top_k == 0 { logits.len() } else { top_k.min(logits.len()) };
            let kth = logits[order[k - 1]];
            for _ in 0..20 {
                let id = sampler.sample(&logits) as usize;
                proptest::prop_assert!(id < logits.len());
                proptest::prop_assert!(logits[id] >= kth, "id {} outside the top {}", id, k);
                if temperature > 0.0 {
                    // The nucleus: the most likely ids whose mass (within the top k, at this
                    // temperature) first reaches top_p; ties at its edge allowed.
                    let scaled: Vec<f64> = order[..k].iter().map(|&i| (logits[i] as f64 / temperature).exp()).collect();
                    let total: f64 = scaled.iter().sum();
                    let mut mass = 0.0;
                    let mut edge = logits[order[0]];
                    for (rank, p) in scaled.iter().enumerate() {
                        mass += p / total;
                        edge = logits[order[rank]];
                        if mass >= top_p - 1e-6 {
                            break;
                        }
                    }
                    proptest::prop_assert!(logits[id] >= edge, "id {} outside the nucleus", id);
                }
            }
        }
    }
}
