//! What happens, counted since start for `/metrics` (an alert on `rate()` needs counters, not
//! gauges of the current state): the devices' installs, failed installs and rollbacks by
//! model, as their events are first stored; publishes and alias moves; agent sessions
//! refused, by why. Each coordinator counts what it handled; Prometheus adds them up.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_shared::ModelName;
use ferry_shared::wire::{DeviceEvent, EventKind, RefusalKind};

/// The counts.
#[derive(Default)]
pub struct EventCounts {
    /// Device events by (model, outcome).
    updates: Mutex<BTreeMap<(ModelName, &'static str), u64>>,
    /// Agent sessions refused, by why.
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// Releases published.
    publishes: AtomicU64,
    /// Alias moves told to the fleet.
    alias_moves: AtomicU64,
}

/// A snapshot of [`EventCounts`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counted {
    /// Device events by (model, outcome: `installed`, `failed`, `rolled-back`,
    /// `local-rollback`).
    pub updates: BTreeMap<(String, &'static str), u64>,
    /// Sessions refused by why (`enrollment`, `identity`, …).
    pub refusals: BTreeMap<&'static str, u64>,
    /// Releases published.
    pub publishes: u64,
    /// Alias moves.
    pub alias_moves: u64,
}

impl EventCounts {
    /// Counts device events stored for the first time.
    pub(crate) fn device_events(&self, events: &[DeviceEvent]) {
        let mut updates = self.updates.lock().unwrap_or_else(|p| p.into_inner());
        for event in events {
            let outcome = match event.kind {
                EventKind::Installed { .. } => "installed",
                EventKind::InstallFailed(_) => "failed",
                EventKind::HealthRollback { .. } => "rolled-back",
                EventKind::LocalRollback { .. } => "local-rollback",
            };
            *updates.entry((event.model.clone(), outcome)).or_default() += 1;
        }
    }

    /// Counts an agent session refused.
    pub(crate) fn refused(&self, kind: RefusalKind) {
        let why = match kind {
            RefusalKind::ProtocolVersion => "protocol-version",
            RefusalKind::Enrollment => "enrollment",
            RefusalKind::Identity => "identity",
            RefusalKind::BadRequest => "bad-request",
            RefusalKind::Internal => "internal",
            RefusalKind::Revoked => "revoked",
        };
        let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        *refusals.entry(why).or_default() += 1;
    }

    /// Counts a release published.
    pub(crate) fn published(&self) {
        self.publishes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an alias move.
    pub(crate) fn alias_moved(&self) {
        self.alias_moves.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub(crate) fn snapshot(&self) -> Counted {
        Counted {
            updates: self
                .updates
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|((m, o), n)| ((m.to_string(), *o), *n))
                .collect(),
            refusals: self
                .refusals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            publishes: self.publishes.load(Ordering::Relaxed),
            alias_moves: self.alias_moves.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_count_by_model_and_outcome() {
        let counts = EventCounts::default();
        let event = |model: &str, kind| DeviceEvent {
            seq: 1,
            at: 0,
            model: model.parse().unwrap(),
            kind,
        };
        let installed = EventKind::Installed {
            from: None,
            to: "1.0.0".parse().unwrap(),
        };
        counts.device_events(&[event("m", installed.clone()), event("m", installed)]);
        counts.refused(RefusalKind::Enrollment);
        counts.published();
        let c = counts.snapshot();
        assert_eq!(c.updates[&("m".to_owned(), "installed")], 2);
        assert_eq!(c.refusals["enrollment"], 1);
        assert_eq!((c.publishes, c.alias_moves), (1, 0));
    }
}
