//! Devices' conditions as they arrive (protocol 7): made safe to keep before they are stored
//! with the report that follows them ([`crate::fleet::report_writer`]).

use ferry_shared::wire::{Conditions, DeferReason, MAX_DEFERRALS};

/// Longest text kept of why an application holds its lock.
const MAX_LOCK_TEXT: usize = 200;

/// Bounds what a device said: at most [`MAX_DEFERRALS`] deferrals, one per model, lock texts
/// cut to [`MAX_LOCK_TEXT`] characters without control characters, and disk figures that
/// cannot exceed the disk.
pub(crate) fn sanitize(conditions: &mut Conditions) {
    conditions.deferred.truncate(MAX_DEFERRALS);
    let mut seen = std::collections::BTreeSet::new();
    conditions.deferred.retain(|d| seen.insert(d.model.clone()));
    for deferral in &mut conditions.deferred {
        if let DeferReason::Locked { by, .. } = &mut deferral.reason {
            *by = by
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_LOCK_TEXT)
                .collect();
        }
    }
    if let Some(disk) = &mut conditions.disk {
        disk.free = disk.free.min(disk.total);
        disk.held = disk.held.min(disk.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::wire::{Deferral, DiskSpace};

    #[test]
    fn hostile_conditions_are_bounded() {
        let deferral = |model: &str| Deferral {
            model: model.parse().unwrap(),
            version: "1.0.0".parse().unwrap(),
            reason: DeferReason::Locked {
                until: None,
                by: format!("busy\u{1b}[2J{}", "x".repeat(10_000)),
            },
            since: 0,
        };
        let mut c = Conditions {
            disk: Some(DiskSpace {
                free: u64::MAX,
                total: 100,
                held: 500,
            }),
            deferred: (0..40).map(|i| deferral(&format!("m{}", i % 3))).collect(),
        };
        sanitize(&mut c);
        assert_eq!(c.deferred.len(), 3, "one per model");
        let DeferReason::Locked { by, .. } = &c.deferred[0].reason else {
            panic!("kind changed")
        };
        assert_eq!(by.chars().count(), MAX_LOCK_TEXT);
        assert!(!by.contains('\u{1b}'));
        assert_eq!(c.disk.map(|d| (d.free, d.held)), Some((100, 100)));
    }
}
