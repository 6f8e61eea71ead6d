//! `ferry-coordinator`: the registry and rollout brain of Ferry.
//!
//! It stores signed, immutable releases and their artifacts as shared chunks ([`store`]),
//! moves aliases ([`registry`]), serves agents over QUIC ([`agents::quic`]) chunk by chunk and as
//! deltas against what they hold ([`agents::transfer`]), turns their reports into a fleet view
//! ([`fleet`]) and offers all of it to operators over an HTTP admin API ([`http`]) that
//! `ferryctl` drives.

#![warn(unreachable_pub)]
// The library serves its own two binaries and the tests; its docs are read with
// `cargo doc --document-private-items`, where links into crate-private modules resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub mod agents;
pub mod api;
pub mod app;
pub mod config;
pub mod fleet;
pub mod http;
pub(crate) mod registry;
pub mod rollout;
pub mod rules;
pub mod secrets;
pub mod stdout;
pub mod store;

/// Seconds since the Unix epoch, from the system clock (the one clock read of the coordinator).
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the Unix epoch, for what must be ordered within a second (a rollout's
/// start against the failures devices report).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
