//! The agent ↔ coordinator protocol spoken over QUIC streams.
//!
//! Every stream starts with a 6-byte [`Preamble`] (magic + protocol version) so that a peer
//! speaking another version is recognised before anything version-specific is decoded; then
//! frames follow: a 4-byte big-endian length and a postcard body of at most [`MAX_FRAME`]
//! bytes. [`ToAgent::Refused`] is variant 0 and must stay so in every future version, so that an
//! agent of any release understands why it was turned away.
//!
//! Streams:
//! * **control** (bidirectional, opened by the agent, one per session): `Hello` → `Welcome` or
//!   `Refused`; then the agent sends `Report`s and the coordinator pushes `Desired` and `Ack`.
//! * **fetch** (bidirectional, one per download): a `FetchRequest`, a `FetchResponse` frame, and
//!   on success the zstd-compressed bytes until the stream ends.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::delta::Encoding;
use crate::digest::Digest;
use crate::name::{AliasName, ModelName};
use crate::sign::PublicKey;
use crate::version::Version;

/// The protocol version this build speaks.
/// 2: the tensor delta encoding, and bsdiff references of half a chunk either side.
/// 3: shadow candidates and model metrics in reports.
/// 4: the covers encoding ([`Encoding::Covers`]); nothing else changed.
/// 5: chunk locations ([`FetchRequest::Locations`]): mirrors and pre-signed addresses an
///    agent may fetch chunk frames from instead of the coordinator.
/// 6: distributions of custom metric values ([`ToCoordinator::Distributions`]), for drift
///    gates.
/// 7: the device's conditions ([`ToCoordinator::Conditions`]): its disk space, and the
///    switches it defers (outside its update window, locked by its application); the
///    coordinator's rules for it ([`ToAgent::Policy`]): its cohort's windows, overrides.
/// 8: a switch deferred for the rest of its update set ([`DeferReason::UpdateSet`]).
pub const PROTOCOL_VERSION: u16 = 8;
/// The oldest protocol version a coordinator still serves. Agents are updated after their
/// coordinator (often by the coordinator itself), so a coordinator must go on serving the
/// agents it had, sending them nothing they cannot decode (see [`decodes`]).
pub const OLDEST_PROTOCOL_VERSION: u16 = 3;

/// True when a coordinator serves peers speaking `protocol`.
pub fn serves(protocol: u16) -> bool {
    (OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&protocol)
}

/// True when a peer speaking `protocol` can decode chunks sent as `encoding`.
pub fn decodes(protocol: u16, encoding: Encoding) -> bool {
    match encoding {
        Encoding::Covers => protocol >= 4,
        _ => true,
    }
}
/// TLS ALPN identifier for Ferry sessions.
pub const ALPN: &[u8] = b"ferry";
/// Magic bytes opening every stream.
pub const MAGIC: [u8; 4] = *b"FRY\x01";
/// Largest frame body accepted, in bytes (a signed manifest plus headroom).
pub const MAX_FRAME: usize = 1024 * 1024;
/// TLS exporter label the device signs to prove its identity on this very session.
pub const DEVICE_AUTH_EXPORTER_LABEL: &[u8] = b"EXPORTER-ferry-device-auth";

/// The first six bytes of every stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preamble {
    /// Protocol version of the sender.
    pub version: u16,
}

/// Wire-level failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The stream does not start with Ferry's magic bytes.
    #[error("peer is not speaking the Ferry protocol (bad magic bytes)")]
    BadMagic,
    /// A frame announces more bytes than allowed.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    FrameTooLarge(usize),
    /// The frame body does not decode as the expected message.
    #[error("malformed {what} message: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A message could not be encoded (too large).
    #[error("cannot encode message: {0}")]
    Encode(String),
}

impl Preamble {
    /// This build's preamble.
    pub const CURRENT: Preamble = Preamble {
        version: PROTOCOL_VERSION,
    };

    /// The six bytes.
    pub fn to_bytes(self) -> [u8; 6] {
        let v = self.version.to_be_bytes();
        [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], v[0], v[1]]
    }

    /// Parses six bytes.
    pub fn parse(bytes: [u8; 6]) -> Result<Self, WireError> {
        if bytes[..4] != MAGIC {
            return Err(WireError::BadMagic);
        }
        Ok(Self {
            version: u16::from_be_bytes([bytes[4], bytes[5]]),
        })
    }
}

