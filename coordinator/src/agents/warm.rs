//! The cache warmer: when an alias that devices follow moves, or a rollout targets a release,
//! the deltas from the versions the fleet holds are encoded before devices ask, then the
//! release's first install (see [`crate::agents::first_install`]), one worker at a time and
//! giving way to the next alias move between chunks.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use ferry_shared::Version;
use ferry_shared::chunk::ChunkRef;
use ferry_shared::delta::window::{WINDOW, install_window};
use ferry_shared::manifest::{Release, Variant};
use ferry_shared::plan::plan;
use ferry_shared::wire::{DeviceId, PROTOCOL_VERSION};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::agents::transfer::ServeError;
use crate::app::{AliasMoved, Coordinator};
use crate::store::records::DeviceRecord;

/// Warms the delta cache whenever an alias moves, until the channel closes. A first install
/// being precomputed (long, for a large release) gives way to the next alias move, and is
/// taken up again once no move waits: the deltas of a newer release go first.
pub async fn warm_on_alias_moves(app: Arc<Coordinator>) {
    let mut moves = app.alias_moves.subscribe();
    let mut unfinished: VecDeque<AliasMoved> = VecDeque::new();
    loop {
        let moved = match unfinished.pop_front() {
            Some(moved) if moves.is_empty() => moved,
            put_back => {
                if let Some(moved) = put_back {
                    unfinished.push_front(moved);
                }
                match moves.recv().await {
                    Ok(moved) => moved,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        debug!("delta warmer skipped {n} alias moves");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        };
        match warm(&app, &moved, &|| !moves.is_empty()).await {
            Ok(Warmed::Done) => {}
            Ok(Warmed::GaveWay) => {
                if !unfinished.contains(&moved) {
                    unfinished.push_back(moved);
                }
            }
            Err(e) => {
                warn!(model = %moved.model, alias = %moved.alias, "delta precompute failed: {e}");
            }
        }
    }
}

/// How a warming ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Warmed {
    /// Everything is precomputed.
    Done,
    /// A first install gave way to a waiting alias move, unfinished.
    GaveWay,
}

/// Precomputes what the devices following the moved alias will ask for, for every version it
/// steers them to (its own, and the targets of its active rollouts): deltas from the versions
/// they hold, then the first install for devices that hold none yet.
async fn warm(
    app: &Arc<Coordinator>,
    moved: &AliasMoved,
    give_way: &(dyn Fn() -> bool + Sync),
) -> Result<Warmed, ServeError> {
    let devices = app.store.devices()?;
    if !devices.iter().any(|(_, d)| follows(d, moved)) {
        return Ok(Warmed::Done); // nobody will ask
    }
    let mut targets: Vec<Version> = app
        .store
        .rollouts()?
        .into_iter()
        .filter(|r| r.is_active() && r.plan.model == moved.model && r.alias == moved.alias)
        .map(|r| r.plan.target)
        .collect();
    if let Some(alias) = app.store.alias(&moved.model, &moved.alias)? {
        targets.push(alias.version);
    }
    targets.sort();
    targets.dedup();
    for version in targets {
        let Some((target, _)) = app.store.release(&moved.model, &version)? else {
            continue;
        };
        warm_deltas(app, moved, &devices, &target).await?;
        if !app.config.precompute_first_installs {
            continue;
        }
        let mut chunks = 0;
        for variant in &target.variants {
            let (encoded, warmed) = warm_first_install(app, variant, give_way).await?;
            chunks += encoded;
            if warmed == Warmed::GaveWay {
                info!(model = %moved.model, %version, chunks, "first install precompute gave way to an alias move");
                return Ok(Warmed::GaveWay);
            }
        }
        if chunks > 0 {
            info!(model = %moved.model, %version, chunks, "first install precomputed");
        }
    }
    Ok(Warmed::Done)
}

/// True when `device` follows the moved alias.
fn follows(device: &DeviceRecord, moved: &AliasMoved) -> bool {
    device
        .follows
        .iter()
        .any(|f| f.model == moved.model && f.alias == moved.alias)
}

/// The deltas to `target` from what the devices following the moved alias hold.
async fn warm_deltas(
    app: &Arc<Coordinator>,
    moved: &AliasMoved,
    devices: &[(DeviceId, DeviceRecord)],
    target: &Release,
) -> Result<(), ServeError> {
    let held = fleet_versions(devices, moved, &target.version);
    let mut encoded = 0usize;
    for (active, previous) in held {
        let release = |v: &Option<Version>| -> Result<Option<Release>, ServeError> {
            Ok(match v {
                Some(v) => app.store.release(&moved.model, v)?.map(|(r, _)| r),
                None => None,
            })
        };
        let (active, previous) = (release(&active)?, release(&previous)?);
        for variant in &target.variants {
            let sources: Vec<&Variant> = [&active, &previous]
                .into_iter()
                .flatten()
                .filter_map(|r| matching_variant(r, variant))
                .collect();
            encoded += warm_pair(app, variant, &sources).await?;
        }
    }
    if encoded > 0 {
        info!(model = %moved.model, version = %target.version, chunks = encoded, "deltas precomputed");
    }
    Ok(())
}

/// What a device holds: its active and previous versions.
type Held = (Option<Version>, Option<Version>);

/// The (active, previous) versions held by the devices that follow the moved alias and do
/// not run `target` yet, most common first (ties in version order). Pure.
fn fleet_versions(
    devices: &[(DeviceId, DeviceRecord)],
    moved: &AliasMoved,
    target: &Version,
) -> Vec<Held> {
    let mut counts: BTreeMap<Held, usize> = BTreeMap::new();
    let following = devices.iter().filter(|(_, d)| follows(d, moved));
    for (_, device) in following {
        for report in device.models.iter().filter(|m| m.model == moved.model) {
            if report.active.is_some() && report.active.as_ref() != Some(target) {
                *counts
                    .entry((report.active.clone(), report.previous.clone()))
                    .or_default() += 1;
            }
        }
    }
    let mut pairs: Vec<_> = counts.into_iter().collect();
    pairs.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    pairs.into_iter().map(|(pair, _)| pair).collect()
}

/// The variant of `release` a device that needs `wanted` would hold: same target, accelerator
/// and requirements, or the only variant.
fn matching_variant<'r>(release: &'r Release, wanted: &Variant) -> Option<&'r Variant> {
    release
        .variants
        .iter()
        .find(|v| {
            v.target == wanted.target
                && v.accelerator == wanted.accelerator
                && v.requires == wanted.requires
        })
        .or(match release.variants.as_slice() {
            [only] => Some(only),
            _ => None,
        })
}

