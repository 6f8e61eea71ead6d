//! The admin API's JSON documents, shared by the HTTP server and `ferryctl`.

use std::collections::BTreeMap;

use ferry_shared::wire::{Conditions, DeviceEvent, Follow, InstallError, ModelReport};
use ferry_shared::{Digest, Release, Version};

use serde::{Deserialize, Serialize};

use crate::rules::gc::GcPlan;
use crate::rules::lifecycle::{Approval, Check, Stage, StageMove};

/// Header in which ferryctl names the person acting (recorded in the audit trail).
pub const ACTOR_HEADER: &str = "x-ferry-actor";

/// Header on a `GET /api/v1/audit` reply whose scan stopped at its bound (200,000 entries
/// read) before the trail's end, or start, with fewer matches than asked for: the sequence
/// number to go on from (`after=` oldest first, `before=` newest first). Without it, a short
/// page means the trail was read through.
pub const AUDIT_CURSOR_HEADER: &str = "ferry-audit-cursor";
/// Where a resumed `PUT` continues, in bytes from the start.
pub const UPLOAD_OFFSET: &str = "upload-offset";
/// The artifact's whole size, which makes a `PUT` resumable.
pub const UPLOAD_LENGTH: &str = "upload-length";

/// Roles of API tokens (`ferryctl tokens create --role`).
pub use crate::rules::access::TokenRole;

/// A release as listed and shown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReleaseView {
    /// The signed manifest's content.
    pub release: Release,
    /// When the coordinator accepted it.
    pub published_at: u64,
    /// Who uploaded it.
    pub published_by: String,
    /// Key id of the signer.
    pub signer: String,
    /// Aliases pointing at it.
    pub aliases: Vec<String>,
    /// Its lifecycle stage.
    pub stage: Stage,
    /// When retention freed its bytes, if it did (the record stays).
    pub purged_at: Option<u64>,
}

/// A release's ancestry: itself, its parents, theirs (breadth first).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LineageView {
    /// The model whose releases the ancestry walks.
    pub model: String,
    /// Version asked about.
    pub version: Version,
    /// The walk, the release first.
    pub ancestors: Vec<crate::rules::lineage::Ancestor>,
}

/// What a dataset reaches.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImpactView {
    /// Dataset id.
    pub dataset: String,
    /// Dataset version, when asked for one.
    pub version: Option<String>,
    /// Every release derived from it.
    pub releases: Vec<ImpactRelease>,
    /// Devices running one of them.
    pub devices: usize,
}

/// A release derived from a dataset, with where it runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImpactRelease {
    /// The model (a validated model name).
    pub model: String,
    /// The release derived from the dataset.
    pub version: Version,
    /// Trained on the dataset, or derived from a release that was.
    pub how: String,
    /// Its stage.
    pub stage: Stage,
    /// Devices running it.
    pub devices: Vec<String>,
}

/// Two releases of a model side by side.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiffView {
    /// The model both releases belong to.
    pub model: String,
    /// The version on the left of the comparison.
    pub a: Version,
    /// The version on the right of the comparison.
    pub b: Version,
    /// Field by field.
    pub rows: Vec<crate::rules::lineage::DiffRow>,
}

/// Body of `POST /api/v1/releases/{model}/{version}/stage/{stage}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StageChange {
    /// Why (recorded in the audit trail and the release's history).
    #[serde(default)]
    pub reason: Option<String>,
    /// Only evaluate the checks; move nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Let a promotion that moves `prod` pass schema checks against the fleet (recorded).
    #[serde(default)]
    pub force: bool,
}

/// Body of `POST /api/v1/releases/{model}/{version}/approvals`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// Why (recorded in the audit trail).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Where a release stands in its lifecycle.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageView {
    /// The model (a validated model name).
    pub model: String,
    /// The release whose stage this is.
    pub version: Version,
    /// Its stage.
    pub stage: Stage,
    /// Since when (Unix seconds).
    pub since: u64,
    /// Where it may move next.
    pub next: Vec<Stage>,
    /// Approvals toward production given so far.
    pub approvals: Vec<Approval>,
    /// Its moves, oldest first.
    pub history: Vec<StageMove>,
}

/// A stage change asked for: its checks and what it did (answered 409 when refused, with
/// `error` naming each failing check).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TransitionView {
    /// The model (a validated model name).
    pub model: String,
    /// The release moved.
    pub version: Version,
    /// The stage it left.
    pub from: Stage,
    /// The stage it entered (or, on a dry run, would enter).
    pub to: Stage,
    /// Whether it moved (false on a dry run or a refusal).
    pub moved: bool,
    /// The target stage's policy checks, in its order.
    pub checks: Vec<Check>,
    /// Releases moved from production to deprecated with it.
    pub deprecated: Vec<Version>,
    /// Whether `prod` now points at it.
    pub prod_moved: bool,
    /// The rollout started with it.
    pub rollout: Option<String>,
    /// Why it was refused.
    pub error: Option<String>,
}

/// Body of `PUT /api/v1/aliases/{model}/{alias}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetAlias {
    /// Target version.
    pub version: Version,
    /// Why (recorded in the audit trail).
    pub reason: Option<String>,
    /// Move it even though the release does not fit some followers' applications (recorded).
    #[serde(default)]
    pub force: bool,
}

