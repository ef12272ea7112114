//! The rules that turn a text, a budget and measured step times into a model size, a cut of
//! the data and a number of epochs. Each constant comes from a measured run, named beside it;
//! the README's "Choosing sizes for a budget" has the runs and `scripts/budget-runs.sh`
//! repeats them.

use std::time::Duration;

use char_lstm::LstmLanguageModelConfig;

use crate::config::DataMode;

/// The hidden sizes chosen among, 2 layers each (3 layers of 512 lost to 2 at equal time on
/// tiny-shakespeare), with embeddings half as wide (256 for 512, as the tuned config).
pub const HIDDEN_SIZES: [usize; 6] = [128, 192, 256, 384, 512, 640];
/// The most parameters per training character: on tiny-shakespeare's 1.0M, 2 x 640 (5.6-5.8
/// per character) was the best size with [`STRONG_DROPOUT`] and [`STRONG_WEIGHT_DECAY`];
/// 2 x 768 (7.9), with dropout 0.45 and weight decay 0.5, lost to it.
pub const MAX_PARAMS_PER_CHAR: f64 = 6.0;
/// The fewest training characters a model must see per parameter: at 10 minutes on
/// tiny-shakespeare 2 x 384 for 7 epochs (3.4 per parameter) beat 2 x 512 for 4 (1.1); in an
/// hour 2 x 640 for 10 (1.8) beat 2 x 512 for 10 (2.7).
pub const MIN_CHARS_PER_PARAM: f64 = 1.5;
/// The most epochs: tiny-shakespeare's 2 x 512 was best after 10-11 of 18.
pub const MAX_EPOCHS: usize = 10;
/// Texts so short that `MAX_EPOCHS` is fewer steps train for this many.
pub const MIN_STEPS: usize = 500;
/// The window length: 50 was no better than 100 on tiny-shakespeare, 150 was worse.
pub const SEQ_LEN: usize = 100;
/// Stream mode (the state carried between batches, best on tiny-shakespeare) needs this many
/// batches per epoch; shorter texts train on sliding windows.
pub const MIN_STREAM_BATCHES: usize = 10;
/// The share of the text held out, when it holds `MIN_VALID_WINDOWS` windows' characters.
pub const VALID_FRACTION: f64 = 0.1;
/// The fewest validation windows' characters worth holding text out for; below, validation
/// runs on the training windows.
pub const MIN_VALID_WINDOWS: usize = 10;
/// A validation batch's time in training steps (forward only), measured on tiny-shakespeare.
pub const VALID_STEP_SHARE: f64 = 0.35;
/// The time each epoch spends on its sample and checkpoints (the weights and Adam's state,
/// written and synced), per parameter: 2.5 s of 2 x 512's epochs on tiny-shakespeare.
pub const EPOCH_OVERHEAD_PER_PARAM: Duration = Duration::from_nanos(700);
/// Dropout between the layers, drawn once per sequence: the tuned tiny-shakespeare config's.
pub const DROPOUT: f64 = 0.3;
/// Above this many parameters per training character, [`STRONG_DROPOUT`] and
/// [`STRONG_WEIGHT_DECAY`]: 2 x 512 (3.7 per character of tiny-shakespeare) gained nothing from
/// weight decay 0.4, 2 x 640 (5.6) overfit with dropout 0.35 and decay 0.2.
pub const STRONG_ABOVE_PARAMS_PER_CHAR: f64 = 4.5;
/// Dropout for models above [`STRONG_ABOVE_PARAMS_PER_CHAR`]: 2 x 640's best on
/// tiny-shakespeare, in two seeds.
pub const STRONG_DROPOUT: f64 = 0.4;
/// Weight decay for models above [`STRONG_ABOVE_PARAMS_PER_CHAR`], with [`STRONG_DROPOUT`].
pub const STRONG_WEIGHT_DECAY: f64 = 0.4;
/// Adam's peak learning rate, annealed to zero by a cosine schedule: the tuned config's.
pub const LEARNING_RATE: f64 = 2e-3;
/// AdamW's weight decay: 0.2 beat 0.1 and 0 in two seeds each on tiny-shakespeare.
pub const WEIGHT_DECAY: f64 = 0.2;
/// The weight average's decay, for runs that end inside their first epoch: mid-schedule the
/// average led the trained weights by 0.02-0.03 nats on tiny-shakespeare.
pub const EMA_DECAY: f64 = 0.999;

