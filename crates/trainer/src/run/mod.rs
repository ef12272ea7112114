//! The run directory and the files training keeps in it.

pub mod curves;
pub mod ensemble;
pub mod epoch_log;
pub mod metrics_csv;
pub mod replacement;
pub mod run_dir;
