//! Everything that faces the agents: the QUIC endpoint and its device TLS ([`quic`],
//! [`device_tls`]), one session per device ([`sessions`]), what each device should run and the
//! push when that changes ([`desired`], [`fanout`]), what a device may fetch ([`reach`]), and
//! serving chunks and deltas ([`fetch`], [`transfer`], [`first_install`], [`sketches`],
//! [`encode_budget`], [`trim`]), and the warmer that encodes ahead of devices ([`warm`]).

pub mod desired;
pub mod desired_cache;
pub mod device_tls;
pub mod encode_budget;
pub mod fanout;
pub mod fetch;
pub mod first_install;
pub mod push;
pub mod quic;
pub mod reach;
pub mod session_error;
pub mod sessions;
pub mod sketches;
pub mod transfer;
pub mod trim;
pub mod warm;
