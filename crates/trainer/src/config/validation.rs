//! The ranges of the trainer's own settings; the model crate checks `[model]` and the
//! sampling settings itself.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use super::RunConfig;

impl RunConfig {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<()> {
        let d = &self.data;
        let t = &self.training;
        let g = &self.generate;
        self.model.validate().map_err(|e| anyhow!("model.{e}"))?;
        positive("data.seq_len", d.seq_len)?;
        positive("data.stride", d.stride)?;
        in_unit("data.valid_fraction", d.valid_fraction)?;
        if !d.sha256.is_empty()
            && (d.sha256.len() != 64 || !d.sha256.chars().all(|c| c.is_ascii_hexdigit()))
        {
            bail!(
                "data.sha256 = {:?}: expected 64 hexadecimal digits",
                d.sha256
            );
        }
        positive("training.batch_size", t.batch_size)?;
        positive("training.devices", t.devices)?;
        positive("training.epochs", t.epochs)?;
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            bail!(
                "training.learning_rate = {}: expected a number > 0",
                t.learning_rate
            );
        }
        if !(t.grad_clip_norm.is_finite() && t.grad_clip_norm >= 0.0) {
            bail!(
                "training.grad_clip_norm = {}: expected a number >= 0 (0 = off)",
                t.grad_clip_norm
            );
        }
        // At `learning_rate * weight_decay >= 1` the decay would flip or zero every weight.
        if !(t.weight_decay.is_finite()
            && t.weight_decay >= 0.0
            && t.weight_decay * t.learning_rate < 1.0)
        {
            bail!(
                "training.weight_decay = {}: expected a number >= 0 whose product with training.learning_rate ({}) is below 1",
                t.weight_decay,
                t.learning_rate
            );
        }
        positive("training.num_workers", t.num_workers)?;
        in_unit("training.ema_decay", t.ema_decay)?;
        self.time_limit()?;
        self.budget()?;
        positive("generate.length", g.length)?;
        if g.prompt.is_empty() {
            bail!("generate.prompt is empty: expected at least one character");
        }
        g.sampling.validate().map_err(|e| anyhow!("generate.{e}"))?;
        Ok(())
    }

    /// `training.time_limit` as a duration; `None` when empty.
    pub fn time_limit(&self) -> Result<Option<Duration>> {
        duration("training.time_limit", &self.training.time_limit)
    }

    /// `training.budget` as a duration; `None` when empty.
    pub fn budget(&self) -> Result<Option<Duration>> {
        duration("training.budget", &self.training.budget)
    }
}

/// The duration `text` says; `None` when it is empty.
fn duration(key: &str, text: &str) -> Result<Option<Duration>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    super::duration::parse_duration(text).map(Some).ok_or_else(|| {
        anyhow!("{key} = {text:?}: expected a duration above zero such as \"90s\", \"10m\" or \"1h30m\"")
    })
}

fn positive(key: &str, value: usize) -> Result<()> {
    if value == 0 {
        bail!("{key} = 0: expected a whole number >= 1");
    }
    Ok(())
}

fn in_unit(key: &str, value: f64) -> Result<()> {
    if !(0.0..1.0).contains(&value) {
        bail!("{key} = {value}: expected a number in [0, 1)");
    }
    Ok(())
}
