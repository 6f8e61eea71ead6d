//! The upload spool: artifacts on their way in are kept in the store's local directory
//! (whatever engine holds the chunks), so an interrupted upload resumes where it stopped.

use std::fs;
use std::io;
use std::path::PathBuf;

use ferry_shared::Digest;

use super::local::{modified_secs, named_by_hash};
use super::{ChunkStore, ChunkStoreError, io_at, temp_path_in};

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
    /// Where the bytes so far of a resumable upload of artifact `hash` are kept (see
    /// [`crate::store::blobs::Spool::resume`]).
    pub fn upload_path(&self, hash: &Digest) -> PathBuf {
        self.root
            .join(UPLOADS_DIR)
            .join(format!("{}.part", hash.to_hex()))
    }

    /// A fresh temporary path under the store's local directory (same file system as the
    /// spool, so renames are atomic).
    pub fn temp_path(&self, label: &str) -> Result<PathBuf, ChunkStoreError> {
        temp_path_in(&self.root.join("tmp"), label)
    }

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
}
