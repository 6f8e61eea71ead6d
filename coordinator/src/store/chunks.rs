//! The content-addressed chunk store: `chunks/<2 hex>/<64 hex>.zst`, each file the zstd
//! compression (with a frame checksum) of one chunk whose BLAKE3 is its name. Every release
//! shares it, so a chunk is stored once however many artifacts contain it.
//!
//! Writes go to `tmp/`, are fsynced and renamed into place; the directories an ingest touched
//! are fsynced before the ingest reports success, so a chunk the database mentions is durable.
//! Reads decode in one call, refusing a frame that runs past the chunk's length, and check
//! length and hash: a damaged file is an error, never bytes sent to a device.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ferry_shared::Digest;
use ferry_shared::delta::{Encoding, Limits, decode_in_window_reusing};

/// Chunk bytes on disk.
#[derive(Clone, Debug)]
pub struct ChunkStore {
    root: PathBuf,
    level: i32,
    /// Buffers of chunks decoded only to be checked (see [`ChunkStore::read_frame`]).
    scratch: Arc<Buffers>,
    /// Buffers of stored frames, back from QUIC once sent (see [`ChunkStore::recycle`]).
    frames: Arc<Buffers>,
}

/// Buffers kept from one read to the next, up to [`Buffers::BUDGET`] bytes of them. A chunk
/// is larger than the allocator's mapping threshold, so a fresh buffer per read is a fresh
/// mapping whose every page faults in, and is unmapped again when dropped: serving a 1 GiB
/// download read 850 chunks, each into two such buffers (its frame and its checked bytes).
#[derive(Debug, Default)]
struct Buffers(Mutex<Vec<Vec<u8>>>);

impl Buffers {
    /// What one pool keeps at most, in allocated bytes: a few default chunks (1 MiB on
    /// average), so that each read of a download and of its read-ahead finds one.
    const BUDGET: usize = 8 * 1024 * 1024;

    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    /// Keeps `buffer` for a later read, unless that would keep over the budget.
    fn give(&self, buffer: Vec<u8>) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let held: usize = kept.iter().map(Vec::capacity).sum();
        if held + buffer.capacity() <= Self::BUDGET {
            kept.push(buffer);
        }
    }

    fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// A frame's buffer on its way out through QUIC, which holds it until the peer has
/// acknowledged every byte: dropped, it goes back to the pool it came from.
struct Recycled {
    buffer: Vec<u8>,
    pool: Arc<Buffers>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buffer));
    }
}

/// Chunk store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkStoreError {
    /// Disk I/O failed.
    #[error("chunk store I/O at {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The chunk is not stored.
    #[error("chunk {0} is not stored")]
    Missing(Digest),
    /// The stored file does not decode to the chunk it is named for.
    #[error("stored chunk {hash} is damaged: {reason}")]
    Damaged {
        /// The chunk.
        hash: Digest,
        /// What is wrong.
        reason: String,
    },
}

