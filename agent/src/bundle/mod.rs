//! Offline bundles on the device ([`ferry_shared::bundle`]): `ferry-agent install-bundle`
//! hands a bundle to the running daemon ([`request`]), which admits its release with the same
//! checks as a desired state from the coordinator (signature, root chain, snapshot judged by
//! the device's own clock, variant) and installs it from the file instead of the network
//! ([`install`]): switch, health check, rollback and the report on next contact are those of
//! any update.

pub mod command;
pub mod install;
pub mod request;
