//! `metrics.csv`: the train and validation loss of every epoch, one row each.

/// The header of `metrics.csv`; losses are mean nats per character, bpc bits per character.
pub const HEADER: &str = "epoch,train_loss,valid_loss,train_bpc,valid_bpc";

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EpochRow {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Mean training loss, nats per character (NaN when missing).
    pub train_loss: f64,
    /// Mean validation loss, nats per character (NaN when missing).
    pub valid_loss: f64,
}

/// Reads `metrics.csv`; a missing file has no rows.
pub fn read(path: &std::path::Path) -> anyhow::Result<Vec<EpochRow>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    };
    text.lines()
        .skip(1)
        .enumerate()
        .map(|(i, line)| {
            let cells: Vec<&str> = line.split(',').collect();
            let number = |k: usize| {
                cells
                    .get(k)
                    .and_then(|c| c.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            let epoch = cells.first().and_then(|c| c.parse().ok());
            epoch
                .map(|epoch| EpochRow {
                    epoch,
                    train_loss: number(1),
                    valid_loss: number(2),
                })
                .ok_or_else(|| {
                    anyhow::anyhow!("{}: line {}: expected `{HEADER}`", path.display(), i + 2)
                })
        })
        .collect()
}