/// Dropout and weight decay for a model of `params_per_char` parameters per training
/// character: [`DROPOUT`] and [`WEIGHT_DECAY`], or the strong pair above
/// [`STRONG_ABOVE_PARAMS_PER_CHAR`].
pub fn regularization(params_per_char: f64) -> (f64, f64) {
    if params_per_char > STRONG_ABOVE_PARAMS_PER_CHAR {
        (STRONG_DROPOUT, STRONG_WEIGHT_DECAY)
    } else {
        (DROPOUT, WEIGHT_DECAY)
    }
}

/// The settings of a run that the data decides, each as given or chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataCut {
    /// `data.valid_fraction`.
    pub valid_fraction: f64,
    /// `data.mode`.
    pub mode: DataMode,
    /// `data.seq_len`.
    pub seq_len: usize,
}

/// Holds out `VALID_FRACTION` of a text of `text_chars` characters if that holds
/// `MIN_VALID_WINDOWS` windows' characters; reads it in streams of `SEQ_LEN` if the rest makes
/// `MIN_STREAM_BATCHES` batches of `batch_size`, else in sliding windows (at most half the
/// training text long). What `given` holds stays.
pub fn data_cut(text_chars: usize, batch_size: usize, given: &GivenData) -> DataCut {
    let seq_len_wanted = given.seq_len.unwrap_or(SEQ_LEN);
    let holds_out =
        text_chars as f64 * VALID_FRACTION >= (MIN_VALID_WINDOWS * seq_len_wanted) as f64;
    let valid_fraction =
        given
            .valid_fraction
            .unwrap_or(if holds_out { VALID_FRACTION } else { 0.0 });
    let train_chars = text_chars - (text_chars as f64 * valid_fraction) as usize;
    let streams_fill = train_chars > MIN_STREAM_BATCHES * batch_size * seq_len_wanted;
    let mode = given.mode.unwrap_or(if streams_fill {
        DataMode::Stream
    } else {
        DataMode::Windows
    });
    let seq_len = given.seq_len.unwrap_or(match mode {
        DataMode::Stream => SEQ_LEN,
        DataMode::Windows => SEQ_LEN.min(train_chars / 2).max(1),
    });
    DataCut {
        valid_fraction,
        mode,
        seq_len,
    }
}

/// The data settings a config file or `--set` gave.
#[derive(Debug, Clone, Copy, Default)]
pub struct GivenData {
    /// `data.valid_fraction`.
    pub valid_fraction: Option<f64>,
    /// `data.mode`.
    pub mode: Option<DataMode>,
    /// `data.seq_len`.
    pub seq_len: Option<usize>,
}

/// The model sizes a config file or `--set` gave.
#[derive(Debug, Clone, Copy, Default)]
pub struct GivenModel {
    /// `model.embedding_dim`.
    pub embedding_dim: Option<usize>,
    /// `model.hidden_dim`.
    pub hidden_dim: Option<usize>,
    /// `model.num_layers`.
    pub num_layers: Option<usize>,
    /// `training.epochs`.
    pub epochs: Option<usize>,
}

/// The sizes to measure, smallest first: `HIDDEN_SIZES` up to `MAX_PARAMS_PER_CHAR`
/// parameters per training character (the smallest always), or the given hidden size alone.
pub fn candidates(
    base: &LstmLanguageModelConfig,
    given: &GivenModel,
    train_chars: usize,
) -> Vec<LstmLanguageModelConfig> {
    let shaped = |hidden: usize| {
        base.clone()
            .with_hidden_dim(hidden)
            .with_embedding_dim(given.embedding_dim.unwrap_or(hidden / 2))
            .with_num_layers(given.num_layers.unwrap_or(2))
    };
    if let Some(hidden) = given.hidden_dim {
        return vec![shaped(hidden)];
    }
    let most_params = MAX_PARAMS_PER_CHAR * train_chars as f64;
    let mut sizes: Vec<_> = HIDDEN_SIZES.iter().map(|&h| shaped(h)).collect();
    let fitting = sizes
        .iter()
        .skip(1)
        .take_while(|m| m.num_params() as f64 <= most_params)
        .count();
    sizes.truncate(1 + fitting);
    sizes
}