/// A chunk read back and checked.
#[derive(Debug)]
pub struct StoredChunk {
    /// The stored zstd frame, sendable as it is.
    pub compressed: Vec<u8>,
    /// The chunk's bytes.
    pub bytes: Vec<u8>,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ChunkStoreError + '_ {
    move |source| ChunkStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl ChunkStore {
    /// A store under `root` compressing at zstd `level`; clears leftovers of interrupted writes.
    pub fn new(root: PathBuf, level: i32) -> Result<Self, ChunkStoreError> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            root,
            level,
            scratch: Arc::default(),
            frames: Arc::default(),
        })
    }

    /// Frees the buffers kept between reads (once chunk serving is quiet, see
    /// [`crate::agents::transfer::Transfer::trim_if_idle`]).
    pub fn release_scratch(&self) {
        self.scratch.clear();
        self.frames.clear();
    }

    /// `payload` (a frame or any other bytes to send) as bytes QUIC can hold without a copy;
    /// its buffer serves a later read once QUIC lets go of it.
    pub fn recycle(&self, payload: Vec<u8>) -> bytes::Bytes {
        bytes::Bytes::from_owner(Recycled {
            buffer: payload,
            pool: self.frames.clone(),
        })
    }

    /// Where chunk `hash` lives (only the store knows chunks are files).
    pub(super) fn path(&self, hash: &Digest) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(format!("{hex}.zst"))
    }

    /// Where the bytes so far of a resumable upload of artifact `hash` are kept (see
    /// [`super::blobs::Spool::resume`]).
    pub fn upload_path(&self, hash: &Digest) -> PathBuf {
        self.root
            .join(UPLOADS_DIR)
            .join(format!("{}.part", hash.to_hex()))
    }

    /// A fresh temporary path under the store (same file system, so renames are atomic).
    pub fn temp_path(&self, label: &str) -> Result<PathBuf, ChunkStoreError> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| ChunkStoreError::Io {
            path: self.root.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        Ok(self
            .root
            .join("tmp")
            .join(format!("{label}.{}", hex::encode(nonce))))
    }

    /// Starts a batch of writes whose directories are fsynced together by [`Ingest::finish`].
    pub fn ingest(&self) -> Ingest<'_> {
        Ingest {
            store: self,
            written: Mutex::default(),
        }
    }

    /// Reads chunk `hash` of `len` bytes and checks it.
    pub fn read(&self, hash: &Digest, len: u32) -> Result<StoredChunk, ChunkStoreError> {
        let compressed = self.read_file(hash)?;
        let bytes = decode_checked(&compressed, hash, len, Vec::new())?;
        Ok(StoredChunk { compressed, bytes })
    }

    /// Reads chunk `hash` of `len` bytes and checks it, keeping only the stored frame (to
    /// send it as it is): the bytes decode into a buffer kept for the next read.
    pub fn read_frame(&self, hash: &Digest, len: u32) -> Result<Vec<u8>, ChunkStoreError> {
        let compressed = self.read_file(hash)?;
        let bytes = decode_checked(&compressed, hash, len, self.scratch.take())?;
        self.scratch.give(bytes);
        Ok(compressed)
    }

    /// The size of chunk `hash`'s stored frame, without reading it.
    pub fn frame_len(&self, hash: &Digest) -> Result<u64, ChunkStoreError> {
        let path = self.path(hash);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ChunkStoreError::Missing(*hash)),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// The stored frame of chunk `hash`, read into a kept buffer when there is one.
    fn read_file(&self, hash: &Digest) -> Result<Vec<u8>, ChunkStoreError> {
        let path = self.path(hash);
        let mut buffer = self.frames.take();
        buffer.clear();
        let read = File::open(&path).and_then(|mut file| {
            let len = file.metadata()?.len();
            buffer.reserve_exact(usize::try_from(len).unwrap_or_default());
            file.read_to_end(&mut buffer)
        });
        match read {
            Ok(_) => Ok(buffer),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ChunkStoreError::Missing(*hash)),
            Err(e) => Err(io_at(&path)(e)),
        }
    }
}

/// Decodes the stored frame of chunk `hash` into `buffer`'s allocation and checks that the
/// bytes are `len` long and hash to `hash`. One call ([`decode_in_window_reusing`]): zstd
/// writes straight into the buffer, with no window buffer of its own (a streaming decoder
/// would allocate one as large as the chunk, and copy every byte through it), and stops past
/// `len`.
fn decode_checked(
    compressed: &[u8],
    hash: &Digest,
    len: u32,
    buffer: Vec<u8>,
) -> Result<Vec<u8>, ChunkStoreError> {
    let damaged = |reason: String| ChunkStoreError::Damaged {
        hash: *hash,
        reason,
    };
    let len = len as usize;
    let limits = Limits {
        max_chunk: len,
        max_reference: 0,
    };
    let bytes = decode_in_window_reusing(Encoding::Zstd, compressed, None, len, &limits, buffer)
        .map_err(|e| damaged(e.to_string()))?;
    let actual = Digest::of(&bytes);
    if actual != *hash {
        return Err(damaged(format!("decodes to bytes hashing to {actual}")));
    }
    Ok(bytes)
}

/// A stored chunk file, as garbage collection sees it.
#[derive(Clone, Copy, Debug)]
pub struct ChunkFile {
    /// The chunk.
    pub hash: Digest,
    /// Its file's size.
    pub size: u64,
    /// When its file was last written (Unix seconds).
    pub modified: u64,
}

