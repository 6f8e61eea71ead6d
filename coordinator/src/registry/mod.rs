//! The registry: publishing signed releases and moving aliases ([`publish`]), lifecycle
//! stages and approvals ([`stages`]), whether devices may be pointed at a release
//! ([`admission`], with the schema fit in [`compat`]), the operations' error ([`error`]), the signed snapshots devices check ([`snapshots`]) and garbage collection
//! carried out ([`collect`]).

pub mod admission;
pub mod collect;
pub mod compat;
pub mod error;
pub mod publish;
pub mod snapshots;
pub mod stages;
