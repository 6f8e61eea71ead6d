//! What the engine sees of a device, derived from what its agent reported for one model: the
//! one reading of a report the coordinator and the simulations share.

use std::collections::BTreeMap;

use super::engine::DeviceFacts;
use crate::version::Version;
use crate::wire::{DeviceId, ErrorKind, ModelReport, UpdatePhase};

impl DeviceFacts {
    /// The facts of device `id` (with `labels`) for a rollout to `target`, from its report for
    /// the rollout's model (`None`: it reported none). `failure_is_new`: the report's failure
    /// was first seen after the rollout started (a new rollout is never judged by an earlier
    /// one's failures). A failure counts against the release only when it concerns it: a lost
    /// connection or a full disk is retried by the agent and leaves the device without an
    /// outcome, unless it gave up on the version for good. Presence and metrics are the
    /// caller's to fill in.
    pub fn from_report(
        id: &DeviceId,
        labels: BTreeMap<String, String>,
        report: Option<&ModelReport>,
        target: &Version,
        failure_is_new: bool,
    ) -> DeviceFacts {
        let held = report.is_some_and(
            |r| matches!(&r.phase, UpdatePhase::Held { version, .. } if version == target),
        );
        let failure = report
            .and_then(|r| r.last_error.as_ref())
            .filter(|e| &e.version == target && failure_is_new)
            .filter(|e| !e.kind.is_retried() || held);
        DeviceFacts {
            id: Some(id.clone()),
            labels,
            current: report.and_then(|r| r.active.clone()),
            previous: report.and_then(|r| r.previous.clone()),
            candidate: report.and_then(|r| r.candidate.clone()),
            installing: report.is_some_and(|r| match &r.phase {
                UpdatePhase::Fetching(v) | UpdatePhase::Probation(v) => v == target,
                UpdatePhase::Retrying { version, .. } => version == target,
                _ => false,
            }),
            install_failed: failure.is_some_and(|e| e.kind != ErrorKind::HealthCheck),
            // A version held after a hand rollback is an operator's call, not a failed check.
            health_failed: failure.is_some_and(|e| e.kind == ErrorKind::HealthCheck),
            // Holding the target back: it will not take it until released on the device.
            pinned: held && report.and_then(|r| r.active.as_ref()) != Some(target),
            offline_since: None,
            retrying: report
                .filter(|r| {
                    matches!(&r.phase, UpdatePhase::Retrying { version, .. } if version == target)
                })
                .and_then(|r| r.last_error.as_ref())
                .map(|e| format!("{}: {}", e.kind, e.message)),
            metrics: Default::default(),
            distributions: Default::default(),
            switched_at: None,
        }
    }
}
