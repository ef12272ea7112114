//! `training.budget`: a run sized for a wall-time budget. What neither the config file nor
//! `--set` gives is chosen by [`rules`] from the text's length and the training steps of
//! candidate sizes timed on the run's own devices: the data's cut, the model's size, the
//! epochs, the regularization and schedule, and the time limit. The choice is written into the
//! run's config, so a resumed run or `generate` sees plain settings.

pub mod rules;

use std::fmt::Write;
use std::time::{Duration, Instant};

use anyhow::Result;
use burn::data::dataset::Dataset;
use char_lstm::LstmLanguageModelConfig;
use char_lstm_data::TextWindows;

use crate::config::{DataMode, GivenKeys, LrSchedule, RunConfig};
use crate::training::data_parallel::DataParallel;
use crate::training::step_timing::{median_step_time, training_step};
use rules::{Choice, DataCut, EpochShape, GivenData, GivenModel, Measured};

/// A new run's budget, counted from its start.
#[derive(Debug)]
pub struct Budget {
    total: Duration,
    started: Instant,
    given: GivenKeys,
}

impl Budget {
    /// The budget `config.training.budget` sets, counted from now, with the keys `given`
    /// (which it leaves as they are); `None` when it sets none.
    pub fn start(config: &RunConfig, given: GivenKeys) -> Result<Option<Self>> {
        Ok(config.budget()?.map(|total| Self {
            total,
            started: Instant::now(),
            given,
        }))
    }

    /// Chooses the validation share, the mode and the window length for a text of
    /// `text_chars` characters ([`rules::data_cut`]).
    pub fn cut_data(&self, config: &mut RunConfig, text_chars: usize) {
        let d = &config.data;
        let given = GivenData {
            valid_fraction: self.given_value("data.valid_fraction", d.valid_fraction),
            mode: self.given_value("data.mode", d.mode),
            seq_len: self.given_value("data.seq_len", d.seq_len),
        };
        let DataCut {
            valid_fraction,
            mode,
            seq_len,
        } = rules::data_cut(text_chars, config.training.global_batch_size(), &given);
        (
            config.data.valid_fraction,
            config.data.mode,
            config.data.seq_len,
        ) = (valid_fraction, mode, seq_len);
    }

    /// Times a training step of every candidate size on the run's devices (`parallel`;
    /// smallest first, until one no longer suffices), chooses among them ([`rules::choose`]),
    /// and writes the size, the epochs, the regularization, the schedule and the time left into
    /// `config`. The paragraph that says what was chosen and why. `text_train_chars` is the
    /// training text's length, `train` and `valid` its windows and the validation windows.
    pub fn size_model(
        &self,
        config: &mut RunConfig,
        text_train_chars: usize,
        [train, valid]: [&TextWindows; 2],
        parallel: &DataParallel,
    ) -> String {
        self.choose_regularization(config);
        let batch = config.training.global_batch_size();
        let shape = EpochShape {
            train_steps: train.len().div_ceil(batch),
            valid_batches: valid.len().div_ceil(batch),
            chars_per_epoch: train.len() * train.seq_len(),
        };
        let given = GivenModel {
            embedding_dim: self.given_value("model.embedding_dim", config.model.embedding_dim),
            hidden_dim: self.given_value("model.hidden_dim", config.model.hidden_dim),
            num_layers: self.given_value("model.num_layers", config.model.num_layers),
            epochs: self.given_value("training.epochs", config.training.epochs),
        };
        let measured = self.measure(config, &given, &shape, text_train_chars, train, parallel);
        let choice = rules::choose(&measured, &shape, given.epochs);
        let params_per_char = choice.model.num_params() as f64 / text_train_chars.max(1) as f64;
        self.apply(config, &choice, params_per_char);
        self.paragraph(config, &measured, &choice, &shape, params_per_char)
    }

    /// Times a training step of each of [`rules::candidates`], smallest first, until one does
    /// not suffice; each with the epochs that fit in the budget left after all the timing.
    fn measure(
        &self,
        config: &RunConfig,
        given: &GivenModel,
        shape: &EpochShape,
        text_train_chars: usize,
        train: &TextWindows,
        parallel: &DataParallel,
    ) -> Vec<Measured> {
        let mut steps = Vec::new();
        for model in rules::candidates(&config.model, given, text_train_chars) {
            let lm = model.init(parallel.main_device());
            let step = median_step_time(1, 3, training_step(lm, parallel, train, config));
            let enough = Measured::new(model.clone(), step, shape, self.time_left())
                .suffices(shape, given.epochs);
            steps.push((model, step));
            if !enough {
                break;
            }
        }
        let time_left = self.time_left();
        steps
            .into_iter()
            .map(|(model, step)| Measured::new(model, step, shape, time_left))
            .collect()
    }

    /// The budget left now.
    fn time_left(&self) -> Duration {
        self.total.saturating_sub(self.started.elapsed())
    }

    /// `value` if `key` was given, else `None` (the budget chooses it).
    fn given_value<T>(&self, key: &str, value: T) -> Option<T> {
        self.given.contains(key).then_some(value)
    }

    /// Sets `slot` to `value` unless `key` was given.
    fn set_unless_given<T>(&self, key: &str, slot: &mut T, value: T) {
        if !self.given.contains(key) {
            *slot = value;
        }
    }