/// Encodes a message as one frame: length prefix + postcard body.
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; 4];
    let body = postcard::to_allocvec(message).map_err(|e| WireError::Encode(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(WireError::FrameTooLarge(body.len()));
    }
    // MAX_FRAME fits in u32, so the cast cannot truncate.
    out[..4].copy_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads a frame's length prefix, refusing sizes over the limit before anything is allocated.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(WireError::FrameTooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame body; trailing bytes are an error.
pub fn decode_body<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, WireError> {
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| WireError::Decode {
        what,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(WireError::Decode {
            what,
            reason: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok(value)
}

/// A device's identifier: derived from its identity key, 20 hex characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceId(String);

impl DeviceId {
    /// The id of the device holding `key`.
    pub fn of(key: &PublicKey) -> Self {
        let digest = Digest::keyed_context("ferry/device-id/v1", &key.to_bytes());
        Self(hex::encode(&digest.0[..10]))
    }

    /// Parses and validates a textual id.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 20 && text.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
            .then(|| Self(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Messages from an agent on its control stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToCoordinator {
    /// First message of a session (boxed: it is much larger than a report; the encoding is
    /// the same as unboxed).
    Hello(Box<Hello>),
    /// A status report (also serves as heartbeat).
    Report(DeviceReport),
    /// The distributions of custom metric values per version, each whole (protocol 6; sent
    /// before a report, when they changed, to a coordinator that speaks 6). At most
    /// [`MAX_REPORTED_DISTRIBUTIONS`].
    Distributions(Vec<ReportedDistribution>),
    /// What the device is like now beyond its report (protocol 7; sent before a report when
    /// it changed, to a coordinator that speaks 7).
    Conditions(Conditions),
}

/// The first protocol version that knows [`ToCoordinator::Distributions`].
pub const DISTRIBUTIONS_SINCE: u16 = 6;

/// The first protocol version that knows [`ToCoordinator::Conditions`] and
/// [`ToAgent::Policy`].
pub const CONDITIONS_SINCE: u16 = 7;

/// Most deferrals one message carries.
pub const MAX_DEFERRALS: usize = 16;

/// The device's conditions: whether it has room for what comes, and what it is putting off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conditions {
    /// Space on the file system holding its versions; `None` when it cannot tell.
    pub disk: Option<DiskSpace>,
    /// Switches it holds back for now, one per model at most ([`MAX_DEFERRALS`]).
    pub deferred: Vec<Deferral>,
}

impl Conditions {
    /// Whether `self` says something `before` did not: other deferrals, the free space moved
    /// by at least 1 % of the disk (at least 1 MiB, at most 256 MiB: what matters is whether a
    /// model fits), or what the agent holds by 1 MiB (it changes only with installs and
    /// clean-ups). Smaller moves are not news: free space drifts with every log line, and
    /// neither side should send or store a record for that.
    pub fn is_news_after(&self, before: &Conditions) -> bool {
        if self.deferred != before.deferred {
            return true;
        }
        match (before.disk, self.disk) {
            (Some(a), Some(b)) => {
                let step = (b.total / 100).clamp(1 << 20, 256 << 20);
                a.total != b.total
                    || a.free.abs_diff(b.free) >= step
                    || a.held.abs_diff(b.held) >= 1 << 20
            }
            (a, b) => a != b,
        }
    }
}

/// Space on the file system holding a device's versions, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpace {
    /// Free to the agent (what an unprivileged writer may still use).
    pub free: u64,
    /// The file system's size.
    pub total: u64,
    /// What the agent's versions, downloads and caches take.
    pub held: u64,
}

/// A switch a device holds back: the version is (or will be) downloaded, but not run yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferral {
    /// The model.
    pub model: ModelName,
    /// The version waiting.
    pub version: Version,
    /// Why it waits.
    pub reason: DeferReason,
    /// Since when (Unix seconds, device clock).
    pub since: u64,
}

/// Why a device holds a switch back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeferReason {
    /// Outside the device's update windows.
    Window {
        /// When the next window opens (Unix seconds), when known.
        opens: Option<u64>,
    },
    /// The application holds an update lock.
    Locked {
        /// Until when it said it is busy (Unix seconds); `None`: until it lets go.
        until: Option<u64>,
        /// Who or why, as the application said.
        by: String,
    },
    /// The model is in an update set with others, and this one waits for that member (its
    /// download, its turn in the order, or a fix for its release) before it may switch
    /// (protocol 8).
    UpdateSet {
        /// The member waited for.
        waiting_for: ModelName,
    },
}

/// Most distributions one message carries.
pub const MAX_REPORTED_DISTRIBUTIONS: usize = 16;

/// How the values of one custom metric were distributed on one version, since it started
/// serving.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedDistribution {
    /// The model.
    pub model: ModelName,
    /// The version that served.
    pub version: Version,
    /// The custom metric (`score` in `ok 12 score=0.93`).
    pub metric: String,
    /// Its values.
    pub values: crate::rollout::Distribution,
}

/// Messages from the coordinator on a control stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToAgent {
    /// The session is refused; the stream ends after this. Must stay variant 0.
    Refused(Refusal),
    /// The session is accepted.
    Welcome(Welcome),
    /// What the device should run for one followed model.
    Desired(DesiredState),
    /// Events up to and including this sequence number are durably recorded.
    Ack {
        /// Highest event sequence number stored.
        events_through: u64,
    },
    /// The coordinator's rules for this device (protocol 7; sent to agents speaking 7 when
    /// they change).
    Policy(Policy),
}

/// The coordinator's rules for one device, beside what it should run: the update windows of
/// its cohort, and the switches an operator let go ahead at once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Switches happen only inside these too (device-local time; none: no rule of the
    /// coordinator's).
    pub windows: Vec<crate::window::Window>,
    /// Versions to switch to at once, windows and locks notwithstanding (`rollout create
    /// --now`).
    pub now: Vec<(ModelName, Version)>,
}

