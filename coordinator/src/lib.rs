//! `ferry-coordinator`: the registry and rollout brain of Ferry.
//!
//! It stores signed, immutable releases and their artifacts as shared chunks ([`store`]),
//! moves aliases and gates stages ([`registry`]), runs staged rollouts ([`rollout`]), serves
//! agents over QUIC ([`agents::quic`]) chunk by chunk and as deltas against what they hold
//! ([`agents::transfer`]), turns their reports into a fleet view ([`fleet`]) and offers all of
//! it to operators over an HTTP admin API ([`http`]) that `ferryctl` drives.
//!
//! # How it is put together
//!
//! - **Layers.** Each folder imports only the folders below it:
//!   `http`, `agents` → `rollout` → `registry`, `fleet` → `store` → `rules`.
//!   `tests/tests/module_graph.rs` fails on any import circle, so the order holds.
//! - **Pure cores, edges around them.** Decisions are functions of plain data: [`rules`]
//!   (roles, lifecycle policies, lineage, retention), the rollout engine and delta planning in
//!   `ferry_shared`. The files around them gather facts from the store and the fleet, call the
//!   core, and carry out its outcome in one store transaction with its audit entry.
//! - **One context, plain parts.** [`app::Coordinator`] holds the parts subsystems share
//!   (store, transfer, caches, queues, tokens); those parts import nothing back from the
//!   operations that use them, and small methods on it (`admit`, `snapshot`, `live`) hand
//!   the operations just the parts a question needs.
//! - **One place per question.** Whether devices may be pointed at a release:
//!   `registry::admission`. What a route requires: its declaration in `http::route`, beside
//!   its handler. What the API says: [`api`], the whole contract `ferryctl` decodes.
//! - **Every change audited in its own transaction.** The store appends the audit entry in the
//!   transaction that makes the change; announcements to open sessions go out only after
//!   the commit.
//! - **Bounded everywhere a device or caller can push.** Request bodies, refusals written to
//!   the audit trail, encodes per device, windows per delta, buffers kept between chunks.

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
/// The lifecycle's own moves by policy, driven by the coordinator binary.
pub use registry::automatic_moves;
pub mod rollout;
pub mod rules;
pub mod secrets;
pub mod stdout;
pub mod store;
pub mod stores;
#[cfg(any(test, feature = "test-util"))]
pub mod testkit;

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
