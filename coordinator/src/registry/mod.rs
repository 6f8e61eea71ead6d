//! The registry: publishing signed releases and moving aliases ([`publish`]), lifecycle
//! stages and approvals ([`stages`]), whether a release fits the devices' applications
//! ([`compat`]), the signed snapshots devices check ([`snapshots`]) and garbage collection
//! carried out ([`collect`]).

pub mod collect;
pub mod compat;
pub mod error;
pub mod publish;
pub mod snapshots;
pub mod stages;