/// An alias and its last change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AliasView {
    /// The model (a validated model name).
    pub model: String,
    /// The alias (`prod`, `staging`, `latest`, or any other name).
    pub alias: String,
    /// The version the alias points at now.
    pub version: Version,
    /// When it was set.
    pub set_at: u64,
    /// Who set it.
    pub set_by: String,
    /// Why it was moved, as the mover gave it (with any forced check noted).
    pub reason: Option<String>,
}

/// Reply to an alias change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AliasChanged {
    /// The new state.
    pub alias: AliasView,
    /// Where it pointed before.
    pub previous: Option<Version>,
}

/// Reply to a publish.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Published {
    /// The model (a validated model name).
    pub name: String,
    /// The version published (or re-signed).
    pub version: Version,
    /// False when the identical release was already there.
    pub created: bool,
    /// Whether `latest` now points here.
    pub latest_moved: bool,
    /// The manifest revision sent.
    pub revision: u32,
    /// When this was the same content signed again under a newer revision: the revision it
    /// replaced.
    pub resigned_from: Option<u32>,
}

/// Reply to a blob upload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobStored {
    /// The artifact's BLAKE3 hash, hex: its content address.
    pub hash: String,
    /// Artifact size.
    pub size: u64,
    /// Digest of its chunk index, which the manifest must name.
    pub chunks: String,
    /// Number of chunks.
    pub chunk_count: u32,
    /// Chunks the upload added to the store (the rest were already there).
    pub new_chunks: u32,
    /// Disk bytes the upload added (compressed).
    pub new_bytes: u64,
    /// False when it was already stored.
    pub created: bool,
    /// Bytes of it earlier, interrupted attempts had sent (0 when this one sent them all).
    #[serde(default)]
    pub resumed_from: u64,
}

/// How much of an interrupted upload the coordinator holds (`GET /blobs/{hash}/upload`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadProgress {
    /// The artifact's hash.
    pub hash: String,
    /// Bytes stored so far: a resumed upload continues here.
    pub received: u64,
}

/// A trusted publisher key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyView {
    /// Key id.
    pub key_id: String,
    /// Public key text.
    pub public_key: String,
    /// A name for the key, 1 to 64 characters, as given when it was trusted.
    pub name: String,
    /// When added.
    pub added_at: u64,
    /// By whom.
    pub added_by: String,
}

/// Body of `POST /api/v1/keys`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrustKey {
    /// `ed25519:<hex>`.
    pub public_key: String,
    /// Name for people.
    pub name: String,
}

/// A device as shown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceView {
    /// The device id: derived from its ed25519 identity key.
    pub id: String,
    /// The labels the device announces (cohort selectors match them; `schema.*` declare its
    /// application's schemas).
    pub labels: BTreeMap<String, String>,
    /// Agent version.
    pub agent_version: String,
    /// Enrolled at.
    pub enrolled_at: u64,
    /// Last seen.
    pub last_seen: u64,
    /// Whether a session is open now.
    pub connected: bool,
    /// What it follows.
    pub follows: Vec<Follow>,
    /// Per-model state.
    pub models: Vec<ModelReport>,
    /// Most recent events.
    pub recent_events: Vec<DeviceEvent>,
    /// When it was revoked, if it was: it is refused from then on.
    #[serde(default)]
    pub revoked_at: Option<u64>,
    /// Its disk space and deferred switches as it last told them, and when (Unix seconds);
    /// `None` from agents before protocol 7.
    #[serde(default)]
    pub conditions: Option<(Conditions, u64)>,
    /// What it last reported serving, per model and version (only `GET /devices/{id}` fills
    /// it; held in memory since the coordinator started).
    #[serde(default)]
    pub served: Vec<ServedFigures>,
    /// What the coordinator sent it, per artifact, the most recent first (only
    /// `GET /devices/{id}` fills it; held in memory since the coordinator started).
    #[serde(default)]
    pub transfers: Vec<DeviceTransferView>,
}

/// One artifact sent to a device: bytes on the wire against its size, chunks by encoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceTransferView {
    /// The artifact's hash.
    pub file: Digest,
    /// The release it belongs to among the device's models (`None`: no longer known).
    pub release: Option<(String, Version)>,
    /// Its file name in that release.
    pub file_name: Option<String>,
    /// Its size.
    pub size: Option<u64>,
    /// Bytes sent, as on the wire.
    pub wire_bytes: u64,
    /// Chunks sent.
    pub chunks: u64,
    /// Chunks per encoding.
    pub encodings: BTreeMap<String, u64>,
    /// When the first and the last chunk went (Unix seconds).
    pub first_at: u64,
    /// See `first_at`.
    pub last_at: u64,
}

/// A device's figures for one version it serves (or runs in shadow), as it last reported them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServedFigures {
    /// The model.
    pub model: String,
    /// The version.
    pub version: Version,
    /// Requests served.
    pub requests: u64,
    /// Of them, failed.
    pub errors: u64,
    /// 95th percentile latency (ms), when any request was timed.
    pub p95_ms: Option<f64>,
    /// Its own metrics' means (`name` → mean of what it reported).
    pub custom: BTreeMap<String, f64>,
}

