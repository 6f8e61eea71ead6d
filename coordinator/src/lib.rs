//! `ferry-coordinator`: the registry and rollout brain of Ferry.
//!
//! It stores signed, immutable releases and their artifacts as shared chunks ([`store`]),
//! moves aliases ([`registry`]), serves agents over QUIC ([`quic`]) chunk by chunk and as
//! deltas against what they hold ([`transfer`]), turns their reports into a fleet view
//! ([`fleet`]) and offers all of it to operators over an HTTP admin API ([`http`]) that
//! `ferryctl` drives.

pub mod access;
pub mod api;
pub mod app;
pub mod backup;
pub mod collect;
pub mod compat;
pub mod config;
pub mod dashboard;
pub mod denials;
pub mod desired;
pub mod device_tls;
pub mod encode_budget;
pub mod fanout;
pub mod fetch;
pub mod first_install;
pub mod fleet;
pub mod fleet_report;
pub mod fragmentation;
pub mod gc;
pub mod http;
pub mod http_devices;
pub mod http_lineage;
pub mod http_listen;
mod http_query;
pub mod http_rollouts;
pub mod http_stages;
pub mod http_tokens;
pub mod http_trust;
pub mod http_uploads;
pub mod lifecycle;
pub mod lineage;
pub mod prometheus;
pub mod quic;
pub mod reach;
pub mod registry;
pub mod reports;
pub mod rollouts;
pub mod secrets;
pub mod sessions;
pub mod sketches;
pub mod snapshots;
pub mod stages;
pub mod stdout;
pub mod store;
pub mod transfer;
pub mod trim;

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