/// Why a session was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Machine-readable reason.
    pub kind: RefusalKind,
    /// Human-readable explanation.
    pub message: String,
}

/// Kinds of refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalKind {
    /// The peers speak different protocol versions.
    ProtocolVersion,
    /// The device is unknown and its enrollment token is wrong or missing.
    Enrollment,
    /// The device could not prove it holds its identity key.
    Identity,
    /// The request was malformed.
    BadRequest,
    /// The coordinator failed internally.
    Internal,
    /// An operator revoked this device; it is cut off until re-enrolled under a new identity.
    Revoked,
}

/// The agent's introduction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The device's identity public key.
    pub device_key: PublicKey,
    /// Signature by the identity key over this TLS session's exported keying material.
    pub proof: Vec<u8>,
    /// Enrollment token (needed on first contact only).
    pub enrollment_token: Option<String>,
    /// Agent software version.
    pub agent_version: String,
    /// Labels: `arch`, `accelerator`, `target`, and operator-defined ones.
    pub labels: BTreeMap<String, String>,
    /// Models and aliases the device follows.
    pub follows: Vec<Follow>,
    /// Current state.
    pub report: DeviceReport,
}

/// A model the device runs and the alias it tracks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Follow {
    /// The model.
    pub model: ModelName,
    /// The alias whose target the device should run.
    pub alias: AliasName,
}

/// Reply to an accepted `Hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The id the coordinator knows the device by.
    pub device_id: DeviceId,
    /// How often the agent should report when nothing happens, in seconds.
    pub heartbeat_secs: u32,
    /// Highest event sequence number already stored for this device.
    pub events_through: u64,
}

/// What the device should run for one model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// The model.
    pub model: ModelName,
    /// The alias that decided it.
    pub alias: AliasName,
    /// The release to run, as the publisher's signed envelope; `None` when the alias is unset.
    pub release: Option<DesiredRelease>,
    /// A release to stage beside `current` as the `candidate` without serving it (a shadow
    /// rollout wave); `None` removes any candidate.
    pub candidate: Option<DesiredRelease>,
    /// The trust metadata the releases are checked against, once the coordinator has a root.
    pub trust: Option<TrustBundle>,
}

/// The root chain and the current snapshot (see [`crate::trust`]), as signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustBundle {
    /// Every root, oldest first; a device walks from the one it trusts.
    pub roots: Vec<Vec<u8>>,
    /// The current snapshot.
    pub snapshot: Vec<u8>,
}

/// A release the device should run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredRelease {
    /// Its version (also inside the signed manifest, which is authoritative).
    pub version: Version,
    /// The signed envelope, verbatim as published.
    pub envelope: Vec<u8>,
}

