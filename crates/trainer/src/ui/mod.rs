//! What a person watches: plain progress lines, and the sample on burn-train's dashboard.

pub mod dashboard_sample;
pub mod progress;
