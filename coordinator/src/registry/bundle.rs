//! Making offline bundles ([`ferry_shared::bundle`]): a release with its trust metadata and,
//! per build, the chunks a device on `for_version` lacks, encoded as the coordinator would
//! serve them to that device (deltas against the windows the shared plan names), or every
//! chunk whole when no version is named; sealed, when asked, for named devices or a cohort
//! ([`ferry_shared::seal`]): a fresh content key per bundle, wrapped for each device that is
//! not revoked. Written in one pass, one chunk in memory.

use std::sync::Arc;

use ferry_shared::bundle::{self, BundleHeader, BundledBuild, BundledChunk};
use ferry_shared::chunk::ChunkIndex;
use ferry_shared::delta::window::WINDOW;
use ferry_shared::plan::plan;
use ferry_shared::rollout::selector::Selector;
use ferry_shared::seal::ContentKey;
use ferry_shared::wire::DeviceId;
use ferry_shared::wire::{ChunkWant, DesiredRelease, PROTOCOL_VERSION, TrustBundle};
use ferry_shared::{Accelerator, Digest, ModelName, PublicKey, Release, Variant, Version};

use crate::app::Coordinator;
use crate::registry::error::RegistryError;
use crate::registry::snapshots;

/// Longest validity a bundle's snapshot may be given.
pub(crate) const MAX_VALID_DAYS: u64 = 365;

/// What a bundle is made of, checked before the first byte is written.
pub(crate) struct BundlePlan {
    header: BundleHeader,
    /// The key every payload is sealed with, when the bundle is sealed.
    key: Option<ContentKey>,
    /// Per build: its file, its index, and what to encode, in order.
    builds: Vec<(Digest, Arc<ChunkIndex>, Vec<ChunkWant>)>,
}

impl BundlePlan {
    /// How many devices it is sealed for (0: not sealed).
    pub(crate) fn sealed_for(&self) -> usize {
        self.header.sealed_for.len()
    }

    /// How many chunk payloads the bundle carries.
    pub(crate) fn chunks(&self) -> usize {
        self.builds.iter().map(|b| b.2.len()).sum()
    }
}

/// What to bundle.
pub(crate) struct BundleRequest {
    /// The model.
    pub(crate) model: ModelName,
    /// The release.
    pub(crate) version: Version,
    /// The version devices hold (deltas against it); `None`: whole chunks.
    pub(crate) for_version: Option<Version>,
    /// Only the builds for this accelerator; `None`: every build.
    pub(crate) accelerator: Option<Accelerator>,
    /// How long the bundle's snapshot stays valid, in days (1 to [`MAX_VALID_DAYS`]).
    pub(crate) valid_days: u64,
    /// Seal it for these devices (their payloads opened only with their identity keys).
    pub(crate) seal_for: Vec<DeviceId>,
    /// Seal it for the devices whose labels match, besides `seal_for`.
    pub(crate) seal_for_cohort: Option<Selector>,
}

/// The devices a sealed bundle is for, with their identity keys: those named (each must be
/// enrolled and not revoked) and those of the cohort (revoked ones left out: they get no key).
fn recipients(
    app: &Coordinator,
    request: &BundleRequest,
) -> Result<Vec<(DeviceId, PublicKey)>, RegistryError> {
    let invalid = |m: String| RegistryError::Invalid(m);
    let key_of = |id: &DeviceId, record: &crate::store::records::DeviceRecord| {
        PublicKey::from_bytes(&record.public_key)
            .map_err(|e| invalid(format!("device {id}'s identity key: {e}")))
    };
    let mut out: Vec<(DeviceId, PublicKey)> = Vec::new();
    for id in &request.seal_for {
        let record = app
            .store
            .device(id)?
            .ok_or_else(|| invalid(format!("device {id} is not enrolled")))?;
        if app.store.device_revocation(id)?.is_some() {
            return Err(invalid(format!(
                "device {id} is revoked: it gets no key for new releases"
            )));
        }
        if !out.iter().any(|(d, _)| d == id) {
            out.push((id.clone(), key_of(id, &record)?));
        }
    }
    if let Some(selector) = &request.seal_for_cohort {
        for (id, record) in app.store.devices()? {
            if selector.matches(&record.labels)
                && app.store.device_revocation(&id)?.is_none()
                && !out.iter().any(|(d, _)| d == &id)
            {
                out.push((id.clone(), key_of(&id, &record)?));
            }
        }
        if out.is_empty() {
            return Err(invalid(format!(
                "no device to seal for: the cohort `{selector}` matches no enrolled device that is not revoked"
            )));
        }
    }
    if out.len() > bundle::MAX_SEALED_FOR {
        return Err(invalid(format!(
            "sealed for {} devices; at most {}",
            out.len(),
            bundle::MAX_SEALED_FOR
        )));
    }
    Ok(out)
}