/// The files among `entries` named `<hash><suffix>`, with their metadata; others are left be.
fn named_by_hash(
    entries: fs::ReadDir,
    suffix: &str,
) -> Result<Vec<(Digest, fs::Metadata)>, ChunkStoreError> {
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(hash) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|h| h.parse::<Digest>().ok())
        else {
            continue;
        };
        out.push((hash, entry.metadata().map_err(io_at(&entry.path()))?));
    }
    Ok(out)
}

/// When a file was last written (Unix seconds; 0 when unknown).
fn modified_secs(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// The directory of resumable uploads' parts under the store's root.
pub const UPLOADS_DIR: &str = "uploads";

/// The stored part of an unfinished resumable upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadPart {
    /// The artifact being uploaded.
    pub hash: Digest,
    /// Bytes received.
    pub size: u64,
    /// When it last grew (Unix seconds).
    pub modified: u64,
}

impl ChunkStore {
    /// The parts of unfinished resumable uploads.
    pub fn upload_parts(&self) -> Result<Vec<UploadPart>, ChunkStoreError> {
        let dir = self.root.join(UPLOADS_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&dir)(e)),
        };
        Ok(named_by_hash(entries, ".part")?
            .into_iter()
            .map(|(hash, meta)| UploadPart {
                hash,
                size: meta.len(),
                modified: modified_secs(&meta),
            })
            .collect())
    }

    /// Removes the part of the upload of `hash` (absent is no error).
    pub fn remove_upload_part(&self, hash: &Digest) -> Result<(), ChunkStoreError> {
        let path = self.upload_path(hash);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_at(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Every chunk file (files not named like chunks are left alone).
    pub fn list(&self) -> Result<Vec<ChunkFile>, ChunkStoreError> {
        let mut out = Vec::new();
        for dir in fs::read_dir(&self.root)
            .map_err(io_at(&self.root))?
            .flatten()
        {
            let name = dir.file_name();
            if name == "tmp" || name.len() != 2 || !dir.path().is_dir() {
                continue;
            }
            let path = dir.path();
            let entries = fs::read_dir(&path).map_err(io_at(&path))?;
            out.extend(
                named_by_hash(entries, ".zst")?
                    .into_iter()
                    .map(|(hash, meta)| ChunkFile {
                        hash,
                        size: meta.len(),
                        modified: modified_secs(&meta),
                    }),
            );
        }
        Ok(out)
    }

    /// Deletes these chunks' files (absent ones are no error) and makes it durable; returns
    /// how many were deleted.
    pub fn remove<'a>(
        &self,
        hashes: impl IntoIterator<Item = &'a Digest>,
    ) -> Result<usize, ChunkStoreError> {
        let mut dirs = BTreeSet::new();
        let mut removed = 0;
        for hash in hashes {
            let path = self.path(hash);
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed += 1;
                    if let Some(dir) = path.parent() {
                        dirs.insert(dir.to_owned());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
        for dir in &dirs {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_at(dir))?;
        }
        Ok(removed)
    }
}

/// The level a chunk that [`looks_incompressible`] is stored at: it still finds what little
/// there is to find, at a small part of the store level's cost.
const INCOMPRESSIBLE_LEVEL: i32 = 1;

/// How much of each sample zstd must save for a chunk to be compressed at the store's level.
const SAMPLE_GAIN_PERCENT: usize = 3;

/// Bytes in each of a chunk's three samples.
const SAMPLE_LEN: usize = 16 * 1024;

/// True when three samples of `bytes` (start, middle, end) each compress by less than
/// [`SAMPLE_GAIN_PERCENT`] at zstd's fastest level: encrypted or already-compressed data,
/// which the store's level would spend most of a publish's time on to save nothing. Chunks
/// under four samples are always compressed at the store's level.
fn looks_incompressible(bytes: &[u8]) -> bool {
    if bytes.len() < 4 * SAMPLE_LEN {
        return false;
    }
    let starts = [0, bytes.len() / 2, bytes.len() - SAMPLE_LEN];
    starts.iter().all(|&at| {
        let sample = &bytes[at..at + SAMPLE_LEN];
        zstd::bulk::compress(sample, 1)
            .is_ok_and(|c| c.len() * 100 > sample.len() * (100 - SAMPLE_GAIN_PERCENT))
    })
}

/// A batch of chunk writes. [`Ingest::put`] may run on several threads at once;
/// [`Ingest::pipelined`] runs them.
pub struct Ingest<'a> {
    store: &'a ChunkStore,
    written: Mutex<Written>,
}

