//! Serving artifacts to agents chunk by chunk: a chunk a device lacks goes out either as the
//! stored zstd frame, or encoded against a window of a version the device holds (the smallest
//! candidate of [`ferry_shared::delta::encode_best_in_window`]). Windows are read back from
//! the chunk store, so memory is bounded by the window, never the artifact; encodes run on a
//! bounded pool of blocking threads and land in the [`DeltaCache`]. When an alias moves, the
//! cache is warmed for the versions the fleet actually runs, most common first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_shared::Digest;
use ferry_shared::chunk::{ChunkIndex, ChunkRef};
use ferry_shared::delta::{
    Encoded, Encoding, Sketch, SuffixCache, encode_delta_in_window, related_aligned, related_moved,
};
use ferry_shared::tensors::{Layout, segments};
use ferry_shared::wire::{ChunkWant, MAX_WINDOW, WindowRef, decodes};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::agents::sketches::SketchCache;
use crate::store::Store;
use crate::store::chunks::{ChunkStore, ChunkStoreError};
use crate::store::deltas::{Cached, DeltaCache, DeltaKey};

/// The chunk-serving side of the coordinator.
pub struct Transfer {
    /// Chunk bytes.
    pub chunks: ChunkStore,
    /// Encoded chunks.
    pub deltas: DeltaCache,
    level: i32,
    workers: Arc<Semaphore>,
    /// One lock per delta being encoded, so concurrent askers (a device and the warmer, or two
    /// devices) wait for one encode instead of repeating it.
    in_flight: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Suffix indexes of the windows last encoded against (for covers), one per worker:
    /// consecutive chunks of an update share a window. Dropped once serving goes quiet (see
    /// [`Transfer::trim_if_idle`]).
    suffixes: SuffixCache<(Digest, u64, u64)>,
    /// Sketches of the chunks windows are cut from, to skip the windows of chunks that share
    /// nothing with them. Dropped with the suffix indexes.
    sketches: SketchCache,
    /// What [`Transfer::trim_if_idle`] measures quiet by: when a chunk was last asked for
    /// (milliseconds after `epoch`), and whether the caches were emptied since.
    epoch: Instant,
    last_asked_ms: AtomicU64,
    trimmed: AtomicBool,
    /// Deltas encoded (cache misses) since start.
    pub encoded: AtomicU64,
    /// Of those, chunks found to share nothing with their window (sent stored, no window read
    /// or screened).
    pub unrelated: AtomicU64,
    /// First-install chunks encoded by the warmer since start (see
    /// [`crate::agents::first_install`]).
    pub first_install_encoded: AtomicU64,
}

/// Why one chunk cannot be served (the agent is told; other chunks go on).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The request is out of bounds or names something not stored.
    #[error("{0}")]
    BadRequest(String),
    /// The store failed or holds damaged bytes.
    #[error(transparent)]
    Store(#[from] ChunkStoreError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] crate::store::StoreError),
    /// An encode task died.
    #[error("encoder task failed: {0}")]
    Task(String),
}

impl ServeError {
    /// True when asking again cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ServeError::BadRequest(_)
                | ServeError::Store(ChunkStoreError::Missing(_) | ChunkStoreError::Damaged { .. })
        )
    }
}