/// A device's state, sent in `Hello` and whenever it changes (and as heartbeat).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceReport {
    /// Per followed model.
    pub models: Vec<ModelReport>,
    /// Events not yet acknowledged, oldest first.
    pub events: Vec<DeviceEvent>,
    /// Model metrics the application reported, cumulative per version (sent at heartbeats;
    /// at most [`MAX_REPORTED_METRICS`]).
    pub metrics: Vec<ReportedMetrics>,
}

/// Most metric entries one report carries.
pub const MAX_REPORTED_METRICS: usize = 16;

/// What the application on a device reported about one version of a model it serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportedMetrics {
    /// The model.
    pub model: ModelName,
    /// The version that served.
    pub version: Version,
    /// Requests, errors, latencies and custom metrics since that version started serving.
    pub metrics: crate::rollout::VersionMetrics,
}

/// What a device holds and does for one model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelReport {
    /// The model.
    pub model: ModelName,
    /// The version `current` points at.
    pub active: Option<Version>,
    /// The version `previous` points at.
    pub previous: Option<Version>,
    /// The version `candidate` points at (staged for shadow traffic, not serving).
    pub candidate: Option<Version>,
    /// What the updater is doing.
    pub phase: UpdatePhase,
    /// The most recent failure, until a later install succeeds.
    pub last_error: Option<InstallError>,
}

/// The update phase of one model on a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdatePhase {
    /// Running the desired version, or nothing to do.
    Idle,
    /// Downloading and verifying a version.
    Fetching(Version),
    /// Switched to a version, health check pending.
    Probation(Version),
    /// Will not install this version: it failed here or was rolled back by hand.
    Held {
        /// The refused version.
        version: Version,
        /// What was wrong, in words.
        reason: String,
    },
    /// Waiting to retry a failed install.
    Retrying {
        /// The version being retried.
        version: Version,
        /// Attempts so far.
        attempts: u32,
    },
}

/// A failed install, as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallError {
    /// The version that failed.
    pub version: Version,
    /// What kind of failure: it decides whether the agent tries again and how gates count it.
    pub kind: ErrorKind,
    /// Details (for health checks: the tail of stderr).
    pub message: String,
    /// Unix seconds, device clock.
    pub at: u64,
}

/// Categories of install failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The signature or manifest did not verify.
    Signature,
    /// Downloaded bytes did not match the signed hash or size.
    Integrity,
    /// The download failed (network, coordinator).
    Download,
    /// Writing to disk failed (full disk, permissions).
    Disk,
    /// No variant fits this device.
    IncompatibleHardware,
    /// The health check failed after the switch.
    HealthCheck,
}

impl ErrorKind {
    /// True for failures an agent retries on its own (the link, the coordinator, its disk):
    /// they say nothing of the release, only that the device has no outcome yet.
    pub fn is_retried(self) -> bool {
        matches!(self, ErrorKind::Download | ErrorKind::Disk)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::Signature => "signature",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Download => "download",
            ErrorKind::Disk => "disk",
            ErrorKind::IncompatibleHardware => "incompatible-hardware",
            ErrorKind::HealthCheck => "health-check",
        })
    }
}

/// Something that happened on a device, delivered at least once and stored once (by `seq`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEvent {
    /// Per-device sequence number, increasing.
    pub seq: u64,
    /// Unix seconds, device clock.
    pub at: u64,
    /// The model concerned.
    pub model: ModelName,
    /// What happened.
    pub kind: EventKind,
}

/// Kinds of device events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A version was installed and passed its health check.
    Installed {
        /// Version before.
        from: Option<Version>,
        /// Version now.
        to: Version,
    },
    /// An install failed before the switch; the device stayed where it was.
    InstallFailed(InstallError),
    /// The health check failed after a switch and the agent rolled back.
    HealthRollback {
        /// The failing version.
        from: Version,
        /// The version restored.
        to: Option<Version>,
        /// The failure.
        error: InstallError,
    },
    /// An operator flipped current ↔ previous on the device.
    LocalRollback {
        /// Version before.
        from: Version,
        /// Version restored.
        to: Version,
    },
}

