//! The admin HTTP API that `ferryctl` and the dashboard use: the listener ([`listen`]), the
//! router ([`router`]) built from routes declared with their permission ([`route`]), the
//! guard that authenticates and checks each call ([`auth`]), failures and shared request
//! checks ([`replies`]), one file per group of routes, the dashboard page ([`dashboard`]) and
//! the budget of refusals written to the audit trail ([`denials`]).

pub mod audit;
pub mod auth;
pub mod dashboard;
pub mod denials;
pub mod devices;
pub mod fleet;
pub mod lineage;
pub mod listen;
pub mod metrics;
pub mod releases;
pub mod replies;
pub mod rollouts;
pub mod route;
pub mod router;
pub mod stages;
pub mod tokens;
pub mod trust;
pub mod upkeep;
pub mod upload_attempts;
pub mod uploads;