/// The fleet at a glance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetStatus {
    /// When computed (Unix seconds).
    pub generated_at: u64,
    /// Devices not seen for this long count as stale.
    pub stale_after_secs: u64,
    /// Devices known.
    pub devices_total: usize,
    /// Devices with an open session.
    pub devices_connected: usize,
    /// Chunk bytes sent to agents since the coordinator started, as on the wire (compressed or
    /// delta-encoded).
    pub bytes_served: u64,
    /// Chunks sent since the coordinator started.
    pub chunks_served: u64,
    /// Of those, chunks sent as deltas against a version the device holds.
    pub deltas_served: u64,
    /// Deltas encoded (not found in the cache) since the coordinator started, on demand or
    /// precomputed when an alias moved.
    pub deltas_encoded: u64,
    /// Of those, chunks found to share nothing with their window: sent as stored, without
    /// reading the window or trying a delta.
    #[serde(default)]
    pub deltas_unrelated: u64,
    /// First-install chunks encoded since the coordinator started (each against the bytes
    /// before it in its file, precomputed when an alias or rollout targets the release).
    #[serde(default)]
    pub first_install_chunks_encoded: u64,
    /// Fetches refused since start: an artifact outside the asking device's releases.
    #[serde(default)]
    pub fetches_refused: u64,
    /// Deltas not encoded since start because the asking device's encode budget was spent
    /// (the stored chunk went instead).
    #[serde(default)]
    pub encodes_refused: u64,
    /// Pre-signed chunk addresses handed to agents since start (they fetch those chunks from
    /// the bucket instead of through a coordinator).
    #[serde(default)]
    pub chunks_presigned: u64,
    /// Per model.
    pub models: Vec<ModelFleet>,
    /// Devices a second live agent tried to speak for (a cloned identity), since start.
    #[serde(default)]
    pub clone_alerts: Vec<CloneAlert>,
}

/// A device whose identity a second, simultaneous agent presented: the newcomer is refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CloneAlert {
    /// The device.
    pub device: String,
    /// First refusal (Unix seconds).
    pub first_at: u64,
    /// Latest refusal.
    pub last_at: u64,
    /// Refusals so far.
    pub refusals: u64,
    /// Where the latest refused session came from.
    pub refused_from: String,
}

/// One model across the fleet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelFleet {
    /// The model (a validated model name).
    pub model: String,
    /// Devices that follow it.
    pub devices: usize,
    /// Devices per active version, newest first (`None`: nothing installed yet).
    pub versions: Vec<VersionCount>,
    /// Each alias and how much of the fleet runs its target.
    pub aliases: Vec<AliasShare>,
    /// Devices not seen within `stale_after_secs`.
    pub stale: Vec<StaleDevice>,
    /// Devices whose last install failed.
    pub errors: Vec<DeviceError>,
    /// Devices installing, in probation, retrying or holding back.
    pub in_progress: Vec<DevicePhase>,
}

/// Devices on one version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionCount {
    /// Version, or `None` for devices with nothing installed.
    pub version: Option<Version>,
    /// How many.
    pub devices: usize,
    /// Share of the model's devices, 0–1.
    pub share: f64,
}

/// An alias target's adoption.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AliasShare {
    /// The alias devices follow.
    pub alias: String,
    /// Its target.
    pub version: Version,
    /// Devices following this alias.
    pub following: usize,
    /// Of those, running the target.
    pub on_target: usize,
    /// Share of all the model's devices running the target, 0–1.
    pub share: f64,
}

/// A device that has gone quiet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StaleDevice {
    /// The device id.
    pub id: String,
    /// Last seen.
    pub last_seen: u64,
    /// Version it last ran.
    pub active: Option<Version>,
}

/// A device's last failure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceError {
    /// The device id.
    pub id: String,
    /// Version it runs.
    pub active: Option<Version>,
    /// The failure.
    pub error: InstallError,
}

/// A device that is not simply idle.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevicePhase {
    /// The device id.
    pub id: String,
    /// What it is doing.
    pub phase: ferry_shared::wire::UpdatePhase,
}

/// Error body of every failed API call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// One line saying what went wrong.
    pub error: String,
}

/// One wave of a rollout request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WaveSpec {
    /// Cumulative share of the cohort, in percent (0.01 steps).
    pub percent: f64,
    /// Minimum bake time before the gates may advance it.
    #[serde(default)]
    pub bake_secs: u64,
    /// An approver must let it start.
    #[serde(default)]
    pub approval: bool,
    /// Stage beside `current` without serving (shadow).
    #[serde(default)]
    pub shadow: bool,
    /// Its gates; the defaults when absent.
    #[serde(default)]
    pub gates: Option<Vec<ferry_shared::rollout::Gate>>,
}