/// The first frame on a fetch stream: what the agent wants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchRequest {
    /// The chunk index of an artifact (by whole-file hash). The answer is
    /// [`FetchResponse::Index`] followed by that many bytes of canonical index.
    Index {
        /// Whole-file hash.
        file: Digest,
    },
    /// Chunks of an artifact, each answered in order by a [`ChunkReply`] frame followed by its
    /// payload bytes.
    Chunks {
        /// Whole-file hash of the artifact the chunks belong to.
        file: Digest,
        /// The chunks, at most [`MAX_CHUNKS_PER_REQUEST`].
        wants: Vec<ChunkWant>,
    },
    /// Where else chunks of an artifact may be fetched (protocol 5): answered by
    /// [`FetchResponse::Locations`]. Sent only to a coordinator whose preamble says it speaks
    /// [`LOCATIONS_SINCE`] or later.
    Locations {
        /// Whole-file hash of the artifact.
        file: Digest,
        /// The chunks, at most [`MAX_CHUNKS_PER_REQUEST`].
        ordinals: Vec<u32>,
    },
}

/// The first protocol version that knows [`FetchRequest::Locations`].
pub const LOCATIONS_SINCE: u16 = 5;

/// Most chunks one fetch stream asks for.
pub const MAX_CHUNKS_PER_REQUEST: usize = 64;

/// What the coordinator buffers for sending to one device (its QUIC send window): enough for
/// a few maximum-size chunks. What it may send ahead of what the agent has read is bounded by
/// the agent's own flow-control window, which also bounds the agent's memory (4 MiB per
/// stream from this build's agents; earlier agents advertised this value).
pub const FETCH_STREAM_WINDOW: u32 = 8 * 1024 * 1024;
/// Largest chunk index a coordinator sends (bytes).
pub const MAX_INDEX_BYTES: u64 = 16 * 1024 * 1024;
/// Largest reference window an agent may name (bytes): bounds both sides' memory.
pub const MAX_WINDOW: u64 = 16 * 1024 * 1024;

/// One chunk an agent lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkWant {
    /// Position of the chunk in the artifact's index.
    pub ordinal: u32,
    /// A window of a version the device holds that the chunk may be encoded against; `None`
    /// asks for the chunk on its own.
    pub reference: Option<WindowRef>,
}

/// A byte range of an artifact the device holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WindowRef {
    /// Whole-file hash of the artifact.
    pub file: Digest,
    /// Where the window starts in that file, in bytes.
    pub offset: u64,
    /// Length, at most [`MAX_WINDOW`].
    pub len: u64,
    /// Where in the window the chunk's old bytes are estimated to start.
    pub at: u64,
}

/// The coordinator's first answer on a fetch stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchResponse {
    /// The canonical chunk index follows: `len` bytes.
    Index {
        /// Length of the index bytes.
        len: u64,
    },
    /// Chunk replies follow, one per want, in order.
    Chunks,
    /// Nothing follows.
    Error {
        /// Whether retrying can help (false: the artifact is not published here).
        permanent: bool,
        /// The coordinator's explanation.
        message: String,
    },
    /// Where the asked chunks' frames may also be fetched (nothing follows). Every address is
    /// untrusted: what comes from it is checked against the signed chunk index.
    Locations {
        /// Mirrors holding every chunk under its [`crate::mirror::frame_path`].
        mirrors: Vec<crate::mirror::MirrorBase>,
        /// Addresses good for one chunk each (pre-signed S3 requests), valid for a while.
        signed: Vec<SignedLocation>,
    },
}

/// One chunk's frame at an address of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedLocation {
    /// Which chunk.
    pub ordinal: u32,
    /// A complete `http(s)://` address, its signature in the query.
    pub url: String,
}

