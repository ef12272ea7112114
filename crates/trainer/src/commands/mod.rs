//! One module per subcommand: each parses nothing, picks the device, and calls the libraries.

pub mod bench;
mod bench_recurrence;
pub mod eval;
pub mod exchange;
pub mod generate;
pub mod serve;
pub mod train;