/// What a batch wrote, for [`Ingest::finish`].
#[derive(Default)]
struct Written {
    /// Chunk files written under `tmp/`, by hash, with their final path: renamed into place
    /// once their bytes are durable.
    pending: HashMap<Digest, (PathBuf, PathBuf)>,
    /// Compressed bytes of the pending files.
    new_bytes: u64,
}

impl Ingest<'_> {
    /// Stores `bytes` (which hash to `hash`) unless the chunk is already there: compressed,
    /// written to a temporary file whose writeback starts at once, and put in place by
    /// [`Ingest::finish`] (the chunk cannot be read before). A chunk file is never in place
    /// before its bytes are durable, so a crash cannot leave a torn chunk that later uploads
    /// would take as stored; and no upload waits on an fsync per chunk (858 of them took a
    /// second of a 1 GiB publish).
    pub fn put(&self, hash: &Digest, bytes: &[u8]) -> Result<(), ChunkStoreError> {
        let path = self.store.path(hash);
        if path.exists() || self.lock_written().pending.contains_key(hash) {
            return Ok(());
        }
        let level = if looks_incompressible(bytes) {
            INCOMPRESSIBLE_LEVEL
        } else {
            self.store.level
        };
        let compressed = {
            let mut encoder =
                zstd::Encoder::new(Vec::new(), level).map_err(io_at(&self.store.root))?;
            encoder
                .include_checksum(true)
                .map_err(io_at(&self.store.root))?;
            encoder.write_all(bytes).map_err(io_at(&self.store.root))?;
            encoder.finish().map_err(io_at(&self.store.root))?
        };
        let tmp = self.store.temp_path(&hash.short())?;
        let result = (|| {
            let mut file = File::create(&tmp).map_err(io_at(&tmp))?;
            file.write_all(&compressed).map_err(io_at(&tmp))?;
            ferry_shared::writeback::start_writeback(&file, 0, compressed.len() as u64);
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        let mut written = self.lock_written();
        match written.pending.insert(*hash, (tmp, path)) {
            // Two threads stored the same chunk at once: one file is enough.
            Some((twin, _)) => {
                let _ = fs::remove_file(twin);
            }
            None => written.new_bytes += compressed.len() as u64,
        }
        Ok(())
    }

    fn lock_written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `cut` on this thread and stores each chunk it hands over on `workers` threads
    /// beside it: compressing is most of a publish's work, and cutting and hashing keep only
    /// part of a core busy. A chunk handed over twice is stored once. At most two chunks per
    /// worker wait between them, so memory stays bounded by a few chunks. The first failed
    /// store ends the batch: `cut`'s hand-over returns an error from then on, and the store's
    /// error is returned.
    pub fn pipelined<R>(
        &self,
        workers: usize,
        cut: impl FnOnce(&mut dyn FnMut(&Digest, &[u8]) -> Result<(), String>) -> R,
    ) -> Result<R, ChunkStoreError> {
        let workers = workers.max(1);
        let (hand, queue) = std::sync::mpsc::sync_channel::<(Digest, Vec<u8>)>(workers * 2);
        let queue = Mutex::new(queue);
        let failed: Mutex<Option<ChunkStoreError>> = Mutex::new(None);
        let has_failed = || {
            failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(ToString::to_string)
        };
        let result = std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    // Every worker drains the queue to its end, failed or not, so the cutting
                    // thread never blocks on a full queue nobody reads.
                    loop {
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok((hash, bytes)) = job else {
                            break;
                        };
                        if has_failed().is_none()
                            && let Err(e) = self.put(&hash, &bytes)
                        {
                            failed
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .get_or_insert(e);
                        }
                    }
                });
            }
            let hand = hand;
            let mut handed = HashSet::new();
            let result = cut(&mut |hash: &Digest, bytes: &[u8]| {
                if let Some(e) = has_failed() {
                    return Err(e);
                }
                if handed.insert(*hash) {
                    hand.send((*hash, bytes.to_vec()))
                        .map_err(|_| "the chunk writers stopped".to_string())?;
                }
                Ok(())
            });
            drop(hand);
            result
        });
        match failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
            Some(e) => Err(e),
            None => Ok(result),
        }
    }

    /// Puts the batch's chunks in place: each file's bytes made durable (their writeback
    /// started when written), then renamed, then the renames made durable. Returns the
    /// chunks and bytes the batch added.
    /// A batch that fails here leaves no temporary files behind: those not yet renamed are
    /// removed (by [`Drop`]), as when a batch is given up on.
    pub fn finish(self) -> Result<(u32, u64), ChunkStoreError> {
        let mut written = self.lock_written();
        let new_chunks = u32::try_from(written.pending.len()).unwrap_or(u32::MAX);
        let mut dirs = BTreeSet::new();
        for (tmp, _) in written.pending.values() {
            File::open(tmp)
                .and_then(|f| f.sync_data())
                .map_err(io_at(tmp))?;
        }
        let hashes: Vec<Digest> = written.pending.keys().copied().collect();
        for hash in hashes {
            let Some((tmp, path)) = written.pending.get(&hash).cloned() else {
                continue;
            };
            let dir = path.parent().map(Path::to_owned).unwrap_or_default();
            if dirs.insert(dir.clone()) {
                fs::create_dir_all(&dir).map_err(io_at(&dir))?;
            }
            // Another batch may have put the same chunk in place meanwhile: same bytes.
            fs::rename(&tmp, &path).map_err(io_at(&path))?;
            written.pending.remove(&hash);
        }
        let new_bytes = written.new_bytes;
        drop(written);
        for dir in &dirs {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_at(dir))?;
        }
        if !dirs.is_empty() {
            File::open(&self.store.root)
                .and_then(|d| d.sync_all())
                .map_err(io_at(&self.store.root))?;
        }
        Ok((new_chunks, new_bytes))
    }
}