/// One chunk's answer: a frame, then `len` payload bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkReply {
    /// The chunk, encoded.
    Chunk {
        /// Which chunk.
        ordinal: u32,
        /// How it is encoded; decoding needs the requested window when
        /// [`Encoding::needs_reference`].
        encoding: Encoding,
        /// Payload length.
        len: u32,
    },
    /// The coordinator cannot serve this chunk (no payload follows).
    Unavailable {
        /// Which chunk.
        ordinal: u32,
        /// True when asking again cannot help (the chunk is damaged or gone, or the request
        /// names what is not stored); false for a passing failure (I/O, a crashed encoder).
        permanent: bool,
        /// The coordinator's explanation.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_trailing_bytes() {
        let msg = ToAgent::Ack { events_through: 42 };
        let frame = encode_frame(&msg).unwrap();
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode_body::<ToAgent>("control", &frame[4..]).unwrap(), msg);
        let mut long = frame[4..].to_vec();
        long.push(7);
        assert!(decode_body::<ToAgent>("control", &long).is_err());
    }

    #[test]
    fn oversized_frames_are_refused_before_allocation() {
        assert_eq!(
            frame_len(u32::MAX.to_be_bytes()),
            Err(WireError::FrameTooLarge(u32::MAX as usize))
        );
    }

    #[test]
    fn refusal_stays_variant_zero() {
        let refusal = ToAgent::Refused(Refusal {
            kind: RefusalKind::ProtocolVersion,
            message: "x".into(),
        });
        let frame = encode_frame(&refusal).unwrap();
        assert_eq!(frame[4], 0, "Refused must be encoded as variant 0 forever");
    }

    #[test]
    fn distributions_came_last_so_hello_and_report_keep_their_encoding() {
        let report = encode_frame(&ToCoordinator::Report(DeviceReport::default())).unwrap();
        assert_eq!(report[4], 1);
        let mut values = crate::rollout::Distribution::default();
        values.record(0.93);
        let message = ToCoordinator::Distributions(vec![ReportedDistribution {
            model: "m".parse().unwrap(),
            version: "1.0.0".parse().unwrap(),
            metric: "score".into(),
            values,
        }]);
        let frame = encode_frame(&message).unwrap();
        assert_eq!(frame[4], 2);
        assert_eq!(
            decode_body::<ToCoordinator>("report", &frame[4..]).unwrap(),
            message
        );
    }

    #[test]
    fn conditions_came_last_so_earlier_messages_keep_their_encoding() {
        let message = ToCoordinator::Conditions(Conditions {
            disk: Some(DiskSpace {
                free: 1 << 30,
                total: 8 << 30,
                held: 300 << 20,
            }),
            deferred: vec![Deferral {
                model: "m".parse().unwrap(),
                version: "2.0.0".parse().unwrap(),
                reason: DeferReason::Locked {
                    until: Some(1_800_000_000),
                    by: "surgery in progress".into(),
                },
                since: 1_799_999_000,
            }],
        });
        let frame = encode_frame(&message).unwrap();
        assert_eq!(frame[4], 3);
        assert_eq!(
            decode_body::<ToCoordinator>("report", &frame[4..]).unwrap(),
            message
        );
    }

    #[test]
    fn the_policy_came_last_so_earlier_messages_to_agents_keep_their_encoding() {
        let message = ToAgent::Policy(Policy {
            windows: vec!["Mon-Fri 01:00-05:00".parse().unwrap()],
            now: vec![("m".parse().unwrap(), "2.0.0".parse().unwrap())],
        });
        let frame = encode_frame(&message).unwrap();
        assert_eq!(frame[4], 4);
        assert_eq!(
            decode_body::<ToAgent>("push", &frame[4..]).unwrap(),
            message
        );
    }

    #[test]
    fn conditions_are_news_when_deferrals_change_or_the_disk_moves_a_percent() {
        let gib = 1u64 << 30;
        let at = |free: u64| Conditions {
            disk: Some(DiskSpace {
                free,
                total: 100 * gib,
                held: gib,
            }),
            deferred: vec![],
        };
        assert!(!at(50 * gib).is_news_after(&at(50 * gib)));
        assert!(
            !at(50 * gib + gib / 8).is_news_after(&at(50 * gib)),
            "an eighth of a percent"
        );
        assert!(
            at(50 * gib + gib / 4).is_news_after(&at(50 * gib)),
            "256 MiB at most"
        );
        let small = |free: u64| Conditions {
            disk: Some(DiskSpace {
                free,
                total: 24 << 20,
                held: 0,
            }),
            deferred: vec![],
        };
        assert!(
            small(20 << 20).is_news_after(&small(21 << 20)),
            "1 MiB at least"
        );
        assert!(!small(20 << 20).is_news_after(&small((20 << 20) + 1000)));
        assert!(at(50 * gib).is_news_after(&Conditions::default()));
        let mut deferred = at(50 * gib);
        deferred.deferred.push(Deferral {
            model: "m".parse().unwrap(),
            version: "1.0.0".parse().unwrap(),
            reason: DeferReason::Window { opens: None },
            since: 0,
        });
        assert!(deferred.is_news_after(&at(50 * gib)));
    }

    #[test]
    fn locations_came_last_so_earlier_requests_and_answers_keep_their_encoding() {
        let file = Digest::of(b"f");
        let index = encode_frame(&FetchRequest::Index { file }).unwrap();
        assert_eq!(index[4], 0);
        let chunks = encode_frame(&FetchRequest::Chunks {
            file,
            wants: vec![],
        })
        .unwrap();
        assert_eq!(chunks[4], 1);
        let locations = FetchRequest::Locations {
            file,
            ordinals: vec![0, 7],
        };
        let frame = encode_frame(&locations).unwrap();
        assert_eq!(frame[4], 2);
        assert_eq!(
            decode_body::<FetchRequest>("fetch", &frame[4..]).unwrap(),
            locations
        );
        let answer = FetchResponse::Locations {
            mirrors: vec![crate::mirror::MirrorBase::new("http://m/").unwrap()],
            signed: vec![SignedLocation {
                ordinal: 7,
                url: "http://s3/b/k?X-Amz-Signature=1".into(),
            }],
        };
        let frame = encode_frame(&answer).unwrap();
        assert_eq!(frame[4], 3, "after Index, Chunks and Error");
        assert_eq!(
            decode_body::<FetchResponse>("fetch", &frame[4..]).unwrap(),
            answer
        );
        // A hostile coordinator cannot slip in a mirror that is not an http(s) base.
        let mut forged = postcard::to_allocvec(&FetchResponse::Locations {
            mirrors: vec![],
            signed: vec![],
        })
        .unwrap();
        forged[1] = 1;
        forged.splice(2..2, [9u8].into_iter().chain(*b"file:///x"));
        assert!(decode_body::<FetchResponse>("fetch", &forged).is_err());
    }

    #[test]
    fn preamble_detects_strangers_and_versions() {
        let bytes = Preamble::CURRENT.to_bytes();
        assert_eq!(Preamble::parse(bytes).unwrap(), Preamble::CURRENT);
        assert_eq!(Preamble::parse(*b"GET / "), Err(WireError::BadMagic));
        let future = Preamble { version: 9 }.to_bytes();
        assert_eq!(Preamble::parse(future).unwrap().version, 9);
    }

    #[test]
    fn device_ids_derive_from_keys() {
        let key = crate::sign::SecretKey::from_seed(&[5; 32]).public();
        let id = DeviceId::of(&key);
        assert_eq!(id.as_str().len(), 20);
        assert_eq!(DeviceId::parse(id.as_str()), Some(id));
        assert_eq!(DeviceId::parse("../../etc"), None);
    }
}

