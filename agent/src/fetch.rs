//! Downloading and staging a version, chunk by chunk. The chunk index comes first and must
//! hash to the digest the signed manifest names; then [`crate::assemble`] plans the file
//! against the versions on the device, copies what they hold, and the missing chunks are asked
//! for in batches (as deltas against a window of an installed version where the plan has one).
//! Each received chunk is decoded on a blocking thread, checked and written in place. A chunk
//! that fails verification is asked for once more, whole; a second failure ends the attempt
//! and holds the version. Chunks wanted whole are first asked of the untrusted [`mirrors`]
//! (four at a time), each once: what they fail to deliver intact comes from the coordinator.
//!
//! [`mirrors`]: crate::mirrors A dropped link ends the attempt too, but keeps the staging
//! directory: the next attempt resumes at the next missing chunk. Only a file that hashes to
//! the signed value is promoted into the installed versions.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_shared::chunk::ChunkIndex;
use ferry_shared::delta::Encoding;
use ferry_shared::disk_need::human;
use ferry_shared::mirror::MirrorBase;
use ferry_shared::sign::Envelope;
use ferry_shared::variant_choice::{DeviceProfile, select_variant};
use ferry_shared::wire::io::{
    FrameIoError, read_frame, read_preamble, write_frame, write_preamble,
};
use ferry_shared::wire::{
    ChunkReply, ChunkWant, ErrorKind, FetchRequest, FetchResponse, InstallError, LOCATIONS_SINCE,
    MAX_CHUNKS_PER_REQUEST, MAX_INDEX_BYTES, SignedLocation,
};
use ferry_shared::{ModelName, Release, Variant};
use quinn::{Connection, RecvStream};

use crate::assemble::{AssembleError, Assembly, LocalSource};
use crate::fsutil::{fsync_dir, remove_tree, write_atomic};
use crate::mirrors::{self, MirrorError, Round, Source};
use crate::slots::SlotLayout;
use crate::state::TransferStats;
use crate::throttle::Throttle;
use crate::unpack::UnpackError;
use crate::updater::{Admitted, NOT_CONNECTED, Retry};

/// The name of the signed envelope kept beside each installed artifact.
pub const ENVELOPE_FILE: &str = "release.envelope";
/// The name of the chunk index kept beside each installed artifact.
pub const INDEX_FILE: &str = "chunks.idx";

/// What a download did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DownloadOutcome {
    /// True when the version was already on disk (e.g. returning to `previous`).
    pub already_installed: bool,
}

/// A failed download and whether trying again may help.
#[derive(Debug)]
pub struct DownloadFailure {
    /// What to report.
    pub error: InstallError,
    /// Whether to retry.
    pub retry: Retry,
}

/// What a download reaches the bytes through: the session (none while offline), the mirrors,
/// and the device's download cap.
pub struct Network<'a> {
    /// The coordinator's session.
    pub conn: Option<Connection>,
    /// Mirrors to try first.
    pub mirrors: &'a mirrors::Settings,
    /// The cap every received byte passes.
    pub throttle: &'a Throttle,
}

/// One attempt's context: what is staged, the cap its bytes pass, and how failures are
/// reported.
struct Attempt<'a> {
    target: &'a Admitted,
    now: u64,
    staging: PathBuf,
    throttle: &'a Throttle,
}

impl Attempt<'_> {
    fn fail(&self, kind: ErrorKind, message: String, retry: Retry) -> DownloadFailure {
        DownloadFailure {
            error: InstallError {
                version: self.target.version.clone(),
                kind,
                message,
                at: self.now,
            },
            retry,
        }
    }

    fn net(&self, e: impl std::fmt::Display) -> DownloadFailure {
        self.fail(ErrorKind::Download, e.to_string(), Retry::Later)
    }

    /// The attempt could not start: no connection.
    fn offline(&self) -> DownloadFailure {
        self.fail(ErrorKind::Download, NOT_CONNECTED.into(), Retry::Offline)
    }

    fn disk(&self, path: &Path, e: impl std::fmt::Display) -> DownloadFailure {
        self.fail(
            ErrorKind::Disk,
            format!("{}: {e}", path.display()),
            Retry::Later,
        )
    }

    /// Ends the attempt for good: the staged bytes cannot help a later one.
    fn abandon(&self, kind: ErrorKind, message: String) -> DownloadFailure {
        let _ = remove_tree(&self.staging);
        self.fail(kind, message, Retry::Never)
    }
}

