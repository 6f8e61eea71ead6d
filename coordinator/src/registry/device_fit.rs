//! Whether a device can take a release, judged on the coordinator before a rollout reaches
//! it, by the rules the device itself will apply: its application's schemas
//! ([`schema_fit`](crate::registry::schema_fit)), a variant for its hardware (the labels it
//! announced, detected facts included: [`ferry_shared::variant_choice`]), and room on its disk
//! by its last reported free space ([`ferry_shared::disk_need`]). Pure.

use std::collections::BTreeMap;

use ferry_shared::disk_need::{human, install_need};
use ferry_shared::variant_choice::{DeviceProfile, select_variant, why_none_fits};
use ferry_shared::{Accelerator, ModelName, Release};
use serde::{Deserialize, Serialize};

use crate::registry::schema_fit;
use crate::store::records::DeviceRecord;

/// Why a device cannot take a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum MisfitKind {
    /// Its application's schemas and the release's do not meet.
    Schema,
    /// No variant of the release runs on its hardware.
    Hardware,
    /// Its free disk space, as last reported, cannot hold the release.
    Disk,
}

impl MisfitKind {
    /// The kebab-case name used in reports.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MisfitKind::Schema => "schema",
            MisfitKind::Hardware => "hardware",
            MisfitKind::Disk => "disk",
        }
    }
}

/// What `record`'s device would make of `release` of `model`: `Ok(true)` when it can take
/// it, `Ok(false)` when it can as far as anyone knows but has not told its disk space (an
/// agent before protocol 7), or why not.
pub(crate) fn judge(
    model: &ModelName,
    release: &Release,
    record: &DeviceRecord,
) -> Result<bool, (MisfitKind, String)> {
    if let Some(why) = schema_fit::misfit(release, &record.labels) {
        return Err((MisfitKind::Schema, why));
    }
    let profile = profile_of(&record.labels);
    let Some(variant) = select_variant(release, &profile) else {
        return Err((MisfitKind::Hardware, why_none_fits(release, &profile)));
    };
    // What it holds already needs no room.
    let holds = record.models.iter().any(|m| {
        &m.model == model
            && [&m.active, &m.previous, &m.candidate]
                .into_iter()
                .any(|v| v.as_ref() == Some(&release.version))
    });
    if holds {
        return Ok(true);
    }
    let Some(disk) = record.conditions.as_ref().and_then(|(c, _)| c.disk) else {
        return Ok(false);
    };
    let need = install_need(variant, 0);
    if need > disk.free {
        return Err((
            MisfitKind::Disk,
            format!(
                "disk: need {}, have {} free (of {})",
                human(need),
                human(disk.free),
                human(disk.total)
            ),
        ));
    }
    Ok(true)
}

/// A device's hardware as its labels say (the agent announces `target`, `accelerator` and
/// what it detected).
pub(crate) fn profile_of(labels: &BTreeMap<String, String>) -> DeviceProfile {
    DeviceProfile {
        target: labels.get("target").cloned().unwrap_or_default(),
        accelerator: match labels.get("accelerator").map(String::as_str) {
            Some("gpu") => Accelerator::Gpu,
            _ => Accelerator::Cpu,
        },
        facts: labels.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::sign::SecretKey;
    use ferry_shared::wire::{Conditions, DiskSpace, ModelReport, UpdatePhase};

    fn device(labels: &[(&str, &str)], free: Option<u64>, active: &str) -> DeviceRecord {
        let mut record = DeviceRecord::following(
            SecretKey::from_seed(&[1; 32]).public(),
            "prod",
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ModelReport {
                model: "m".parse().unwrap(),
                active: Some(active.parse().unwrap()),
                previous: None,
                candidate: None,
                phase: UpdatePhase::Idle,
                last_error: None,
            },
        );
        record.conditions = free.map(|free| {
            (
                Conditions {
                    disk: Some(DiskSpace {
                        free,
                        total: 8 << 30,
                        held: 0,
                    }),
                    deferred: vec![],
                },
                1,
            )
        });
        record
    }

    #[test]
    fn disk_hardware_and_unknowns() {
        let model: ModelName = "m".parse().unwrap();
        let mut release = ferry_shared::testutil::release("m", "2.0.0");
        release.variants[0].size = 100 << 20;
        release.variants[0].accelerator = Accelerator::Any;
        let x86 = [
            ("target", "x86_64-unknown-linux-gnu"),
            ("accelerator", "cpu"),
        ];
        assert_eq!(
            judge(&model, &release, &device(&x86, Some(1 << 30), "1.0.0")),
            Ok(true)
        );
        assert_eq!(
            judge(&model, &release, &device(&x86, None, "1.0.0")),
            Ok(false)
        );
        let (kind, why) =
            judge(&model, &release, &device(&x86, Some(50 << 20), "1.0.0")).unwrap_err();
        assert_eq!(kind, MisfitKind::Disk);
        assert!(
            why.starts_with("disk: need 100.3 MiB, have 50.0 MiB free"),
            "{why}"
        );
        // It runs that version already: no room needed.
        assert_eq!(
            judge(&model, &release, &device(&x86, Some(0), "2.0.0")),
            Ok(true)
        );
        release.variants[0].requires = vec!["cuda >= 12.2".parse().unwrap()];
        let (kind, why) =
            judge(&model, &release, &device(&x86, Some(1 << 30), "1.0.0")).unwrap_err();
        assert_eq!(kind, MisfitKind::Hardware);
        assert!(why.contains("needs cuda >= 12.2"), "{why}");
    }
}
