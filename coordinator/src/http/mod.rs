//! The admin HTTP API that `ferryctl` and the dashboard use: the listener ([`listen`]), the
//! router with authentication and replies ([`router`]), one file per group of routes, the
//! dashboard page ([`dashboard`]) and the budget of refusals written to the audit trail
//! ([`denials`]).

pub mod dashboard;
pub mod denials;
pub mod devices;
pub mod lineage;
pub mod listen;
mod query;
pub mod rollouts;
pub mod router;
pub mod stages;
pub mod tokens;
pub mod trust;
pub mod uploads;