/// Downloads `target` for `model` into the installed versions: a no-op when installed, else
/// fetches over the session (and from mirrors) within the cap, adding what moved to `stats`.
pub async fn download_version(
    network: Network<'_>,
    layout: &SlotLayout,
    model: &ModelName,
    target: &Admitted,
    profile: &DeviceProfile,
    stats: &mut TransferStats,
) -> Result<DownloadOutcome, DownloadFailure> {
    let started = Instant::now();
    let Network {
        conn,
        mirrors,
        throttle,
    } = network;
    let attempt = Attempt {
        target,
        now: crate::unix_now(),
        staging: layout.staging_dir(model, &target.version),
        throttle,
    };
    if already_installed(layout, model, target).map_err(|(dir, e)| attempt.disk(&dir, e))? {
        return Ok(DownloadOutcome {
            already_installed: true,
        });
    }
    preflight(layout, &attempt)?;
    let conn = conn.ok_or_else(|| attempt.offline())?;
    stats.attempts += 1;
    let mut round = Round::new(mirrors);
    let result = download(&conn, layout, model, profile, &attempt, stats, &mut round).await;
    stats.duration_ms += started.elapsed().as_millis() as u64;
    let path = conn.stats().path;
    tracing::info!(
        mtu = path.current_mtu,
        rtt_ms = path.rtt.as_millis() as u64,
        lost_packets = path.lost_packets,
        "the coordinator's path after the download"
    );
    result?;
    layout
        .promote(model, &target.version)
        .map_err(|e| attempt.fail(ErrorKind::Disk, e.to_string(), Retry::Later))?;
    Ok(DownloadOutcome {
        already_installed: false,
    })
}

async fn download(
    conn: &Connection,
    layout: &SlotLayout,
    model: &ModelName,
    profile: &DeviceProfile,
    attempt: &Attempt<'_>,
    stats: &mut TransferStats,
    round: &mut Round,
) -> Result<(), DownloadFailure> {
    let target = attempt.target;
    let staging = &attempt.staging;
    fs::create_dir_all(staging).map_err(|e| attempt.disk(staging, e))?;
    let envelope_path = staging.join(ENVELOPE_FILE);
    write_atomic(&envelope_path, &target.envelope).map_err(|e| attempt.disk(&envelope_path, e))?;

    let started = Instant::now();
    let index = chunk_index(conn, attempt, stats).await?;
    stats.stages.index_us += micros(started);
    let started = Instant::now();
    let sources = local_sources(layout, model, profile, &index);
    let file_path = staging.join(target.variant.file_name.as_str());
    let (size, own) = (target.variant.size, target.variant.hash);
    let (mut asm, opened, copies) = blocking(attempt, move || {
        let (mut asm, opened) = Assembly::open(&file_path, own, index, size, sources)?;
        let copies = asm.take_copies()?;
        Ok((asm, opened, copies))
    })
    .await?;
    tracing::info!(
        version = %target.version,
        chunks = asm.chunks_total(),
        resumed = opened.resumed,
        "assembling"
    );
    stats.chunks_total = asm.chunks_total();
    stats.resumed += opened.resumed;
    // The chunks held locally are copied on a blocking thread while the others come over the
    // network: on an update, copying most of a large file is as long as encoding and fetching
    // the changed chunks.
    let copying = blocking(attempt, move || {
        let copied = copies.run()?;
        Ok((copied, started.elapsed()))
    });
    let (fetched, copied) = tokio::join!(fetch_missing(conn, attempt, asm, stats, round), copying);
    // Both are over before either's failure ends the attempt: the copier writes into the
    // staging file.
    let (copied, took) = copied?;
    stats.stages.copy_us += as_micros(took);
    stats.bytes_reused_locally += copied.bytes;
    asm = fetched?;
    asm.record_copies(&copied);
    // What could not be copied is fetched whole.
    asm = fetch_missing(conn, attempt, asm, stats, round).await?;
    let (size, hash) = (target.variant.size, target.variant.hash);
    let (synced, asm) = blocking(attempt, move || {
        let started = Instant::now();
        asm.sync()?;
        Ok((started.elapsed(), asm))
    })
    .await?;
    stats.stages.fsync_us += as_micros(synced);
    let started = Instant::now();
    blocking(attempt, move || asm.verify(size, &hash)).await?;
    stats.stages.verify_us += micros(started);
    unpack(attempt).await?;
    fsync_dir(staging).map_err(|e| attempt.disk(staging, e))
}

