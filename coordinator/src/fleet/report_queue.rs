//! The queue to the report writer thread (see [`crate::fleet::report_writer`]), as the
//! Coordinator holds it: empty until the first report starts the writer.

use std::sync::OnceLock;

use ferry_shared::wire::{Conditions, DeviceId, DeviceReport};
use tokio::sync::{mpsc, oneshot};

/// One report waiting for the writer, and who waits for its outcome.
pub struct Job {
    /// The reporting device.
    pub(crate) id: DeviceId,
    /// What it reported.
    pub(crate) report: DeviceReport,
    /// Its conditions, when they came with this report.
    pub(crate) conditions: Option<Conditions>,
    /// When it arrived (Unix seconds).
    pub(crate) now: u64,
    /// The events acknowledged through (`None`: no record for the device), or why not.
    pub(crate) reply: oneshot::Sender<Result<Option<u64>, String>>,
}

/// The sender to the writer thread, started on first use.
#[derive(Default)]
pub struct ReportQueue(OnceLock<mpsc::Sender<Job>>);

impl ReportQueue {
    /// The sender, from `start` the first time.
    pub fn sender(&self, start: impl FnOnce() -> mpsc::Sender<Job>) -> &mpsc::Sender<Job> {
        self.0.get_or_init(start)
    }
}
