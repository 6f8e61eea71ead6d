//! Everything that faces the agents: the QUIC endpoint and its device TLS ([`quic`],
//! [`device_tls`]), one session per device ([`sessions`]), what each device should run and the
//! push when that changes ([`desired`], [`fanout`]), what a device may fetch ([`reach`]), and
//! serving chunks and deltas ([`fetch`], [`transfer`], [`first_install`], [`sketches`],
//! [`encode_budget`], [`trim`]) within the serving cap ([`serve_cap`]) or where else to fetch
//! them ([`locations`]), and the warmer that encodes ahead of devices ([`warm`]).

pub(crate) mod desired;
pub(crate) mod desired_cache;
pub(crate) mod device_tls;
pub mod encode_budget;
pub(crate) mod fanout;
pub(crate) mod fetch;
pub(crate) mod first_install;
pub mod follow;
pub(crate) mod locations;
pub(crate) mod push;
pub mod quic;
pub(crate) mod reach;
pub mod serve_cap;
pub(crate) mod session_error;
pub(crate) mod sessions;
pub(crate) mod sketches;
pub mod transfer;
pub mod trim;
pub mod warm;