impl Transfer {
    /// Serving from `chunks`, caching in `deltas`, encoding at zstd `level` on at most
    /// `workers` threads (0: one per core).
    pub fn new(chunks: ChunkStore, deltas: DeltaCache, level: i32, workers: usize) -> Self {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            workers
        };
        Self {
            chunks,
            deltas,
            level,
            workers: Arc::new(Semaphore::new(workers)),
            in_flight: Mutex::default(),
            suffixes: SuffixCache::new(workers),
            sketches: SketchCache::new(SKETCH_BUDGET),
            epoch: Instant::now(),
            last_asked_ms: AtomicU64::new(0),
            trimmed: AtomicBool::new(true),
            encoded: AtomicU64::new(0),
            unrelated: AtomicU64::new(0),
            first_install_encoded: AtomicU64::new(0),
        }
    }

    /// Chunk `want.ordinal` of the artifact `file` (whose index is `target`), encoded for a
    /// device holding `want.reference`. A delta not in the cache is encoded only when
    /// `may_encode` grants it (a device's budget); otherwise the stored chunk goes. A delta
    /// the device's protocol version cannot decode is replaced by the stored chunk.
    pub async fn chunk(
        self: &Arc<Self>,
        store: &Store,
        file: Digest,
        target: &ChunkIndex,
        want: ChunkWant,
        protocol: u16,
        may_encode: impl FnOnce() -> bool + Send + 'static,
    ) -> Result<Encoded, ServeError> {
        self.asked();
        let (offset, chunk) = target
            .spans()
            .nth(want.ordinal as usize)
            .map(|(offset, chunk)| (offset, *chunk))
            .ok_or_else(|| ServeError::BadRequest(format!("no chunk {}", want.ordinal)))?;
        let Some(window) = want.reference else {
            let this = self.clone();
            return blocking(move || this.plain(&chunk)).await;
        };
        if window.file == file {
            // A first install: never encoded while the device waits.
            return self.own_window_chunk(chunk, window, protocol).await;
        }
        let source = store.blob_index(&window.file)?.ok_or_else(|| {
            ServeError::BadRequest(format!("reference artifact {} is not stored", window.file))
        })?;
        check_window(&window, source.total_len())?;
        let key = DeltaKey {
            chunk: chunk.hash,
            window,
        };
        let name = key.digest();
        let lock = self.in_flight_lock(name);
        let guard = lock.clone().lock_owned().await;
        // Model files: the tensor layouts of both versions, for the tensor delta.
        let layouts = match store.blob_layout(&file)? {
            Some(new) => Some((new, store.blob_layout(&window.file)?)),
            None => None,
        };
        let job = Job {
            key,
            chunk,
            offset,
            layouts,
            source,
        };
        let result = self.encode_once(job, may_encode).await;
        drop(guard);
        self.release_in_flight(name, lock);
        // An encode may outlast the quiet that trims the caches it fills.
        self.asked();
        match result {
            Ok(encoded) if !decodes(protocol, encoded.encoding) => {
                let this = self.clone();
                blocking(move || this.plain(&chunk)).await
            }
            result => result,
        }
    }

    fn in_flight_lock(&self, name: Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name).or_default().clone()
    }

    /// Lets go of the lock for delta `name`.
    fn release_in_flight(&self, name: Digest, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        // Two holders: the map and this caller; nobody else waits for it.
        if Arc::strong_count(&lock) <= 2 {
            map.remove(&name);
        }
    }

    /// Notes that a chunk is being served now.
    fn asked(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_asked_ms.store(now, Ordering::Relaxed);
        self.trimmed.store(false, Ordering::Relaxed);
    }

    /// Once no chunk has been asked for in `quiet` and no delta is being encoded, drops what
    /// serving keeps from one chunk to the next (the suffix indexes, 32 MiB per 8 MiB window;
    /// the sketches; the chunk store's kept buffers) and gives freed memory back to the system
    /// (which walks the heap: call it off the async workers). True when it did; it does once
    /// per quiet spell. Kept between chunks rather than dropped whenever nothing is in flight:
    /// a device's download goes quiet between every two chunk requests, and the sketches of
    /// the source chunks under the next windows were rebuilt each time.
    pub fn trim_if_idle(&self, quiet: Duration) -> bool {
        if self.trimmed.load(Ordering::Relaxed) {
            return false;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let quiet_ms = u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(self.last_asked_ms.load(Ordering::Relaxed)) < quiet_ms {
            return false;
        }
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            return false;
        }
        self.trimmed.store(true, Ordering::Relaxed);
        self.suffixes.clear();
        self.sketches.clear();
        self.chunks.release_scratch();
        ferry_shared::allocator::release_freed_memory();
        true
    }

    async fn encode_once(
        self: &Arc<Self>,
        job: Job,
        may_encode: impl FnOnce() -> bool,
    ) -> Result<Encoded, ServeError> {
        let this = self.clone();
        let key = job.key;
        let chunk = job.chunk;
        if let Some(hit) = blocking(move || this.cached(&key, &chunk)).await? {
            return Ok(hit);
        }
        if !may_encode() {
            let this = self.clone();
            return blocking(move || this.plain(&job.chunk)).await;
        }
        let permit = self.encode_permit().await?;
        let this = self.clone();
        blocking(move || {
            let _permit = permit;
            this.encode(&job)
        })
        .await
    }

    /// One of the encode workers, held while encoding.
    pub(crate) async fn encode_permit(&self) -> Result<OwnedSemaphorePermit, ServeError> {
        self.workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ServeError::Task(e.to_string()))
    }

    /// The zstd level deltas are encoded at.
    pub(crate) fn level(&self) -> i32 {
        self.level
    }

    /// The stored chunk, as it is.
    pub(crate) fn plain(&self, chunk: &ChunkRef) -> Result<Encoded, ServeError> {
        Ok(Encoded {
            encoding: Encoding::Zstd,
            payload: self.chunks.read_frame(&chunk.hash, chunk.len)?,
        })
    }

    fn encode(&self, job: &Job) -> Result<Encoded, ServeError> {
        let (key, chunk) = (&job.key, &job.chunk);
        // Another request may have filled the cache while this one waited for a worker.
        if let Some(hit) = self.cached(key, chunk)? {
            return Ok(hit);
        }
        let stored = self.chunks.read(&chunk.hash, chunk.len)?;
        let plain = Encoded {
            encoding: Encoding::Zstd,
            payload: stored.compressed,
        };
        // Without a tensor layout, a chunk that shares nothing with its window goes stored,
        // its window unread. (With one, the tensor delta pairs old and new tensors whatever
        // their bytes.)
        if job.layouts.is_none() && !self.shares_with_window(&stored.bytes, job)? {
            self.unrelated.fetch_add(1, Ordering::Relaxed);
            return Ok(self.cache_counted(key, None, plain));
        }
        let window = read_window(&self.chunks, &job.source, key.window.offset, key.window.len)?;
        // Model files: the chunk cut along the tensor layout, paired with the old tensors.
        let segments = job.layouts.as_ref().map(|(new, old)| {
            segments(
                new,
                job.offset,
                chunk.len,
                old.as_ref().map(|l| (l, key.window.offset, key.window.len)),
            )
        });
        // `check_window` bounds `at` by the window length, itself at most MAX_WINDOW.
        let at = usize::try_from(key.window.at).unwrap_or(usize::MAX);
        // Covers search the window's suffixes, sorted once per window (the screen asks only
        // when it tries covers).
        let w = &key.window;
        let suffixes = || {
            self.suffixes
                .get_or_build((w.file, w.offset, w.len), &window)
        };
        let delta = encode_delta_in_window(
            &stored.bytes,
            &window,
            at,
            segments.as_deref(),
            Some(&suffixes),
            self.level,
        );
        Ok(self.cache_counted(key, delta, plain))
    }

    /// What the cache holds for `key` (chunk `chunk`), the stored chunk read when that is it.
    pub(crate) fn cached(
        &self,
        key: &DeltaKey,
        chunk: &ChunkRef,
    ) -> Result<Option<Encoded>, ServeError> {
        match self.deltas.get(key) {
            Some(Cached::Encoded(encoded)) => Ok(Some(encoded)),
            Some(Cached::Stored) => self.plain(chunk).map(Some),
            None => Ok(None),
        }
    }

    /// [`Transfer::cache_answer`], counted as encoded.
    fn cache_counted(&self, key: &DeltaKey, candidate: Option<Encoded>, plain: Encoded) -> Encoded {
        let answer = self.cache_answer(key, candidate, plain, "delta");
        self.encoded.fetch_add(1, Ordering::Relaxed);
        answer
    }

    /// Caches the answer for `key` and hands it back: `candidate` when it is smaller than the
    /// stored chunk's frame `plain`, else `plain`, cached as a marker rather than a copy. A
    /// cache that cannot be written is logged (naming `what` was encoded): the answer stands.
    pub(crate) fn cache_answer(
        &self,
        key: &DeltaKey,
        candidate: Option<Encoded>,
        plain: Encoded,
        what: &str,
    ) -> Encoded {
        let (answer, cached) = match candidate {
            Some(c) if c.payload.len() < plain.payload.len() => {
                let cached = self.deltas.put(key, &c);
                (c, cached)
            }
            _ => (plain, self.deltas.put_stored(key)),
        };
        if let Err(e) = cached {
            warn!("cannot cache a {what}: {e}");
        }
        answer
    }

    /// Whether `new` (the chunk of `job`) has anything in common with its window, asked of
    /// the window's bytes aligned with it (a chunk edited in place, the common case of a
    /// sparse update, is answered there) and then of the sketches of the source chunks under
    /// the window (the whole chunks, so a little more than the window: a chunk related only
    /// to bytes just outside it is screened, and the screen finds nothing).
    fn shares_with_window(&self, new: &[u8], job: &Job) -> Result<bool, ServeError> {
        let w = &job.key.window;
        let aligned_len = (new.len() as u64).min(w.len - w.at);
        let aligned = read_window(&self.chunks, &job.source, w.offset + w.at, aligned_len)?;
        if related_aligned(new, &aligned) {
            return Ok(true);
        }
        let end = w.offset + w.len;
        let mut sketches = Vec::new();
        for (start, c) in job.source.spans() {
            if start + u64::from(c.len) <= w.offset {
                continue;
            }
            if start >= end {
                break;
            }
            sketches.push(self.sketches.get_or_build(c.hash, || {
                Ok::<_, ServeError>(Sketch::of(&self.chunks.read(&c.hash, c.len)?.bytes))
            })?);
        }
        let sketches: Vec<&Sketch> = sketches.iter().map(|s| &**s).collect();
        Ok(related_moved(new, &sketches))
    }
}

