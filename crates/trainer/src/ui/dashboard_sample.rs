//! The newest epoch sample on the dashboard. burn-train's dashboard draws every metric's
//! formatted value in its metrics pane and plots only the numeric ones, so the sample is a
//! validation metric whose value is the text.

use std::sync::{Arc, Mutex};

use burn::tensor::TensorReadError;
use burn::train::metric::{Metric, MetricMetadata, MetricName, SerializedEntry};

/// How many characters of a sample the pane shows; `samples.txt` keeps all of them.
const SHOWN_CHARS: usize = 200;

/// The newest sample as one line for the pane, set by the training loop after each epoch.
#[derive(Debug, Clone, Default)]
pub struct LatestSample(Arc<Mutex<Option<String>>>);

impl LatestSample {
    /// Records the sample drawn after `epoch`: newlines become `⏎` and other control
    /// characters spaces (the pane wraps one line), cut to `SHOWN_CHARS` with `…`.
    pub fn set(&self, epoch: usize, text: &str) {
        let mut line: String = text
            .chars()
            .take(SHOWN_CHARS)
            .map(|c| match c {
                '\n' => '⏎',
                c if c.is_control() => ' ',
                c => c,
            })
            .collect();
        if text.chars().nth(SHOWN_CHARS).is_some() {
            line.push('…');
        }
        *self.0.lock().expect("not poisoned") = Some(format!("epoch {epoch}: {line}"));
    }

    fn line(&self) -> String {
        self.0
            .lock()
            .expect("not poisoned")
            .clone()
            .unwrap_or_else(|| "drawn after each epoch".to_string())
    }
}

/// A validation metric whose value is the [`LatestSample`]. Its serialized form is empty, which
/// burn-train's file logger skips, so the text is not written once per validation batch.
#[derive(Debug, Clone)]
pub struct SampleMetric {
    latest: LatestSample,
    name: MetricName,
}

impl SampleMetric {
    /// The metric showing `latest`.
    pub fn new(latest: LatestSample) -> Self {
        Self {
            latest,
            name: Arc::new("Sample".to_string()),
        }
    }

    fn entry(&self) -> SerializedEntry {
        SerializedEntry::new(self.latest.line(), String::new())
    }
}

impl Metric for SampleMetric {
    type Input = ();

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(
        &mut self,
        _item: &(),
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        Ok(self.entry())
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self.entry())
    }

    fn clear(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_shows_the_newest_sample_as_one_line_and_logs_nothing() {
        let latest = LatestSample::default();
        let mut metric = SampleMetric::new(latest.clone());
        let before = metric.compute().unwrap();
        assert_eq!(before.formatted, "drawn after each epoch");
        assert!(before.is_not_available(), "the file logger must skip it");

        latest.set(1, "KING:\nNo,\tsir.");
        assert_eq!(
            metric.compute().unwrap().formatted,
            "epoch 1: KING:⏎No, sir."
        );

        // Cut by characters, not bytes: 250 three-byte characters.
        let long = "春".repeat(250);
        latest.set(2, &long);
        let entry = metric.compute().unwrap();
        let shown = entry.formatted.strip_prefix("epoch 2: ").unwrap();
        assert_eq!(shown, format!("{}…", "春".repeat(SHOWN_CHARS)));
        assert!(entry.is_not_available());

        latest.set(3, &"a".repeat(SHOWN_CHARS));
        assert_eq!(
            metric.compute().unwrap().formatted,
            format!("epoch 3: {}", "a".repeat(SHOWN_CHARS)),
            "no ellipsis when nothing is cut"
        );
    }
}
