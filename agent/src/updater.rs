//! The update state machine of one model on one device. Pure: no I/O, no clock reads, no
//! randomness. The daemon feeds it [`Event`]s (what the coordinator wants, what its actions
//! achieved) and carries out the [`Effect`]s it returns.
//!
//! ```text
//!  Idle ──desired≠current──▶ Downloading ──downloaded──▶ Switching ──switched──▶ Probation
//!   ▲  ◀──retry due── Waiting ◀──download failed (retryable)                      │     │
//!   │                                                                        passed   failed
//!   ├──────────────────────── commit ◀────────────────────────────────────────────┘     │
//!   └──── hold the version ◀── rolled back ◀── RollingBack ◀────────────────────────────┘
//! ```
//!
//! Beside what runs, the coordinator may name a *candidate* (a shadow rollout wave): once
//! the desired version runs, the machine stages the candidate and points the `candidate` link
//! at it without switching, so the application can run it on the same inputs; when the
//! coordinator stops naming it, the link and the version go. A candidate that later becomes
//! the desired version is switched to without downloading it again.
//!
//! A version that failed its health check, whose release is unusable here, or that an
//! operator rolled back from on the device is *held*: not installed again until the
//! coordinator asks for a different version. A device may hold several versions at once (a
//! health-check failure and an operator's rollback are independent decisions). Holds are what
//! stop a fleet from looping install → fail → install.
//!
//! Admission ([`admit`], in `admission.rs`) checks what the coordinator asks for; the machine
//! ([`Updater`], in `machine.rs`) decides what to do about it; what is installed and held
//! ([`Slots`], [`Hold`], in `installed.rs`) is plain data the disk modules (`slots`, `state`)
//! store, so they import this core and it imports nothing of theirs.

mod admission;
mod installed;
mod machine;
#[cfg(test)]
mod properties;
#[cfg(any(test, feature = "test-util"))]
pub mod simulated;
#[cfg(test)]
mod tests;
pub mod update_set;

pub use admission::{Admitted, Desire, NOT_CONNECTED, Trust, admit};
pub use installed::{Hold, Slots};
pub use machine::{Effect, Event, Retry, Updater};