/// Frame reading and writing over async byte streams. Behind the `tokio-io` feature: it needs
/// tokio's I/O traits but no runtime, and does no I/O of its own beyond the stream it is given.
#[cfg(feature = "tokio-io")]
pub mod io {
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::{Preamble, WireError, decode_body, encode_frame, frame_len};

    /// A failure reading or writing frames.
    #[derive(Debug, thiserror::Error)]
    pub enum FrameIoError {
        /// The stream failed.
        #[error("stream error: {0}")]
        Io(#[from] std::io::Error),
        /// The bytes are not valid protocol.
        #[error(transparent)]
        Wire(#[from] WireError),
    }

    /// Writes this build's preamble.
    pub async fn write_preamble<W: AsyncWrite + Unpin>(w: &mut W) -> Result<(), FrameIoError> {
        w.write_all(&Preamble::CURRENT.to_bytes()).await?;
        Ok(())
    }

    /// Reads the peer's preamble.
    pub async fn read_preamble<R: AsyncRead + Unpin>(r: &mut R) -> Result<Preamble, FrameIoError> {
        let mut bytes = [0u8; 6];
        r.read_exact(&mut bytes).await?;
        Ok(Preamble::parse(bytes)?)
    }

    /// Writes one frame.
    pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
        w: &mut W,
        message: &T,
    ) -> Result<(), FrameIoError> {
        w.write_all(&encode_frame(message)?).await?;
        Ok(())
    }

    /// Reads one frame; `Ok(None)` when the stream ended cleanly before a new frame.
    pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
        r: &mut R,
        what: &'static str,
    ) -> Result<Option<T>, FrameIoError> {
        FrameReader::default().next(r, what).await
    }