/// Memory for sketches: 16 MiB, those of about 500 MiB of source chunks.
const SKETCH_BUDGET: usize = 16 * 1024 * 1024;

/// One windowed chunk to encode.
struct Job {
    key: DeltaKey,
    chunk: ChunkRef,
    /// Where the chunk starts in its artifact.
    offset: u64,
    /// The tensor layouts of the artifact and of the one the window is cut from, for models.
    layouts: Option<(Layout, Option<Layout>)>,
    /// The chunk index of the artifact the window is cut from.
    source: ChunkIndex,
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServeError> + Send + 'static,
) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServeError::Task(e.to_string()))?
}

/// Refuses windows that are empty, too large, outside the source or with `at` outside them.
fn check_window(window: &WindowRef, source_len: u64) -> Result<(), ServeError> {
    let end = window.offset.checked_add(window.len);
    if window.len == 0
        || window.len > MAX_WINDOW
        || end.is_none_or(|end| end > source_len)
        || window.at > window.len
    {
        return Err(ServeError::BadRequest(format!(
            "window {}+{} (at {}) is outside the {source_len}-byte reference or over {MAX_WINDOW} bytes",
            window.offset, window.len, window.at
        )));
    }
    Ok(())
}

/// Bytes `[offset, offset + len)` of the artifact `index` describes, read from the chunk store
/// one chunk at a time.
pub fn read_window(
    chunks: &ChunkStore,
    index: &ChunkIndex,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, ChunkStoreError> {
    let end = offset.saturating_add(len);
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    for (start, c) in index.spans() {
        let stop = start + u64::from(c.len);
        if stop <= offset {
            continue;
        }
        if start >= end {
            break;
        }
        let bytes = chunks.read(&c.hash, c.len)?.bytes;
        let from = offset.saturating_sub(start) as usize;
        let to = (end.min(stop) - start) as usize;
        out.extend_from_slice(&bytes[from..to]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::chunk::ChunkParams;

    #[test]
    fn windows_are_read_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let data: Vec<u8> = (0..50_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let params = ChunkParams {
            min: 64,
            avg: 256,
            max: 1024,
        };
        let ingest = chunks.ingest();
        let cut = ChunkIndex::build_visiting(data.as_slice(), params, |c, b| {
            ingest.put(&c.hash, b).map_err(|e| e.to_string())
        })
        .unwrap();
        ingest.finish().unwrap();
        for (offset, len) in [(0u64, 10u64), (300, 5000), (49_990, 10), (0, 50_000)] {
            let got = read_window(&chunks, &cut.index, offset, len).unwrap();
            assert_eq!(got, &data[offset as usize..(offset + len) as usize]);
        }
    }

    /// A transfer over a store holding `old` (1 MiB of random bytes), one encode worker.
    struct Fixture {
        _dir: tempfile::TempDir,
        transfer: Transfer,
        old: Vec<u8>,
        old_cut: ferry_shared::chunk::Chunked,
    }

    const PARAMS: ChunkParams = ChunkParams {
        min: 64 * 1024,
        avg: 256 * 1024,
        max: 1024 * 1024,
    };

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let chunks = ChunkStore::new(dir.path().join("chunks"), 3).unwrap();
            let deltas = DeltaCache::new(dir.path().join("deltas")).unwrap();
            let transfer = Transfer::new(chunks, deltas, 3, 1);
            let old = ferry_shared::testutil::noise(3, 1024 * 1024);
            let old_cut = cut(&transfer, &old);
            Self {
                _dir: dir,
                transfer,
                old,
                old_cut,
            }
        }

        /// The job for the first chunk of `new` that differs from `old`, against all of `old`.
        fn job_for_changed(&self, new: &[u8]) -> Job {
            let new_cut = cut(&self.transfer, new);
            let (offset, chunk) = new_cut
                .index
                .spans()
                .find(|(_, c)| !self.old_cut.index.chunks.contains(c))
                .map(|(o, c)| (o, *c))
                .unwrap();
            let window = WindowRef {
                file: self.old_cut.hash,
                offset: 0,
                len: self.old.len() as u64,
                at: offset.min(self.old.len() as u64),
            };
            Job {
                key: DeltaKey {
                    chunk: chunk.hash,
                    window,
                },
                chunk,
                offset,
                layouts: None,
                source: self.old_cut.index.clone(),
            }
        }
    }

    /// Cuts `data` into the transfer's chunk store.
    fn cut(transfer: &Transfer, data: &[u8]) -> ferry_shared::chunk::Chunked {
        let ingest = transfer.chunks.ingest();
        let cut = ChunkIndex::build_visiting(data, PARAMS, |c, b| {
            ingest.put(&c.hash, b).map_err(|e| e.to_string())
        })
        .unwrap();
        ingest.finish().unwrap();
        cut
    }

    /// A 1 GiB delta update whose chunks were all edited in place spent most of its time
    /// sorting the suffixes of every window, for covers the screen then did not even try:
    /// the index was built before the screen ran.
    #[test]
    fn no_suffix_sort_is_spent_on_a_chunk_edited_in_place() {
        use ferry_shared::testutil::{noise, rebuilt};
        let f = Fixture::new();
        let encode_changed = |new: &[u8]| f.transfer.encode(&f.job_for_changed(new)).unwrap();
        let mut in_place = f.old.clone();
        for b in &mut in_place[300_000..364_000] {
            *b = b.wrapping_add(5) % 16;
        }
        let delta = encode_changed(&in_place);
        assert!(delta.encoding.needs_reference(), "{:?}", delta.encoding);
        assert_eq!(f.transfer.suffixes.held(), 0);
        // Rebuilt code, where covers pay: the index is built (once, and kept).
        let moved = rebuilt(&f.old, 100, &noise(4, 64));
        assert_eq!(encode_changed(&moved).encoding, Encoding::Covers);
        assert_eq!(f.transfer.suffixes.held(), 1);
    }

    /// A 512 MiB delta update of new random bytes took 19 s where installing them whole took
    /// 2.6 s: each chunk read its 8 MiB window, was screened against it and lost to the stored
    /// chunk, whose copy was then written to the delta cache.
    /// The sketches (and suffix indexes, and kept read buffers) were dropped whenever no delta
    /// was in flight, which a device's download is between every two chunks: the sketches of
    /// the source chunks under the next windows were rebuilt chunk after chunk. They now stay
    /// until serving has been quiet for a while, and go then, once.
    #[test]
    fn sketches_outlive_the_gap_between_chunks_and_go_once_serving_is_quiet() {
        let f = Fixture::new();
        let new = ferry_shared::testutil::noise(5, 1024 * 1024);
        let job = f.job_for_changed(&new);
        f.transfer.asked();
        f.transfer.encode(&job).unwrap();
        let held = f.transfer.sketches.bytes();
        assert!(held > 0);
        // Between two chunks: nothing in flight, but not quiet for long.
        assert!(!f.transfer.trim_if_idle(Duration::from_secs(3600)));
        assert_eq!(f.transfer.sketches.bytes(), held);
        // A delta being encoded holds them however long it takes.
        let lock = f.transfer.in_flight_lock(job.key.digest());
        assert!(!f.transfer.trim_if_idle(Duration::ZERO));
        f.transfer.release_in_flight(job.key.digest(), lock);
        // Quiet: dropped, once per quiet spell.
        assert!(f.transfer.trim_if_idle(Duration::ZERO));
        assert_eq!(f.transfer.sketches.bytes(), 0);
        assert!(!f.transfer.trim_if_idle(Duration::ZERO));
        f.transfer.asked();
        assert!(f.transfer.trim_if_idle(Duration::ZERO));
    }

    #[test]
    fn a_chunk_unrelated_to_its_window_goes_stored_without_a_screen() {
        let f = Fixture::new();
        let new = ferry_shared::testutil::noise(5, 1024 * 1024);
        let job = f.job_for_changed(&new);
        let encoded = f.transfer.encode(&job).unwrap();
        assert_eq!(encoded.encoding, Encoding::Zstd);
        assert_eq!(encoded, f.transfer.plain(&job.chunk).unwrap());
        assert_eq!(f.transfer.unrelated.load(Ordering::Relaxed), 1);
        assert_eq!(f.transfer.encoded.load(Ordering::Relaxed), 1);
        // Cached as "the stored chunk", which a second asker is served from.
        assert_eq!(
            f.transfer.deltas.get(&job.key),
            Some(crate::store::deltas::Cached::Stored)
        );
        assert_eq!(f.transfer.encode(&job).unwrap(), encoded);
        assert_eq!(f.transfer.encoded.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn only_failures_that_asking_again_cannot_fix_are_permanent() {
        let hash = Digest::of(b"c");
        assert!(ServeError::BadRequest("no chunk 9".into()).is_permanent());
        assert!(ServeError::Store(ChunkStoreError::Missing(hash)).is_permanent());
        assert!(
            ServeError::Store(ChunkStoreError::Damaged {
                hash,
                reason: "bad".into()
            })
            .is_permanent()
        );
        assert!(!ServeError::Task("panicked".into()).is_permanent());
        assert!(
            !ServeError::Store(ChunkStoreError::Io {
                path: "x".into(),
                source: std::io::Error::other("EIO"),
            })
            .is_permanent()
        );
    }

    #[test]
    fn hostile_windows_are_refused() {
        let ok = WindowRef {
            file: Digest::of(b"f"),
            offset: 10,
            len: 100,
            at: 100,
        };
        assert!(check_window(&ok, 110).is_ok());
        for bad in [
            WindowRef { len: 0, ..ok },
            WindowRef { at: 101, ..ok },
            WindowRef {
                offset: u64::MAX,
                ..ok
            },
            WindowRef {
                len: MAX_WINDOW + 1,
                offset: 0,
                ..ok
            },
        ] {
            assert!(check_window(&bad, 1 << 30).is_err(), "{bad:?}");
        }
        assert!(check_window(&ok, 109).is_err());
    }
}