/// Body of `POST /api/v1/rollouts` (also the plan file of `ferryctl rollout create --plan`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateRollout {
    /// Its name; generated from model and version when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The model.
    pub model: String,
    /// The version to roll out.
    pub version: Version,
    /// The alias the cohort follows (moved to the version on completion); `prod` by default.
    #[serde(default)]
    pub alias: Option<String>,
    /// Cohort selector over device labels (`accelerator=gpu, region in (eu, us)`); all
    /// devices when empty.
    #[serde(default)]
    pub cohort: String,
    /// The waves; 5 → 25 → 50 → 100 % with an hour's bake and default gates when absent.
    #[serde(default)]
    pub waves: Option<Vec<WaveSpec>>,
    /// Why (recorded in the audit trail).
    #[serde(default)]
    pub reason: Option<String>,
    /// Start it even though the release does not fit some of the cohort's applications.
    #[serde(default)]
    pub force: bool,
    /// Seconds offline after which a device is left out of its wave (default 1800).
    #[serde(default)]
    pub unreachable_after_secs: Option<u64>,
    /// Largest share of the devices in force, in percent, that a wave may leave out (pinned
    /// by a hand rollback, or unreachable) and still advance (default 20).
    #[serde(default)]
    pub max_left_out_percent: Option<f64>,
    /// At most this many devices download the target at once; the rest of the waves in
    /// force wait their turn, in bucket order (default: no limit).
    #[serde(default)]
    pub max_downloading: Option<u32>,
    /// Devices switch at once, their update windows and applications' locks notwithstanding.
    #[serde(default)]
    pub now: bool,
}

/// Answer of `POST /api/v1/rollouts/check` (same body as creating it): whom the rollout
/// would reach, wave by wave, and which of those devices could not take the release, judged
/// by the rules they will apply themselves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutCheck {
    /// The model.
    pub model: String,
    /// The version it would roll out.
    pub version: Version,
    /// The alias its devices follow.
    pub alias: String,
    /// The cohort selector, as given.
    pub cohort: String,
    /// Devices following the alias within the cohort.
    pub devices: usize,
    /// How many devices each wave reaches (cumulative, as the waves are).
    pub waves: Vec<WaveReach>,
    /// Devices that could not take it, by kind: `schema`, `hardware`, `disk`.
    pub misfit_counts: BTreeMap<String, usize>,
    /// The first [`MAX_MISFITS_SHOWN`] of them, earliest wave first.
    pub misfits: Vec<DeviceMisfit>,
    /// Devices that have not told their disk space (agents before protocol 7): not judged on
    /// it.
    pub disk_unknown: usize,
}

/// Most misfits a rollout check lists.
pub const MAX_MISFITS_SHOWN: usize = 1000;

/// The devices one wave of a checked rollout reaches.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WaveReach {
    /// Its cumulative share, in percent.
    pub percent: f64,
    /// A shadow wave (stages the release beside what runs).
    pub shadow: bool,
    /// Devices it reaches, those of earlier waves included.
    pub devices: usize,
}

/// A device a rollout would reach that could not take its release.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceMisfit {
    /// The device.
    pub device: String,
    /// Its `name` label, when it has one.
    #[serde(default)]
    pub name: Option<String>,
    /// Why, in a word: `schema`, `hardware` or `disk`.
    pub kind: String,
    /// Why, in words (`disk: need 1.2 GiB, have 800.0 MiB free (of 8.0 GiB)`).
    pub detail: String,
    /// The first wave that would reach it (0-based).
    pub wave: usize,
}

/// Body of `POST /api/v1/experiments`: the challenger against what `alias` points at now.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateExperiment {
    /// Its name; generated from model and challenger when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The model.
    pub model: String,
    /// The release to try.
    pub challenger: Version,
    /// The alias whose release is the champion; `prod` by default.
    #[serde(default)]
    pub alias: Option<String>,
    /// Cohort selector over device labels; all devices when empty.
    #[serde(default)]
    pub cohort: String,
    /// The challenger's share of the cohort, in percent (50 by default).
    #[serde(default)]
    pub percent: Option<f64>,
    /// How long it runs before it may be decided, in seconds.
    pub duration_secs: u64,
    /// Requests each arm needs to be decided before the time is up (0: time only).
    #[serde(default)]
    pub min_samples: u64,
    /// Why (recorded in the audit trail).
    #[serde(default)]
    pub reason: Option<String>,
    /// Start it even though the challenger does not fit some of the cohort's applications.
    #[serde(default)]
    pub force: bool,
}

/// Body of `POST /api/v1/experiments/{id}/decide`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecideExperiment {
    /// promote, reject or extend.
    pub verdict: crate::rules::experiment::Verdict,
    /// Why (required: the decision is recorded with it).
    pub reason: String,
    /// With extend: seconds more.
    #[serde(default)]
    pub extend_secs: Option<u64>,
    /// Decide before the time is up and the sample reached.
    #[serde(default)]
    pub early: bool,
}

/// Where an experiment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExperimentPhase {
    /// Splitting the cohort; not yet time (nor sample) to decide.
    Running,
    /// Time is up or both arms reached the sample: waiting for a decision.
    Ready,
    /// Promoted or rejected.
    Decided,
    /// Its split ended without a decision (its install or health gates rolled it back, or an
    /// operator stopped it).
    Ended,
}

/// One arm of an experiment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExperimentArm {
    /// The release it serves.
    pub version: Version,
    /// Devices serving it.
    pub devices: u64,
    /// Requests they reported.
    pub requests: u64,
}

