//! A rollout checked before it starts: the devices each wave would reach (by the buckets the
//! engine will place them in) and those that could not take the release
//! ([`device_fit`](crate::registry::device_fit)). Pure.

use ferry_shared::rollout::{BUCKETS, Plan};
use ferry_shared::wire::DeviceId;
use ferry_shared::{AliasName, Release};

use crate::api::{DeviceMisfit, MAX_MISFITS_SHOWN, RolloutCheck, WaveReach};
use crate::registry::device_fit::judge;
use crate::store::records::DeviceRecord;

/// Checks `plan` (rolling `release` out to the devices following `alias`) against `devices`.
pub(crate) fn check(
    plan: &Plan,
    alias: &AliasName,
    release: &Release,
    devices: &[(DeviceId, DeviceRecord)],
) -> RolloutCheck {
    let mut reached = vec![0usize; plan.waves.len()];
    let mut misfits = Vec::new();
    let mut disk_unknown = 0;
    let mut total = 0;
    for (id, record) in devices {
        let follows = record
            .follows
            .iter()
            .any(|f| f.model == plan.model && &f.alias == alias);
        if !follows || !plan.cohort.matches(&record.labels) {
            continue;
        }
        total += 1;
        let wave = plan.wave_of(plan.bucket(id));
        if let Some(n) = reached.get_mut(wave) {
            *n += 1;
        }
        match judge(&plan.model, release, record) {
            Ok(true) => {}
            Ok(false) => disk_unknown += 1,
            Err((kind, detail)) => misfits.push(DeviceMisfit {
                device: id.to_string(),
                name: record.labels.get("name").cloned(),
                kind: kind.as_str().to_owned(),
                detail,
                wave,
            }),
        }
    }
    let mut so_far = 0;
    let waves = plan
        .waves
        .iter()
        .zip(&reached)
        .map(|(w, n)| {
            so_far += n;
            WaveReach {
                percent: f64::from(w.share) * 100.0 / f64::from(BUCKETS),
                shadow: w.shadow,
                devices: so_far,
            }
        })
        .collect();
    let mut misfit_counts = std::collections::BTreeMap::new();
    for m in &misfits {
        *misfit_counts.entry(m.kind.clone()).or_insert(0) += 1;
    }
    misfits.sort_by(|a, b| (a.wave, &a.device).cmp(&(b.wave, &b.device)));
    misfits.truncate(MAX_MISFITS_SHOWN);
    RolloutCheck {
        model: plan.model.to_string(),
        version: plan.target.clone(),
        alias: alias.to_string(),
        cohort: plan.cohort.to_string(),
        devices: total,
        waves,
        misfit_counts,
        misfits,
        disk_unknown,
    }
}