    /// The tuned config's dropout (the rate the candidates are timed with; [`Budget::apply`]
    /// raises it for large models), AdamW and cosine schedule, where not given.
    fn choose_regularization(&self, config: &mut RunConfig) {
        let (m, t) = (&mut config.model, &mut config.training);
        self.set_unless_given("model.dropout", &mut m.dropout, rules::DROPOUT);
        self.set_unless_given(
            "model.variational_dropout",
            &mut m.variational_dropout,
            true,
        );
        self.set_unless_given(
            "training.learning_rate",
            &mut t.learning_rate,
            rules::LEARNING_RATE,
        );
        self.set_unless_given(
            "training.weight_decay",
            &mut t.weight_decay,
            rules::WEIGHT_DECAY,
        );
        self.set_unless_given(
            "training.lr_schedule",
            &mut t.lr_schedule,
            LrSchedule::Cosine,
        );
    }

    /// Writes `choice`, its dropout and weight decay at `params_per_char` parameters per
    /// training character ([`rules::regularization`]) and the budget left as the time limit
    /// into `config`; a run that ends inside its first epoch also keeps a weight average.
    fn apply(&self, config: &mut RunConfig, choice: &Choice, params_per_char: f64) {
        let (m, t) = (&mut config.model, &mut config.training);
        let (dropout, weight_decay) = rules::regularization(params_per_char);
        self.set_unless_given("model.dropout", &mut m.dropout, dropout);
        self.set_unless_given("training.weight_decay", &mut t.weight_decay, weight_decay);
        self.set_unless_given(
            "model.hidden_dim",
            &mut m.hidden_dim,
            choice.model.hidden_dim,
        );
        self.set_unless_given(
            "model.embedding_dim",
            &mut m.embedding_dim,
            choice.model.embedding_dim,
        );
        self.set_unless_given(
            "model.num_layers",
            &mut m.num_layers,
            choice.model.num_layers,
        );
        self.set_unless_given("training.epochs", &mut t.epochs, choice.epochs);
        // At least a second, so the limit is a valid duration even for a spent budget.
        let limit = format!("{}s", self.time_left().as_secs().max(1));
        self.set_unless_given("training.time_limit", &mut t.time_limit, limit);
        if !choice.first_epoch_fits {
            self.set_unless_given("training.ema_decay", &mut t.ema_decay, rules::EMA_DECAY);
        }
    }

    /// What was measured and chosen, and why, in one paragraph.
    fn paragraph(
        &self,
        config: &RunConfig,
        measured: &[Measured],
        choice: &Choice,
        shape: &EpochShape,
        params_per_char: f64,
    ) -> String {
        let (m, d, t) = (&config.model, &config.data, &config.training);
        let strong = params_per_char > rules::STRONG_ABOVE_PARAMS_PER_CHAR
            && !(self.given.contains("model.dropout")
                && self.given.contains("training.weight_decay"));
        let mut text = format!("training.budget = {:?}: training steps of", t.budget);
        for (i, x) in measured.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                text,
                "{sep} {} {} ms ({} epochs fit, {:.1} characters per parameter)",
                shape_name(&x.model),
                x.step.as_millis(),
                x.epochs_that_fit,
                x.chars_per_param(shape, None),
            );
        }
        let why = self.reason(choice);
        let _ = write!(
            text,
            ". Chose {}, embedding {} ({:.1}M parameters), for {} epoch{}: {why}. {}, dropout {} between the layers{}, AdamW {} with weight decay {}{}, {} learning rate, time limit {}{}; written to the run's config.toml.",
            shape_name(&choice.model),
            m.embedding_dim,
            m.num_params() as f64 / 1e6,
            t.epochs,
            if t.epochs == 1 { "" } else { "s" },
            match d.mode {
                DataMode::Stream => format!("Streams of {} characters", d.seq_len),
                DataMode::Windows => format!("Sliding windows of {} characters", d.seq_len),
            },
            m.dropout,
            if m.variational_dropout {
                " (one mask per sequence)"
            } else {
                ""
            },
            t.learning_rate,
            t.weight_decay,
            if strong {
                format!(
                    " (raised for a model of {params_per_char:.1} parameters per character of the text, above {})",
                    rules::STRONG_ABOVE_PARAMS_PER_CHAR
                )
            } else {
                String::new()
            },
            match t.lr_schedule {
                LrSchedule::Cosine => "cosine-annealed",
                LrSchedule::Constant => "constant",
            },
            t.time_limit,
            if choice.first_epoch_fits {
                ""
            } else {
                ", which ends the run inside its first epoch (a weight average is kept beside the weights)"
            },
        );
        text
    }

    /// Why `choice` is what it is: which rule chose it.
    fn reason(&self, choice: &Choice) -> String {
        let epochs_given = self.given.contains("training.epochs");
        if choice.short && epochs_given {
            "the smallest size: none fits the given epochs in the budget".to_string()
        } else if choice.short {
            "the smallest size: none sees the characters per parameter it needs in the budget, so a longer budget would train better".to_string()
        } else if self.given.contains("model.hidden_dim") {
            "the given size".to_string()
        } else if epochs_given {
            "the largest size whose given epochs fit".to_string()
        } else {
            format!(
                "the largest size that sees at least {} training characters per parameter, of those with at most {} parameters per character of the text",
                rules::MIN_CHARS_PER_PARAM,
                rules::MAX_PARAMS_PER_CHAR
            )
        }
    }
}

/// `2 x 512`: layers times hidden size.
fn shape_name(model: &LstmLanguageModelConfig) -> String {
    format!("{} x {}", model.num_layers, model.hidden_dim)
}