/// Unpacks a directory artifact's verified archive in staging (nothing for a file).
async fn unpack(attempt: &Attempt<'_>) -> Result<(), DownloadFailure> {
    let (staging, variant) = (attempt.staging.clone(), attempt.target.variant.clone());
    let unpacked = tokio::task::spawn_blocking(move || {
        crate::unpack::unpack_staged(&staging, &variant, &[ENVELOPE_FILE, INDEX_FILE])
    })
    .await;
    match unpacked {
        Ok(Ok(())) => Ok(()),
        Ok(Err(UnpackError::Disk { path, source })) => Err(attempt.disk(&path, source)),
        Ok(Err(UnpackError::Refused(reason))) => Err(attempt.abandon(ErrorKind::Integrity, reason)),
        Err(e) => Err(attempt.fail(
            ErrorKind::Disk,
            format!("unpack task failed: {e}"),
            Retry::Later,
        )),
    }
}

/// Microseconds since `started`.
fn micros(started: Instant) -> u64 {
    as_micros(started.elapsed())
}

fn as_micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Fetches what the assembly still wants until it wants nothing: what the mirrors may carry
/// from them first, then the rest from the coordinator, batch after batch.
async fn fetch_missing(
    conn: &Connection,
    attempt: &Attempt<'_>,
    mut asm: Assembly,
    stats: &mut TransferStats,
    round: &mut Round,
) -> Result<Assembly, DownloadFailure> {
    let own = attempt.target.variant.hash;
    loop {
        let wants = asm.wants();
        if wants.is_empty() {
            return Ok(asm);
        }
        let (mirrored, direct): (Vec<ChunkWant>, Vec<ChunkWant>) =
            wants.into_iter().partition(|w| round.takes(w, &own));
        if !mirrored.is_empty() {
            // Each is tried once; what is still wanted after comes from the coordinator.
            asm = from_mirrors(conn, attempt, asm, &mirrored, stats, round).await?;
            continue;
        }
        for batch in direct.chunks(MAX_CHUNKS_PER_REQUEST) {
            asm = fetch_batch(conn, attempt, asm, batch, stats).await?;
        }
    }
}

/// Mirror requests in flight at once.
const MIRROR_REQUESTS: usize = 4;

/// Fetches `wants` from the round's mirrors, group by group (asking the coordinator where
/// each group is while it has something to say), [`MIRROR_REQUESTS`] at a time; each
/// arriving frame is checked and placed on a blocking thread. A chunk that does not arrive
/// intact stays wanted, and a source that failed is dropped; only a disk error ends the
/// attempt.
async fn from_mirrors(
    conn: &Connection,
    attempt: &Attempt<'_>,
    mut asm: Assembly,
    wants: &[ChunkWant],
    stats: &mut TransferStats,
    round: &mut Round,
) -> Result<Assembly, DownloadFailure> {
    let limit = asm.max_payload();
    for group in wants.chunks(MAX_CHUNKS_PER_REQUEST) {
        if round.wants_locations() {
            locate(conn, attempt, group, round).await;
        }
        let mut queue: VecDeque<(u32, ferry_shared::Digest)> = group
            .iter()
            .filter_map(|w| asm.chunk_hash(w.ordinal).map(|hash| (w.ordinal, hash)))
            .collect();
        for want in group {
            round.mark_tried(want.ordinal);
        }
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < MIRROR_REQUESTS
                && let Some((ordinal, hash)) = queue.pop_front()
            {
                let candidates = round.candidates(ordinal, &hash);
                if candidates.is_empty() {
                    continue;
                }
                let client = round.client();
                running.spawn_blocking(move || {
                    mirrors::fetch_first(&client, ordinal, candidates, limit)
                });
            }
            let waiting = Instant::now();
            let Some(joined) = running.join_next().await else {
                break;
            };
            stats.stages.network_us += micros(waiting);
            let fetched = joined.map_err(|e| {
                attempt.fail(
                    ErrorKind::Download,
                    format!("mirror request task failed: {e}"),
                    Retry::Later,
                )
            })?;
            for (source, e) in &fetched.failures {
                mirror_failed(round, stats, *source, e);
            }
            let Some((source, frame)) = fetched.frame else {
                continue;
            };
            attempt.throttle.pace(frame.len()).await;
            let bytes = frame.len() as u64;
            let want = ChunkWant {
                ordinal: fetched.ordinal,
                reference: None,
            };
            let started = Instant::now();
            let (back, placed) = tokio::task::spawn_blocking(move || {
                let placed = asm
                    .decode(&want, Encoding::Zstd, &frame, Vec::new())
                    .and_then(|decoded| asm.place(want.ordinal, &decoded));
                (asm, placed)
            })
            .await
            .map_err(|e| {
                attempt.fail(
                    ErrorKind::Disk,
                    format!("decoder task failed: {e}"),
                    Retry::Later,
                )
            })?;
            asm = back;
            stats.stages.decode_us += micros(started);
            match placed {
                Ok(()) => {
                    stats.mirrored.chunks += 1;
                    stats.mirrored.bytes += bytes;
                }
                Err(AssembleError::Disk { path, source }) => {
                    return Err(attempt.disk(&path, source));
                }
                Err(e) => {
                    mirror_failed(round, stats, source, &MirrorError::Wrong(e.to_string()));
                }
            }
        }
    }
    Ok(asm)
}

