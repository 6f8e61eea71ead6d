//! What one device may fetch. A device may read the artifacts of the releases it may run:
//! what its desired state names for each model it follows (the alias's target or a rollout's,
//! and a shadow candidate) and the versions it reports holding (current, previous,
//! candidate). It may ask for deltas only against artifacts it reports holding. Anything else
//! is refused, so an enrolled device cannot read another model's artifacts or have the
//! coordinator encode against versions it does not have.

use std::collections::HashSet;

use ferry_shared::wire::DeviceId;
use ferry_shared::{Digest, ModelName, Version};

use crate::app::Coordinator;
use crate::store::StoreError;

/// The artifacts (whole-file hashes) one device may fetch and encode against.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    /// Artifacts it may read: index and chunks.
    fetchable: HashSet<Digest>,
    /// Artifacts it reports holding: the only ones a delta may be encoded against.
    held: HashSet<Digest>,
    /// Those of `fetchable` that belong to confidential models (`confidential_models`).
    confidential: HashSet<Digest>,
}

impl Reach {
    /// Whether the device may read `file`.
    pub(crate) fn may_fetch(&self, file: &Digest) -> bool {
        self.fetchable.contains(file)
    }

    /// Whether the device holds `file`, so that a delta against it is of use to it.
    pub(crate) fn holds(&self, file: &Digest) -> bool {
        self.held.contains(file)
    }

    /// Whether `file` belongs to a confidential model: its chunks travel over the session
    /// only.
    pub(crate) fn is_confidential(&self, file: &Digest) -> bool {
        self.confidential.contains(file)
    }
}

/// What `device` may fetch now, from its record and the desired state of each model it
/// follows. An unknown device may fetch nothing.
pub(crate) fn reach_of(app: &Coordinator, device: &DeviceId) -> Result<Reach, StoreError> {
    let mut reach = Reach::default();
    let Some(record) = app.store.device(device)? else {
        return Ok(reach);
    };
    for follow in &record.follows {
        let desired = crate::agents::desired::desired_release(
            app,
            follow,
            device,
            &crate::agents::desired::Records::Store,
        )?;
        for version in [desired.release, desired.candidate]
            .into_iter()
            .flatten()
            .map(|r| r.version)
        {
            add_files(app, &follow.model, &version, &mut reach.fetchable)?;
            if app.config.confidential_models.contains(&follow.model) {
                add_files(app, &follow.model, &version, &mut reach.confidential)?;
            }
        }
    }
    for report in &record.models {
        let holding = [&report.active, &report.previous, &report.candidate];
        for version in holding.into_iter().flatten() {
            add_files(app, &report.model, version, &mut reach.held)?;
            if app.config.confidential_models.contains(&report.model) {
                add_files(app, &report.model, version, &mut reach.confidential)?;
            }
        }
    }
    reach.fetchable.extend(reach.held.iter().copied());
    Ok(reach)
}

/// Adds the artifacts of every variant of `model` `version` (none when it is not stored).
fn add_files(
    app: &Coordinator,
    model: &ModelName,
    version: &Version,
    into: &mut HashSet<Digest>,
) -> Result<(), StoreError> {
    if let Some((release, _)) = app.store.release(model, version)? {
        into.extend(release.variants.iter().map(|v| v.hash));
    }
    Ok(())
}
