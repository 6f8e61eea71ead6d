//! Registry operations: publish a signed release and move an alias. Each commits to the store
//! first, then announces (what a device should run is [`crate::agents::desired`]'s).

use ferry_shared::sign::SignedRelease;
use ferry_shared::{AliasName, ModelName};

use super::admission::{By, Pointing};
use super::error::RegistryError;
use crate::api::{AliasChanged, AliasView, Published, SetAlias};
use crate::app::{Coordinator, PublisherTrust};
use crate::store::PublishOutcome;
use crate::store::records::AliasRecord;

/// Verifies and stores a release, if `permit` allows its model; announces `latest` when it
/// moved.
pub(crate) fn publish(
    app: &Coordinator,
    envelope: &[u8],
    actor: &str,
    why: Option<&str>,
    now: u64,
    permit: impl FnOnce(&ModelName) -> Result<(), RegistryError>,
) -> Result<Published, RegistryError> {
    let signed = match app.publisher_trust()? {
        PublisherTrust::Root(root) => ferry_shared::trust::verify_release(&root, envelope)?,
        PublisherTrust::Keys(keyring) if keyring.is_empty() => {
            return Err(RegistryError::NoPublisherKeys);
        }
        PublisherTrust::Keys(keyring) => SignedRelease::verify(envelope, &keyring)?,
    };
    permit(&signed.release.name)?;
    let release = &signed.release;
    // A new release that is already expired is a mistake; a re-signing that expires now is
    // a publisher withdrawing it.
    if release.is_expired(now)
        && app
            .store
            .release(&release.name, &release.version)?
            .is_none()
    {
        return Err(RegistryError::Invalid(format!(
            "{} {} (revision {}) expired at {}: devices would refuse it; sign it with a later expiry",
            release.name, release.version, release.revision, release.expires
        )));
    }
    let outcome = app.store.publish_because(&signed, actor, why, now)?;
    app.happened.published();
    let (created, latest_moved, resigned_from) = match outcome {
        PublishOutcome::Published { latest_moved } => (true, latest_moved, None),
        PublishOutcome::AlreadyPublished => (false, false, None),
        PublishOutcome::Resigned { from } => (false, false, Some(from)),
    };
    if latest_moved && let Ok(latest) = crate::store::LATEST.parse::<AliasName>() {
        app.announce(&release.name, &latest);
    }
    if resigned_from.is_some() {
        // Devices told to run it get the new envelope (and its expiry) at once.
        for (model, alias, _) in app.store.aliases(Some(&release.name))? {
            app.announce(&model, &alias);
        }
    }
    Ok(Published {
        name: release.name.to_string(),
        version: release.version.clone(),
        created,
        latest_moved,
        revision: release.revision,
        resigned_from,
    })
}

/// Points an alias at a published version and tells the devices following it.
pub(crate) fn set_alias(
    app: &Coordinator,
    model: &ModelName,
    alias: &AliasName,
    request: SetAlias,
    actor: &str,
    now: u64,
) -> Result<AliasChanged, RegistryError> {
    let forced = app.admit(&Pointing {
        model,
        alias,
        version: &request.version,
        cohort: None,
        by: By::AliasOrRollout,
        force: request.force,
        now,
    })?;
    let reason = match (request.reason, forced) {
        (Some(r), Some(f)) => Some(format!("{r} ({f})")),
        (r, f) => r.or(f),
    };
    let record = AliasRecord {
        version: request.version,
        set_at: now,
        set_by: actor.to_owned(),
        reason,
    };
    let previous = app.store.set_alias(model, alias, record.clone())?;
    app.announce(model, alias);
    Ok(AliasChanged {
        alias: alias_view(model, alias, record),
        previous,
    })
}

/// The API view of an alias.
pub(crate) fn alias_view(model: &ModelName, alias: &AliasName, record: AliasRecord) -> AliasView {
    AliasView {
        model: model.to_string(),
        alias: alias.to_string(),
        version: record.version,
        set_at: record.set_at,
        set_by: record.set_by,
        reason: record.reason,
    }
}
