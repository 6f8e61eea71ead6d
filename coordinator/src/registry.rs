//! Registry operations: publish a signed release, move an alias, and say what a device
//! following an alias should run. Each commits to the store first, then announces.

use ferry_shared::sign::{SignedRelease, VerifyError};
use ferry_shared::wire::{DesiredRelease, DesiredState, Follow};
use ferry_shared::{AliasName, ModelName};

use crate::api::{AliasChanged, AliasView, Published, SetAlias};
use crate::app::Coordinator;
use crate::store::records::AliasRecord;
use crate::store::{PublishOutcome, StoreError};

/// Why a registry operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The release's signature or manifest is not acceptable.
    #[error("release refused: {0}")]
    Verify(#[from] VerifyError),
    /// No publisher key is trusted yet.
    #[error("no publisher key is trusted yet: add one with `ferryctl keys trust KEY.pub`")]
    NoPublisherKeys,
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request that cannot be carried out as asked (a bad plan, an action the state forbids).
    #[error("{0}")]
    Invalid(String),
}

/// Verifies and stores a release; announces `latest` when it moved.
pub fn publish(
    app: &Coordinator,
    envelope: &[u8],
    actor: &str,
    now: u64,
) -> Result<Published, RegistryError> {
    let keyring = app.publisher_keyring()?;
    if keyring.is_empty() {
        return Err(RegistryError::NoPublisherKeys);
    }
    let signed = SignedRelease::verify(envelope, &keyring)?;
    let outcome = app.store.publish(&signed, actor, now)?;
    let release = &signed.release;
    let (created, latest_moved) = match outcome {
        PublishOutcome::Published { latest_moved } => (true, latest_moved),
        PublishOutcome::AlreadyPublished => (false, false),
    };
    if latest_moved && let Ok(latest) = crate::store::LATEST.parse::<AliasName>() {
        app.announce(&release.name, &latest);
    }
    Ok(Published {
        name: release.name.to_string(),
        version: release.version.clone(),
        created,
        latest_moved,
    })
}

/// Points an alias at a published version and tells the devices following it.
pub fn set_alias(
    app: &Coordinator,
    model: &ModelName,
    alias: &AliasName,
    request: SetAlias,
    actor: &str,
    now: u64,
) -> Result<AliasChanged, RegistryError> {
    let record = AliasRecord {
        version: request.version,
        set_at: now,
        set_by: actor.to_owned(),
        reason: request.reason,
    };
    let previous = app.store.set_alias(model, alias, record.clone())?;
    app.announce(model, alias);
    Ok(AliasChanged {
        alias: alias_view(model, alias, record),
        previous,
    })
}

/// The API view of an alias.
pub fn alias_view(model: &ModelName, alias: &AliasName, record: AliasRecord) -> AliasView {
    AliasView {
        model: model.to_string(),
        alias: alias.to_string(),
        version: record.version,
        set_at: record.set_at,
        set_by: record.set_by,
        reason: record.reason,
    }
}

/// What `device`, following `follow`, should run now: what a rollout steering it says, else
/// the alias's version.
pub fn desired_state(
    app: &Coordinator,
    follow: &Follow,
    device: &ferry_shared::wire::DeviceId,
) -> Result<DesiredState, StoreError> {
    let version = match crate::rollouts::steered_version(app, &follow.model, device)? {
        Some(version) => Some(version),
        None => app
            .store
            .alias(&follow.model, &follow.alias)?
            .map(|record| record.version),
    };
    let release = match version {
        None => None,
        Some(version) => app
            .store
            .release(&follow.model, &version)?
            .map(|(release, stored)| DesiredRelease {
                version: release.version,
                envelope: stored.envelope,
            }),
    };
    Ok(DesiredState {
        model: follow.model.clone(),
        alias: follow.alias.clone(),
        release,
    })
}
