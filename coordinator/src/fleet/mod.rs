//! The fleet as devices report it: reports merged into device records ([`summary`],
//! [`report_writer`], its queue [`report_queue`]), version fragmentation ([`fragmentation`]), the views gathered for the
//! API and the periodic history ([`views`]), and `/metrics` ([`prometheus`]).

pub mod fragmentation;
pub mod prometheus;
pub mod report_queue;
pub mod report_writer;
pub mod summary;
pub mod views;