/// An experiment with its readout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExperimentView {
    /// Its id (also its rollout's).
    pub id: String,
    /// The model.
    pub model: String,
    /// The alias whose release is the champion.
    pub alias: String,
    /// Cohort selector.
    pub cohort: String,
    /// The challenger's share of the cohort, in percent.
    pub percent: f64,
    /// Where it stands.
    pub phase: ExperimentPhase,
    /// Its split's rollout phase.
    pub rollout_phase: ferry_shared::rollout::Phase,
    /// Who started it, when, why.
    pub created_by: String,
    /// When it started (Unix seconds).
    pub created_at: u64,
    /// Why.
    pub reason: String,
    /// When it may be decided by time.
    pub ends_at: u64,
    /// Requests each arm needs to be decided early (0: time only).
    pub min_samples: u64,
    /// The release serving the rest of the cohort.
    pub champion: ExperimentArm,
    /// The release on trial.
    pub challenger: ExperimentArm,
    /// Metric by metric: challenger minus champion with a 95 % interval.
    pub readout: Vec<crate::rules::experiment::ReadoutRow>,
    /// The decisions taken.
    pub decisions: Vec<crate::rules::experiment::ExperimentDecision>,
    /// What the decision did (a refused promotion's checks, the stage move), when decided now.
    #[serde(default)]
    pub outcome: Option<String>,
}

/// Body of `POST /api/v1/rollouts/{id}/{action}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RolloutAction {
    /// Why (recorded in the audit trail).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Devices of a rollout's cohort, by where they stand.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RolloutDevices {
    /// In the cohort.
    pub cohort: u64,
    /// Covered by the waves in force.
    pub targeted: u64,
    /// Running the target.
    pub on_target: u64,
    /// With the target staged as their shadow candidate.
    #[serde(default)]
    pub shadowing: u64,
    /// Whose install of the target failed.
    pub install_failed: u64,
    /// Where the target failed its health check.
    pub health_failed: u64,
}

/// Where a device of a rollout's cohort stands (several may hold at once): what the counts
/// of [`RolloutDevices`] count and `GET /rollouts/{id}/devices?standing=` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// In the cohort.
    Cohort,
    /// Covered by the waves in force.
    Targeted,
    /// Running the target.
    OnTarget,
    /// With the target staged as its shadow candidate.
    Shadowing,
    /// Its install of the target failed.
    InstallFailed,
    /// The target failed its health check there.
    HealthFailed,
    /// Of the waves in force, without an outcome yet (a straggler).
    HoldingUp,
    /// Left out of the gates: pinned, or unreachable past the plan's limit.
    LeftOut,
}

impl Standing {
    /// Every standing, in the order views list them.
    pub const ALL: [Standing; 8] = [
        Standing::Cohort,
        Standing::Targeted,
        Standing::OnTarget,
        Standing::Shadowing,
        Standing::InstallFailed,
        Standing::HealthFailed,
        Standing::HoldingUp,
        Standing::LeftOut,
    ];

    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Cohort => "cohort",
            Standing::Targeted => "targeted",
            Standing::OnTarget => "on_target",
            Standing::Shadowing => "shadowing",
            Standing::InstallFailed => "install_failed",
            Standing::HealthFailed => "health_failed",
            Standing::HoldingUp => "holding_up",
            Standing::LeftOut => "left_out",
        }
    }
}

impl std::str::FromStr for Standing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Standing::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Standing::ALL.iter().map(|s| s.as_str()).collect();
                format!("no standing {s:?} (one of {})", names.join(", "))
            })
    }
}

/// Most devices one page of a rollout's device list holds.
pub const MAX_ROLLOUT_DEVICES_PAGE: usize = 1000;

/// A page of a rollout's devices that stand one way (`GET /rollouts/{id}/devices`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutDevicePage {
    /// The standing listed.
    pub standing: Standing,
    /// How many devices stand so, over every page.
    pub total: u64,
    /// This page, in id order.
    pub devices: Vec<RolloutDeviceRow>,
    /// The `after` of the next page, when there is one.
    pub next: Option<String>,
}

/// One device in a rollout's device list.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutDeviceRow {
    /// The device.
    pub id: String,
    /// Its `name` label, when it has one.
    pub name: Option<String>,
    /// Its wave (1-based).
    pub wave: usize,
    /// The version it runs.
    pub current: Option<Version>,
    /// The version it stages for shadow traffic.
    pub candidate: Option<Version>,
    /// Every standing that holds for it.
    pub standings: Vec<Standing>,
    /// Why it holds the rollout up, when it does.
    pub holdup: Option<String>,
    /// Offline since then (Unix seconds); `None` while connected.
    pub offline_since: Option<u64>,
}

