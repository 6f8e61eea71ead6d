//! A batch of chunk writes: each chunk compressed (with a frame checksum) and handed to the
//! engine's batch, on several threads at once; nothing is readable before the batch finishes.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Mutex, PoisonError};

use ferry_shared::Digest;

use super::backend::FrameBatch;
use super::{ChunkStore, ChunkStoreError, io_at};

/// The level a chunk that [`looks_incompressible`] is stored at: it still finds what little
/// there is to find, at a small part of the store level's cost.
const INCOMPRESSIBLE_LEVEL: i32 = 1;

/// How much of each sample zstd must save for a chunk to be compressed at the store's level.
const SAMPLE_GAIN_PERCENT: usize = 3;

/// Bytes in each of a chunk's three samples.
pub(super) const SAMPLE_LEN: usize = 16 * 1024;

/// True when three samples of `bytes` (start, middle, end) each compress by less than
/// [`SAMPLE_GAIN_PERCENT`] at zstd's fastest level: encrypted or already-compressed data,
/// which the store's level would spend most of a publish's time on to save nothing. Chunks
/// under four samples are always compressed at the store's level.
pub(super) fn looks_incompressible(bytes: &[u8]) -> bool {
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
    pub(super) store: &'a ChunkStore,
    pub(super) batch: Box<dyn FrameBatch + 'a>,
    pub(super) added: Mutex<Added>,
}

/// What a batch added, for [`Ingest::finish`].
#[derive(Default)]
pub(super) struct Added {
    /// Chunks claimed by a thread of this batch (stored, or being stored).
    claimed: HashSet<Digest>,
    /// Chunks the batch stored.
    chunks: u32,
    /// Their frames' bytes.
    bytes: u64,
}

impl Ingest<'_> {
    /// Stores `bytes` (which hash to `hash`) unless the chunk is already there: compressed,
    /// and handed to the engine's batch, readable once [`Ingest::finish`] returns.
    pub fn put(&self, hash: &Digest, bytes: &[u8]) -> Result<(), ChunkStoreError> {
        if self.store.backend.contains(hash)? || !self.lock_added().claimed.insert(*hash) {
            return Ok(());
        }
        let level = if looks_incompressible(bytes) {
            INCOMPRESSIBLE_LEVEL
        } else {
            self.store.level
        };
        let root = &self.store.root;
        let compressed = {
            let mut encoder = zstd::Encoder::new(Vec::new(), level).map_err(io_at(root))?;
            encoder.include_checksum(true).map_err(io_at(root))?;
            encoder.write_all(bytes).map_err(io_at(root))?;
            encoder.finish().map_err(io_at(root))?
        };
        if self.batch.put(hash, &compressed)? {
            let mut added = self.lock_added();
            added.chunks = added.chunks.saturating_add(1);
            added.bytes += compressed.len() as u64;
        }
        Ok(())
    }

    fn lock_added(&self) -> std::sync::MutexGuard<'_, Added> {
        self.added.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Makes the batch's chunks durable and readable. Returns the chunks and bytes the batch
    /// added. A batch that fails here, or is dropped unfinished, leaves nothing partial behind.
    pub fn finish(self) -> Result<(u32, u64), ChunkStoreError> {
        let added = self
            .added
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        self.batch.finish()?;
        Ok((added.chunks, added.bytes))
    }
}
