//! Plain progress lines, for logs and pipes, when the dashboard is off.

use std::collections::HashMap;
use std::time::Instant;

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};

/// Prints a line about every tenth of each split and one summary line per epoch.
pub struct PlainProgress {
    names: HashMap<MetricId, String>,
    latest: Vec<(String, String)>,
    finals: Vec<(&'static str, String, f64)>,
    epochs: usize,
    epoch: usize,
    split: String,
    split_items: usize,
    next_report: usize,
    started: Instant,
}

impl PlainProgress {
    /// A renderer that prints to stdout.
    pub fn new() -> Self {
        Self {
            names: HashMap::new(),
            latest: Vec::new(),
            finals: Vec::new(),
            epochs: 0,
            epoch: 1,
            split: String::new(),
            split_items: 0,
            next_report: 0,
            started: Instant::now(),
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
        self.epoch = starting_epoch.max(1);
        self.started = Instant::now();
    }

    fn update_epoch(&mut self, epoch: usize) {
        let parts: Vec<String> = self
            .finals
            .drain(..)
            .map(|(split, name, value)| format!("{split} {} {value:.4}", name.to_lowercase()))
            .collect();
        println!(
            "epoch {epoch}/{} done in {:.0}s: {}",
            self.epochs,
            self.started.elapsed().as_secs_f64(),
            parts.join(", ")
        );
        self.epoch = epoch + 1;
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        self.split = split.to_string();
        self.split_items = total_items;
        self.next_report = total_items / 10;
        self.latest.clear();
    }

    fn update_split(&mut self, items_processed: usize) {
        if items_processed >= self.next_report && items_processed < self.split_items {
            let metrics: Vec<String> = self
                .latest
                .iter()
                .map(|(name, value)| format!("{} {value}", name.to_lowercase()))
                .collect();
            println!(
                "epoch {}/{} {} {items_processed}/{}: {}",
                self.epoch,
                self.epochs,
                self.split,
                self.split_items,
                metrics.join(", ")
            );
            self.next_report = items_processed + self.split_items.div_ceil(10);
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