/// A rollout as listed and shown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutView {
    /// The rollout's id: unique, 1 to 128 characters.
    pub id: String,
    /// The model rolled out.
    pub model: String,
    /// Target version.
    pub version: Version,
    /// The alias moved on completion.
    pub alias: String,
    /// Cohort selector.
    pub cohort: String,
    /// The rollout's phase.
    pub phase: ferry_shared::rollout::Phase,
    /// Paused by an operator.
    pub paused: bool,
    /// Waves in force (the current wave is the last of them).
    pub waves_in_force: usize,
    /// Cumulative percent of each wave.
    pub waves: Vec<f64>,
    /// Which waves are shadow waves (by index).
    #[serde(default)]
    pub shadow_waves: Vec<usize>,
    /// Why it rolled back or was aborted.
    pub reason: Option<String>,
    /// Who created it, when.
    pub created_by: String,
    /// When it was created (Unix seconds).
    pub created_at: u64,
    /// Last change.
    pub updated_at: u64,
    /// The current wave's gates, value against threshold.
    pub gates: Vec<ferry_shared::rollout::GateReport>,
    /// Devices per state.
    pub devices: RolloutDevices,
    /// What holds the rollout: devices of the waves in force without an outcome, and why
    /// (at most [`MAX_STRAGGLERS_SHOWN`]; `stragglers_total` counts them all).
    #[serde(default)]
    pub stragglers: Vec<StragglerView>,
    /// Devices of the waves in force without an outcome.
    #[serde(default)]
    pub stragglers_total: u64,
    /// Of them, left out of the gates (pinned, or unreachable past the plan's limit).
    #[serde(default)]
    pub left_out: u64,
    /// How many the plan lets the waves in force leave out and still advance.
    #[serde(default)]
    pub may_leave_out: u64,
    /// Seconds offline after which a device is left out.
    #[serde(default)]
    pub unreachable_after_secs: u64,
    /// Largest share of the devices in force, in percent, that may be left out.
    #[serde(default)]
    pub max_left_out_percent: f64,
    /// The plan's limit on devices downloading at once (`None`: no limit).
    #[serde(default)]
    pub max_downloading: Option<u32>,
    /// Devices holding a download slot now (with a limit).
    #[serde(default)]
    pub downloading: u64,
    /// Plain-language notes: what holds the wave, and gates that decided on fewer samples
    /// than their minimum.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The values over time of the gates in `gates` (those of the wave in force), as the
    /// engine measured them, in their order; only `GET /rollouts/{id}` carries it; stored
    /// with the rollout, at most 720 samples over all waves, the older ones thinned).
    #[serde(default)]
    pub gate_history: Vec<GateSample>,
}

/// The gates' values at one engine step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateSample {
    /// When (Unix seconds).
    pub at: u64,
    /// The wave in force (1-based).
    pub wave: usize,
    /// Each gate's value, in the order of the rollout's gates (`None`: nothing to measure).
    pub values: Vec<Option<f64>>,
}

/// The most stragglers a rollout view lists.
pub const MAX_STRAGGLERS_SHOWN: usize = 100;

/// A device holding a rollout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StragglerView {
    /// The device.
    pub device: String,
    /// Its wave (1-based).
    pub wave: usize,
    /// Why it has no outcome, in words.
    pub reason: String,
    /// Left out of the gates and counted against the plan's limit instead.
    pub left_out: bool,
}

/// `GET /api/v1/fleet/fragmentation`: which versions run where, per model and cohort.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FragmentationReport {
    /// When computed (Unix seconds).
    pub generated_at: u64,
    /// The label cohorts are split by (`None`: one cohort, the whole fleet).
    pub by: Option<String>,
    /// Per model.
    pub models: Vec<ModelFragmentation>,
}

/// One model's fragmentation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelFragmentation {
    /// The model (a validated model name).
    pub model: String,
    /// The whole fleet of the model.
    pub overall: CohortFragmentation,
    /// Per value of the `by` label (devices without it under `(none)`); empty without `by`.
    pub cohorts: Vec<CohortFragmentation>,
    /// The fragmentation index over time, from the periodic samples (oldest first).
    pub history: Vec<FragmentationPoint>,
}

/// The versions of one cohort.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CohortFragmentation {
    /// The label value (`all` for the whole fleet).
    pub cohort: String,
    /// Devices that follow the model.
    pub devices: usize,
    /// Devices per running version, newest first (`None`: nothing installed yet).
    pub versions: Vec<VersionCount>,
    /// Distinct versions running.
    pub distinct_versions: usize,
    /// Gini–Simpson index over the devices running a version: 1 − Σ pᵢ², 0 when all run
    /// one version, approaching 1 as they spread.
    pub index: f64,
    /// Each alias target's adoption in the cohort.
    pub aliases: Vec<AliasShare>,
    /// Devices behind their alias's target, by reason.
    pub behind_by_reason: BTreeMap<String, usize>,
    /// Devices behind their alias's target, with why (most behind first).
    pub behind: Vec<BehindDevice>,
}

/// A device that does not run its alias's target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BehindDevice {
    /// The device id.
    pub id: String,
    /// The alias it follows.
    pub alias: String,
    /// What it runs.
    pub running: Option<Version>,
    /// What the alias names.
    pub target: Version,
    /// Published versions between what it runs (exclusive) and the target (inclusive).
    pub versions_behind: usize,
    /// Why it does not run its target yet.
    pub reason: BehindReason,
    /// Details (the last error's message, or the hold's reason).
    pub detail: Option<String>,
    /// Last heard from (Unix seconds).
    pub last_seen: u64,
}

/// Why a device is behind its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BehindReason {
    /// Not heard from within `stale_after_secs` (`detail` says since when).
    Offline,
    /// Downloading, switching or health-checking it now.
    Updating,
    /// Its download keeps failing.
    DownloadFailing,
    /// It failed its health check there and the device rolled back.
    HealthCheckFailed,
    /// Writing it failed (full disk, permissions).
    DiskFull,
    /// No variant of the release fits the device.
    IncompatibleHardware,
    /// The device refused the release's signature or bytes.
    Refused,
    /// An operator rolled the device back by hand; it holds the target back.
    Pinned,
    /// It has the target (or will fetch it) but switches only inside its update windows.
    WaitingForWindow,
    /// Its application holds an update lock.
    LockedByApplication,
    /// It has the target but waits for another model of its update set (its download, its
    /// turn, or a fix for a release that failed).
    WaitingForUpdateSet,
    /// Connected and idle, with no failure: the push has not landed yet, or a rollout keeps
    /// it where it is.
    Waiting,
}

