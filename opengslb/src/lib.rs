//! OpenGSLB: a DNS-based global server load balancer.
//!
//! The overwatch answers DNS for service names with only their healthy backends; an XDP program answers
//! the hot A/AAAA queries in the kernel from an eBPF map that the overwatch keeps in step with the answer
//! table. See `docs/architecture.md` for the architecture; each module holds one concern.

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod dns;
#[doc(hidden)]
pub mod fuzzing;
pub mod gossip;
pub mod health;
pub mod http_client;
pub mod logging;
pub mod metrics;
pub mod name;
pub mod net;
pub mod overwatch;
pub mod registry;
pub mod routing;
pub mod store;
pub mod table;
pub mod xdp;
