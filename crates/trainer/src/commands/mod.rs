//! One module per subcommand: each parses nothing, picks the device, and calls the libraries.

pub mod bench;
pub mod eval;
pub mod exchange;
pub mod generate;
pub mod train;