/// Counts a mirror's failure and drops the mirror when the failure is its fault.
fn mirror_failed(round: &mut Round, stats: &mut TransferStats, source: Source, e: &MirrorError) {
    stats.mirrored.failures += 1;
    if e.drops_source() && round.drop_source(source, e) {
        tracing::warn!(
            "{} dropped for the rest of this download: {e}",
            round.describe(source)
        );
    } else {
        tracing::debug!("{}: {e}", round.describe(source));
    }
}

/// How long the coordinator has to say where a group of chunks is.
const LOCATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the coordinator where the chunks of `group` are; a coordinator that cannot say (an
/// older one, a refusal, a failure) is not asked again during the attempt.
async fn locate(conn: &Connection, attempt: &Attempt<'_>, group: &[ChunkWant], round: &mut Round) {
    let request = FetchRequest::Locations {
        file: attempt.target.variant.hash,
        ordinals: group.iter().map(|w| w.ordinal).collect(),
    };
    match tokio::time::timeout(LOCATE_TIMEOUT, ask_locations(conn, &request)).await {
        Ok(Ok(Some((mirrors, signed)))) => round.told(mirrors, signed),
        Ok(Ok(None)) => round.stop_asking(),
        Ok(Err(e)) => {
            tracing::debug!("asking where chunks are: {e}");
            round.stop_asking();
        }
        Err(_) => {
            tracing::debug!("the coordinator did not say where chunks are within 10 s");
            round.stop_asking();
        }
    }
}

/// The coordinator's mirrors and pre-signed addresses for `request`; `None` when it does not
/// know the request (an older protocol) or refuses it.
async fn ask_locations(
    conn: &Connection,
    request: &FetchRequest,
) -> Result<Option<(Vec<MirrorBase>, Vec<SignedLocation>)>, FrameIoError> {
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| FrameIoError::Io(e.into()))?;
    write_preamble(&mut send).await?;
    if read_preamble(&mut recv).await?.version < LOCATIONS_SINCE {
        let _ = send.finish();
        return Ok(None);
    }
    write_frame(&mut send, request).await?;
    let _ = send.finish();
    match read_frame::<_, FetchResponse>(&mut recv, "locations").await? {
        Some(FetchResponse::Locations { mirrors, signed }) => Ok(Some((mirrors, signed))),
        Some(FetchResponse::Error { message, .. }) => {
            tracing::debug!("the coordinator would not say where chunks are: {message}");
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Refuses to start a download that cannot fit on the disk, with what it lacks: a device
/// must never fill its disk so far that it can no longer switch or roll back.
fn preflight(layout: &SlotLayout, attempt: &Attempt<'_>) -> Result<(), DownloadFailure> {
    match disk_shortfall(layout, attempt.target, &attempt.staging) {
        None => Ok(()),
        Some(why) => Err(attempt.fail(ErrorKind::Disk, why, Retry::Later)),
    }
}

/// Why `target` does not fit on the disk beside what is staged of it in `staging` ("not
/// enough disk space …"); `None` when it fits, or when the free space cannot be told.
pub(crate) fn disk_shortfall(
    layout: &SlotLayout,
    target: &Admitted,
    staging: &Path,
) -> Option<String> {
    let variant = &target.variant;
    let free = match crate::space::free_bytes(layout.root()) {
        Ok(free) => free,
        Err(e) => {
            tracing::warn!(
                "cannot tell the free space of {}: {e}",
                layout.root().display()
            );
            return None;
        }
    };
    let staged = crate::space::allocated(&staging.join(variant.file_name.as_str()));
    ferry_shared::disk_need::shortfall(variant, staged, free)?;
    Some(format!(
        "not enough disk space for {}: need {}, have {} free in {}",
        target.version,
        human(ferry_shared::disk_need::install_need(variant, staged)),
        human(free),
        layout.root().display()
    ))
}

/// Frees unfinished downloads of other versions, then tells whether `target` is installed
/// intact (a return to `previous`); an installed copy that no longer matches is removed, to
/// be installed afresh. An error names the directory that could not be removed.
pub(crate) fn already_installed(
    layout: &SlotLayout,
    model: &ModelName,
    target: &Admitted,
) -> Result<bool, (PathBuf, std::io::Error)> {
    // Whatever else was half downloaded is not wanted any more, even when the target is
    // already installed: free it first.
    drop_downloads_except(layout, model, Some(&target.version));
    if !layout.is_installed(model, &target.version) {
        return Ok(false);
    }
    let dir = layout.version_dir(model, &target.version);
    let file = layout.artifact_path(model, &target.version, target.variant.file_name.as_str());
    let tree = crate::unpack::unpacked_dir(&dir, &target.variant);
    match fs::metadata(&file) {
        Ok(m) if m.len() == target.variant.size && tree.is_none_or(|t| t.is_dir()) => Ok(true),
        _ => remove_tree(&dir).map(|()| false).map_err(|e| (dir, e)),
    }
}

/// Removes unfinished downloads of `model` other than of `keep` (all of them with `None`):
/// the target moved on.
pub fn drop_downloads_except(
    layout: &SlotLayout,
    model: &ModelName,
    keep: Option<&ferry_shared::Version>,
) {
    let dir = layout.root().join("staging").join(model.as_str());
    let keep = keep.map(|v| layout.staging_dir(model, v));
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        if Some(entry.path()) != keep
            && let Err(e) = remove_tree(&entry.path())
        {
            tracing::warn!("cannot remove {}: {e}", entry.path().display());
        }
    }
}

/// Runs assembly work on a blocking thread, mapping its errors to failures: disk trouble is
/// retryable; a whole-file mismatch after every chunk checked out is not.
async fn blocking<T: Send + 'static>(
    attempt: &Attempt<'_>,
    f: impl FnOnce() -> Result<T, AssembleError> + Send + 'static,
) -> Result<T, DownloadFailure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(AssembleError::Disk { path, source })) => Err(attempt.disk(&path, source)),
        Ok(Err(e)) => Err(attempt.abandon(ErrorKind::Integrity, e.to_string())),
        Err(e) => Err(attempt.fail(
            ErrorKind::Disk,
            format!("assembly task failed: {e}"),
            Retry::Later,
        )),
    }
}

