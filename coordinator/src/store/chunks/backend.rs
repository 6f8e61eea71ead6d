//! What a chunk store engine keeps, and nothing more: zstd frames named by the BLAKE3 of the
//! chunk each holds. Compression, checking every frame on read and the upload spool stay in
//! [`super::ChunkStore`], the same whichever engine holds the frames.

use std::fmt;

use ferry_shared::Digest;

use super::ChunkStoreError;

/// A stored frame, as garbage collection sees it.
#[derive(Clone, Copy, Debug)]
pub struct ChunkFile {
    /// The chunk.
    pub hash: Digest,
    /// Its frame's size in bytes.
    pub size: u64,
    /// When its frame was last written (Unix seconds; 0 when the engine does not say).
    pub modified: u64,
}

/// Where frames live: a local directory ([`super::local::LocalDir`], the embedded default),
/// or an object store.
pub trait ChunkBackend: Send + Sync + fmt::Debug {
    /// Appends the stored frame of chunk `hash` to `into`; [`ChunkStoreError::Missing`] when
    /// there is none.
    fn read_into(&self, hash: &Digest, into: &mut Vec<u8>) -> Result<(), ChunkStoreError>;
    /// The size of chunk `hash`'s frame, without reading it.
    fn frame_len(&self, hash: &Digest) -> Result<u64, ChunkStoreError>;
    /// Whether chunk `hash` is stored (and readable by others: a batch's frames are not
    /// until it finishes).
    fn contains(&self, hash: &Digest) -> Result<bool, ChunkStoreError>;
    /// Starts a batch of writes.
    fn batch(&self) -> Box<dyn FrameBatch + '_>;
    /// Every stored frame.
    fn list(&self) -> Result<Vec<ChunkFile>, ChunkStoreError>;
    /// Deletes these chunks' frames (absent ones are no error), durably; how many were
    /// deleted.
    fn remove(&self, hashes: &mut dyn Iterator<Item = &Digest>) -> Result<usize, ChunkStoreError>;
    /// The engine and where its frames live, for logs.
    fn describe(&self) -> String;
    /// An address anyone holding it may fetch chunk `hash`'s frame from for `valid_for`
    /// without other credentials (a pre-signed S3 request); `None` when the engine has no
    /// such thing (a local directory). Made up locally: no request goes out.
    fn presigned(&self, hash: &Digest, valid_for: std::time::Duration) -> Option<String> {
        let _ = (hash, valid_for);
        None
    }
}

/// A batch of frame writes, which may come from several threads at once. Once
/// [`FrameBatch::finish`] returns, every frame put is durable and readable; a batch dropped
/// unfinished leaves no partial frame where a reader would find it.
pub trait FrameBatch: Send + Sync {
    /// Stores `frame` as chunk `hash`; `false` when this batch holds it already (the second
    /// of two threads storing the same chunk at once).
    fn put(&self, hash: &Digest, frame: &[u8]) -> Result<bool, ChunkStoreError>;
    /// Makes every frame put durable and readable.
    fn finish(self: Box<Self>) -> Result<(), ChunkStoreError>;
}
