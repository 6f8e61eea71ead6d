//! `ferry-shared`: the contract both sides of Ferry speak.
//!
//! Versions and their ordering, validated names, release manifests with lineage, signed
//! envelopes, and the wire messages of the agent ↔ coordinator QUIC protocol. Pure: this crate
//! does no I/O, reads no clock and starts no runtime, so both the agent and the coordinator
//! (and their tests) can use every part of it deterministically. The exceptions sit behind
//! features the binaries enable: `tls` (a certificate verifier), `tokio-io` (frame I/O over
//! any stream), `allocator` (tuning glibc's allocator at process start) and `udp` (QUIC's
//! sockets).

#[cfg(feature = "allocator")]
pub mod allocator;
pub mod archive;
pub mod bundle;
pub mod chunk;
pub mod delta;
pub mod digest;
pub mod disk_need;
pub mod fingerprint;
pub mod manifest;
pub mod mirror;
pub mod name;
#[cfg(feature = "tls")]
pub mod pinned;
pub mod plan;
pub mod requirement;
pub mod rollout;
pub mod schema;
pub mod seal;
pub mod sign;
pub mod tensors;
pub mod throttle;
pub mod trust;
#[cfg(feature = "udp")]
pub mod udp;
pub mod variant_choice;
pub mod version;
pub mod window;
pub mod wire;
#[cfg(feature = "writeback")]
pub mod writeback;

#[cfg(any(test, feature = "test-util"))]
pub mod testutil;

pub use digest::Digest;
pub use manifest::{Accelerator, Lineage, Release, Target, Variant};
pub use name::{AliasName, FileName, ModelName};
pub use sign::{KeyId, PublicKey, SecretKey, SignedRelease};
pub use version::Version;