/// The target's chunk index: from the staging directory when an earlier attempt fetched it,
/// else from the coordinator. Either way it must hash to the signed digest.
async fn chunk_index(
    conn: &Connection,
    attempt: &Attempt<'_>,
    stats: &mut TransferStats,
) -> Result<ChunkIndex, DownloadFailure> {
    let variant = &attempt.target.variant;
    let path = attempt.staging.join(INDEX_FILE);
    if let Ok(bytes) = fs::read(&path)
        && let Ok(index) = ChunkIndex::from_canonical_bytes(&bytes, variant.size)
        && index.digest() == variant.chunks
    {
        return Ok(index);
    }
    let mut recv = open_request(conn, attempt, &FetchRequest::Index { file: variant.hash }).await?;
    let len = match response(&mut recv, attempt).await? {
        FetchResponse::Index { len } if len <= MAX_INDEX_BYTES => len,
        other => {
            return Err(attempt.net(format!(
                "unexpected answer to a chunk index request: {other:?}"
            )));
        }
    };
    let mut bytes = vec![0u8; len as usize];
    recv.read_exact(&mut bytes)
        .await
        .map_err(|e| attempt.net(format!("chunk index: {e}")))?;
    stats.bytes_on_wire += len;
    let index = ChunkIndex::from_canonical_bytes(&bytes, variant.size)
        .ok()
        .filter(|i| i.digest() == variant.chunks)
        .ok_or_else(|| {
            attempt.abandon(
                ErrorKind::Integrity,
                "the coordinator's chunk index does not match the signed manifest".into(),
            )
        })?;
    write_atomic(&path, &bytes).map_err(|e| attempt.disk(&path, e))?;
    Ok(index)
}