/// What an epoch is made of: training steps and validation batches (forward only).
#[derive(Debug, Clone, Copy)]
pub struct EpochShape {
    /// Optimizer steps per epoch.
    pub train_steps: usize,
    /// Validation batches per epoch.
    pub valid_batches: usize,
    /// Characters predicted per epoch (windows times their length).
    pub chars_per_epoch: usize,
}

impl EpochShape {
    /// An epoch's predicted wall time for a model of `params` parameters at `step` per
    /// training step.
    pub fn epoch_time(&self, params: usize, step: Duration) -> Duration {
        step.mul_f64(self.train_steps as f64 + self.valid_batches as f64 * VALID_STEP_SHARE)
            + EPOCH_OVERHEAD_PER_PARAM.mul_f64(params as f64)
    }

    /// The most epochs worth training: `MAX_EPOCHS`, or `MIN_STEPS`' worth for short texts.
    pub fn max_epochs(&self) -> usize {
        MAX_EPOCHS.max(MIN_STEPS.div_ceil(self.train_steps.max(1)))
    }
}

/// A candidate size with its measured step time, and what fits in the time left.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The size.
    pub model: LstmLanguageModelConfig,
    /// The median training step.
    pub step: Duration,
    /// Whole epochs that fit in the time left, before `EpochShape::max_epochs`.
    pub epochs_that_fit: usize,
}

impl Measured {
    /// `model` at `step`, with the epochs of `shape` that fit in `time_left`.
    pub fn new(
        model: LstmLanguageModelConfig,
        step: Duration,
        shape: &EpochShape,
        time_left: Duration,
    ) -> Self {
        let epoch = shape.epoch_time(model.num_params(), step).as_secs_f64();
        let epochs_that_fit = (time_left.as_secs_f64() / epoch) as usize;
        Self {
            model,
            step,
            epochs_that_fit,
        }
    }

    /// The epochs it would train: what fits, up to the most worth training (or the given
    /// number).
    pub fn epochs(&self, shape: &EpochShape, given_epochs: Option<usize>) -> usize {
        given_epochs.unwrap_or_else(|| self.epochs_that_fit.min(shape.max_epochs()))
    }

    /// Training characters it would see per parameter.
    pub fn chars_per_param(&self, shape: &EpochShape, given_epochs: Option<usize>) -> f64 {
        let chars = self.epochs(shape, given_epochs) * shape.chars_per_epoch;
        chars as f64 / self.model.num_params() as f64
    }

    /// Whether it trains enough in the time: `MIN_CHARS_PER_PARAM`, or the given epochs fit.
    pub fn suffices(&self, shape: &EpochShape, given_epochs: Option<usize>) -> bool {
        match given_epochs {
            Some(epochs) => self.epochs_that_fit >= epochs,
            None => self.chars_per_param(shape, None) >= MIN_CHARS_PER_PARAM,
        }
    }
}

/// The size chosen and for how long.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The model.
    pub model: LstmLanguageModelConfig,
    /// Epochs to train (the cosine schedule spans them).
    pub epochs: usize,
    /// Whether even the smallest size falls short of the budget's needs.
    pub short: bool,
    /// Whether one whole epoch of it fits in the time (else the time limit ends the first).
    pub first_epoch_fits: bool,
}

