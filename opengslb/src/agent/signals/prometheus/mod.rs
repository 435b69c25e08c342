//! Error rates from Prometheus counters: a selector for the series, a reader
//! of the text exposition format, and the rate between two scrapes.

mod counters;
mod cursor;
mod exposition;
mod selector;
mod simple_regex;

pub use counters::ErrorRateFromCounters;
pub use exposition::sum_matching;
pub use selector::{MetricSelector, SelectorError};