/// Opens a fetch stream and sends `request`.
async fn open_request(
    conn: &Connection,
    attempt: &Attempt<'_>,
    request: &FetchRequest,
) -> Result<RecvStream, DownloadFailure> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| attempt.net(e))?;
    write_preamble(&mut send)
        .await
        .map_err(|e| attempt.net(e))?;
    write_frame(&mut send, request)
        .await
        .map_err(|e| attempt.net(e))?;
    let _ = send.finish();
    read_preamble(&mut recv).await.map_err(|e| attempt.net(e))?;
    Ok(recv)
}

/// The coordinator's first answer; a refusal ends the attempt (for good when permanent).
async fn response(
    recv: &mut RecvStream,
    attempt: &Attempt<'_>,
) -> Result<FetchResponse, DownloadFailure> {
    let response: FetchResponse = read_frame(recv, "fetch response")
        .await
        .map_err(|e| attempt.net(e))?
        .ok_or_else(|| attempt.net("the coordinator closed the download"))?;
    match response {
        FetchResponse::Error {
            permanent: true,
            message,
        } => Err(attempt.abandon(
            ErrorKind::Download,
            format!("the coordinator refused the download for good: {message}"),
        )),
        FetchResponse::Error { message, .. } => {
            Err(attempt.net(format!("the coordinator refused the download: {message}")))
        }
        other => Ok(other),
    }
}

/// Asks for `batch` on one stream and applies each reply as it arrives: a chunk is decoded
/// and written on a blocking thread while the next one is read off the connection.
async fn fetch_batch(
    conn: &Connection,
    attempt: &Attempt<'_>,
    asm: Assembly,
    batch: &[ChunkWant],
    stats: &mut TransferStats,
) -> Result<Assembly, DownloadFailure> {
    let request = FetchRequest::Chunks {
        file: attempt.target.variant.hash,
        wants: batch.to_vec(),
    };
    let max_payload = asm.max_payload();
    let mut slot = Slot::Idle(Box::new(asm));
    let waiting = Instant::now();
    let opened = async {
        let mut recv = open_request(conn, attempt, &request).await?;
        match response(&mut recv, attempt).await? {
            FetchResponse::Chunks => Ok(recv),
            other => Err(attempt.net(format!("unexpected answer to a chunk request: {other:?}"))),
        }
    };
    let mut recv = opened.await?;
    stats.stages.network_us += micros(waiting);
    // The buffers of the chunk before the one being applied, for the next read and decode.
    let mut spare = Spare::default();
    for want in batch {
        let waiting = Instant::now();
        let received = receive(&mut recv, want, max_payload, &mut spare.payload, attempt).await;
        stats.stages.network_us += micros(waiting);
        let mut asm = slot.settle(attempt, stats, &mut spare).await?;
        let (encoding, payload) = match received? {
            Received::Chunk { encoding, payload } => {
                stats.bytes_on_wire += payload.len() as u64;
                stats.chunks_fetched += 1;
                (encoding, payload)
            }
            Received::Oversized(why) => {
                // The rest of the stream cannot be trusted either.
                return chunk_failed(asm, want, attempt, stats, why);
            }
            Received::Unavailable(why) => {
                slot = Slot::Idle(Box::new(chunk_failed(asm, want, attempt, stats, why)?));
                continue;
            }
        };
        let want = *want;
        let buffer = std::mem::take(&mut spare.decoded);
        slot = Slot::Applying(tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let decoded = asm.decode(&want, encoding, &payload, buffer);
            let decoding = started.elapsed();
            let started = Instant::now();
            let (result, decoded) = match decoded {
                Ok(bytes) => (asm.place(want.ordinal, &bytes), bytes),
                Err(e) => (Err(e), Vec::new()),
            };
            Applied {
                asm,
                want,
                encoding,
                spare: Spare { payload, decoded },
                result,
                decoding,
                writing: started.elapsed(),
            }
        }));
    }
    slot.settle(attempt, stats, &mut spare).await
}

/// A chunk's reply as read off its fetch stream.
enum Received {
    /// Its bytes, as encoded.
    Chunk {
        encoding: Encoding,
        payload: Vec<u8>,
    },
    /// The coordinator cannot serve it (why).
    Unavailable(String),
    /// Announced over the payload bound (why).
    Oversized(String),
}

