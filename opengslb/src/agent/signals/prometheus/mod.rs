//! Error rates from Prometheus counters: a reader of the text exposition format, which sums the series a
//! selector from the config matches, and the rate between two scrapes.

mod counters;
mod exposition;

pub use counters::ErrorRateFromCounters;
pub use exposition::sum_matching;
