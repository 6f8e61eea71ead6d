//! A harness that runs Ferry for real: the `ferry-coordinator`, `ferry-agent` and `ferryctl`
//! binaries as processes, in a temporary directory, talking QUIC and HTTP on loopback.
//!
//! Used by the end-to-end tests and by the `ferry-demo` binary. Waits are on conditions with
//! deadlines, never fixed sleeps.

pub mod bench;
mod binaries;
pub mod browser;
mod fleet;
pub mod hostile;
pub mod http;
pub mod mirror;
mod process;
pub mod procfs;
pub mod raw_device;
pub mod relay;
mod rollouts;
pub mod scenarios;
pub mod small_disk;
pub mod tcp_cut;
mod wait;

pub use bench::{BuildFlag, print_stages};
pub use binaries::Binaries;
pub use fleet::{
    AgentSpec, Fleet, HEALTH_MAGIC, MODEL, TOKENIZER, chunks_of, model_bytes, nudged, weights,
};
pub use process::{Agent, Cadence, Coordinator, run_coordinator};
pub use wait::{Hopeless, wait_until};