/// Reads the reply to `want` into `buffer` (taken; its allocation is reused). Errors are those
/// that end the attempt: a dropped stream, a reply out of order, a chunk unavailable for now.
async fn receive(
    recv: &mut RecvStream,
    want: &ChunkWant,
    max_payload: usize,
    buffer: &mut Vec<u8>,
    attempt: &Attempt<'_>,
) -> Result<Received, DownloadFailure> {
    let reply: ChunkReply = read_frame(recv, "chunk reply")
        .await
        .map_err(|e: FrameIoError| attempt.net(format!("chunk stream: {e}")))?
        .ok_or_else(|| attempt.net("the chunk stream ended early"))?;
    match reply {
        ChunkReply::Chunk {
            ordinal,
            encoding,
            len,
        } if ordinal == want.ordinal && (len as usize) <= max_payload => {
            let mut payload = std::mem::take(buffer);
            read_payload(recv, len as usize, &mut payload, attempt.throttle)
                .await
                .map_err(|e| attempt.net(format!("chunk {ordinal}: {e}")))?;
            Ok(Received::Chunk { encoding, payload })
        }
        ChunkReply::Chunk { ordinal, len, .. } if ordinal == want.ordinal => {
            Ok(Received::Oversized(format!(
                "a {len}-byte payload, over the {max_payload}-byte bound"
            )))
        }
        ChunkReply::Unavailable {
            ordinal,
            permanent,
            message,
        } if ordinal == want.ordinal => {
            if want.reference.is_none() && !permanent {
                return Err(
                    attempt.net(format!("chunk {ordinal} is unavailable for now: {message}"))
                );
            }
            Ok(Received::Unavailable(message))
        }
        other => Err(attempt.net(format!(
            "the coordinator answered chunk {} with {other:?}",
            want.ordinal
        ))),
    }
}

/// Reads the next `len` bytes of `recv` into `payload` (cleared first; its allocation is
/// reused), copied out of QUIC's received pieces as they come (reading into a slice would
/// first have to zero the slice, a pass over every byte of the download for nothing), each
/// piece paced by `throttle`.
async fn read_payload(
    recv: &mut RecvStream,
    len: usize,
    payload: &mut Vec<u8>,
    throttle: &Throttle,
) -> Result<(), quinn::ReadExactError> {
    payload.clear();
    payload.reserve_exact(len);
    while payload.len() < len {
        match recv.read_chunk(len - payload.len(), true).await? {
            Some(piece) => {
                throttle.pace(piece.bytes.len()).await;
                payload.extend_from_slice(&piece.bytes);
            }
            None => return Err(quinn::ReadExactError::FinishedEarly(payload.len())),
        }
    }
    Ok(())
}

/// The assembly, either at hand or applying a chunk on a blocking thread.
enum Slot {
    Idle(Box<Assembly>),
    Applying(tokio::task::JoinHandle<Applied>),
}

/// A chunk's buffers once it is applied, reused for the next chunk: fresh ones would be fresh
/// mappings (a chunk is larger than the allocator's mapping threshold), each page faulted in.
#[derive(Default)]
struct Spare {
    /// The received bytes, whose allocation the next read reuses.
    payload: Vec<u8>,
    /// The decoded bytes, whose allocation the next decode reuses.
    decoded: Vec<u8>,
}

/// What applying one chunk did, with the assembly handed back.
struct Applied {
    asm: Assembly,
    want: ChunkWant,
    encoding: Encoding,
    spare: Spare,
    result: Result<(), AssembleError>,
    decoding: std::time::Duration,
    writing: std::time::Duration,
}

impl Slot {
    /// The assembly once the chunk being applied (if any) is done, its outcome recorded: a
    /// chunk that failed is asked for again whole (see [`chunk_failed`]); a disk error ends
    /// the attempt.
    async fn settle(
        self,
        attempt: &Attempt<'_>,
        stats: &mut TransferStats,
        spare: &mut Spare,
    ) -> Result<Assembly, DownloadFailure> {
        let applying = match self {
            Slot::Idle(asm) => return Ok(*asm),
            Slot::Applying(applying) => applying,
        };
        let applied = applying.await.map_err(|e| {
            attempt.fail(
                ErrorKind::Disk,
                format!("decoder task failed: {e}"),
                Retry::Later,
            )
        })?;
        stats.stages.decode_us += as_micros(applied.decoding);
        stats.stages.write_us += as_micros(applied.writing);
        *spare = applied.spare;
        let (asm, want, encoding) = (applied.asm, applied.want, applied.encoding);
        match applied.result {
            Ok(()) => {
                tracing::debug!(ordinal = want.ordinal, ?encoding, "chunk staged");
                *stats.encodings.entry(encoding.to_string()).or_default() += 1;
                Ok(asm)
            }
            Err(AssembleError::Disk { path, source }) => Err(attempt.disk(&path, source)),
            Err(AssembleError::WindowNotReady { .. }) => {
                let mut asm = asm;
                asm.fetch_whole(want.ordinal);
                Ok(asm)
            }
            Err(e) => chunk_failed(asm, &want, attempt, stats, e.to_string()),
        }
    }
}