/// Checks `request` and plans the bundle: the release and the version it is for exist, its
/// builds' chunks are stored, the trust metadata is at hand.
pub(crate) fn plan_bundle(
    app: &Coordinator,
    request: &BundleRequest,
    now: u64,
) -> Result<BundlePlan, RegistryError> {
    let invalid = |m: String| RegistryError::Invalid(m);
    if !(1..=MAX_VALID_DAYS).contains(&request.valid_days) {
        return Err(invalid(format!(
            "valid_days is {}; from 1 to {MAX_VALID_DAYS}",
            request.valid_days
        )));
    }
    let (model, version) = (&request.model, &request.version);
    let (release, stored) = app
        .store
        .release(model, version)?
        .ok_or_else(|| invalid(format!("{model} {version} is not published")))?;
    let old = match &request.for_version {
        Some(v) if v == version => {
            return Err(invalid(format!(
                "a bundle for {version} is for another version"
            )));
        }
        Some(v) => Some(
            app.store
                .release(model, v)?
                .ok_or_else(|| invalid(format!("{model} {v} is not published")))?
                .0,
        ),
        None => None,
    };
    let chosen: Vec<&Variant> = release
        .variants
        .iter()
        .filter(|v| request.accelerator.is_none_or(|a| v.accelerator == a))
        .collect();
    if chosen.is_empty() {
        return Err(invalid(format!(
            "{model} {version} has no {} build",
            request.accelerator.map_or("".into(), |a| a.to_string())
        )));
    }
    if chosen.len() > bundle::MAX_BUILDS {
        return Err(invalid(format!(
            "{} builds; a bundle carries at most {}: choose an accelerator",
            chosen.len(),
            bundle::MAX_BUILDS
        )));
    }
    let stored_index = |file: &Digest| {
        app.store.blob_index(file)?.ok_or_else(|| {
            invalid(format!(
                "the chunks of {model} {version} ({file}) are not stored here"
            ))
        })
    };
    let mut builds = Vec::new();
    let mut bundled = Vec::new();
    for variant in chosen {
        let index = stored_index(&variant.hash)?;
        let wants = match old.as_ref().and_then(|old| counterpart(old, variant)) {
            Some(before) => {
                let source = stored_index(&before.hash)?;
                distinct(
                    &index,
                    plan(&index, &[source], WINDOW).wants(&[before.hash]),
                )
            }
            None => distinct(
                &index,
                (0..index.chunks.len())
                    .map(|i| ChunkWant {
                        ordinal: u32::try_from(i).unwrap_or(u32::MAX),
                        reference: None,
                    })
                    .collect(),
            ),
        };
        bundled.push(BundledBuild {
            file: variant.hash,
            index: index.to_canonical_bytes(),
            chunks: Vec::new(),
        });
        builds.push((variant.hash, Arc::new(index), wants));
    }
    let trust = match app.snapshot(model, now)? {
        Some(current) => {
            let snapshot = snapshots::for_bundle(
                &current,
                &app.snapshot_key,
                now,
                request.valid_days * 86_400,
            )
            .ok_or_else(|| invalid("this coordinator's snapshot does not decode".into()))?;
            Some(TrustBundle {
                roots: app.store.roots()?,
                snapshot,
            })
        }
        None => None,
    };
    let recipients = recipients(app, request)?;
    if recipients.is_empty() && app.config.confidential_models.contains(model) {
        return Err(invalid(format!(
            "{model} is confidential: seal its bundle for the devices that may open it (--seal-for, --seal-for-cohort)"
        )));
    }
    let key = match recipients.is_empty() {
        true => None,
        false => Some(ContentKey::generate().map_err(|e| invalid(e.to_string()))?),
    };
    let sealed_for = match &key {
        Some(key) => recipients
            .iter()
            .map(|(id, public)| {
                key.wrap_for(public)
                    .map_err(|e| invalid(format!("sealing for device {id}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    Ok(BundlePlan {
        key,
        header: BundleHeader {
            sealed_for,
            model: model.clone(),
            release: DesiredRelease {
                version: version.clone(),
                envelope: stored.envelope,
            },
            for_version: request.for_version.clone(),
            created_at: now,
            trust,
            builds: bundled,
        },
        builds,
    })
}

/// The build of `old` a device running `new`'s counterpart holds: same accelerator and
/// target, the same requirements when there is such a build.
fn counterpart<'a>(old: &'a Release, new: &Variant) -> Option<&'a Variant> {
    let alike = |v: &&Variant| v.accelerator == new.accelerator && v.target == new.target;
    old.variants
        .iter()
        .filter(alike)
        .find(|v| v.requires == new.requires)
        .or_else(|| old.variants.iter().find(alike))
}

/// `wants` with each chunk content once (the device fills duplicates from one).
fn distinct(index: &ChunkIndex, wants: Vec<ChunkWant>) -> Vec<ChunkWant> {
    let mut seen = std::collections::HashSet::new();
    wants
        .into_iter()
        .filter(|w| {
            index
                .chunks
                .get(w.ordinal as usize)
                .is_some_and(|c| seen.insert(c.hash))
        })
        .collect()
}

/// Where a bundle's pieces go, in order; a failure is sent as the last item.
pub(crate) type BundleSink = tokio::sync::mpsc::Sender<Result<Vec<u8>, String>>;

/// Writes the bundle: each piece is sent to `out` in order (the prefix, every payload, the
/// header and trailer), or the failure that stopped it. Returns the bundle's size.
pub(crate) async fn write_bundle(
    app: &Arc<Coordinator>,
    plan: BundlePlan,
    out: &BundleSink,
) -> Result<u64, BundleWriteError> {
    let written = write_pieces(app, plan, out).await;
    if let Err(BundleWriteError::Chunk(why)) = &written {
        let _ = out.send(Err(why.clone())).await;
    }
    written
}

async fn write_pieces(
    app: &Arc<Coordinator>,
    plan: BundlePlan,
    out: &BundleSink,
) -> Result<u64, BundleWriteError> {
    let BundlePlan {
        mut header,
        builds,
        key,
    } = plan;
    let prefix = bundle::prefix();
    let mut offset = prefix.len() as u64;
    send(out, prefix).await?;
    for (i, (file, index, wants)) in builds.into_iter().enumerate() {
        for want in wants {
            let hash = index.chunks[want.ordinal as usize].hash;
            let encoded = app
                .transfer
                .chunk(&app.store, file, &index, want, PROTOCOL_VERSION, || true)
                .await
                .map_err(|e| BundleWriteError::Chunk(format!("chunk {}: {e}", want.ordinal)))?;
            let payload = match &key {
                Some(key) => key.seal(&hash, &encoded.payload).map_err(|e| {
                    BundleWriteError::Chunk(format!("sealing chunk {}: {e}", want.ordinal))
                })?,
                None => encoded.payload,
            };
            let len = u32::try_from(payload.len())
                .map_err(|_| BundleWriteError::Chunk("a chunk over 4 GiB".into()))?;
            header.builds[i].chunks.push(BundledChunk {
                hash,
                reference: want
                    .reference
                    .filter(|_| encoded.encoding.needs_reference()),
                encoding: encoded.encoding,
                offset,
                len,
            });
            offset += u64::from(len);
            send(out, payload).await?;
        }
    }
    let tail = bundle::tail(&header, offset).map_err(|e| BundleWriteError::Chunk(e.to_string()))?;
    let size = offset + tail.len() as u64;
    send(out, tail).await?;
    Ok(size)
}

async fn send(out: &BundleSink, piece: Vec<u8>) -> Result<(), BundleWriteError> {
    out.send(Ok(piece))
        .await
        .map_err(|_| BundleWriteError::Gone)
}

/// Why writing a bundle stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleWriteError {
    /// A chunk could not be read or encoded.
    #[error("{0}")]
    Chunk(String),
    /// The bundle's reader went away.
    #[error("the bundle's reader went away")]
    Gone,
}