/// The largest of `measured` (smallest first) that suffices; the smallest when none does.
pub fn choose(measured: &[Measured], shape: &EpochShape, given_epochs: Option<usize>) -> Choice {
    let best = measured
        .iter()
        .rev()
        .find(|m| m.suffices(shape, given_epochs));
    let (chosen, short) = match best {
        Some(m) => (m, false),
        None => (&measured[0], true),
    };
    Choice {
        model: chosen.model.clone(),
        epochs: chosen.epochs(shape, given_epochs).max(1),
        short,
        first_epoch_fits: chosen.epochs_that_fit > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// tiny-shakespeare's shape: 1,003,854 training characters in 32 streams of 100 make 313
    /// steps (1,001,600 characters), its 111,539 held out 35 validation batches.
    fn tinyshakespeare() -> EpochShape {
        EpochShape {
            train_steps: 313,
            valid_batches: 35,
            chars_per_epoch: 1_001_600,
        }
    }

    #[test]
    fn a_long_text_holds_out_a_tenth_and_streams_a_short_one_slides() {
        let none = GivenData::default();
        let long = data_cut(1_115_394, 32, &none);
        assert_eq!(
            long,
            DataCut {
                valid_fraction: 0.1,
                mode: DataMode::Stream,
                seq_len: 100
            }
        );
        // 688 characters: nothing held out, windows of 100.
        let short = data_cut(688, 32, &none);
        assert_eq!(
            short,
            DataCut {
                valid_fraction: 0.0,
                mode: DataMode::Windows,
                seq_len: 100
            }
        );
        // 90 characters: windows of half of it.
        assert_eq!(data_cut(90, 32, &none).seq_len, 45);
        // 20,000 characters: 2,000 held out (20 windows), but 18,000 fill only 5 batches of
        // 32 streams of 100.
        let mid = data_cut(20_000, 32, &none);
        assert_eq!((mid.valid_fraction, mid.mode), (0.1, DataMode::Windows));
        let given = GivenData {
            valid_fraction: Some(0.2),
            mode: Some(DataMode::Stream),
            seq_len: Some(64),
        };
        let kept = data_cut(688, 32, &given);
        assert_eq!(
            kept,
            DataCut {
                valid_fraction: 0.2,
                mode: DataMode::Stream,
                seq_len: 64
            }
        );
    }

    #[test]
    fn candidates_stop_at_the_parameters_the_text_supports() {
        let base = LstmLanguageModelConfig::new(65);
        let hidden = |chars| -> Vec<usize> {
            candidates(&base, &GivenModel::default(), chars)
                .iter()
                .map(|m| m.hidden_dim)
                .collect()
        };
        // 2 x 512 over 65 characters: 3,728,193 parameters, 3.7 per character of
        // tiny-shakespeare's training text; 2 x 640: 5,807,105, 5.8 per character of it and 6
        // per character of 967,851.
        let size = |hidden| {
            candidates(
                &base,
                &GivenModel {
                    hidden_dim: Some(hidden),
                    ..GivenModel::default()
                },
                0,
            )[0]
            .num_params()
        };
        assert_eq!((size(512), size(640)), (3_728_193, 5_807_105));
        assert_eq!(hidden(1_003_854), HIDDEN_SIZES);
        assert_eq!(hidden(967_851), HIDDEN_SIZES);
        assert_eq!(hidden(967_000), [128, 192, 256, 384, 512]);
        assert_eq!(hidden(10), [128]);
        let given = GivenModel {
            hidden_dim: Some(300),
            num_layers: Some(1),
            ..GivenModel::default()
        };
        let only = candidates(&base, &given, 10);
        assert_eq!(only.len(), 1);
        assert_eq!(
            (
                only[0].hidden_dim,
                only[0].embedding_dim,
                only[0].num_layers
            ),
            (300, 150, 1)
        );
    }

    /// 2 x `hidden` over 65 characters, measured at `step_ms` a step, in `seconds` left.
    fn measured(hidden: usize, step_ms: u64, seconds: u64, shape: &EpochShape) -> Measured {
        let given = GivenModel {
            hidden_dim: Some(hidden),
            ..GivenModel::default()
        };
        let model = candidates(&LstmLanguageModelConfig::new(65), &given, 0).remove(0);
        Measured::new(
            model,
            MS * step_ms as u32,
            shape,
            Duration::from_secs(seconds),
        )
    }

    /// The steps of 2 x 256, 384 and 512 measured on tiny-shakespeare (117, 231 and 397 ms on
    /// a 2-core AMD EPYC): in 585 s, 512 fits 4 epochs (1.07 characters per parameter) and 384
    /// fits 7 (3.33), so 384 it is; in an hour 512 fits 27, trains 10 (2.69), and 640 at 600
    /// ms a step fits 17, trains 10 (1.72), so 640 it is.
    #[test]
    fn the_largest_size_that_sees_enough_characters_is_chosen() {
        let shape = tinyshakespeare();
        // 512: 397 ms * (313 + 35 * 0.35) + 0.7 us * 3,728,193 = 131.7 s an epoch.
        let large = measured(512, 397, 585, &shape);
        assert_eq!(large.epochs_that_fit, 4);
        assert!((large.chars_per_param(&shape, None) - 1.0746).abs() < 1e-4);
        let mid = measured(384, 231, 585, &shape);
        assert_eq!(mid.epochs_that_fit, 7);
        let small = measured(256, 117, 585, &shape);
        let choice = choose(&[small, mid, large], &shape, None);
        assert_eq!(
            (choice.model.hidden_dim, choice.epochs, choice.short),
            (384, 7, false)
        );

        let hour = measured(512, 397, 3585, &shape);
        assert_eq!(hour.epochs_that_fit, 27);
        let largest = measured(640, 600, 3585, &shape);
        assert_eq!(largest.epochs_that_fit, 17);
        assert!((largest.chars_per_param(&shape, None) - 1.7248).abs() < 1e-4);
        let choice = choose(&[hour.clone(), largest], &shape, None);
        assert_eq!((choice.model.hidden_dim, choice.epochs), (640, MAX_EPOCHS));
        let choice = choose(&[measured(384, 231, 3585, &shape), hour], &shape, None);
        assert_eq!((choice.model.hidden_dim, choice.epochs), (512, MAX_EPOCHS));
    }

    /// Up to 2 x 512 on tiny-shakespeare (3.7 parameters per character) the tuned config's
    /// dropout and weight decay; 2 x 640 (5.8) the strong pair.
    #[test]
    fn larger_models_for_the_text_get_more_dropout_and_weight_decay() {
        assert_eq!(regularization(3.7), (DROPOUT, WEIGHT_DECAY));
        assert_eq!(
            regularization(STRONG_ABOVE_PARAMS_PER_CHAR),
            (DROPOUT, WEIGHT_DECAY)
        );
        assert_eq!(regularization(5.8), (STRONG_DROPOUT, STRONG_WEIGHT_DECAY));
    }

    /// With the epochs given, the largest size they fit; 7 epochs of 384 do not make 10.
    #[test]
    fn given_epochs_choose_the_largest_size_they_fit() {
        let shape = tinyshakespeare();
        let sizes = [
            measured(256, 117, 585, &shape),
            measured(384, 231, 585, &shape),
        ];
        let choice = choose(&sizes, &shape, Some(10));
        assert_eq!((choice.model.hidden_dim, choice.epochs), (256, 10));
        let choice = choose(&sizes[1..], &shape, Some(10));
        assert_eq!(
            (choice.model.hidden_dim, choice.epochs, choice.short),
            (384, 10, true)
        );
    }

    /// A text far too long for the budget: the smallest size, for one epoch (that does not
    /// fit), said to be short; a text so short that 10 epochs are few steps trains 500.
    #[test]
    fn long_texts_get_the_smallest_size_and_short_ones_more_epochs() {
        let huge = EpochShape {
            train_steps: 100_000,
            valid_batches: 10_000,
            chars_per_epoch: 320_000_000,
        };
        let choice = choose(&[measured(128, 30, 600, &huge)], &huge, None);
        assert_eq!(
            (choice.model.hidden_dim, choice.epochs, choice.short),
            (128, 1, true)
        );
        let smoke = EpochShape {
            train_steps: 19,
            valid_batches: 19,
            chars_per_epoch: 58_800,
        };
        assert_eq!(smoke.max_epochs(), 27);
        let many = measured(128, 30, 600, &smoke);
        assert!(many.epochs_that_fit > 27);
        assert_eq!(choose(&[many], &smoke, None).epochs, 27);
    }
}