impl BehindReason {
    /// The kebab-case name used in reports and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BehindReason::Offline => "offline",
            BehindReason::Updating => "updating",
            BehindReason::DownloadFailing => "download-failing",
            BehindReason::HealthCheckFailed => "health-check-failed",
            BehindReason::DiskFull => "disk-full",
            BehindReason::IncompatibleHardware => "incompatible-hardware",
            BehindReason::Refused => "refused",
            BehindReason::Pinned => "pinned",
            BehindReason::WaitingForWindow => "waiting-for-window",
            BehindReason::LockedByApplication => "locked-by-application",
            BehindReason::WaitingForUpdateSet => "waiting-for-update-set",
            BehindReason::Waiting => "waiting",
        }
    }
}

/// One periodic snapshot of a model's fragmentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FragmentationPoint {
    /// When (Unix seconds).
    pub at: u64,
    /// Devices that followed the model.
    pub devices: u64,
    /// Distinct versions running.
    pub distinct_versions: u64,
    /// Gini–Simpson index.
    pub index: f64,
}

/// Body of `POST /api/v1/tokens`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateToken {
    /// Name for people and audit trails.
    pub name: String,
    /// `viewer`, `publisher`, `approver`, `operator` or `admin`.
    pub role: TokenRole,
    /// Models it may act on (empty: all).
    #[serde(default)]
    pub models: Vec<String>,
    /// Days until it stops working (none: never).
    pub expires_days: Option<u64>,
    /// The person it belongs to [default: its name]; a person's approvals count once,
    /// whichever of their tokens gives them.
    #[serde(default)]
    pub owner: Option<String>,
}

/// An API token as listed (never its secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenView {
    /// Id (the public part of the token).
    pub id: String,
    /// A name for the token, 1 to 64 printable characters (audit entries name the caller by it).
    pub name: String,
    /// What the token may do (see the README's roles table).
    pub role: TokenRole,
    /// Models it may act on (empty: all).
    pub models: Vec<String>,
    /// When created.
    pub created_at: u64,
    /// By whom.
    pub created_by: String,
    /// When it stops working.
    pub expires_at: Option<u64>,
    /// When revoked.
    pub revoked_at: Option<u64>,
    /// The person it belongs to (approvals count owners, not tokens).
    #[serde(default)]
    pub owner: String,
}

/// Reply to `GET /api/v1/whoami`: who the presented token authenticates as and what it may
/// do, so that a console offers only those actions (the API still checks every request).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Whoami {
    /// The token's name (audit entries name the caller by it).
    pub name: String,
    /// The person it belongs to.
    pub owner: String,
    /// Its role.
    pub role: TokenRole,
    /// Models it may act on (empty: all).
    pub models: Vec<String>,
    /// The actions its role allows (`read`, `publish`, `set-alias`, `promote`, `stage`,
    /// `run-rollout`, `approve`, `roll-back`, `devices`, `administer`, `upload`), on its
    /// models only when it is scoped.
    pub may: Vec<String>,
}

/// Reply to `POST /api/v1/tokens`: the token, shown this once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The token to give its holder (`fy_<id>_<secret>`); only its hash is kept.
    pub token: String,
    /// What was stored.
    pub view: TokenView,
}

/// Body of `POST /api/v1/devices/enroll-tokens`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateEnrollToken {
    /// Name for people (e.g. the batch of devices it is for).
    pub name: String,
    /// How many devices may enroll with it (none: any number until it expires).
    pub uses: Option<u32>,
    /// Hours until it stops working (none: never).
    pub expires_hours: Option<u64>,
}

/// An enrollment token as listed (never its secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrollTokenView {
    /// The token's id, for revoking it (not the secret).
    pub id: String,
    /// A name for the token, 1 to 64 printable characters.
    pub name: String,
    /// Enrollments left (`None`: unlimited).
    pub uses_left: Option<u32>,
    /// Devices enrolled with it.
    pub used: u32,
    /// When it stops working.
    pub expires_at: Option<u64>,
    /// When created.
    pub created_at: u64,
    /// By whom.
    pub created_by: String,
}

/// Reply to `POST /api/v1/devices/enroll-tokens`: the token, shown this once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrollTokenCreated {
    /// The token to put in the devices' configuration (`fe_<id>_<secret>`).
    pub token: String,
    /// What was stored.
    pub view: EnrollTokenView,
}

/// Body of `PUT /api/v1/devices/{id}/pins/{model}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PinDevice {
    /// The version the device runs while pinned.
    pub version: Version,
    /// Why (for the audit trail).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `DELETE /api/v1/devices/{id}/pins/{model}` (optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UnpinDevice {
    /// Why (for the audit trail).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A device pinned to a version of a model (`GET /api/v1/pins`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PinView {
    /// The device.
    pub device: String,
    /// The model.
    pub model: String,
    /// The version it runs while pinned.
    pub version: Version,
    /// Who pinned it.
    pub by: String,
    /// When (Unix seconds).
    pub at: u64,
    /// Why.
    pub reason: String,
}