/// Encodes every windowed chunk a device holding `sources` would ask for; returns how many.
async fn warm_pair(
    app: &Arc<Coordinator>,
    target: &Variant,
    sources: &[&Variant],
) -> Result<usize, ServeError> {
    let Some(target_index) = app.store.blob_index(&target.hash)? else {
        return Ok(0);
    };
    let mut indexes = Vec::new();
    let mut files = Vec::new();
    for source in sources {
        if let Some(index) = app.store.blob_index(&source.hash)? {
            indexes.push(index);
            files.push(source.hash);
        }
    }
    if indexes.is_empty() {
        return Ok(0);
    }
    let wants = plan(&target_index, &indexes, WINDOW).wants(&files);
    let mut encoded = 0;
    for want in wants.into_iter().filter(|w| w.reference.is_some()) {
        app.transfer
            .chunk(
                &app.store,
                target.hash,
                &target_index,
                want,
                PROTOCOL_VERSION,
                || true,
            )
            .await?;
        encoded += 1;
    }
    Ok(encoded)
}

/// Encodes the first install of `variant` (each distinct chunk once, at its first place),
/// stopping between chunks when `give_way` says so; returns how many chunks were encoded, and
/// whether it finished.
async fn warm_first_install(
    app: &Arc<Coordinator>,
    variant: &Variant,
    give_way: &(dyn Fn() -> bool + Sync),
) -> Result<(usize, Warmed), ServeError> {
    let Some(index) = app.store.blob_index(&variant.hash)? else {
        return Ok((0, Warmed::Done));
    };
    let index = Arc::new(index);
    let mut seen = HashSet::new();
    let mut encoded = 0;
    let spans: Vec<(u64, ChunkRef)> = index.spans().map(|(o, c)| (o, *c)).collect();
    for (offset, chunk) in spans {
        if give_way() {
            return Ok((encoded, Warmed::GaveWay));
        }
        // A repeat is placed with its first copy: the device never asks for it.
        if !seen.insert(chunk.hash) {
            continue;
        }
        let Some(window) = install_window(variant.hash, offset, WINDOW) else {
            continue;
        };
        if app
            .transfer
            .warm_own_window(index.clone(), chunk, window)
            .await?
        {
            encoded += 1;
        }
    }
    Ok((encoded, Warmed::Done))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(
        alias: &str,
        active: Option<&str>,
        previous: Option<&str>,
    ) -> (DeviceId, DeviceRecord) {
        use ferry_shared::sign::SecretKey;
        use ferry_shared::wire::{ModelReport, UpdatePhase};
        let key = SecretKey::from_seed(&[alias.len() as u8; 32]).public();
        let model: ferry_shared::ModelName = "m".parse().unwrap();
        let version = |v: Option<&str>| v.map(|v| v.parse().unwrap());
        let record = DeviceRecord::following(
            key,
            alias,
            Default::default(),
            ModelReport {
                model,
                active: version(active),
                previous: version(previous),
                candidate: None,
                phase: UpdatePhase::Idle,
                last_error: None,
            },
        );
        (DeviceId::of(&key), record)
    }

    #[test]
    fn deltas_are_warmed_for_what_followers_hold_most_common_first() {
        let devices = [
            device("prod", Some("1.0.0"), None),
            device("prod", Some("1.1.0"), Some("1.0.0")),
            device("prod", Some("1.1.0"), Some("1.0.0")),
            device("prod", Some("2.0.0"), Some("1.1.0")), // already there
            device("prod", None, None),                   // nothing to diff against
            device("staging", Some("0.9.0"), None),       // follows another alias
        ];
        let moved = AliasMoved {
            model: "m".parse().unwrap(),
            alias: "prod".parse().unwrap(),
        };
        let v = |s: &str| Some(s.parse::<Version>().unwrap());
        assert_eq!(
            fleet_versions(&devices, &moved, &"2.0.0".parse().unwrap()),
            vec![(v("1.1.0"), v("1.0.0")), (v("1.0.0"), None)]
        );
        let nobody = AliasMoved {
            alias: "latest".parse().unwrap(),
            ..moved
        };
        assert!(fleet_versions(&devices, &nobody, &"2.0.0".parse().unwrap()).is_empty());
    }
}
