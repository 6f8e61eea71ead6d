//! The content-addressed chunk store: each chunk kept once, as a zstd frame (with a frame
//! checksum) named by the chunk's BLAKE3, however many artifacts contain it.
//!
//! The frames live in an engine ([`backend::ChunkBackend`]: a local directory by default,
//! [`local::LocalDir`]); what is the same for every engine lives here: compression on
//! ingest ([`ingest`]), the upload spool ([`uploads`], always local), and reads that decode
//! in one call, refusing a frame that runs past the chunk's length, and check length and
//! hash: a damaged frame is an error, never bytes sent to a device.

pub mod backend;
mod buffers;
mod ingest;
pub mod local;
pub mod s3;
mod uploads;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_shared::Digest;
use ferry_shared::delta::{Encoding, Limits, decode_in_window_reusing};

use backend::ChunkBackend;
pub use backend::ChunkFile;
use buffers::{Buffers, Recycled};
pub use ingest::Ingest;
pub use uploads::{UPLOADS_DIR, UploadPart};

/// Chunk frames in their engine, with a local directory for the upload spool.
#[derive(Clone, Debug)]
pub struct ChunkStore {
    /// The local directory: the upload spool and temporary files.
    root: PathBuf,
    /// Where the frames are.
    backend: Arc<dyn ChunkBackend>,
    level: i32,
    /// Buffers of chunks decoded only to be checked (see [`ChunkStore::read_frame`]).
    scratch: Arc<Buffers>,
    /// Buffers of stored frames, back from QUIC once sent (see [`ChunkStore::recycle`]).
    frames: Arc<Buffers>,
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
    /// The object store refused or failed a request.
    #[error("chunk store: {what}: {reason}")]
    Remote {
        /// What was being done.
        what: String,
        /// What went wrong.
        reason: String,
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

pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ChunkStoreError + '_ {
    move |source| ChunkStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A fresh temporary path under `tmp`.
fn temp_path_in(tmp: &Path, label: &str) -> Result<PathBuf, ChunkStoreError> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| ChunkStoreError::Io {
        path: tmp.to_owned(),
        source: io::Error::other(e.to_string()),
    })?;
    Ok(tmp.join(format!("{label}.{}", hex::encode(nonce))))
}

impl ChunkStore {
    /// A store of frames in the directory `root` (which also holds the upload spool),
    /// compressing at zstd `level`; clears leftovers of interrupted writes.
    pub fn new(root: PathBuf, level: i32) -> Result<Self, ChunkStoreError> {
        let frames = local::LocalDir::new(root.clone())?;
        Self::on(root, Arc::new(frames), level)
    }

    /// A store of frames in `backend`, with the upload spool in the directory `root`.
    pub fn on(
        root: PathBuf,
        backend: Arc<dyn ChunkBackend>,
        level: i32,
    ) -> Result<Self, ChunkStoreError> {
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        Ok(Self {
            root,
            backend,
            level,
            scratch: Arc::default(),
            frames: Arc::default(),
        })
    }

    /// Where the frames are, for logs.
    pub fn describe(&self) -> String {
        self.backend.describe()
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

    /// Starts a batch of writes, readable together once [`Ingest::finish`] returns.
    pub fn ingest(&self) -> Ingest<'_> {
        Ingest {
            store: self,
            batch: self.backend.batch(),
            added: Default::default(),
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
        self.backend.frame_len(hash)
    }

    /// A pre-signed address of chunk `hash`'s frame, valid for `valid_for`, when the engine
    /// makes them (see [`ChunkBackend::presigned`]).
    pub fn presigned(&self, hash: &Digest, valid_for: std::time::Duration) -> Option<String> {
        self.backend.presigned(hash, valid_for)
    }

    /// Appends chunk `hash`'s stored frame to `into` as it is, unchecked: for copies that
    /// carry their own hashes (backups).
    pub fn stored_frame_into(
        &self,
        hash: &Digest,
        into: &mut Vec<u8>,
    ) -> Result<(), ChunkStoreError> {
        self.backend.read_into(hash, into)
    }

    /// A batch that stores frames as they are, each under its chunk's hash (restores); durable
    /// once finished.
    pub fn frame_batch(&self) -> Box<dyn backend::FrameBatch + '_> {
        self.backend.batch()
    }

    /// Every stored frame.
    pub fn list(&self) -> Result<Vec<ChunkFile>, ChunkStoreError> {
        self.backend.list()
    }

    /// Deletes these chunks' frames (absent ones are no error), durably; returns how many
    /// were deleted.
    pub fn remove<'a>(
        &self,
        hashes: impl IntoIterator<Item = &'a Digest>,
    ) -> Result<usize, ChunkStoreError> {
        self.backend.remove(&mut hashes.into_iter())
    }

    /// The stored frame of chunk `hash`, read into a kept buffer when there is one.
    fn read_file(&self, hash: &Digest) -> Result<Vec<u8>, ChunkStoreError> {
        let mut buffer = self.frames.take();
        buffer.clear();
        match self.backend.read_into(hash, &mut buffer) {
            Ok(()) => Ok(buffer),
            Err(e) => {
                self.frames.give(buffer);
                Err(e)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::testutil::noise;
    use ingest::{SAMPLE_LEN, looks_incompressible};
    use std::fs;

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
        assert!(
            !local::chunk_path(&store.root, &Digest::of(&a)).exists(),
            "not before finish"
        );
        assert_eq!(tmp_files(), 1);
        drop(ingest);
        assert_eq!(tmp_files(), 0, "a dropped batch leaves nothing");
        assert!(!local::chunk_path(&store.root, &Digest::of(&a)).exists());

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
        let blocked = local::chunk_path(&store.root, &Digest::of(&b));
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
        fs::write(local::chunk_path(&store.root, &hash), &frame).unwrap();
        let err = store.read_frame(&hash, small.len() as u32).unwrap_err();
        assert!(err.to_string().contains("400"), "{err}");
        fs::write(
            local::chunk_path(&store.root, &hash),
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
            local::chunk_path(&store.root, &hash),
            zstd::encode_all(other.as_slice(), 3).unwrap(),
        )
        .unwrap();
        let err = store.read(&hash, data.len() as u32).unwrap_err();
        assert!(err.to_string().contains("hashing to"), "{err}");
        fs::write(local::chunk_path(&store.root, &hash), b"garbage").unwrap();
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