/// Body of `POST /api/v1/devices/{id}/revoke`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RevokeDevice {
    /// Why (for the audit trail).
    pub reason: Option<String>,
}

/// `GET /api/v1/trust`: the coordinator's snapshot key and the root chain it serves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrustView {
    /// The online snapshot key (`ed25519:…`), to name in root metadata.
    pub snapshot_key: String,
    /// Every root, oldest first.
    pub roots: Vec<RootView>,
}

/// One root as shown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootView {
    /// The root's version: each new root is the previous one plus one.
    pub version: u64,
    /// Expiry (Unix seconds).
    pub expires: u64,
    /// Root keys (ids) and threshold.
    pub root_keys: Vec<String>,
    /// Root signatures needed.
    pub root_threshold: u32,
    /// Publisher keys (ids).
    pub publishers: Vec<String>,
    /// Publisher signatures needed.
    pub publisher_threshold: u32,
}

/// Body of `POST /api/v1/backup`: where on the coordinator's host to write the backup (a new
/// or empty directory).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// The directory.
    pub to: std::path::PathBuf,
}

/// Which audit entries to show: action by prefix, actor and subject by substring, time as
/// `[since, until)` in Unix seconds; what is not given does not filter. `GET /audit` and
/// `ferryctl audit` judge by this one rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Actions starting with this (`rollout`, `alias.set`).
    pub action: Option<String>,
    /// Actors containing this.
    pub actor: Option<String>,
    /// Subjects containing this.
    pub subject: Option<String>,
    /// At or after this time.
    pub since: Option<u64>,
    /// Before this time.
    pub until: Option<u64>,
}

impl AuditFilter {
    /// Whether `e` is shown.
    pub fn keeps(&self, e: &AuditEntryView) -> bool {
        self.action
            .as_deref()
            .is_none_or(|a| e.action.starts_with(a))
            && self.actor.as_deref().is_none_or(|a| e.actor.contains(a))
            && self
                .subject
                .as_deref()
                .is_none_or(|s| e.subject.contains(s))
            && self.since.is_none_or(|t| e.at >= t)
            && self.until.is_none_or(|t| e.at < t)
    }
}

/// One entry of the audit trail, as `/audit` lists it (the store keeps its own record of it,
/// whose stored bytes the chain hashes: the two evolve apart).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntryView {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When (Unix seconds).
    pub at: u64,
    /// Who acted: the person ferryctl names and the token used (`alice (ci-token, operator)`),
    /// or the coordinator itself (`rollout-engine`).
    pub actor: String,
    /// What kind of change (`publish`, `alias.set`, `device.enroll`, …).
    pub action: String,
    /// What it concerned (`fraud-detector 1.2.0`, a device id, …).
    pub subject: String,
    /// Details, including the reason when one was given.
    pub detail: String,
    /// Hash of the previous entry's stored bytes (zeros for the first).
    pub prev_hash: Digest,
}

/// A point in the chain kept by an operator, `SEQ:HASH`: a later walk must find that entry
/// unchanged, which a truncated or rewritten trail cannot show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Sequence number.
    pub seq: u64,
    /// Hash of the entry's stored bytes.
    pub hash: Digest,
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash.to_hex())
    }
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not an anchor: expected SEQ:HASH, as `ferryctl audit --verify` prints"
            )
        };
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            seq: seq.parse().map_err(|_| bad())?,
            hash: hash.parse().map_err(|_| bad())?,
        })
    }
}

/// What a walk of the audit chain found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// Entries that link up, from the first.
    pub entries: u64,
    /// The last of them: keep it to check later walks against.
    pub head: Option<Anchor>,
    /// The first broken link, when there is one.
    pub broken: Option<BrokenLink>,
}

impl std::fmt::Display for AuditVerification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.broken, &self.head) {
            (Some(broken), _) => {
                writeln!(f, "BROKEN at entry {}: {}", broken.seq, broken.reason)?;
                write!(f, "{} entries before it link up", self.entries)
            }
            (None, Some(head)) => {
                writeln!(f, "intact: {} entries link up", self.entries)?;
                writeln!(f, "head {head}")?;
                write!(
                    f,
                    "(keep the head: --anchor HEAD later shows a cut or rewrite)"
                )
            }
            (None, None) => write!(f, "intact: the trail is empty"),
        }
    }
}

/// Where and why the chain breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenLink {
    /// The sequence number at which it breaks.
    pub seq: u64,
    /// What is wrong there.
    pub reason: String,
}

/// What a backup or restore did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackupSummary {
    /// The backup directory.
    pub dir: std::path::PathBuf,
    /// Files written.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Database records copied (backups only).
    pub records: u64,
    /// Seconds it took.
    pub secs: f64,
}

/// What a collection found, or did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GcReport {
    /// Whether it was carried out (false: a dry run).
    pub applied: bool,
    /// The releases, artifacts and chunks concerned.
    pub plan: GcPlan,
    /// Chunk files no artifact uses, older than the grace period.
    pub orphans: usize,
    /// Parts of interrupted uploads nobody resumed within [`crate::rules::gc::UPLOAD_EXPIRY_SECS`].
    #[serde(default)]
    pub stale_uploads: usize,
    /// Bytes their files take (freed, when applied).
    pub bytes: u64,
}
