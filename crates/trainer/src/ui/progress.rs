//! Plain progress lines, for logs and pipes, when the dashboard is off.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};

/// How long a split runs before it gets a progress line (and between two of them).
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// The epoch the training loop is in, which it sets and the progress lines read (burn-train's
/// own count starts at 1 when a run resumes mid-epoch).
#[derive(Debug, Clone, Default)]
pub struct CurrentEpoch(Arc<AtomicUsize>);

impl CurrentEpoch {
    /// The loop starts `epoch`.
    pub fn set(&self, epoch: usize) {
        self.0.store(epoch, Ordering::Relaxed);
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Prints one summary line per epoch, with the epoch's own time and the run's so far, and a
/// progress line every [`PROGRESS_EVERY`] within a long split.
pub struct PlainProgress {
    names: HashMap<MetricId, String>,
    latest: Vec<(String, String)>,
    finals: Vec<(&'static str, String, f64)>,
    epochs: usize,
    epoch: CurrentEpoch,
    split: String,
    split_items: usize,
    last_line: Instant,
    started: Instant,
    epoch_started: Instant,
}

impl PlainProgress {
    /// A renderer that prints to stdout, reading the epoch from `epoch`.
    pub fn new(epoch: CurrentEpoch) -> Self {
        Self {
            names: HashMap::new(),
            latest: Vec::new(),
            finals: Vec::new(),
            epochs: 0,
            epoch,
            split: String::new(),
            split_items: 0,
            last_line: Instant::now(),
            started: Instant::now(),
            epoch_started: Instant::now(),
        }
    }

    fn record(&mut self, split: &'static str, state: MetricState) {
        let MetricState::Numeric(entry, value) = state else {
            return;
        };
        let name = self
            .names
            .get(&entry.metric_id)
            .cloned()
            .unwrap_or_default();
        match value {
            Some(NumericEntry::Final(v)) => self.finals.push((split, name, v)),
            _ => {
                let formatted = entry.serialized_entry.formatted.clone();
                match self.latest.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = formatted,
                    None => self.latest.push((name, formatted)),
                }
            }
        }
    }
}

impl MetricsRendererTraining for PlainProgress {
    fn update_train(&mut self, state: MetricState) {
        self.record("train", state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.record("valid", state);
    }
}

impl TrainingProgressLogger for PlainProgress {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.epochs = total_epochs;
        if self.epoch.get() == 0 {
            self.epoch.set(starting_epoch.max(1));
        }
        self.started = Instant::now();
    }

    fn update_epoch(&mut self, epoch: usize) {
        let parts: Vec<String> = self
            .finals
            .drain(..)
            .map(|(split, name, value)| format!("{split} {} {value:.4}", name.to_lowercase()))
            .collect();
        let epoch = self.epoch.get().max(epoch);
        println!(
            "epoch {epoch}/{} done in {} (total {}): {}",
            self.epochs,
            duration(self.epoch_started.elapsed()),
            duration(self.started.elapsed()),
            parts.join(", ")
        );
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        if split == "train" {
            self.epoch_started = Instant::now();
        }
        self.split = split.to_string();
        self.split_items = total_items;
        self.last_line = Instant::now();
        self.latest.clear();
    }

    fn update_split(&mut self, items_processed: usize) {
        if self.last_line.elapsed() >= PROGRESS_EVERY && items_processed < self.split_items {
            let metrics: Vec<String> = self
                .latest
                .iter()
                .map(|(name, value)| format!("{} {value}", name.to_lowercase()))
                .collect();
            println!(
                "epoch {}/{} {} {items_processed}/{}: {}",
                self.epoch.get(),
                self.epochs,
                self.split,
                self.split_items,
                metrics.join(", ")
            );
            self.last_line = Instant::now();
        }
    }

    fn end_split(&mut self) {}

    fn end(&mut self) {}

    fn log_event_training(&mut self, event: String) {
        // burn-train reports every step as an "Iteration" event; the split lines cover those.
        if event != "Iteration" {
            println!("{event}");
        }
    }
}

/// `0.42s`, `4.2s`, `95s`, `12m05s`, `1h02m`: short, and precise enough to tell epochs apart.
fn duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let whole = elapsed.as_secs();
    match whole {
        0 => format!("{seconds:.2}s"),
        1..10 => format!("{seconds:.1}s"),
        10..600 => format!("{whole}s"),
        600..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        _ => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
    }
}

impl MetricsRendererEvaluation for PlainProgress {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
}

impl EvaluationProgressLogger for PlainProgress {
    fn start_global_progress(&mut self, _total: usize) {}
    fn start_test(&mut self, _name: &str, _total: usize) {}
    fn update_test_progress(&mut self, _items: usize) {}
    fn end_test(&mut self) {}
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRenderer for PlainProgress {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id, definition.name.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_every_scale() {
        let d = |s: f64| duration(Duration::from_secs_f64(s));
        assert_eq!(d(0.424), "0.42s");
        assert_eq!(d(4.24), "4.2s");
        assert_eq!(d(9.96), "10.0s");
        assert_eq!(d(95.2), "95s");
        assert_eq!(d(725.0), "12m05s");
        assert_eq!(d(3725.0), "1h02m");
    }
}
