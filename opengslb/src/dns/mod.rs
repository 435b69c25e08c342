//! The userspace authoritative DNS server: the zones and their apex records, the bytes-in/bytes-out
//! responder, and the UDP and TCP listeners.

mod metrics;
mod per_client;
pub mod queries;
pub mod rate_limit;
pub mod respond;
pub mod server;
mod udp;
pub mod zone;

#[cfg(test)]
mod tests;

pub use queries::QueryCounts;
pub use respond::{DropReason, Outcome, QueryContext, ReplyKind, Transport, respond, truncated};
pub use zone::{Snapshot, Zone, ZoneError};