impl Drop for Ingest<'_> {
    /// A batch given up on (a failed upload) leaves no temporary files behind.
    fn drop(&mut self) {
        for (tmp, _) in self.lock_written().pending.values() {
            let _ = fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::testutil::noise;

    #[test]
    fn a_chunk_is_stored_once_and_read_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let data = b"tensor".repeat(1000);
        let hash = Digest::of(&data);
        let ingest = store.ingest();
        ingest.put(&hash, &data).unwrap();
        ingest.put(&hash, &data).unwrap();
        let (new_chunks, new_bytes) = ingest.finish().unwrap();
        assert_eq!(new_chunks, 1);
        assert!(new_bytes > 0 && new_bytes < data.len() as u64);
        let read = store.read(&hash, data.len() as u32).unwrap();
        assert_eq!(read.bytes, data);
        assert_eq!(zstd::decode_all(read.compressed.as_slice()).unwrap(), data);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    /// An empty store and two chunks' bytes.
    #[test]
    fn a_sent_frames_buffer_serves_the_next_read_of_any_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let (first, second) = (noise(1, 300_000), noise(2, 200_000));
        let ingest = store.ingest();
        for data in [&first, &second] {
            ingest.put(&Digest::of(data), data).unwrap();
        }
        ingest.finish().unwrap();
        let frame = store
            .read_frame(&Digest::of(&first), first.len() as u32)
            .unwrap();
        let allocation = frame.as_ptr();
        let sent = store.recycle(frame);
        assert_eq!(zstd::decode_all(&sent[..]).unwrap(), first);
        // Held by QUIC: the next read has a buffer of its own.
        let other = store
            .read_frame(&Digest::of(&second), second.len() as u32)
            .unwrap();
        assert_ne!(other.as_ptr(), allocation);
        drop(sent);
        // Let go of: the next read fills that same allocation, with exactly the right bytes.
        let again = store
            .read_frame(&Digest::of(&second), second.len() as u32)
            .unwrap();
        assert_eq!(again.as_ptr(), allocation);
        assert_eq!(again, other);
        assert_eq!(zstd::decode_all(again.as_slice()).unwrap(), second);
    }

    #[test]
    fn kept_buffers_stay_within_their_budget() {
        let pool = Buffers::default();
        for _ in 0..4 {
            pool.give(Vec::with_capacity(Buffers::BUDGET / 3));
        }
        let kept = pool.0.lock().unwrap();
        assert_eq!(kept.len(), 3);
        assert!(kept.iter().map(Vec::capacity).sum::<usize>() <= Buffers::BUDGET);
        drop(kept);
        pool.give(Vec::with_capacity(Buffers::BUDGET + 1));
        assert_eq!(pool.0.lock().unwrap().len(), 3);
        pool.clear();
        assert!(pool.take().capacity() == 0);
    }

    fn two_chunks() -> (tempfile::TempDir, ChunkStore, Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        (dir, store, b"alpha".repeat(100), b"beta".repeat(100))
    }

    /// Files in the store's `tmp/`.
    fn tmp_files(dir: &tempfile::TempDir) -> usize {
        fs::read_dir(dir.path().join("tmp")).unwrap().count()
    }

    /// A chunk is in place only once its batch finishes, so a crash before cannot leave a
    /// torn file where later uploads would take it as stored; a batch given up on leaves no
    /// file at all.
    #[test]
    fn chunks_are_in_place_only_once_their_batch_finishes() {
        let (dir, store, a, b) = two_chunks();
        let tmp_files = || tmp_files(&dir);
        let ingest = store.ingest();
        ingest.put(&Digest::of(&a), &a).unwrap();
        assert!(!store.path(&Digest::of(&a)).exists(), "not before finish");
        assert_eq!(tmp_files(), 1);
        drop(ingest);
        assert_eq!(tmp_files(), 0, "a dropped batch leaves nothing");
        assert!(!store.path(&Digest::of(&a)).exists());

        let ingest = store.ingest();
        ingest.put(&Digest::of(&a), &a).unwrap();
        ingest.put(&Digest::of(&b), &b).unwrap();
        ingest.put(&Digest::of(&a), &a).unwrap();
        assert_eq!(ingest.finish().unwrap().0, 2);
        assert_eq!(tmp_files(), 0);
        assert_eq!(
            store.read(&Digest::of(&b), b.len() as u32).unwrap().bytes,
            b
        );
    }

    /// A batch whose finish failed (here: a chunk's directory cannot be made) left its
    /// temporary files until the next start: finish had taken them out of the batch before
    /// renaming, so the batch's drop found nothing to remove.
    #[test]
    fn a_batch_whose_finish_fails_leaves_no_temporary_files() {
        let (dir, store, a, b) = two_chunks();
        let tmp_files = || tmp_files(&dir);
        let ingest = store.ingest();
        ingest.put(&Digest::of(&a), &a).unwrap();
        ingest.put(&Digest::of(&b), &b).unwrap();
        assert_eq!(tmp_files(), 2);
        // A file where the chunk's directory should be.
        let blocked = store.path(&Digest::of(&b));
        fs::write(blocked.parent().unwrap(), b"in the way").unwrap();
        assert!(ingest.finish().is_err());
        assert_eq!(tmp_files(), 0);
    }

    /// Only chunks whose every sample is incompressible skip the store's level: noise does,
    /// noise with a compressible middle, end or start does not, and neither does a chunk too
    /// small to sample.
    #[test]
    fn only_incompressible_chunks_skip_the_store_level() {
        let noise = ferry_shared::testutil::noise(3, 256 * 1024);
        assert!(looks_incompressible(&noise));
        for at in [0, noise.len() / 2, noise.len() - SAMPLE_LEN] {
            let mut mixed = noise.clone();
            mixed[at..at + SAMPLE_LEN].fill(7);
            assert!(!looks_incompressible(&mixed), "compressible at {at}");
        }
        assert!(!looks_incompressible(&noise[..4 * SAMPLE_LEN - 1]));
        let nibbles: Vec<u8> = noise.iter().map(|b| b % 16).collect();
        assert!(
            !looks_incompressible(&nibbles),
            "half of every byte is redundant"
        );
        // Stored at the fast level, noise still reads back checked.
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::new(dir.path().to_owned(), 19).unwrap();
        let hash = Digest::of(&noise);
        let ingest = store.ingest();
        ingest.put(&hash, &noise).unwrap();
        ingest.finish().unwrap();
        assert_eq!(store.read(&hash, noise.len() as u32).unwrap().bytes, noise);
    }

    #[test]
    fn a_pipelined_batch_stores_each_chunk_once_on_its_workers() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let pieces: Vec<Vec<u8>> = (0..40u8)
            .map(|i| vec![i % 10; 5000 + usize::from(i)])
            .collect();
        let ingest = store.ingest();
        let handed = ingest
            .pipelined(3, |store| {
                let mut handed = 0;
                for piece in &pieces {
                    store(&Digest::of(piece), piece)?;
                    handed += 1;
                }
                Ok::<_, String>(handed)
            })
            .unwrap()
            .unwrap();
        assert_eq!(handed, 40);
        let (new_chunks, _) = ingest.finish().unwrap();
        assert_eq!(new_chunks, 40);
        for piece in &pieces {
            let read = store.read_frame(&Digest::of(piece), piece.len() as u32);
            assert!(read.is_ok(), "{read:?}");
        }
    }

    #[test]
    fn a_failed_store_ends_a_pipelined_batch_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        // Temp files cannot be created: every store fails.
        fs::remove_dir_all(dir.path().join("tmp")).unwrap();
        fs::write(dir.path().join("tmp"), b"not a directory").unwrap();
        let ingest = store.ingest();
        let result = ingest.pipelined(2, |store| {
            // Many more chunks than the queue holds: the cut must still end.
            for i in 0..1000u32 {
                let piece = i.to_le_bytes().repeat(100);
                store(&Digest::of(&piece), &piece)?;
            }
            Ok::<_, String>(())
        });
        assert!(
            matches!(result, Err(ChunkStoreError::Io { .. })),
            "{result:?}"
        );
    }

    /// Checked reads decode into a buffer kept from the last one, which may be larger than the
    /// chunk: a frame decoding past its chunk is still refused, and a good one still reads.
    #[test]
    fn a_checked_read_into_a_larger_kept_buffer_still_bounds_the_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let big = b"layer".repeat(100_000);
        let small = b"bias".repeat(100);
        let ingest = store.ingest();
        for data in [&big, &small] {
            ingest.put(&Digest::of(data), data).unwrap();
        }
        ingest.finish().unwrap();
        let frame = store
            .read_frame(&Digest::of(&big), big.len() as u32)
            .unwrap();
        assert_eq!(zstd::decode_all(frame.as_slice()).unwrap(), big);
        // The small chunk's file now holds a frame of the big chunk's bytes.
        let hash = Digest::of(&small);
        fs::write(store.path(&hash), &frame).unwrap();
        let err = store.read_frame(&hash, small.len() as u32).unwrap_err();
        assert!(err.to_string().contains("400"), "{err}");
        fs::write(
            store.path(&hash),
            zstd::encode_all(small.as_slice(), 3).unwrap(),
        )
        .unwrap();
        store.read_frame(&hash, small.len() as u32).unwrap();
        store.release_scratch();
    }

    #[test]
    fn damaged_or_missing_chunks_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let data = b"weights".repeat(500);
        let hash = Digest::of(&data);
        let ingest = store.ingest();
        ingest.put(&hash, &data).unwrap();
        ingest.finish().unwrap();
        assert!(matches!(
            store.read(&hash, data.len() as u32 - 1),
            Err(ChunkStoreError::Damaged { .. })
        ));
        // Same length, other content: valid zstd, wrong hash.
        let other = b"WEIGHTS".repeat(500);
        fs::write(
            store.path(&hash),
            zstd::encode_all(other.as_slice(), 3).unwrap(),
        )
        .unwrap();
        let err = store.read(&hash, data.len() as u32).unwrap_err();
        assert!(err.to_string().contains("hashing to"), "{err}");
        fs::write(store.path(&hash), b"garbage").unwrap();
        assert!(matches!(
            store.read(&hash, data.len() as u32),
            Err(ChunkStoreError::Damaged { .. })
        ));
        let absent = Digest::of(b"absent");
        assert!(matches!(
            store.read(&absent, 1),
            Err(ChunkStoreError::Missing(_))
        ));
    }
}
