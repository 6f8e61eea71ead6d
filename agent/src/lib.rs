//! `ferry-agent`: the device side of Ferry.
//!
//! The pure [`updater`] decides; [`daemon`] carries its decisions out through [`session`]
//! (the coordinator over QUIC), [`fetch`] (chunked, resumable download, taking what it can
//! from untrusted [`mirrors`]) and [`assemble`]
//! (copy, decode and verify chunks into the staging file), [`slots`] (the atomic
//! switch and crash recovery) and [`health`] (the post-switch check); [`access`] says who may
//! read what in the state directory; [`conditions`] tells the coordinator the disk space and
//! deferred switches. [`state`] remembers what
//! must survive restarts. [`status`] and [`rollback`] are the local commands.

pub mod access;
pub mod assemble;
pub mod backoff;
pub mod bundle;
pub mod conditions;
pub mod config;
pub mod daemon;
pub mod fetch;
pub mod footprint;
pub mod fsutil;
pub mod handover;
pub mod hardware;
pub mod health;
pub mod identity;
pub mod localtime;
pub mod maintenance;
pub mod metrics;
pub mod mirrors;
pub mod notify;
pub mod program;
pub mod reload;
pub mod rollback;
pub mod session;
pub mod slots;
pub mod space;
pub mod state;
pub mod status;
pub mod stdout;
pub mod stored;
pub mod throttle;
pub mod tls;
pub mod unpack;
pub mod updater;

/// The target triple this agent was built for (chooses release variants).
pub const TARGET: &str = env!("FERRY_TARGET");

/// Seconds since the Unix epoch (device clock).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