/// A chunk failed (unavailable, unverifiable or oversized): it is asked for once more,
/// whole; a second failure fails the version for good.
fn chunk_failed(
    mut asm: Assembly,
    want: &ChunkWant,
    attempt: &Attempt<'_>,
    stats: &mut TransferStats,
    why: String,
) -> Result<Assembly, DownloadFailure> {
    if asm.retry_whole(want.ordinal) {
        tracing::warn!(
            ordinal = want.ordinal,
            "chunk failed ({why}); fetching it whole"
        );
        stats.chunks_refetched += 1;
        return Ok(asm);
    }
    Err(attempt.abandon(
        ErrorKind::Integrity,
        format!("chunk {} cannot be obtained intact: {why}", want.ordinal),
    ))
}

/// The variant of an installed version this device holds, from its stored envelope: the one
/// whose file is there with its size. What the device would choose today decides only between
/// builds that look alike on disk (its hardware facts may have changed since it installed:
/// a driver upgrade must not make it forget what it runs).
pub fn installed_variant(
    layout: &SlotLayout,
    model: &ModelName,
    version: &ferry_shared::Version,
    profile: &DeviceProfile,
) -> Option<Variant> {
    let dir = layout.version_dir(model, version);
    let bytes = fs::read(dir.join(ENVELOPE_FILE)).ok()?;
    let envelope = Envelope::from_bytes(&bytes).ok()?;
    let release = Release::from_canonical_bytes(&envelope.payload).ok()?;
    let present: Vec<&Variant> = release
        .variants
        .iter()
        .filter(|v| fs::metadata(dir.join(v.file_name.as_str())).is_ok_and(|m| m.len() == v.size))
        .collect();
    match present.as_slice() {
        [] => None,
        [only] => Some((*only).clone()),
        several => select_variant(&release, profile)
            .filter(|chosen| several.contains(chosen))
            .or(several.first().copied())
            .cloned(),
    }
}

/// The device's `current` and `previous` versions as plan sources, with their chunk indexes
/// (stored beside them; recomputed from the file, with the target's bounds, when absent).
pub(crate) fn local_sources(
    layout: &SlotLayout,
    model: &ModelName,
    profile: &DeviceProfile,
    target: &ChunkIndex,
) -> Vec<LocalSource> {
    let Ok(slots) = layout.slots(model) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for version in [slots.current, slots.previous].into_iter().flatten() {
        let Some(variant) = installed_variant(layout, model, &version, profile) else {
            continue;
        };
        let dir = layout.version_dir(model, &version);
        let path = dir.join(variant.file_name.as_str());
        let index_path = dir.join(INDEX_FILE);
        let stored = fs::read(&index_path)
            .ok()
            .and_then(|b| ChunkIndex::from_canonical_bytes(&b, variant.size).ok())
            .filter(|i| i.digest() == variant.chunks);
        let index = match stored {
            Some(index) => index,
            None => match fs::File::open(&path)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    ChunkIndex::build(std::io::BufReader::new(f), target.params)
                        .map_err(|e| e.to_string())
                }) {
                Ok(cut) if cut.hash == variant.hash => {
                    // Cut with the bounds it was published with: keep it, so the next update
                    // does not read the whole file again.
                    if cut.index.digest() == variant.chunks
                        && let Err(e) = write_atomic(&index_path, &cut.index.to_canonical_bytes())
                    {
                        tracing::warn!("cannot keep {}: {e}", index_path.display());
                    }
                    cut.index
                }
                _ => continue, // damaged or gone: not a source
            },
        };
        out.push(LocalSource {
            file: variant.hash,
            path,
            index,
        });
    }
    out
}
