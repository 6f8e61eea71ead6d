//! The fleet as devices report it: reports merged into device records ([`summary`],
//! [`report_writer`], its queue [`report_queue`]), their conditions ([`conditions`]), what each was sent ([`device_transfers`], written by [`transfers_writer`]), version fragmentation ([`fragmentation`]), the
//! views gathered for the
//! API and the periodic history ([`views`]), and `/metrics` ([`prometheus`]).

pub(crate) mod conditions;
pub mod device_transfers;
pub mod event_counts;
pub(crate) mod fragmentation;
pub mod http_requests;
pub(crate) mod process_figures;
pub(crate) mod prometheus;
pub(crate) mod report_queue;
pub(crate) mod report_writer;
pub(crate) mod summary;
pub mod transfers_writer;
pub mod views;