    /// Reads frames one after another and may be interrupted: what a [`FrameReader::next`]
    /// dropped before it finished (a `select!` branch that lost) had read stays here, and the
    /// next call goes on from it. A session can then wait on its stream and on other events in
    /// one loop, without a task and a channel per stream. Holds no buffer between frames.
    #[derive(Debug, Default)]
    pub struct FrameReader {
        prefix: [u8; 4],
        /// Bytes of the length prefix read so far.
        got: usize,
        /// The body being read, once the prefix is complete, and how much of it is filled.
        body: Option<(Vec<u8>, usize)>,
    }

    impl FrameReader {
        /// Reads the next frame; `Ok(None)` when the stream ended cleanly before a new frame.
        /// Cancel-safe when `r`'s `read` is (as tokio's and quinn's streams are).
        pub async fn next<R: AsyncRead + Unpin, T: DeserializeOwned>(
            &mut self,
            r: &mut R,
            what: &'static str,
        ) -> Result<Option<T>, FrameIoError> {
            let truncated = || std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
            while self.body.is_none() {
                let n = r.read(&mut self.prefix[self.got..]).await?;
                if n == 0 {
                    if self.got == 0 {
                        return Ok(None);
                    }
                    return Err(truncated().into());
                }
                self.got += n;
                if self.got == self.prefix.len() {
                    self.got = 0;
                    self.body = Some((vec![0u8; frame_len(self.prefix)?], 0));
                }
            }
            while let Some((body, filled)) = self.body.as_mut()
                && *filled < body.len()
            {
                let n = r.read(&mut body[*filled..]).await?;
                if n == 0 {
                    self.body = None;
                    return Err(truncated().into());
                }
                *filled += n;
            }
            let (body, _) = self.body.take().unwrap_or_default();
            Ok(Some(decode_body(what, &body)?))
        }
    }

    #[cfg(test)]
    mod tests {
        use std::pin::Pin;
        use std::task::{Context, Poll};

        use tokio::io::{AsyncRead, ReadBuf};

        use super::*;

        /// Hands out its bytes a few at a time, and nothing (pending) every other poll.
        struct Trickle {
            bytes: Vec<u8>,
            at: usize,
            pending: bool,
        }

        impl AsyncRead for Trickle {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                self.pending = !self.pending;
                if self.pending {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                let n = 3.min(buf.remaining()).min(self.bytes.len() - self.at);
                let at = self.at;
                buf.put_slice(&self.bytes[at..at + n]);
                self.at += n;
                Poll::Ready(Ok(()))
            }
        }

        #[test]
        fn frames_survive_reads_that_are_cut_off_at_every_step() {
            let messages: Vec<String> = (0..5).map(|i| "frame ".repeat(i * 3)).collect();
            let mut bytes = Vec::new();
            for m in &messages {
                bytes.extend(encode_frame(m).unwrap());
            }
            let mut stream = Trickle {
                bytes,
                at: 0,
                pending: false,
            };
            let mut reader = FrameReader::default();
            let mut got = Vec::new();
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            // Every pending poll drops the call, as a select! branch that lost would.
            loop {
                let mut call = Box::pin(reader.next::<_, String>(&mut stream, "test"));
                match call.as_mut().poll(&mut cx) {
                    Poll::Ready(Ok(Some(m))) => got.push(m),
                    Poll::Ready(Ok(None)) => break,
                    Poll::Ready(Err(e)) => panic!("{e}"),
                    Poll::Pending => {}
                }
            }
            assert_eq!(got, messages);
        }

        #[test]
        fn a_stream_cut_inside_a_frame_is_an_error_not_an_end() {
            let frame = encode_frame(&"a whole frame".to_owned()).unwrap();
            for cut in [2, 4, frame.len() - 1] {
                let mut stream = &frame[..cut];
                let read =
                    poll_to_end(FrameReader::default().next::<_, String>(&mut stream, "test"));
                assert!(
                    matches!(read, Err(FrameIoError::Io(_))),
                    "cut at {cut}: {read:?}"
                );
            }
        }

        fn poll_to_end<F: std::future::Future>(f: F) -> F::Output {
            let mut f = Box::pin(f);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            loop {
                if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                    return out;
                }
            }
        }
    }
}
