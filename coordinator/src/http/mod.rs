//! The admin HTTP API that `ferryctl` and the dashboard use: the listener ([`listen`]), the
//! router ([`router`]) built from routes declared with their permission ([`route`]), the
//! guard that authenticates and checks each call ([`auth`]), failures and shared request
//! checks ([`replies`]), one file per group of routes, the dashboard page ([`dashboard`]) and
//! the budget of refusals written to the audit trail ([`refusal_budget`]).

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod bundles;
pub(crate) mod console;
pub(crate) mod devices;
pub(crate) mod experiments;
pub(crate) mod fleet;
pub(crate) mod lineage;
pub mod listen;
pub(crate) mod metrics;
pub(crate) mod pins;
pub mod refusal_budget;
pub(crate) mod releases;
pub(crate) mod replies;
pub(crate) mod rollouts;
pub mod route;
pub mod router;
pub(crate) mod stages;
pub(crate) mod tokens;
pub(crate) mod track_requests;
pub(crate) mod trust;
pub(crate) mod upkeep;
pub(crate) mod upload_attempts;
pub(crate) mod uploads;
pub(crate) mod whoami;
